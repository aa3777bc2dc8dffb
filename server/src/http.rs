//! The HTTP surface: `/graphql` (GET and POST), the `/admin` dashboard, `/healthz`, `/readyz`,
//! `/metrics`, plus request ids, tracing, metrics and rate limits around them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::Router;
use loyalty_domain::Loyalty;
use loyalty_graphql::LoyaltySchema;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::JwtAuth;
use crate::config::Config;

pub mod client_addr;
pub mod dashboard;
pub mod errors;
pub mod export;
pub mod graphql;
pub mod health;
pub mod launch;
pub mod metrics;
pub mod miniapp;
pub mod rate_limit;
pub mod request_id;
pub mod sockets;
pub mod ws;

pub use rate_limit::RateLimits;
pub use request_id::request_id;
pub use sockets::SocketsPerIp;

/// A GraphQL-over-HTTP request that takes longer than this is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub loyalty: Loyalty,
    pub schema: LoyaltySchema,
    /// Automatic persisted queries, by hash (HTTP and WebSocket).
    pub persisted: Arc<graphql::PersistedQueries>,
    pub auth: Arc<JwtAuth>,
    pub limits: Arc<RateLimits>,
    /// Open WebSockets per client address.
    pub sockets: Arc<SocketsPerIp>,
    pub metrics: PrometheusHandle,
    /// Cancelled on shutdown; long-lived sessions (WebSockets) must watch it.
    pub shutdown: CancellationToken,
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let graphql = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/auth/telegram", axum::routing::post(launch::telegram))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // The WebSocket endpoint is long-lived: no request timeout, but the same per-IP limit
        // on opening it.
        .merge(websocket_routes())
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip))
        .layer(cors(&state.config.cors));

    // Exports stream for as long as they need: no request timeout, the per-IP limit applies.
    let exports = Router::new()
        .route("/admin/export/report.csv", get(export::report_csv))
        .route("/admin/export/ledger.csv", get(export::ledger_csv))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip));

    // `/readyz` touches the database and Redis: limited like the API. `/healthz` is free.
    let readyz = Router::new()
        .route("/readyz", get(health::readyz))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip));

    let mut router = Router::new()
        .merge(graphql)
        .merge(exports)
        .merge(
            dashboard::routes().route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip)),
        )
        .merge(miniapp::routes().route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip)))
        .merge(readyz)
        .route("/healthz", get(health::healthz));
    if state.config.metrics.on_main_listener {
        router = router.merge(metrics::routes());
    }
    router
        .fallback(errors::not_found)
        .layer(from_fn(metrics::track))
        // Outermost but for request ids and tracing: every layer below sees the client address.
        .layer(from_fn_with_state(state.clone(), client_addr::resolve))
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(request_id::sanitize))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// CORS for browser callers; preflights are answered before the rate limit and auth.
fn cors(origins: &crate::config::CorsOrigins) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        crate::config::CorsOrigins::None => return CorsLayer::new(),
        crate::config::CorsOrigins::Any => AllowOrigin::any(),
        crate::config::CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// The merge point for `/graphql/ws` (graphql-transport-ws). Routes added here get the per-IP
/// limit and request ids, but no body limit and no request timeout.
pub fn websocket_routes() -> Router<AppState> {
    Router::new().route("/graphql/ws", get(ws::upgrade))
}

/// The span every request runs in: its id ties the access log to resolver and domain logs.
/// Only the path is recorded; query strings may carry variables.
fn make_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request_id::from_extensions(request.extensions());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}
