//! The admin dashboard at `/admin`: one page of plain HTML, CSS and JavaScript compiled into the
//! binary (no CDN, no build step), which calls `/graphql` with the admin's token like any other
//! client. In the embedded default (the development JWT secret) `/admin/dev-login` hands a
//! loopback caller an admin token for the `demo` program; anywhere else it does not exist. The
//! member's mini-app (`/app`, `miniapp.rs`) signs in through the same check and minting.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use loyalty_domain::{DomainError, Role};
use serde_json::json;

use super::client_addr::ClientAddr;
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

pub(super) fn asset(content_type: &'static str, body: &'static str) -> Response {
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
    page(INDEX_HTML, CSP, true)
}

/// An HTML page with its content security policy, never sending a referrer; `deny_framing`
/// adds `X-Frame-Options: DENY` for browsers that predate CSP's `frame-ancestors`.
pub(super) fn page(html: &'static str, csp: &'static str, deny_framing: bool) -> Response {
    let mut response = asset("text/html; charset=utf-8", html);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if deny_framing {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
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

/// Whether this server and this request may use the development login: the key is the
/// generated development secret (no `JWT_SECRET` / `JWT_PUBLIC_KEY_PEM`); the client is on this
/// machine, so exposing `LISTEN_ADDR` on a network never hands out admin tokens; the `Host` is a
/// loopback name, so neither a same-host reverse proxy nor a DNS-rebinding page (whose `Host`
/// is its own domain) reaches it; and the request is not cross-site.
pub(super) fn dev_login_allowed(state: &AppState, request: &Request) -> bool {
    let development = matches!(state.config.jwt.origin, KeyOrigin::DevelopmentFile(_));
    let loopback = request
        .extensions()
        .get::<ClientAddr>()
        .is_some_and(|client| client.0.is_loopback());
    development && loopback && same_origin_loopback(request.headers())
}

/// `Host` names this machine (`localhost`, `127.0.0.1`, `[::1]`, any port); `Origin`, when
/// sent, is that same origin; `Sec-Fetch-Site`, when sent, is `same-origin` or `none` (typed in
/// the address bar).
fn same_origin_loopback(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).map(|v: &HeaderValue| v.to_str().ok());
    let Some(Some(host)) = text(header::HOST) else {
        return false;
    };
    if !is_loopback_host(host) {
        return false;
    }
    let origin_ok = match text(header::ORIGIN) {
        None => true,
        Some(Some(origin)) => origin
            .strip_prefix("http://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host)),
        Some(None) => false,
    };
    let fetch_site_ok = match text(header::HeaderName::from_static("sec-fetch-site")) {
        None => true,
        Some(Some(site)) => site == "same-origin" || site == "none",
        Some(None) => false,
    };
    origin_ok && fetch_site_ok
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, port))
                if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) =>
            {
                return inner == "::1"
            }
            _ => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

fn is_port(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

pub(super) fn no_dev_login() -> Response {
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
    dev_token(&state, Role::Admin, DEV_LOGIN_SUBJECT).await
}

/// A development token of `role` for `subject` in the `demo` program, once the caller passed
/// [`dev_login_allowed`]; 409 until `demo` ran. Answers `{token, program, subject,
/// expiresInSecs}`.
pub(super) async fn dev_token(state: &AppState, role: Role, subject: &str) -> Response {
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
    match state
        .auth
        .mint(DEV_LOGIN_PROGRAM, role, subject, DEV_LOGIN_TTL)
    {
        Ok(token) => {
            tracing::info!(
                program = DEV_LOGIN_PROGRAM,
                role = role.as_str(),
                subject,
                "development login"
            );
            no_store(json!({
                "token": token,
                "program": DEV_LOGIN_PROGRAM,
                "subject": subject,
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

pub(super) fn no_store(body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "localhost.example.com",
            "127.0.0.2",
            "10.0.0.1:8080",
            "localhost:",
            "localhost:99999",
            "[::2]:80",
            "[::1]x",
            "[::1]8080",
            "::1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin_loopback(&headers(&[host])));
        assert!(same_origin_loopback(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(same_origin_loopback(&headers(&[
            host,
            ("sec-fetch-site", "none")
        ])));
        assert!(!same_origin_loopback(&headers(&[])), "no Host");
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "http://localhost:8080"),
            ("origin", "https://127.0.0.1:8080"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            assert!(
                !same_origin_loopback(&headers(&[host, (name, value)])),
                "{name}: {value}"
            );
        }
    }
}
