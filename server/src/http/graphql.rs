//! GraphQL over HTTP. POST takes `application/json` only (a form, `text/plain` or multipart POST
//! is a CSRF vector); GET runs queries only, so a link or an `<img>` can never mutate. Every
//! refusal here happens before anything executes. Both accept automatic persisted queries
//! (`persisted.rs`).

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse, Request as GqlRequest, Response as GqlResponse};
use async_graphql::{ServerError, Variables};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest as _, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use loyalty_domain::Actor;
use loyalty_graphql::RequestId;
use serde::Deserialize;

use super::errors::{graphql_error, post_only, UNAUTHENTICATED, VALIDATION};
use super::rate_limit::too_many_requests;
use super::{request_id, AppState};

mod cost;
mod masking;
mod persisted;

pub use cost::price;
pub use masking::mask_errors;
pub use persisted::{PersistedQueries, Prepared};

/// GET parameters per GraphQL over HTTP (`operationName`; the snake_case spelling is accepted
/// too), plus `extensions` (JSON) as Apollo Client sends persisted queries over GET.
#[derive(Debug, Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName", alias = "operation_name")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// `POST /graphql`: one request object or a batch (array) of them.
pub async fn post(State(state): State<AppState>, request: Request) -> Response {
    let request_id = request_id::request_id(&request);
    if let Err(message) = check_content_type(request.headers()) {
        return graphql_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, VALIDATION, message);
    }
    let actor = match state.auth.actor_from_headers(request.headers()) {
        Ok(actor) => actor,
        Err(err) => return unauthenticated(&err.to_string()),
    };
    let body = match Bytes::from_request(request, &state).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.config.body_limit_bytes;
            let message = format!("request body larger than {limit} bytes");
            return graphql_error(StatusCode::PAYLOAD_TOO_LARGE, VALIDATION, &message);
        }
        Err(rejection) => {
            tracing::debug!(error = %rejection, "could not read the request body");
            return bad_request("could not read the request body");
        }
    };
    let (batch, single) = match parse_batch(&body, state.config.graphql.max_batch) {
        Ok(BatchRequest::Single(request)) => (vec![request], true),
        Ok(BatchRequest::Batch(requests)) => (requests, false),
        Err(message) => return bad_request(&message),
    };
    let (prepared, cost) = match prepare_all(&state, batch) {
        Ok(prepared) => prepared,
        Err(message) => return bad_request(&message),
    };
    if let Some(actor) = &actor {
        if let Err(retry) = state.limits.check_subject(actor, cost) {
            ::metrics::counter!("http_rate_limited_total", "limit" => "subject").increment(1);
            return too_many_requests(retry, "too many requests for this caller");
        }
    }
    let runs = prepared
        .into_iter()
        .map(|item| execute(&state, item, actor.as_ref(), &request_id));
    let mut responses = futures::future::join_all(runs).await;
    let response = match responses.pop() {
        Some(response) if single => BatchResponse::Single(response),
        last => BatchResponse::Batch(responses.into_iter().chain(last).collect()),
    };
    respond(response, &request_id)
}

/// Each request prepared (see [`PersistedQueries::prepare`]) and the batch's price, or why the
/// whole batch is refused.
fn prepare_all(
    state: &AppState,
    batch: Vec<GqlRequest>,
) -> Result<(Vec<Result<Prepared, ServerError>>, usize), String> {
    let mut cost = 0usize;
    let mut prepared = Vec::with_capacity(batch.len());
    for request in batch {
        let item = state.persisted.prepare(request);
        // A refused persisted query runs nothing; like a syntax error it costs 1.
        let checks = item
            .as_ref()
            .ok()
            .and_then(|item| item.checks.as_ref().ok());
        let price = cost::price(checks, state.config.graphql.max_root_mutations)?;
        cost = cost.saturating_add(price);
        prepared.push(item);
    }
    Ok((prepared, cost))
}

/// Runs one prepared request, or answers its persisted-query refusal.
async fn execute(
    state: &AppState,
    item: Result<Prepared, ServerError>,
    actor: Option<&Actor>,
    request_id: &str,
) -> GqlResponse {
    let prepared = match item {
        Ok(prepared) => prepared,
        Err(refusal) => return GqlResponse::from_errors(vec![refusal]),
    };
    let mut request = prepared.request.data(RequestId(request_id.to_owned()));
    if let Some(actor) = actor {
        request = request.data::<Actor>(actor.clone());
    }
    state.schema.execute(request).await
}

/// One request object, or a non-empty array of at most `max_batch` of them. The shape is
/// checked on the raw JSON first: serde would read `[]` as a request with every field defaulted,
/// and an oversized batch is refused before any request in it is built.
fn parse_batch(body: &[u8], max_batch: usize) -> Result<BatchRequest, String> {
    const SHAPE: &str = "request body must be a GraphQL request ({\"query\": …, \"variables\": …, \
                         \"operationName\": …}) or a non-empty array of them";
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "request body is not valid JSON".to_owned())?;
    match &value {
        serde_json::Value::Object(_) => {}
        serde_json::Value::Array(items) if items.len() > max_batch => {
            let count = items.len();
            return Err(format!(
                "batch of {count} operations exceeds the limit of {max_batch}"
            ));
        }
        serde_json::Value::Array(items)
            if !items.is_empty() && items.iter().all(serde_json::Value::is_object) => {}
        _ => return Err(SHAPE.to_owned()),
    }
    serde_json::from_value(value).map_err(|err| format!("{SHAPE}: {err}"))
}

/// `GET /graphql`: queries with `?query=` (or a persisted query's hash in `?extensions=`);
/// GraphiQL without either (when enabled).
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let request_id = request_id::request_id(&request);
    let params = match Query::<GetParams>::try_from_uri(request.uri()) {
        Ok(Query(params)) => params,
        Err(_) => return bad_request("invalid query string"),
    };
    let query = params.query.filter(|query| !query.trim().is_empty());
    let extensions = params.extensions.filter(|e| !e.trim().is_empty());
    if query.is_none() && extensions.is_none() {
        return if state.config.graphql.graphiql {
            graphiql()
        } else {
            post_only("send GraphQL requests with POST")
        };
    }
    let mut gql = GqlRequest::new(query.unwrap_or_default());
    if let Some(name) = params.operation_name {
        gql = gql.operation_name(name);
    }
    if let Some(variables) = params.variables.filter(|v| !v.trim().is_empty()) {
        match json_object(&variables) {
            Some(value) => gql = gql.variables(Variables::from_json(value)),
            None => return bad_request("variables must be a JSON object"),
        }
    }
    if let Some(extensions) = extensions {
        match json_object(&extensions).map(serde_json::from_value) {
            Some(Ok(extensions)) => gql.extensions = extensions,
            Some(Err(_)) | None => return bad_request("extensions must be a JSON object"),
        }
    }
    let prepared = match state.persisted.prepare(gql) {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let response = GqlResponse::from_errors(vec![refusal]);
            return respond(BatchResponse::Single(response), &request_id);
        }
    };
    match &prepared.checks {
        Ok(checks) if checks.operation == Some(OperationType::Query) => {}
        Ok(_) => {
            return post_only(
                "only queries may use GET; send mutations and subscriptions with POST",
            )
        }
        Err(err) => return bad_request(&err.message),
    }
    let actor = match state.auth.actor_from_headers(request.headers()) {
        Ok(actor) => actor,
        Err(err) => return unauthenticated(&err.to_string()),
    };
    if let Some(actor) = &actor {
        if let Err(retry) = state.limits.check_subject(actor, 1) {
            ::metrics::counter!("http_rate_limited_total", "limit" => "subject").increment(1);
            return too_many_requests(retry, "too many requests for this caller");
        }
    }
    let response = execute(&state, Ok(prepared), actor.as_ref(), &request_id).await;
    respond(BatchResponse::Single(response), &request_id)
}

fn json_object(text: &str) -> Option<serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Some(value),
        Ok(_) | Err(_) => None,
    }
}

/// `application/json`, optionally with `charset=utf-8`.
fn check_content_type(headers: &HeaderMap) -> Result<(), &'static str> {
    const MESSAGE: &str = "Content-Type must be application/json";
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .ok_or(MESSAGE)?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(MESSAGE);
    }
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err("the request body must be UTF-8 JSON (charset=utf-8)");
        }
    }
    Ok(())
}

fn respond(mut response: BatchResponse, request_id: &str) -> Response {
    match &mut response {
        BatchResponse::Single(single) => mask_errors(single, request_id),
        BatchResponse::Batch(all) => all
            .iter_mut()
            .for_each(|single| mask_errors(single, request_id)),
    }
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "could not serialize a GraphQL response");
            return graphql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                super::errors::INTERNAL,
                &super::errors::internal_message(request_id),
            );
        }
    };
    let mut http = Response::new(Body::from(body));
    let headers = http.headers_mut();
    for (name, value) in response.http_headers_iter() {
        headers.append(name, value);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    http
}

fn bad_request(message: &str) -> Response {
    graphql_error(StatusCode::BAD_REQUEST, VALIDATION, message)
}

fn unauthenticated(message: &str) -> Response {
    let mut response = graphql_error(StatusCode::UNAUTHORIZED, UNAUTHENTICATED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn graphiql() -> Response {
    let page = async_graphql::http::GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql/ws")
        .title("Loyalty GraphiQL")
        .finish();
    Html(page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_shaped_and_capped() {
        assert!(parse_batch(br#"{"query":"{ a }"}"#, 2).is_ok());
        assert!(parse_batch(br#"[{"query":"{ a }"},{"query":"{ b }"}]"#, 2).is_ok());
        let err = parse_batch(
            br#"[{"query":"{ a }"},{"query":"{ b }"},{"query":"{ c }"}]"#,
            2,
        );
        assert!(err.unwrap_err().contains("exceeds the limit of 2"));
        for bad in [&b"[]"[..], b"[1]", b"\"q\"", b"null", b"{\"query\": 5}"] {
            assert!(parse_batch(bad, 2).unwrap_err().contains("GraphQL request"));
        }
        assert_eq!(
            parse_batch(b"{", 2).unwrap_err(),
            "request body is not valid JSON"
        );
    }

    #[test]
    fn only_json_content_types_pass() {
        let check = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            check_content_type(&headers).is_ok()
        };
        assert!(check(Some("application/json")));
        assert!(check(Some("Application/JSON; charset=utf-8")));
        assert!(check(Some("application/json;charset=\"UTF-8\"")));
        assert!(!check(Some("application/json; charset=latin1")));
        assert!(!check(None));
        assert!(!check(Some("text/plain")));
        assert!(!check(Some("application/x-www-form-urlencoded")));
        assert!(!check(Some("multipart/form-data; boundary=x")));
        assert!(!check(Some("application/graphql")));
        assert!(!check(Some("application/jsonx")));
    }
}
