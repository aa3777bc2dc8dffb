//! Business refusals and the one internal case. The GraphQL layer maps each variant to its
//! `extensions.code`; `Internal` details are logged, never shown.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", content = "message", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DomainError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InsufficientPoints(String),
    #[error("{0}")]
    OutOfStock(String),
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    AlreadyClaimed(String),
    #[error("{0}")]
    RuleInactive(String),
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal(String),
}

impl DomainError {
    pub fn validation(message: impl Into<String>) -> Self {
        DomainError::Validation(message.into())
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        DomainError::NotFound(what.into())
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        DomainError::Internal(err.to_string())
    }

    /// The public error code (SPEC §4.5).
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Unauthenticated(_) => "UNAUTHENTICATED",
            DomainError::Forbidden(_) => "FORBIDDEN",
            DomainError::NotFound(_) => "NOT_FOUND",
            DomainError::Validation(_) => "VALIDATION",
            DomainError::InsufficientPoints(_) => "INSUFFICIENT_POINTS",
            DomainError::OutOfStock(_) => "OUT_OF_STOCK",
            DomainError::LimitReached(_) => "LIMIT_REACHED",
            DomainError::AlreadyClaimed(_) => "ALREADY_CLAIMED",
            DomainError::RuleInactive(_) => "RULE_INACTIVE",
            DomainError::IdempotencyKeyReused(_) => "IDEMPOTENCY_KEY_REUSED",
            DomainError::RateLimited(_) => "RATE_LIMITED",
            DomainError::Conflict(_) => "CONFLICT",
            DomainError::Internal(_) => "INTERNAL",
        }
    }

    /// Whether a retry with the same idempotency key must see this same answer. Refusals that
    /// depend only on the request and the state at the time are stored; internal errors are not.
    pub fn is_replayable(&self) -> bool {
        match self {
            DomainError::InsufficientPoints(_)
            | DomainError::OutOfStock(_)
            | DomainError::LimitReached(_)
            | DomainError::AlreadyClaimed(_)
            | DomainError::RuleInactive(_)
            | DomainError::Validation(_)
            | DomainError::NotFound(_) => true,
            DomainError::Unauthenticated(_)
            | DomainError::Forbidden(_)
            | DomainError::IdempotencyKeyReused(_)
            | DomainError::RateLimited(_)
            | DomainError::Conflict(_)
            | DomainError::Internal(_) => false,
        }
    }
}

impl From<sea_orm::DbErr> for DomainError {
    fn from(err: sea_orm::DbErr) -> Self {
        DomainError::Internal(err.to_string())
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
