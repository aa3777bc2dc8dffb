//! The delivery worker, one per instance (several instances share the work).
//!
//! A pass claims due rows in one statement that also leases them (`attempts + 1`,
//! `next_attempt_at` = now + the lease): on PostgreSQL the rows are picked `FOR UPDATE SKIP
//! LOCKED`, so two instances never claim the same row; SQLite has one writer, so the statement
//! runs alone. A row is due when it is pending, its time has come and no earlier pending row
//! of the same member waits for the same endpoint: a member's events go out one at a time, in
//! the order they were written (the member's lock orders its postings), and the next one only
//! after the previous one was delivered or given up. An instance that dies mid-delivery leaves
//! a lease that runs out, and the row is delivered again (at least once: receivers
//! de-duplicate by `webhook-id`).
//!
//! After a failure the row waits `5 s × 4^(n−1)` (at most 12 h), ±20 % jitter, and is given up
//! (`DEAD`) when the next try would fall more than [`RETRY_HORIZON`] after it was written or
//! resent. An endpoint that has failed without a single success for [`DISABLE_AFTER`], or for
//! [`DISABLE_AFTER_A_DEATH`] when one of its events runs out of retries, is disabled, with the
//! reason kept for the admin.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use loyalty_entities::{webhook_attempts, webhook_endpoints};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter,
};
use tokio_util::sync::CancellationToken;

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::stmt;
use crate::service::Loyalty;
use crate::stored::Stored;
use crate::webhooks::address::{client, literal_refused};
use crate::webhooks::events::DeliveryStatus;
use crate::webhooks::WebhookOptions;

/// How long after it was written (or resent) an event is retried.
pub const RETRY_HORIZON: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long an endpoint may fail without a success before it is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long an endpoint may fail without a success when one of its events runs out of retries.
pub const DISABLE_AFTER_A_DEATH: Duration = Duration::from_secs(24 * 3600);
/// How long delivered and dead events (and their attempts) are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often an instance purges them (a plain range delete, safe on several at once).
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows one pass claims.
const CLAIM: i64 = 32;
/// The first retry's delay; each next one is four times longer, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_secs(5);
const MAX_DELAY: Duration = Duration::from_secs(12 * 3600);
/// Bytes of an answer's body kept with its attempt.
const RESPONSE_HEAD_BYTES: usize = 256;

/// The delay before retry `attempts + 1`, given `jitter` in `[0, 1)`.
pub(crate) fn retry_delay(attempts: i32, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let base = FIRST_DELAY
        .saturating_mul(4u32.saturating_pow(exponent))
        .min(MAX_DELAY);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[derive(Debug, FromQueryResult)]
struct Claimed {
    id: i64,
    endpoint_id: i64,
    event_id: String,
    payload: String,
    attempts: i32,
    retry_from: DateTime<Utc>,
}

/// What one attempt came to.
struct Outcome {
    success: bool,
    status_code: Option<i32>,
    latency: Duration,
    head: Option<String>,
    error: Option<String>,
}

impl Loyalty {
    /// Starts this instance's delivery worker (unless `options` say this instance delivers
    /// nothing) with the deployment's settings.
    pub fn start_webhooks(&self, options: WebhookOptions, shutdown: CancellationToken) {
        self.webhooks().set_options(options.clone());
        let Some(poll) = options.poll_interval else {
            return;
        };
        let purger = self.clone();
        crate::jobs::every(
            "webhook purge",
            PURGE_INTERVAL,
            shutdown.clone(),
            move || {
                let loyalty = purger.clone();
                async move { loyalty.purge_webhook_events(RETENTION).await }
            },
            |deleted: &u64| {
                if *deleted > 0 {
                    tracing::info!(deleted, "purged old webhook events");
                }
            },
        );
        let client = client(options.allow_private_urls, options.timeout);
        let loyalty = self.downgrade();
        let wake = self.webhooks().wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(service) = loyalty.upgrade() else {
                    return;
                };
                let claimed = match service.deliver_due(&client, &options).await {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        tracing::warn!(error = %err, "webhook delivery pass failed");
                        0
                    }
                };
                if claimed > 0 {
                    continue;
                }
                drop(service);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }

    /// Deletes delivered and dead events written more than `retention` ago, with their
    /// attempts; how many events.
    pub async fn purge_webhook_events(&self, retention: Duration) -> DomainResult<u64> {
        let cutoff =
            self.now() - chrono::Duration::from_std(retention).map_err(DomainError::internal)?;
        let backend = self.db().get_database_backend();
        self.db()
            .execute(stmt(
                backend,
                "DELETE FROM webhook_attempts WHERE outbox_id IN (SELECT id FROM webhook_outbox \
                 WHERE status <> 'PENDING' AND created_at < $1)",
                vec![cutoff.into()],
            ))
            .await?;
        let deleted = self
            .db()
            .execute(stmt(
                backend,
                "DELETE FROM webhook_outbox WHERE status <> 'PENDING' AND created_at < $1",
                vec![cutoff.into()],
            ))
            .await?;
        Ok(deleted.rows_affected())
    }

    /// One pass: claims due rows and delivers them; how many it claimed.
    pub(crate) async fn deliver_due(
        &self,
        client: &reqwest::Client,
        options: &WebhookOptions,
    ) -> DomainResult<usize> {
        let now = self.now();
        let lease = options.timeout + Duration::from_secs(30);
        let lease_until = now + chrono::Duration::from_std(lease).map_err(DomainError::internal)?;
        let claimed = self.claim(now, lease_until).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.endpoint_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let endpoints = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::Id.is_in(ids))
            .all(self.db())
            .await?;
        let count = claimed.len();
        let work = claimed.into_iter().map(|row| {
            let endpoint = endpoints.iter().find(|e| e.id == row.endpoint_id).cloned();
            async move {
                let Some(endpoint) = endpoint else {
                    return Ok(());
                };
                let outcome = self.attempt(client, options, &endpoint, &row).await;
                self.record(&endpoint, &row, outcome).await
            }
        });
        for result in join_all(work).await {
            if let Err(err) = result {
                tracing::warn!(error = %err, "webhook attempt not recorded");
            }
        }
        Ok(count)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DomainResult<Vec<Claimed>> {
        let backend = self.db().get_database_backend();
        // A read first: an idle worker polls, and on SQLite even an UPDATE that changes
        // nothing takes the one write lock postings need.
        let due = self
            .db()
            .query_one(stmt(
                backend,
                "SELECT o.id FROM webhook_outbox o WHERE o.status = 'PENDING' \
                 AND o.next_attempt_at <= $1 LIMIT 1",
                vec![now.into()],
            ))
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let lock = match backend {
            DatabaseBackend::Postgres => "FOR UPDATE OF o SKIP LOCKED",
            DatabaseBackend::Sqlite | DatabaseBackend::MySql => "",
        };
        let sql = format!(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT o.id FROM webhook_outbox o \
               JOIN webhook_endpoints e ON e.id = o.endpoint_id \
               WHERE o.status = 'PENDING' AND o.next_attempt_at <= $2 \
                 AND e.enabled AND e.deleted_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM webhook_outbox p \
                   WHERE p.endpoint_id = o.endpoint_id AND p.member_id = o.member_id \
                     AND p.status = 'PENDING' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3 {lock}) \
             RETURNING id, endpoint_id, event_id, payload, attempts, retry_from"
        );
        let rows = self
            .db()
            .query_all(stmt(
                backend,
                &sql,
                vec![lease_until.into(), now.into(), CLAIM.into()],
            ))
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| Claimed::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Signs and sends one event; never fails (a failure is the outcome).
    async fn attempt(
        &self,
        client: &reqwest::Client,
        options: &WebhookOptions,
        endpoint: &webhook_endpoints::Model,
        row: &Claimed,
    ) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            success: false,
            status_code: None,
            latency: started.elapsed(),
            head: None,
            error: Some(truncate(&error, 1000)),
        };
        let url = match reqwest::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(err) => return failed(format!("bad url: {err}")),
        };
        if !options.allow_private_urls {
            if let Some(ip) = literal_refused(&url) {
                return failed(format!("refused: {ip} is not a public address"));
            }
        }
        // The signature's timestamp is the wall clock's: receivers compare it with theirs.
        let timestamp = Utc::now().timestamp();
        let signature = match self.sign(endpoint, &row.event_id, timestamp, &row.payload) {
            Ok(signature) => signature,
            Err(err) => return failed(format!("cannot sign: {err}")),
        };
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &row.event_id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(row.payload.clone())
            .send();
        let exchange = async {
            let mut response = request.await?;
            let status = response.status();
            let mut head = Vec::new();
            while head.len() < RESPONSE_HEAD_BYTES {
                match response.chunk().await? {
                    Some(chunk) => head.extend_from_slice(&chunk),
                    None => break,
                }
            }
            head.truncate(RESPONSE_HEAD_BYTES);
            Ok::<_, reqwest::Error>((status, head))
        };
        match tokio::time::timeout(options.timeout, exchange).await {
            Ok(Ok((status, head))) => Outcome {
                success: status.is_success(),
                status_code: Some(i32::from(status.as_u16())),
                latency: started.elapsed(),
                head: Some(String::from_utf8_lossy(&head).into_owned()),
                error: None,
            },
            Ok(Err(err)) => failed(describe(&err)),
            Err(_) => failed(format!(
                "timed out after {} ms",
                options.timeout.as_millis()
            )),
        }
    }

    /// `v1,<sig>` with the current secret, and during a rotation's overlap a second one with
    /// the previous secret (space-separated, as Standard Webhooks specifies).
    fn sign(
        &self,
        endpoint: &webhook_endpoints::Model,
        event_id: &str,
        timestamp: i64,
        payload: &str,
    ) -> Result<String, standardwebhooks::WebhookError> {
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, endpoint.previous_secret_until)
        {
            if until > self.now() {
                secrets.push(previous);
            }
        }
        let mut signatures = Vec::new();
        for secret in secrets {
            let hook = standardwebhooks::Webhook::new(secret)?;
            signatures.push(hook.sign(event_id, timestamp, payload.as_bytes())?);
        }
        Ok(signatures.join(" "))
    }

    /// Stores the attempt, moves the row on (delivered, retry or dead) and the endpoint's
    /// failure streak; disables an endpoint that failed for [`DISABLE_AFTER`].
    async fn record(
        &self,
        endpoint: &webhook_endpoints::Model,
        row: &Claimed,
        outcome: Outcome,
    ) -> DomainResult<()> {
        let now = self.now();
        let label = endpoint.id.to_string();
        let latency_ms = i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX);
        metrics::histogram!("loyalty_webhook_delivery_duration_seconds", "endpoint" => label.clone())
            .record(outcome.latency.as_secs_f64());
        let result = if outcome.success {
            "success"
        } else {
            "failure"
        };
        metrics::counter!("loyalty_webhook_attempts_total", "endpoint" => label.clone(), "result" => result)
            .increment(1);
        webhook_attempts::Entity::insert(webhook_attempts::ActiveModel {
            outbox_id: Set(row.id),
            endpoint_id: Set(endpoint.id),
            attempted_at: Set(now),
            success: Set(outcome.success),
            status_code: Set(outcome.status_code),
            latency_ms: Set(latency_ms),
            response_head: Set(outcome.head.clone()),
            error: Set(outcome.error.clone()),
            ..Default::default()
        })
        .exec_without_returning(self.db())
        .await?;
        let backend = self.db().get_database_backend();
        if outcome.success {
            // Guarded by the claim's attempt count: a lease that ran out and was claimed
            // again belongs to the newer claim.
            self.db()
                .execute(stmt(
                    backend,
                    "UPDATE webhook_outbox SET status = $1, delivered_at = $2, last_error = NULL \
                     WHERE id = $3 AND attempts = $4",
                    vec![
                        DeliveryStatus::Delivered.text().into(),
                        now.into(),
                        row.id.into(),
                        row.attempts.into(),
                    ],
                ))
                .await?;
            self.db()
                .execute(stmt(
                    backend,
                    "UPDATE webhook_endpoints SET failing_since = NULL \
                     WHERE id = $1 AND failing_since IS NOT NULL",
                    vec![endpoint.id.into()],
                ))
                .await?;
            return Ok(());
        }
        metrics::counter!("loyalty_webhook_failures_total", "endpoint" => label).increment(1);
        let error = match (&outcome.error, outcome.status_code) {
            (Some(error), _) => error.clone(),
            (None, Some(code)) => format!("HTTP {code}"),
            (None, None) => "failed".to_owned(),
        };
        let delay = retry_delay(row.attempts, rand::random::<f64>());
        let next = now + chrono::Duration::from_std(delay).map_err(DomainError::internal)?;
        let horizon = row.retry_from
            + chrono::Duration::from_std(RETRY_HORIZON).map_err(DomainError::internal)?;
        let status = if next > horizon {
            DeliveryStatus::Dead
        } else {
            DeliveryStatus::Pending
        };
        self.db()
            .execute(stmt(
                backend,
                "UPDATE webhook_outbox SET status = $1, next_attempt_at = $2, last_error = $3 \
                 WHERE id = $4 AND attempts = $5",
                vec![
                    status.text().into(),
                    next.into(),
                    truncate(&error, 1000).into(),
                    row.id.into(),
                    row.attempts.into(),
                ],
            ))
            .await?;
        self.db()
            .execute(stmt(
                backend,
                "UPDATE webhook_endpoints SET failing_since = $1 \
                 WHERE id = $2 AND failing_since IS NULL",
                vec![now.into(), endpoint.id.into()],
            ))
            .await?;
        // Failing for DISABLE_AFTER, or for a day when an event just ran out of retries (a
        // quiet endpoint has no later event to fail on).
        let failing_for = match status {
            DeliveryStatus::Dead => DISABLE_AFTER_A_DEATH,
            DeliveryStatus::Pending | DeliveryStatus::Delivered => DISABLE_AFTER,
        };
        let cutoff =
            now - chrono::Duration::from_std(failing_for).map_err(DomainError::internal)?;
        let reason = format!(
            "disabled at {}: no successful delivery for over {} hours{}; last error: {}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            failing_for.as_secs() / 3600,
            match status {
                DeliveryStatus::Dead => format!(" and event {} ran out of retries", row.event_id),
                DeliveryStatus::Pending | DeliveryStatus::Delivered => String::new(),
            },
            truncate(&error, 500)
        );
        let disabled = self
            .db()
            .execute(stmt(
                backend,
                "UPDATE webhook_endpoints SET enabled = $1, disabled_reason = $2, updated_at = $3 \
                 WHERE id = $4 AND enabled = $5 AND failing_since <= $6",
                vec![
                    false.into(),
                    reason.into(),
                    now.into(),
                    endpoint.id.into(),
                    true.into(),
                    cutoff.into(),
                ],
            ))
            .await?;
        if disabled.rows_affected() > 0 {
            metrics::counter!("loyalty_webhook_endpoints_disabled_total").increment(1);
            tracing::warn!(
                endpoint = endpoint.id,
                "webhook endpoint disabled: it keeps failing"
            );
            self.webhooks().forget(endpoint.program_id);
            self.announce(crate::webhooks::TOPIC, endpoint.program_id.to_string())
                .await;
        }
        Ok(())
    }
}

/// A transport error in a few words (the cause chain: "connection refused", "timed out").
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_for_about_three_days() {
        assert_eq!(retry_delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(retry_delay(2, 0.5), Duration::from_secs(20));
        assert_eq!(retry_delay(3, 0.5), Duration::from_secs(80));
        assert_eq!(retry_delay(30, 0.5), MAX_DELAY);
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(6));
        // The attempts that fit in the horizon at the middle of the jitter.
        let mut waited = Duration::ZERO;
        let mut attempts = 1;
        while waited + retry_delay(attempts, 0.5) <= RETRY_HORIZON {
            waited += retry_delay(attempts, 0.5);
            attempts += 1;
        }
        assert!((10..=14).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
