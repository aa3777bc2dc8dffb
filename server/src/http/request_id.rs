//! Request ids: a client's `x-request-id` is kept when it is short and plain, otherwise a UUID v4
//! is assigned (tower-http's `SetRequestId`), echoed in the response, put in the tracing span
//! and handed to resolvers as [`loyalty_graphql::RequestId`].

use axum::extract::Request;
use axum::http::Extensions;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::RequestId;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

/// Drops a client-supplied id that could pollute logs, so a fresh one is generated.
pub async fn sanitize(mut request: Request, next: Next) -> Response {
    let acceptable = request.headers().get(HEADER).map(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if acceptable == Some(false) {
        request.headers_mut().remove(HEADER);
    }
    next.run(request).await
}

/// The id of the request these extensions belong to.
pub fn from_extensions(extensions: &Extensions) -> String {
    extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The id of `request`.
pub fn request_id<B>(request: &axum::http::Request<B>) -> String {
    from_extensions(request.extensions())
}
