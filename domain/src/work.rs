//! Cross-member work (issue 16): what one member's transaction owes another member, run as the
//! other member's own operation, so that every posting locks and changes exactly one member.
//!
//! The owing transaction queues the work ([`queue`]): a `member_work` row, unique per
//! (kind, subject), written with its postings, so it commits or rolls back with them, and a
//! note (the [`Item`] itself, in [`crate::ledger::Tx::notes`]) that wakes this instance's
//! runner after the commit. The runner claims due rows in one statement that also leases them
//! (`due_at` moves [`LEASE`] ahead; PostgreSQL picks them `FOR UPDATE SKIP LOCKED`, SQLite has
//! one writer), and runs each as an idempotent [`crate::ledger::ops::Operation`] on its member
//! that deletes the row in its own transaction: the work is done once even when two runners
//! hold it (the second finds it done under the member's lock) or a server dies between the two
//! commits (the row waits, and a runner takes it at its next pass, at start or when the lease
//! runs out). A failed run waits `1 s × 2^(n−1)` (at most an hour, ±20 %) and runs again, for
//! as long as it takes; `attempts` and `last_error` tell an operator why it waits.
//!
//! A service seen through another clock ([`Loyalty::with_clock`], the demo's backdated history)
//! queues nothing: it runs the work right after the commit, at the same instant, so its history
//! stays in order and no runner on the live clock takes it first.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, FromQueryResult};
use tokio_util::sync::CancellationToken;

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{stmt, TxResult};
use crate::ledger::Tx;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// What a `member_work` row asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A referral's inviter reward; the subject is the referral id.
    ReferralInviter,
}

stored_enum!(Kind {
    ReferralInviter => "REFERRAL_INVITER",
});

/// One piece of work: what, about what, for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub kind: Kind,
    pub subject: String,
    pub program_id: i64,
    pub member_id: i64,
}

/// How long a claimed row is left to its runner before another may take it: what work a
/// killed instance held waits this long. Short, because running it twice is harmless (the
/// operation finds it done under the member's lock), only wasted.
pub const LEASE: Duration = Duration::from_secs(10);
/// Rows one pass claims.
const CLAIM: i64 = 32;

/// The per-instance runner state the service holds.
#[derive(Default)]
pub(crate) struct Work {
    /// Wakes this instance's runner after a commit that queued work.
    wake: Arc<tokio::sync::Notify>,
    /// Runs work right after the commit instead of queueing it ([`Loyalty::with_clock`]).
    inline: bool,
}

impl Work {
    pub(crate) fn inline() -> Self {
        Work {
            wake: Arc::default(),
            inline: true,
        }
    }
}

/// Queues `item` in the owing transaction `tx`: a row (unless the service runs work inline) and
/// the note that wakes the runner after the commit.
pub(crate) async fn queue(loyalty: &Loyalty, tx: &mut Tx<'_>, item: Item) -> TxResult<()> {
    if !loyalty.work().inline {
        let backend = tx.txn.get_database_backend();
        tx.txn
            .execute(stmt(
                backend,
                "INSERT INTO member_work (program_id, member_id, kind, subject, created_at, \
                 due_at, attempts) VALUES ($1, $2, $3, $4, $5, $5, 0) ON CONFLICT DO NOTHING",
                vec![
                    item.program_id.into(),
                    item.member_id.into(),
                    item.kind.text().into(),
                    item.subject.clone().into(),
                    tx.now.into(),
                ],
            ))
            .await?;
    }
    tx.notes.push(Box::new(item));
    Ok(())
}

/// Counts a run on `/metrics`: `loyalty_member_work_runs_total{kind, result}`.
fn count_run(kind: &str, result: &DomainResult<()>) {
    let result = if result.is_ok() { "done" } else { "failed" };
    metrics::counter!("loyalty_member_work_runs_total", "kind" => kind.to_owned(), "result" => result)
        .increment(1);
}

/// The delay before run `attempts + 1`, given `jitter` in `[0, 1)`.
fn retry_delay(attempts: i32, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 12)).unwrap_or(12);
    Duration::from_secs(2u64.saturating_pow(exponent))
        .min(Duration::from_secs(3600))
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[derive(Debug, FromQueryResult)]
struct Claimed {
    id: i64,
    program_id: i64,
    member_id: i64,
    kind: String,
    subject: String,
    attempts: i32,
}

impl Loyalty {
    /// Starts this instance's runner; `None`: this instance runs no cross-member work (another
    /// does).
    pub fn start_work(&self, poll: Option<Duration>, shutdown: CancellationToken) {
        let Some(poll) = poll else {
            return;
        };
        let loyalty = self.downgrade();
        let wake = self.work().wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(service) = loyalty.upgrade() else {
                    return;
                };
                let claimed = match service.run_due_work().await {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        tracing::warn!(error = %err, "cross-member work pass failed");
                        0
                    }
                };
                drop(service);
                if claimed > 0 {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        });
    }

    /// One pass: claims the due work and runs it; how many rows it claimed.
    pub async fn run_due_work(&self) -> DomainResult<usize> {
        let now = self.now();
        let lease_until = now + chrono::Duration::from_std(LEASE).map_err(DomainError::internal)?;
        let claimed = self.claim_work(now, lease_until).await?;
        let count = claimed.len();
        let runs = claimed.into_iter().map(|row| async move {
            let result = match Kind::read("member_work.kind", &row.kind) {
                Ok(kind) => {
                    let item = Item {
                        kind,
                        subject: row.subject.clone(),
                        program_id: row.program_id,
                        member_id: row.member_id,
                    };
                    self.run_work(&item).await
                }
                Err(err) => Err(err),
            };
            count_run(&row.kind, &result);
            if let Err(err) = result {
                tracing::warn!(error = %err, id = row.id, kind = %row.kind, subject = %row.subject,
                    "cross-member work failed; it runs again later");
                if let Err(err) = self.postpone_work(&row, &err).await {
                    tracing::warn!(error = %err, id = row.id, "cross-member work not postponed");
                }
            }
        });
        futures::future::join_all(runs).await;
        Ok(count)
    }

    /// How many rows wait (due or not): what an operator watches, and tests wait for.
    pub async fn pending_work(&self) -> DomainResult<u64> {
        let row = self
            .db()
            .query_one(stmt(
                self.db().get_database_backend(),
                "SELECT COUNT(*) AS n FROM member_work",
                vec![],
            ))
            .await?;
        let n = row.map(|r| r.try_get::<i64>("", "n")).transpose()?;
        Ok(u64::try_from(n.unwrap_or_default()).unwrap_or_default())
    }

    /// Runs one item as its member's operation (which deletes its row when there is one).
    /// Boxed: the operation's own commit may run work in turn (a service on another clock).
    fn run_work<'a>(&'a self, item: &'a Item) -> BoxFuture<'a, DomainResult<()>> {
        Box::pin(async move {
            match item.kind {
                Kind::ReferralInviter => crate::referrals::pay_inviter(self, item).await,
            }
        })
    }

    /// After the owing transaction committed: runs its work now (a service on another clock)
    /// or wakes the runner.
    pub(crate) async fn after_work_queued(&self, notes: &[crate::ledger::Note]) {
        let mut items = crate::ledger::notes_of::<Item>(notes);
        if !self.work().inline {
            if items.next().is_some() {
                self.work().wake.notify_one();
            }
            return;
        }
        for item in items {
            let run = self.run_work(item).await;
            count_run("inline", &run);
            if let Err(err) = run {
                tracing::warn!(error = %err, "inline cross-member work failed");
            }
        }
    }

    async fn claim_work(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> DomainResult<Vec<Claimed>> {
        let backend = self.db().get_database_backend();
        let lock = crate::jobs::skip_locked(backend);
        let claim = format!(
            "UPDATE member_work SET due_at = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM member_work WHERE due_at <= $2 \
               ORDER BY due_at, id LIMIT $3 {lock}) \
             RETURNING id, program_id, member_id, kind, subject, attempts"
        );
        crate::jobs::claim_due(
            self.db(),
            Some(stmt(
                backend,
                "SELECT id FROM member_work WHERE due_at <= $1 LIMIT 1",
                vec![now.into()],
            )),
            stmt(
                backend,
                &claim,
                vec![lease_until.into(), now.into(), CLAIM.into()],
            ),
            |c: &Claimed| c.id,
        )
        .await
    }

    async fn postpone_work(&self, row: &Claimed, err: &DomainError) -> DomainResult<()> {
        let delay = retry_delay(row.attempts, rand::random::<f64>());
        let due = self.now() + chrono::Duration::from_std(delay).map_err(DomainError::internal)?;
        let error: String = err.to_string().chars().take(1000).collect();
        self.db()
            .execute(stmt(
                self.db().get_database_backend(),
                "UPDATE member_work SET due_at = $1, last_error = $2 WHERE id = $3",
                vec![due.into(), error.into(), row.id.into()],
            ))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_again_after_a_doubling_delay_of_at_most_an_hour() {
        let middle = |n| retry_delay(n, 0.5);
        assert_eq!(middle(1), Duration::from_secs(1));
        assert_eq!(middle(2), Duration::from_secs(2));
        assert_eq!(middle(5), Duration::from_secs(16));
        assert_eq!(middle(40), Duration::from_secs(3600));
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(800));
        assert!(retry_delay(1, 0.999_999) <= Duration::from_millis(1200));
        assert!(retry_delay(40, 0.999_999) <= Duration::from_secs(4320));
    }

    #[test]
    fn an_item_is_found_among_other_notes() {
        let item = Item {
            kind: Kind::ReferralInviter,
            subject: "42".into(),
            program_id: 1,
            member_id: 7,
        };
        let notes: Vec<crate::ledger::Note> =
            vec![Box::new("a challenge's note"), Box::new(item.clone())];
        let found: Vec<&Item> = crate::ledger::notes_of::<Item>(&notes).collect();
        assert_eq!(found, [&item]);
        assert_eq!(crate::ledger::notes_of::<u8>(&notes).count(), 0);
    }
}
