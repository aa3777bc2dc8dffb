//! `/healthz`: the process answers. `/readyz`: it can do useful work (database and fast store
//! reachable, not shutting down), so a balancer may send it traffic.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let loyalty = &state.loyalty;
    let (database, store) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, loyalty.db().ping()),
        tokio::time::timeout(PROBE_TIMEOUT, loyalty.store().ping()),
    );
    let database_ok = match database {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: database ping timed out");
            false
        }
    };
    let store_ok = match store {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: fast store ping failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: fast store ping timed out");
            false
        }
    };
    let redis = match (loyalty.store().backend(), store_ok) {
        (_, false) => "unavailable",
        ("memory", true) => "memory",
        (_, true) => "ok",
    };
    let shutting_down = state.shutdown.is_cancelled();
    let mut body = json!({
        "database": if database_ok { "ok" } else { "unavailable" },
        "redis": redis,
    });
    if shutting_down {
        body["status"] = json!("shutting down");
    }
    let status = if database_ok && store_ok && !shutting_down {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
