//! The last line of defence for "internal details never leak": every error leaving the server
//! carries a code, and anything internal (or unclassified, from a resolver) is replaced by a
//! generic message with the request id, while the original goes to the log.

use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};

use crate::http::errors::{INTERNAL, VALIDATION};

pub fn mask_errors(response: &mut Response, request_id: &str) {
    for error in &mut response.errors {
        match classify(error) {
            Class::Coded => {}
            Class::Validation => set_code(error, VALIDATION),
            // The schema already logged and masked it (same wording): do not log it twice.
            Class::Internal if error.message == masked_message(request_id) => {
                set_extension(error, "requestId", request_id);
            }
            Class::Internal => mask(error, request_id),
        }
    }
}

enum Class {
    /// Already carries a public code (and is not `INTERNAL`).
    Coded,
    /// A request-level problem (parse, validation, limits) or a bad input value.
    Validation,
    Internal,
}

fn classify(error: &ServerError) -> Class {
    let code = error
        .extensions
        .as_ref()
        .and_then(|extensions| match extensions.get("code") {
            Some(Value::String(code)) => Some(code.as_str()),
            _ => None,
        });
    match code {
        Some(INTERNAL) => Class::Internal,
        Some(_) => Class::Coded,
        // No path: the error is about the document, before any resolver ran.
        None if error.path.is_empty() => Class::Validation,
        None if is_input_value_error(&error.message) => Class::Validation,
        None => Class::Internal,
    }
}

/// async-graphql reports arguments that fail to parse (a custom scalar, an enum) and variables
/// the request does not send from inside the resolver, so they carry a path; their wording is
/// fixed by the library.
fn is_input_value_error(message: &str) -> bool {
    message.starts_with("Failed to parse \"")
        || message.starts_with("Expected input type \"")
        || message.starts_with("Invalid value for argument")
        || (message.starts_with("Variable ") && message.ends_with(" is not defined."))
}

fn masked_message(request_id: &str) -> String {
    crate::http::errors::internal_message(request_id)
}

fn set_code(error: &mut ServerError, code: &str) {
    set_extension(error, "code", code);
}

fn set_extension(error: &mut ServerError, name: &str, value: &str) {
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set(name, value);
}

fn mask(error: &mut ServerError, request_id: &str) {
    ::metrics::counter!("graphql_internal_errors_total").increment(1);
    tracing::error!(
        request_id,
        path = ?error.path,
        error = %error.message,
        "internal error in a GraphQL operation"
    );
    error.message = masked_message(request_id);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", INTERNAL);
    extensions.set("requestId", request_id);
    error.extensions = Some(extensions);
    error.source = None;
}

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Pos};

    use super::*;

    fn error(message: &str, path: bool, code: Option<&str>) -> ServerError {
        let mut error = ServerError::new(message, Some(Pos { line: 1, column: 1 }));
        if path {
            error.path = vec![PathSegment::Field("me".into())];
        }
        if let Some(code) = code {
            set_code(&mut error, code);
        }
        error
    }

    fn code_of(error: &ServerError) -> Option<String> {
        match error.extensions.as_ref()?.get("code")? {
            Value::String(code) => Some(code.clone()),
            _ => None,
        }
    }

    #[test]
    fn internal_errors_lose_their_details() {
        let mut response = Response::default();
        response.errors = vec![
            error(
                "SELECT * FROM members failed: connection reset",
                true,
                Some(INTERNAL),
            ),
            error("Data `Loyalty` does not exist.", true, None),
        ];
        mask_errors(&mut response, "rid-1");
        for error in &response.errors {
            assert_eq!(error.message, "internal error (request id rid-1)");
            assert_eq!(code_of(error).as_deref(), Some(INTERNAL));
            let extensions = error.extensions.as_ref().unwrap();
            assert_eq!(
                extensions.get("requestId"),
                Some(&Value::String("rid-1".into()))
            );
        }
    }

    #[test]
    fn public_errors_pass_and_request_errors_get_a_code() {
        let mut response = Response::default();
        response.errors = vec![
            error("not enough points", true, Some("INSUFFICIENT_POINTS")),
            error("Unknown field \"x\"", false, None),
            error("Failed to parse \"Decimal\": invalid digit", true, None),
            error("Variable sku is not defined.", true, None),
        ];
        mask_errors(&mut response, "rid-2");
        assert_eq!(response.errors[0].message, "not enough points");
        assert_eq!(
            code_of(&response.errors[0]).as_deref(),
            Some("INSUFFICIENT_POINTS")
        );
        assert_eq!(code_of(&response.errors[1]).as_deref(), Some(VALIDATION));
        assert_eq!(code_of(&response.errors[2]).as_deref(), Some(VALIDATION));
        assert!(response.errors[2].message.contains("Decimal"));
        assert_eq!(code_of(&response.errors[3]).as_deref(), Some(VALIDATION));
    }
}
