//! The one shape of a background job: run a pass now and then every `interval` until shutdown.
//! A failed pass is logged and is simply the next pass's work, so a job never stops on an error.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::DomainResult;

/// Spawns `pass` on a timer. The first tick fires at once; a pass that overruns its interval
/// delays the next one instead of running two back to back. `report` says what a pass did.
pub(crate) fn every<T, Fut>(
    name: &'static str,
    interval: Duration,
    shutdown: CancellationToken,
    pass: impl FnMut() -> Fut + Send + 'static,
    report: fn(&T),
) where
    T: Send + 'static,
    Fut: Future<Output = DomainResult<T>> + Send + 'static,
{
    every_from(
        name,
        tokio::time::Instant::now(),
        interval,
        shutdown,
        pass,
        report,
    );
}

/// [`every`] with the first tick at `start` (a job whose first pass its caller already ran).
pub(crate) fn every_from<T, Fut>(
    name: &'static str,
    start: tokio::time::Instant,
    interval: Duration,
    shutdown: CancellationToken,
    mut pass: impl FnMut() -> Fut + Send + 'static,
    report: fn(&T),
) where
    T: Send + 'static,
    Fut: Future<Output = DomainResult<T>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(start, interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match pass().await {
                Ok(outcome) => report(&outcome),
                Err(err) => tracing::warn!(job = name, error = %err, "background pass failed"),
            }
        }
    });
}

/// `FOR UPDATE SKIP LOCKED` where several instances may claim the same rows (PostgreSQL);
/// nothing on SQLite, whose one writer runs a claim alone.
pub(crate) fn skip_locked(backend: sea_orm::DatabaseBackend) -> &'static str {
    match backend {
        sea_orm::DatabaseBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        sea_orm::DatabaseBackend::Sqlite | sea_orm::DatabaseBackend::MySql => "",
    }
}

/// A worker's claim of due rows: `probe` first when given, a read that finds one due row (an
/// idle worker polls, and on SQLite even an `UPDATE` that changes nothing takes the one write
/// lock postings need; a worker whose last pass found work skips it), then `claim`, the
/// `UPDATE … RETURNING` that leases them; the rows sorted by `id`.
///
/// On PostgreSQL the claim runs in a transaction of its own with sorting switched off
/// (`SET LOCAL enable_sort = off`): its `ORDER BY … LIMIT` must walk an index in that order and
/// stop at the limit. Statistics taken while the table held almost no due rows (the normal state
/// before a burst) otherwise make the planner fetch every due row, sort them and keep the
/// first few, so a pass would cost more the further the worker falls behind (the webhook claim
/// took ~250 ms at 10,000 pending rows that way). JIT compilation is switched off with it: a
/// sort the plan cannot avoid (a few rows, cheap) is then priced at the planner's "disabled"
/// cost, far above `jit_above_cost`, and compiling the statement took ~150 ms of every claim.
pub(crate) async fn claim_due<T: sea_orm::FromQueryResult + Send + 'static>(
    db: &sea_orm::DatabaseConnection,
    probe: Option<sea_orm::Statement>,
    claim: sea_orm::Statement,
    id: fn(&T) -> i64,
) -> DomainResult<Vec<T>> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if let Some(probe) = probe {
        if db.query_one(probe).await?.is_none() {
            return Ok(Vec::new());
        }
    }
    let rows = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let db = db.clone();
            crate::ledger::db::run_detached(async move {
                let txn = db.begin().await?;
                txn.execute_unprepared("SET LOCAL enable_sort = off; SET LOCAL jit = off")
                    .await?;
                let rows = txn.query_all(claim).await?;
                txn.commit().await?;
                Ok::<_, crate::error::DomainError>(rows)
            })
            .await?
        }
        sea_orm::DatabaseBackend::Sqlite | sea_orm::DatabaseBackend::MySql => {
            db.query_all(claim).await?
        }
    };
    let mut claimed = rows
        .iter()
        .map(|row| T::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(id);
    Ok(claimed)
}
