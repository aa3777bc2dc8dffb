//! Prometheus metrics. The recorder is process-global (the `metrics` facade allows one), so it
//! is installed once and every server in the process (tests start many) shares it.
//!
//! Who may read them: with `METRICS_TOKEN`, only `Authorization: Bearer <token>` (401 otherwise),
//! wherever `/metrics` is served; without it, the main listener serves `/metrics` only in the
//! embedded default, and `METRICS_ADDR` (a private interface) is the production way.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq as _;

use super::errors::{graphql_error, UNAUTHENTICATED};
use super::AppState;

const DURATION_BUCKETS_SECS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the global recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn builder() -> PrometheusBuilder {
    match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Suffix("_duration_seconds".to_owned()),
        DURATION_BUCKETS_SECS,
    ) {
        Ok(builder) => builder,
        Err(err) => {
            tracing::warn!(error = %err, "histogram buckets rejected; using summaries");
            PrometheusBuilder::new()
        }
    }
}

fn install() -> PrometheusHandle {
    match builder().install_recorder() {
        Ok(handle) => {
            describe();
            handle
        }
        Err(err) => {
            // Someone else installed a recorder first: /metrics still answers, just without
            // what goes through the facade.
            tracing::warn!(error = %err, "could not install the Prometheus recorder");
            builder().build_recorder().handle()
        }
    }
}

fn describe() {
    metrics::describe_histogram!(
        "loyalty_webhook_delivery_duration_seconds",
        metrics::Unit::Seconds,
        "Webhook delivery attempt latency by endpoint id"
    );
    metrics::describe_counter!(
        "loyalty_webhook_attempts_total",
        "Webhook delivery attempts by endpoint id and result (success, failure)"
    );
    metrics::describe_counter!(
        "loyalty_webhook_failures_total",
        "Failed webhook delivery attempts by endpoint id"
    );
    metrics::describe_counter!(
        "loyalty_webhook_endpoints_disabled_total",
        "Webhook endpoints disabled because they kept failing"
    );
    metrics::describe_counter!(
        "loyalty_member_work_runs_total",
        "Cross-member work runs (a referral inviter's reward) by kind and result (done, failed)"
    );
    metrics::describe_counter!("http_requests_total", "HTTP requests by route and status");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "http_rate_limited_total",
        "Requests refused by a rate limit"
    );
    metrics::describe_counter!(
        "graphql_internal_errors_total",
        "GraphQL errors masked as INTERNAL"
    );
    metrics::describe_gauge!(
        "loyalty_redis_breaker_open",
        "1 while Redis's circuit breaker is open: its calls fail at once, nothing waits for it"
    );
    metrics::describe_counter!(
        "loyalty_redis_breaker_opened_total",
        "Times Redis failed and its circuit breaker opened"
    );
    metrics::describe_counter!(
        "loyalty_redis_calls_skipped_total",
        "Redis calls answered at once because the breaker is open (never sent, never waited for)"
    );
    metrics::describe_counter!(
        "loyalty_redis_call_failures_total",
        "Redis calls sent that failed or ran out of time"
    );
    metrics::describe_counter!(
        "loyalty_redis_slow_hints_total",
        "Idempotency fast-path reads Redis did not answer within their short budget"
    );
    metrics::describe_counter!(
        "loyalty_leaderboard_updates_dropped_total",
        "Leaderboard updates dropped because their queue was full (the boards are rebuilt)"
    );
}

/// `GET /metrics`, for the main listener or the `METRICS_ADDR` one.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

/// The whole router of the `METRICS_ADDR` listener.
pub fn listener_router(state: AppState) -> Router {
    routes()
        .fallback(super::errors::not_found)
        .with_state(state)
}

/// Whether `headers` carry the configured token (always, without one).
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.metrics.token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        let mut response = graphql_error(
            StatusCode::UNAUTHORIZED,
            UNAUTHENTICATED,
            "expected `Authorization: Bearer <METRICS_TOKEN>`",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    state.metrics.run_upkeep();
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Middleware: counts requests and times them, labelled by route pattern (not the raw path, so
/// the label set stays bounded).
pub async fn track(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "path" => path)
        .record(started.elapsed().as_secs_f64());
    response
}
