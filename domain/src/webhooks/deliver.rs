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
//! The pass sends its rows at once (one pooled keep-alive client, so an endpoint's connections
//! are reused from event to event), then records them together: one multi-row `INSERT` of the
//! attempts and one `UPDATE … FROM (VALUES …)` of the rows' states, in one transaction, and
//! each endpoint's failure streak once. A pass that claimed rows is followed at once by the
//! next, which claims the events that the recorded deliveries unblocked.
//!
//! After a failure the row waits `5 s × 4^(n−1)` (at most 12 h), ±20 % jitter, and is given up
//! (`DEAD`) when the next try would fall more than [`RETRY_HORIZON`] after it was written or
//! resent. An endpoint that has failed without a single success for [`DISABLE_AFTER`], or for
//! [`DISABLE_AFTER_A_DEATH`] when one of its events runs out of retries, is disabled, with the
//! reason kept for the admin (a pass with one success for the endpoint ends its streak). A pass
//! that failed every attempt to an endpoint also keeps claims off it until the earliest retry it
//! scheduled, at most [`RETRY_GATE`] away (`webhook_endpoints.retry_at`): the claim walks each
//! endpoint's pending rows on its own, and a down endpoint's backlog is walked once per retry,
//! not on every pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use loyalty_entities::{webhook_attempts, webhook_endpoints};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, TransactionTrait,
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
const CLAIM: usize = 32;
/// How long the worker lets events gather before a pass that a commit woke, or that follows a
/// pass that was not full: under a steady flow of postings one pass then carries the events of
/// many commits (a claim, an attempts `INSERT` and a status `UPDATE` shared by all of them)
/// instead of one or two, for at most this much more delay per event.
const GATHER: Duration = Duration::from_millis(50);
/// The longest a pass that failed every attempt to an endpoint keeps claims off it: a down
/// endpoint's rows (in backoff, or waiting behind a member's earlier row that is) are stepped
/// over by the claim's walk at most this often, and its recovery is noticed within it.
pub const RETRY_GATE: Duration = Duration::from_secs(60);
/// The first retry's delay; each next one is four times longer, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_secs(5);
const MAX_DELAY: Duration = Duration::from_secs(12 * 3600);
/// Bytes of an answer's body kept with its attempt.
const RESPONSE_HEAD_BYTES: usize = 256;
/// Bytes of an answer read at most: a connection whose answer was read to its end goes back to
/// the client's pool (kept alive for the next event), a longer answer closes it.
const DRAIN_BYTES: usize = 64 * 1024;

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
#[derive(Debug)]
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
            // Whether the next pass looks for a due row with a read first: after a pass that
            // claimed rows, or a commit that wrote some, it goes straight to the claim.
            let mut check = true;
            loop {
                let Some(service) = loyalty.upgrade() else {
                    return;
                };
                let claimed = match service.deliver_due(&client, &options, check).await {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        tracing::warn!(error = %err, "webhook delivery pass failed");
                        0
                    }
                };
                drop(service);
                // A member's next event is due as soon as this pass recorded the previous one:
                // the next pass claims it without waiting for the poll, at once after a full
                // pass; after a partial one, or a wake by a commit, once the commits right
                // behind had a moment to add theirs.
                check = claimed == 0
                    && tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = wake.notified() => false,
                        () = tokio::time::sleep(poll) => true,
                    };
                if !check && claimed < CLAIM {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(GATHER) => {}
                    }
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

    /// One pass: claims due rows, delivers them at once and records what came of them in one
    /// transaction; how many it claimed. `check`: look for a due row with a plain read first (an
    /// idle worker's poll), which a worker that just claimed rows skips.
    pub(crate) async fn deliver_due(
        &self,
        client: &reqwest::Client,
        options: &WebhookOptions,
        check: bool,
    ) -> DomainResult<usize> {
        let now = self.now();
        let lease = options.timeout + Duration::from_secs(30);
        let lease_until = now + chrono::Duration::from_std(lease).map_err(DomainError::internal)?;
        let claimed = self.claim(now, lease_until, check).await?;
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
        // A row whose endpoint is gone keeps its lease and is looked at again when it runs out.
        let work = claimed.into_iter().filter_map(|row| {
            let endpoint = endpoints.iter().find(|e| e.id == row.endpoint_id)?;
            Some(async move {
                let outcome = self.attempt(client, options, endpoint, &row).await;
                (row, outcome)
            })
        });
        let done = join_all(work).await;
        self.record(&endpoints, done).await?;
        Ok(count)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        check: bool,
    ) -> DomainResult<Vec<Claimed>> {
        let backend = self.db().get_database_backend();
        // The probe only when idle (`check`): a pass after one that found work claims at once.
        let probe = check.then(|| {
            stmt(
                backend,
                "SELECT o.id FROM webhook_outbox o WHERE o.status = 'PENDING' \
                 AND o.next_attempt_at <= $1 LIMIT 1",
                vec![now.into()],
            )
        });
        crate::jobs::claim_due(
            self.db(),
            probe,
            stmt(
                backend,
                &claim_sql(backend),
                vec![lease_until.into(), now.into(), (CLAIM as i64).into()],
            ),
            |c: &Claimed| c.id,
        )
        .await
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
            let mut read = 0usize;
            // The head is kept; the rest of a short answer is read and dropped so that the
            // connection goes back to the client's pool (an answer left unread closes it).
            while read < DRAIN_BYTES {
                match response.chunk().await? {
                    Some(chunk) => {
                        read += chunk.len();
                        if head.len() < RESPONSE_HEAD_BYTES {
                            head.extend_from_slice(&chunk);
                        }
                    }
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

    /// Records a pass: its attempt rows in one `INSERT` and the rows' new states (delivered,
    /// retry or dead) in one `UPDATE`, in one transaction; then each endpoint's failure streak
    /// once: a success in the pass ends it, a pass of failures only starts it (if it had not
    /// started) and disables an endpoint that failed for [`DISABLE_AFTER`].
    async fn record(
        &self,
        endpoints: &[webhook_endpoints::Model],
        done: Vec<(Claimed, Outcome)>,
    ) -> DomainResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut settled = Vec::with_capacity(done.len());
        let mut attempts = Vec::with_capacity(done.len());
        for (row, outcome) in &done {
            let label = row.endpoint_id.to_string();
            metrics::histogram!("loyalty_webhook_delivery_duration_seconds", "endpoint" => label.clone())
                .record(outcome.latency.as_secs_f64());
            let result = if outcome.success {
                "success"
            } else {
                "failure"
            };
            metrics::counter!("loyalty_webhook_attempts_total", "endpoint" => label.clone(), "result" => result)
                .increment(1);
            if !outcome.success {
                metrics::counter!("loyalty_webhook_failures_total", "endpoint" => label)
                    .increment(1);
            }
            attempts.push(webhook_attempts::ActiveModel {
                outbox_id: Set(row.id),
                endpoint_id: Set(row.endpoint_id),
                attempted_at: Set(now),
                success: Set(outcome.success),
                status_code: Set(outcome.status_code),
                latency_ms: Set(i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX)),
                response_head: Set(outcome.head.clone()),
                error: Set(outcome.error.clone()),
                ..Default::default()
            });
            settled.push(settle(row, outcome, now, rand::random::<f64>())?);
        }
        let backend = self.db().get_database_backend();
        let (sql, values) = settle_statement(backend, &settled);
        let txn = self.db().begin().await?;
        webhook_attempts::Entity::insert_many(attempts)
            .exec_without_returning(&txn)
            .await?;
        // Guarded by each claim's attempt count: a lease that ran out and was claimed again
        // belongs to the newer claim.
        txn.execute(stmt(backend, &sql, values)).await?;
        txn.commit().await?;

        for (endpoint_id, pass) in tally(&settled) {
            let Some(endpoint) = endpoints.iter().find(|e| e.id == endpoint_id) else {
                continue;
            };
            if pass.succeeded {
                if endpoint.failing_since.is_some() || endpoint.retry_at.is_some() {
                    self.db()
                        .execute(stmt(
                            backend,
                            "UPDATE webhook_endpoints SET failing_since = NULL, retry_at = NULL \
                             WHERE id = $1",
                            vec![endpoint_id.into()],
                        ))
                        .await?;
                }
            } else {
                self.failed(endpoint, &pass, now).await?;
            }
        }
        Ok(())
    }

    /// An endpoint's pass that failed every attempt: its failure streak starts (unless it has),
    /// claims skip it until its earliest retry (at most [`RETRY_GATE`] away; none when every
    /// event died), and it is disabled when the streak is old enough.
    async fn failed(
        &self,
        endpoint: &webhook_endpoints::Model,
        pass: &EndpointPass<'_>,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        let backend = self.db().get_database_backend();
        let gate = chrono::Duration::from_std(RETRY_GATE).map_err(DomainError::internal)?;
        let retry_at = pass.retry.map(|at| at.min(now + gate));
        self.db()
            .execute(stmt(
                backend,
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1), \
                 retry_at = $2 WHERE id = $3",
                vec![now.into(), retry_at.into(), endpoint.id.into()],
            ))
            .await?;
        // Failing for DISABLE_AFTER, or for a day when an event just ran out of retries (a
        // quiet endpoint has no later event to fail on).
        let failing_for = match pass.dead {
            Some(_) => DISABLE_AFTER_A_DEATH,
            None => DISABLE_AFTER,
        };
        let cutoff =
            now - chrono::Duration::from_std(failing_for).map_err(DomainError::internal)?;
        let reason = format!(
            "disabled at {}: no successful delivery for over {} hours{}; last error: {}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            failing_for.as_secs() / 3600,
            match pass.dead {
                Some(event_id) => format!(" and event {event_id} ran out of retries"),
                None => String::new(),
            },
            truncate(pass.last_error, 500)
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

/// The claim: due rows, oldest first, each the earliest pending row of its (endpoint, member),
/// of an enabled endpoint that no failed pass keeps off (`retry_at`), leased (`attempts + 1`,
/// `next_attempt_at` = `$1`).
///
/// On PostgreSQL each endpoint's pending rows are walked on their own, in id order through
/// `ix_webhook_outbox_endpoint_pending` (migration 023), up to the pass's size: rows of a
/// disabled endpoint, or of one that keeps failing, cost the others nothing. "The member's
/// earliest pending row" is a scalar subquery, which PostgreSQL runs per row as one index
/// lookup; as `NOT EXISTS` it became an anti-join that, with statistics from when almost
/// nothing was pending, re-read the endpoint's every pending row for each candidate (320,000
/// index entries and ~75 ms for a claim of 32 with 10,000 pending). SQLite has no `LATERAL`: it
/// walks all pending rows in id order (`ix_webhook_outbox_pending`, migration 021) and probes
/// with `NOT EXISTS` (its planner runs correlated subqueries per row anyway), the embedded
/// default's few endpoints being one writer's work.
fn claim_sql(backend: DatabaseBackend) -> String {
    let endpoint = "e.enabled AND e.deleted_at IS NULL \
           AND (e.retry_at IS NULL OR e.retry_at <= $2)";
    let returning = "RETURNING id, endpoint_id, event_id, payload, attempts, retry_from";
    match backend {
        DatabaseBackend::Postgres => format!(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT c.id FROM webhook_endpoints e \
               CROSS JOIN LATERAL (SELECT o.id FROM webhook_outbox o \
                 WHERE o.endpoint_id = e.id AND o.status = 'PENDING' \
                   AND o.next_attempt_at <= $2 \
                   AND (o.member_id IS NULL OR o.id = (SELECT min(p.id) FROM webhook_outbox p \
                     WHERE p.endpoint_id = o.endpoint_id AND p.member_id = o.member_id \
                       AND p.status = 'PENDING')) \
                 ORDER BY o.id LIMIT $3 FOR UPDATE SKIP LOCKED) c \
               WHERE {endpoint} ORDER BY c.id LIMIT $3) {returning}"
        ),
        DatabaseBackend::Sqlite | DatabaseBackend::MySql => format!(
            "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT o.id FROM webhook_outbox o \
               JOIN webhook_endpoints e ON e.id = o.endpoint_id \
               WHERE o.status = 'PENDING' AND o.next_attempt_at <= $2 AND {endpoint} \
                 AND NOT EXISTS (SELECT 1 FROM webhook_outbox p \
                   WHERE p.endpoint_id = o.endpoint_id AND p.member_id = o.member_id \
                     AND p.status = 'PENDING' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3) {returning}"
        ),
    }
}

/// Where one claimed row goes after its attempt.
#[derive(Clone, Debug, PartialEq)]
struct Settled {
    id: i64,
    endpoint_id: i64,
    event_id: String,
    /// The claim's attempt count (the guard against a newer claim of the same row).
    attempts: i32,
    status: DeliveryStatus,
    /// The retry's time (`None`: unchanged).
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// `None`: unchanged.
    delivered_at: Option<DateTime<Utc>>,
}

/// Delivered, or retried after [`retry_delay`] (`jitter` in `[0, 1)`), or dead when the retry
/// would fall past [`RETRY_HORIZON`].
fn settle(
    row: &Claimed,
    outcome: &Outcome,
    now: DateTime<Utc>,
    jitter: f64,
) -> DomainResult<Settled> {
    let mut settled = Settled {
        id: row.id,
        endpoint_id: row.endpoint_id,
        event_id: row.event_id.clone(),
        attempts: row.attempts,
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        last_error: None,
        delivered_at: Some(now),
    };
    if outcome.success {
        return Ok(settled);
    }
    let error = match (&outcome.error, outcome.status_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("HTTP {code}"),
        (None, None) => "failed".to_owned(),
    };
    let delay = retry_delay(row.attempts, jitter);
    let next = now + chrono::Duration::from_std(delay).map_err(DomainError::internal)?;
    let horizon = row.retry_from
        + chrono::Duration::from_std(RETRY_HORIZON).map_err(DomainError::internal)?;
    settled.status = if next > horizon {
        DeliveryStatus::Dead
    } else {
        DeliveryStatus::Pending
    };
    settled.next_attempt_at = Some(next);
    settled.last_error = Some(truncate(&error, 1000));
    settled.delivered_at = None;
    Ok(settled)
}

/// One `UPDATE … FROM` a `VALUES` list that moves every settled row on, each guarded by its
/// claim's attempt count. PostgreSQL gets the types of the list from casts; SQLite (3.33 and
/// later have `UPDATE … FROM`; the bundled one is 3.46) needs none.
fn settle_statement(
    backend: DatabaseBackend,
    settled: &[Settled],
) -> (String, Vec<sea_orm::Value>) {
    let casts: [&str; 6] = match backend {
        DatabaseBackend::Postgres => [
            "::bigint",
            "::integer",
            "::text",
            "::timestamptz",
            "::text",
            "::timestamptz",
        ],
        DatabaseBackend::Sqlite | DatabaseBackend::MySql => [""; 6],
    };
    let mut rows = Vec::with_capacity(settled.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(settled.len() * 6);
    for s in settled {
        let n = values.len();
        let params: Vec<String> = casts
            .iter()
            .enumerate()
            .map(|(i, cast)| format!("${}{cast}", n + i + 1))
            .collect();
        rows.push(format!("({})", params.join(", ")));
        values.push(s.id.into());
        values.push(s.attempts.into());
        values.push(s.status.text().into());
        values.push(s.next_attempt_at.into());
        values.push(s.last_error.clone().into());
        values.push(s.delivered_at.into());
    }
    let sql = format!(
        "WITH v (id, attempts, status, next_at, error, delivered_at) AS (VALUES {}) \
         UPDATE webhook_outbox SET status = v.status, \
           next_attempt_at = COALESCE(v.next_at, webhook_outbox.next_attempt_at), \
           last_error = v.error, \
           delivered_at = COALESCE(v.delivered_at, webhook_outbox.delivered_at) \
         FROM v WHERE webhook_outbox.id = v.id AND webhook_outbox.attempts = v.attempts",
        rows.join(", ")
    );
    (sql, values)
}

/// What a pass came to for one endpoint.
#[derive(Debug, PartialEq)]
struct EndpointPass<'a> {
    /// At least one attempt succeeded: the endpoint answers.
    succeeded: bool,
    /// The last failure's error.
    last_error: &'a str,
    /// An event that ran out of retries in this pass.
    dead: Option<&'a str>,
    /// The earliest retry this pass scheduled.
    retry: Option<DateTime<Utc>>,
}

/// The pass per endpoint, by endpoint id.
fn tally(settled: &[Settled]) -> BTreeMap<i64, EndpointPass<'_>> {
    let mut passes: BTreeMap<i64, EndpointPass<'_>> = BTreeMap::new();
    for s in settled {
        let pass = passes.entry(s.endpoint_id).or_insert(EndpointPass {
            succeeded: false,
            last_error: "",
            dead: None,
            retry: None,
        });
        match s.status {
            DeliveryStatus::Delivered => pass.succeeded = true,
            DeliveryStatus::Pending | DeliveryStatus::Dead => {
                pass.last_error = s.last_error.as_deref().unwrap_or_default();
                if s.status == DeliveryStatus::Dead && pass.dead.is_none() {
                    pass.dead = Some(&s.event_id);
                }
                if let Some(at) = s.next_attempt_at {
                    pass.retry = Some(pass.retry.map_or(at, |r| r.min(at)));
                }
            }
        }
    }
    passes
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

    fn claimed(id: i64, endpoint_id: i64, attempts: i32, retry_from: DateTime<Utc>) -> Claimed {
        Claimed {
            id,
            endpoint_id,
            event_id: format!("evt_{id}"),
            payload: "{}".to_owned(),
            attempts,
            retry_from,
        }
    }

    fn outcome(success: bool, status_code: Option<i32>, error: Option<&str>) -> Outcome {
        Outcome {
            success,
            status_code,
            latency: Duration::from_millis(3),
            head: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn a_pass_settles_each_row_delivered_retried_or_dead() {
        let now = Utc::now();
        let delivered = settle(
            &claimed(1, 7, 1, now),
            &outcome(true, Some(204), None),
            now,
            0.5,
        )
        .unwrap();
        assert_eq!(delivered.status, DeliveryStatus::Delivered);
        assert_eq!(delivered.delivered_at, Some(now));
        assert_eq!(
            (delivered.next_attempt_at, delivered.last_error),
            (None, None)
        );

        let retried = settle(
            &claimed(2, 7, 2, now),
            &outcome(false, Some(500), None),
            now,
            0.5,
        )
        .unwrap();
        assert_eq!(retried.status, DeliveryStatus::Pending);
        assert_eq!(retried.attempts, 2);
        assert_eq!(
            retried.next_attempt_at,
            Some(now + chrono::Duration::seconds(20))
        );
        assert_eq!(retried.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(retried.delivered_at, None);

        let written = now - chrono::Duration::days(3);
        let dead = settle(
            &claimed(3, 8, 9, written),
            &outcome(false, None, Some("connection refused")),
            now,
            0.5,
        )
        .unwrap();
        assert_eq!(dead.status, DeliveryStatus::Dead);
        assert_eq!(dead.last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_success_ends_an_endpoints_streak_for_the_pass() {
        let now = Utc::now();
        let old = now - chrono::Duration::days(3);
        let settled: Vec<Settled> = [
            (claimed(1, 7, 1, now), outcome(false, Some(500), None)),
            (claimed(2, 7, 1, now), outcome(true, Some(200), None)),
            (claimed(3, 8, 1, now), outcome(false, Some(502), None)),
            (claimed(4, 8, 9, old), outcome(false, None, Some("refused"))),
            (claimed(5, 8, 9, old), outcome(false, None, Some("reset"))),
        ]
        .iter()
        .map(|(row, outcome)| settle(row, outcome, now, 0.5).unwrap())
        .collect();
        let passes = tally(&settled);
        assert_eq!(passes.len(), 2);
        assert!(passes[&7].succeeded);
        assert_eq!(
            passes[&8],
            EndpointPass {
                succeeded: false,
                last_error: "reset",
                dead: Some("evt_4"),
                // The earliest retry the pass scheduled (the two dead ones have none).
                retry: Some(now + chrono::Duration::seconds(5)),
            }
        );
    }

    #[test]
    fn one_statement_settles_a_pass() {
        let now = Utc::now();
        let settled: Vec<Settled> = (1..=3)
            .map(|id| {
                settle(
                    &claimed(id, 7, 1, now),
                    &outcome(id != 2, Some(200), None),
                    now,
                    0.5,
                )
                .unwrap()
            })
            .collect();
        let (sql, values) = settle_statement(DatabaseBackend::Postgres, &settled);
        assert_eq!(values.len(), 18);
        assert!(sql.contains("($13::bigint, $14::integer, $15::text, $16::timestamptz, $17::text, $18::timestamptz)"), "{sql}");
        assert!(
            sql.contains("webhook_outbox.attempts = v.attempts"),
            "{sql}"
        );
        let (sql, _) = settle_statement(DatabaseBackend::Sqlite, &settled);
        assert!(sql.contains("($1, $2, $3, $4, $5, $6), ($7,"), "{sql}");
        assert!(!sql.contains("::"), "{sql}");
        // The literals the partial index needs.
        let claim = claim_sql(DatabaseBackend::Postgres);
        assert_eq!(claim.matches("status = 'PENDING'").count(), 2);
        assert!(claim.contains("SKIP LOCKED"));
        assert!(!claim_sql(DatabaseBackend::Sqlite).contains("SKIP LOCKED"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
