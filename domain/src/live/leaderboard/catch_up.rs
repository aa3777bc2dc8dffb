//! Catching up after a crash. The boards move after a transaction commits; a server killed
//! between the commit and that update (or an update that failed and whose retry died with the
//! process) leaves members behind the ledger until they post again. So the boards keep a
//! watermark, the ledger id up to which every row is on them, and a pass (at start, awaited
//! before the server listens, then every `LEADERBOARD_CATCH_UP_INTERVAL_SECS`) reads the members
//! with rows past it, compares each one's newest posting counter with the one the boards hold,
//! and refreshes the lagging ones from the ledger. Refreshes merge by counter, so a pass racing
//! live updates, rebuilds or another instance's pass writes nothing wrong; the watermark only
//! moves up to an id below which every row is committed ([`crate::ledger::settled`]), so a row that
//! commits late is never skipped.
//!
//! Without a watermark (a new process with in-process boards, a fresh or flushed Redis) nothing
//! is known about the boards: the pass rebuilds the programs whose boards are built and leaves
//! the others to be built from the ledger at their first read or posting.

use std::collections::BTreeMap;
use std::time::Duration;

use loyalty_entities::programs;
use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult};
use tokio_util::sync::CancellationToken;

use super::ledger;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::stmt;
use crate::ledger::settled::settled_max_ids;
use crate::service::Loyalty;

/// Ledger ids read per statement.
const CHUNK: i64 = 10_000;
/// Members per version lookup and refresh.
const BATCH: usize = 500;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Members whose boards were behind the ledger, refreshed from it.
    pub refreshed: u64,
    /// Programs rebuilt whole (there was no watermark).
    pub rebuilt: u64,
    /// The watermark after the pass (`None`: writers were still in flight, next pass).
    pub watermark: Option<i64>,
}

#[derive(FromQueryResult)]
struct Touched {
    program_id: i64,
    member_id: i64,
    version: i64,
}

/// Each member with ledger rows in `(after, upto]`, with their newest posting counter there.
async fn touched<C: ConnectionTrait>(db: &C, after: i64, upto: i64) -> DomainResult<Vec<Touched>> {
    let backend = db.get_database_backend();
    let sql = "SELECT program_id, member_id, CAST(MAX(member_version) AS BIGINT) AS version \
               FROM ledger_entries WHERE id > $1 AND id <= $2 GROUP BY program_id, member_id";
    Ok(
        Touched::find_by_statement(stmt(backend, sql, vec![after.into(), upto.into()]))
            .all(db)
            .await?,
    )
}

impl Loyalty {
    /// One catch-up pass (see the module docs). Safe on several instances at once.
    pub async fn catch_up_leaderboards(&self) -> DomainResult<CatchUp> {
        let boards = &self.leaderboards().boards;
        let mark = boards.watermark().await.map_err(DomainError::internal)?;
        let Some(settled) = settled_max_ids(self.db(), &["ledger_entries"]).await? else {
            return Ok(CatchUp::default());
        };
        let settled = settled.get("ledger_entries").copied().unwrap_or_default();
        let mut stats = CatchUp::default();
        let Some(mut mark) = mark else {
            stats.rebuilt = self.rebuild_built_leaderboards().await?;
            boards
                .advance_watermark(settled)
                .await
                .map_err(DomainError::internal)?;
            stats.watermark = Some(settled);
            return Ok(stats);
        };
        if mark > settled {
            // Only a copy of this database with more ledger rows (same deployment id) writing
            // to this Redis after this instance started; at start the server would have taken
            // a new deployment id (`Leaderboards::ahead_of_ledger`).
            metrics::counter!("loyalty_leaderboard_foreign_watermark_total").increment(1);
            tracing::error!(
                watermark = mark,
                ledger_max_id = settled,
                "the leaderboards in Redis have seen ledger rows this database does not have \
                 (a restored or copied database sharing a Redis?)"
            );
        }
        while mark < settled {
            let upto = settled.min(mark.saturating_add(CHUNK));
            let mut by_program: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
            for row in touched(self.db(), mark, upto).await? {
                by_program
                    .entry(row.program_id)
                    .or_default()
                    .push((row.member_id, row.version));
            }
            for (program_id, members) in by_program {
                stats.refreshed += self.refresh_lagging(program_id, &members).await?;
            }
            boards
                .advance_watermark(upto)
                .await
                .map_err(DomainError::internal)?;
            mark = upto;
        }
        stats.watermark = Some(mark);
        if stats.refreshed > 0 {
            metrics::counter!("loyalty_leaderboard_caught_up_members_total")
                .increment(stats.refreshed);
            tracing::info!(
                members = stats.refreshed,
                watermark = mark,
                "leaderboards caught up with the ledger"
            );
        }
        Ok(stats)
    }

    /// Refreshes those of `members` (id, newest posting counter) the boards hold an older
    /// counter for; returns how many. Programs whose boards are not built are left to the
    /// rebuild their first use starts (it reads the whole ledger).
    async fn refresh_lagging(&self, program_id: i64, members: &[(i64, i64)]) -> DomainResult<u64> {
        // Programs are never deleted (the ledger refers to them), so the program exists.
        let program = self.program_by_id(program_id).await?;
        let boards = &self.leaderboards().boards;
        let mut refreshed = 0;
        for batch in members.chunks(BATCH) {
            let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
            let Some(stored) = boards
                .versions(program_id, &ids)
                .await
                .map_err(DomainError::internal)?
            else {
                return Ok(refreshed);
            };
            let lagging: Vec<i64> = batch
                .iter()
                .zip(stored)
                .filter(|((_, version), stored)| stored.is_none_or(|s| s < *version))
                .map(|((id, _), _)| *id)
                .collect();
            if lagging.is_empty() {
                continue;
            }
            let now = self.now();
            let totals = ledger::totals(self.db(), &program, now, Some(&lagging)).await?;
            self.merge_totals(&program, now, &totals).await?;
            refreshed += lagging.len() as u64;
        }
        Ok(refreshed)
    }

    /// Without a watermark nothing is known of what the boards hold: a program whose boards
    /// are built (a Redis kept from before the watermark) is rebuilt from the ledger. A program
    /// whose boards are not built is left alone: its first read or posting builds them from the
    /// ledger anyway, so a new process with in-process boards, or a fresh Redis, starts without
    /// reading every program's ledger first.
    async fn rebuild_built_leaderboards(&self) -> DomainResult<u64> {
        let boards = &self.leaderboards().boards;
        let mut rebuilt = 0;
        for model in programs::Entity::find().all(self.db()).await? {
            let built = boards
                .versions(model.id, &[])
                .await
                .map_err(DomainError::internal)?
                .is_some();
            if built {
                let program = self.program(&model.external_id).await?;
                self.rebuild_leaderboards(&program).await?;
                rebuilt += 1;
            }
        }
        Ok(rebuilt)
    }

    /// Runs [`Loyalty::catch_up_leaderboards`] once and waits for it, then every `interval`
    /// until shutdown. Awaited at start (before the server listens): a server restarted after a
    /// crash must not answer with the boards the crash left behind the ledger, not even for the
    /// moment a background pass would take. A failed first pass is logged and left to the next.
    pub async fn start_leaderboard_catch_up(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        if let Err(err) = self.catch_up_leaderboards().await {
            tracing::warn!(error = %err, "leaderboard catch-up at start failed; next pass retries");
        }
        let loyalty = self.clone();
        crate::jobs::every_from(
            "leaderboard catch-up",
            tokio::time::Instant::now() + interval,
            interval,
            shutdown,
            move || {
                let loyalty = loyalty.clone();
                async move { loyalty.catch_up_leaderboards().await }
            },
            |_: &CatchUp| {},
        );
    }
}
