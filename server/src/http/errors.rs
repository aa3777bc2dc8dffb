//! Refusals that happen before GraphQL execution still answer in GraphQL's error shape, so a
//! client has one way to read `extensions.code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
