//! `POST /auth/telegram`: a Telegram Mini App exchanges its signed `initData` for our member
//! token. Zalo or WeChat adapters become sibling routes over another [`LaunchVerifier`].

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use loyalty_domain::members::miniapp::{LaunchVerifier, TelegramVerifier};
use loyalty_domain::{DomainError, Role};
use serde::Deserialize;
use serde_json::json;
use tower_http::request_id::RequestId;

use super::errors::{domain_refusal, graphql_error, VALIDATION};
use super::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelegramLaunch {
    init_data: String,
    program: String,
}

pub async fn telegram(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    body: Result<Json<TelegramLaunch>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return graphql_error(
                rejection.status(),
                VALIDATION,
                &format!(
                    "expected a JSON body {{\"initData\": \"…\", \"program\": \"…\"}}: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let verifier = TelegramVerifier {
        max_age: chrono::Duration::seconds(
            i64::try_from(state.config.telegram_max_age_secs).unwrap_or(i64::MAX),
        ),
    };
    let request_id = request_id
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    exchange(
        &state,
        &request_id,
        &verifier,
        &body.program,
        &body.init_data,
    )
    .await
}

/// Verifies a launch payload and answers `{token, tokenType, expiresIn, created, member,
/// referral}`.
async fn exchange(
    state: &AppState,
    request_id: &str,
    verifier: &dyn LaunchVerifier,
    program: &str,
    payload: &str,
) -> Response {
    let launch = match state.loyalty.launch(program, verifier, payload).await {
        Ok(launch) => launch,
        Err(err) => return domain_refusal(request_id, err),
    };
    let ttl = state.config.member_token_ttl_secs;
    let token = match state.auth.mint(
        &launch.actor.program,
        Role::Member,
        &launch.actor.subject,
        Duration::from_secs(ttl),
    ) {
        Ok(token) => token,
        Err(err) => return domain_refusal(request_id, DomainError::internal(err)),
    };
    let member = &launch.member;
    let body = json!({
        "token": token,
        "tokenType": "Bearer",
        "expiresIn": ttl,
        "created": launch.registration.created,
        "member": {
            "id": member.id.to_string(),
            "externalId": member.external_id,
            "displayName": member.display_name,
            "balance": member.balance.decimal().to_string(),
            "referralCode": member.referral_code,
            "version": member.version,
        },
        "referral": launch.registration.referral,
    });
    (StatusCode::OK, Json(body)).into_response()
}
