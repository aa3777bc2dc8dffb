//! The admin dashboard at `/admin`: one page of plain HTML, CSS and JavaScript compiled into the
//! binary (no CDN, no build step), which calls `/graphql` with the admin's token like any other
//! client. In the embedded default (the development JWT secret) `/admin/dev-login` hands a
//! loopback caller an admin token for the `demo` program; anywhere else it does not exist.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use loyalty_domain::{DomainError, Role};
use serde_json::json;

use super::errors::{graphql_error, INTERNAL, NOT_FOUND};
use super::AppState;
use crate::config::KeyOrigin;

/// The program the development login signs into.
pub const DEV_LOGIN_PROGRAM: &str = "demo";
/// The token's subject, so an audit shows who acted.
pub const DEV_LOGIN_SUBJECT: &str = "dev-admin";
pub const DEV_LOGIN_TTL: Duration = Duration::from_secs(8 * 3600);

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");
const FAVICON_SVG: &str = include_str!("dashboard/favicon.svg");

/// Scripts and styles from this origin only, no inline code, no framing; `connect-src 'self'`
/// covers `/graphql` and the `/graphql/ws` socket.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/", get(index))
        .route("/admin/app.js", get(app_js))
        .route("/admin/app.css", get(app_css))
        .route("/admin/favicon.svg", get(favicon))
        .route("/admin/dev-login", get(dev_login_status).post(dev_login))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files that change with the binary: revalidate rather than guess a lifetime.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

/// Whether this server and this caller may use the development login: the key is the
/// generated development secret (no `JWT_SECRET` / `JWT_PUBLIC_KEY_PEM`), and the caller is on
/// this machine, so exposing `LISTEN_ADDR` on a network never hands out admin tokens.
fn dev_login_allowed(state: &AppState, request: &Request) -> bool {
    let development = matches!(state.config.jwt.origin, KeyOrigin::DevelopmentFile(_));
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback());
    development && loopback
}

fn no_dev_login() -> Response {
    graphql_error(StatusCode::NOT_FOUND, NOT_FOUND, "no such route")
}

/// `GET /admin/dev-login`: 200 when the page may offer the development login, else 404.
async fn dev_login_status(State(state): State<AppState>, request: Request) -> Response {
    if !dev_login_allowed(&state, &request) {
        return no_dev_login();
    }
    no_store(json!({ "available": true, "program": DEV_LOGIN_PROGRAM }))
}

/// `POST /admin/dev-login`: an admin token for the `demo` program (which `loyalty-server demo`
/// creates).
async fn dev_login(State(state): State<AppState>, request: Request) -> Response {
    if !dev_login_allowed(&state, &request) {
        return no_dev_login();
    }
    match state.loyalty.program(DEV_LOGIN_PROGRAM).await {
        Ok(_) => {}
        Err(DomainError::NotFound(_)) => {
            return graphql_error(
                StatusCode::CONFLICT,
                NOT_FOUND,
                "the demo program does not exist yet: run `loyalty-server demo` first",
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "dev login: cannot read the demo program");
            return graphql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                "internal error",
            );
        }
    }
    match state.auth.mint(
        DEV_LOGIN_PROGRAM,
        Role::Admin,
        DEV_LOGIN_SUBJECT,
        DEV_LOGIN_TTL,
    ) {
        Ok(token) => {
            tracing::info!(program = DEV_LOGIN_PROGRAM, "development login");
            no_store(json!({
                "token": token,
                "program": DEV_LOGIN_PROGRAM,
                "expiresInSecs": DEV_LOGIN_TTL.as_secs(),
            }))
        }
        Err(err) => {
            tracing::error!(error = %err, "dev login: cannot sign a token");
            graphql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                "internal error",
            )
        }
    }
}

fn no_store(body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
