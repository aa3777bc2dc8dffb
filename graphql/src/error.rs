//! Mapping domain refusals to `extensions.code`, and the one place that decides who may call
//! what.

use async_graphql::{Context, ErrorExtensions};
use std::sync::Arc;

use loyalty_domain::program::Program;
use loyalty_domain::{Actor, Capability, DomainError, Loyalty};

/// The request id the server assigned (also in its logs).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub(crate) trait IntoGql<T> {
    fn gql(self, ctx: &Context<'_>) -> async_graphql::Result<T>;
}

impl<T> IntoGql<T> for Result<T, DomainError> {
    fn gql(self, ctx: &Context<'_>) -> async_graphql::Result<T> {
        self.map_err(|err| to_gql(err, ctx))
    }
}

pub(crate) fn to_gql(err: DomainError, ctx: &Context<'_>) -> async_graphql::Error {
    let code = err.code();
    match err {
        DomainError::Internal(detail) => {
            let request_id = ctx
                .data_opt::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default();
            tracing::error!(request_id = %request_id, error = %detail, "internal error");
            async_graphql::Error::new(format!("internal error (request id {request_id})"))
                .extend_with(|_, e| {
                    e.set("code", code);
                    e.set("requestId", request_id.clone());
                })
        }
        DomainError::Unauthenticated(message)
        | DomainError::Forbidden(message)
        | DomainError::NotFound(message)
        | DomainError::Validation(message)
        | DomainError::InsufficientPoints(message)
        | DomainError::OutOfStock(message)
        | DomainError::LimitReached(message)
        | DomainError::AlreadyClaimed(message)
        | DomainError::RuleInactive(message)
        | DomainError::IdempotencyKeyReused(message)
        | DomainError::RateLimited(message)
        | DomainError::Conflict(message) => {
            async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
        }
    }
}

/// The verified caller, or `UNAUTHENTICATED`.
pub fn actor<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Actor> {
    ctx.data_opt::<Actor>().ok_or_else(|| {
        to_gql(
            DomainError::Unauthenticated("a bearer token is required".into()),
            ctx,
        )
    })
}

/// The verified caller as capability `C`, else `UNAUTHENTICATED` or `FORBIDDEN`: the one role
/// check. Domain methods take the capability, so a resolver cannot reach them without it.
pub fn authorize<C: Capability>(ctx: &Context<'_>) -> async_graphql::Result<C> {
    actor(ctx)?.authorize::<C>().gql(ctx)
}

/// The caller (as capability `C`), the service and the caller's program: the first line of
/// almost every resolver.
pub(crate) async fn scope<'a, C: Capability>(
    ctx: &Context<'a>,
) -> async_graphql::Result<(C, &'a Loyalty, Arc<Program>)> {
    let caller = authorize::<C>(ctx)?;
    let loyalty = ctx.data::<Loyalty>()?;
    let program = loyalty.program(&actor(ctx)?.program).await.gql(ctx)?;
    Ok((caller, loyalty, program))
}

pub(crate) fn parse_id(id: &async_graphql::ID, ctx: &Context<'_>) -> async_graphql::Result<i64> {
    id.parse::<i64>().map_err(|_| {
        to_gql(
            DomainError::not_found(format!("no object with id `{}`", id.as_str())),
            ctx,
        )
    })
}
