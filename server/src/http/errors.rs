//! Refusals that happen before GraphQL execution still answer in GraphQL's error shape, so a
//! client has one way to read `extensions.code`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use loyalty_domain::DomainError;
use serde_json::json;

pub const VALIDATION: &str = "VALIDATION";
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const RATE_LIMITED: &str = "RATE_LIMITED";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const INTERNAL: &str = "INTERNAL";

/// `{"errors":[{"message":…,"extensions":{"code":…}}]}` with `status`.
pub fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 405 for anything but POST: mutations over GET, and GET without a query when GraphiQL is off.
pub fn post_only(message: &str) -> Response {
    let mut response = graphql_error(StatusCode::METHOD_NOT_ALLOWED, VALIDATION, message);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

pub async fn not_found() -> Response {
    graphql_error(StatusCode::NOT_FOUND, NOT_FOUND, "no such route")
}

/// What a client reads instead of an internal error's details (those go to the log).
pub fn internal_message(request_id: &str) -> String {
    format!("internal error (request id {request_id})")
}

/// The request id that `SetRequestIdLayer` put on the request.
pub fn request_id_of(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A domain refusal on a plain-HTTP route (not GraphQL): the status that fits its code, the
/// code in `extensions.code`, and for `INTERNAL` only the request id (details are logged).
pub fn domain_refusal(request_id: &str, err: DomainError) -> Response {
    let status = match &err {
        DomainError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
        DomainError::NotFound(_) => StatusCode::NOT_FOUND,
        DomainError::Validation(_) => StatusCode::BAD_REQUEST,
        DomainError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        DomainError::InsufficientPoints(_)
        | DomainError::OutOfStock(_)
        | DomainError::LimitReached(_)
        | DomainError::AlreadyClaimed(_)
        | DomainError::RuleInactive(_)
        | DomainError::IdempotencyKeyReused(_)
        | DomainError::Conflict(_) => StatusCode::CONFLICT,
        DomainError::Internal(detail) => {
            tracing::error!(%request_id, error = %detail, "request failed");
            return graphql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                &internal_message(request_id),
            );
        }
    };
    graphql_error(status, err.code(), &err.to_string())
}
