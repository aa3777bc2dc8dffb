//! The member's mini-app at `/app`: a reference client of the member API, one page of plain
//! HTML, CSS and JavaScript compiled into the binary like the dashboard (no CDN, no build step).
//! Inside Telegram it signs in with the launch data through `POST /auth/telegram`; in the
//! embedded default `/app/dev-login` hands a loopback caller a member token for the `demo`
//! program, through the dashboard's development-login check and minting.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use loyalty_domain::Role;

use super::dashboard::{self, DEV_LOGIN_PROGRAM};
use super::AppState;

/// The member the development sign-in acts as (the one `loyalty-server demo` prints a token
/// for).
pub const DEV_MEMBER_SUBJECT: &str = "demo-member-1";

const INDEX_HTML: &str = include_str!("miniapp/index.html");
const APP_JS: &str = include_str!("miniapp/app.js");
const APP_CSS: &str = include_str!("miniapp/app.css");

/// The dashboard's policy, except for framing: Telegram Web (`web.telegram.org`) shows a Mini
/// App in an iframe, so that origin, and only it, may frame the page (the phone and desktop
/// clients open it in a web view of its own). Hence no `X-Frame-Options`, which cannot name an
/// origin. `connect-src 'self'` covers `/graphql`, `/graphql/ws` and `/auth/telegram`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors https://web.telegram.org";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app", get(index))
        .route("/app/", get(index))
        .route("/app/app.js", get(app_js))
        .route("/app/app.css", get(app_css))
        .route("/app/dev-login", get(dev_login_status).post(dev_login))
}

async fn index() -> Response {
    dashboard::page(INDEX_HTML, CSP, false)
}

async fn app_js() -> Response {
    dashboard::asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    dashboard::asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /app/dev-login`: 200 when the page may offer the development sign-in, else 404.
async fn dev_login_status(State(state): State<AppState>, request: Request) -> Response {
    if !dashboard::dev_login_allowed(&state, &request) {
        return dashboard::no_dev_login();
    }
    dashboard::no_store(serde_json::json!({
        "available": true,
        "program": DEV_LOGIN_PROGRAM,
        "subject": DEV_MEMBER_SUBJECT,
    }))
}

/// `POST /app/dev-login`: a member token of `demo` for [`DEV_MEMBER_SUBJECT`].
async fn dev_login(State(state): State<AppState>, request: Request) -> Response {
    if !dashboard::dev_login_allowed(&state, &request) {
        return dashboard::no_dev_login();
    }
    dashboard::dev_token(&state, Role::Member, DEV_MEMBER_SUBJECT).await
}
