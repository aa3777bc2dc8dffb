//! Leaderboard updates off the request path. After a commit the postings go into a bounded
//! queue and the request returns; one task per instance applies them in the order they were
//! queued, so a member's changes nearly always reach the boards in the order of their posting
//! counters (one that does not is re-read from the ledger, as before). With Redis away the task's calls fail at once (the
//! store's breaker) and mark the program for a rebuild; when Redis answers again the task
//! rebuilds those programs. A full queue (Redis slow rather than away) drops the update and
//! marks the program for a rebuild too: nothing ever waits for room.
//!
//! Reads stay current on the instance that posted: [`Loyalty::leaderboard`] first waits (at most
//! [`READ_WAIT`]) until the updates queued before it are applied, so a member reading the board
//! right after their purchase sees it. Another instance sees it once this one's task applied it
//! (usually within a Redis round trip); [`Loyalty::settle_leaderboard_updates`] waits for that.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::ledger::Posting;
use crate::program::Program;
use crate::service::Loyalty;

/// Transactions waiting for their board update; beyond this, updates are dropped and their
/// programs rebuilt.
const QUEUE: usize = 10_000;
/// Longest a leaderboard read waits for this instance's earlier updates.
pub const READ_WAIT: Duration = Duration::from_secs(1);

/// One committed transaction's postings (all of one program).
pub(crate) struct Job {
    program: Program,
    posted: Vec<Posting>,
}

/// The queue's ends and its progress.
pub(crate) struct Updates {
    sender: mpsc::Sender<Job>,
    /// Taken by the task when it starts.
    receiver: Mutex<Option<mpsc::Receiver<Job>>>,
    /// Jobs queued so far. Under a lock with the send, so the n-th job queued is the n-th
    /// the task takes.
    queued: Mutex<u64>,
    /// Jobs the task has finished.
    applied: watch::Sender<u64>,
}

impl Updates {
    pub(crate) fn new() -> Updates {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Updates {
            sender,
            receiver: Mutex::new(Some(receiver)),
            queued: Mutex::new(0),
            applied: watch::Sender::new(0),
        }
    }
}

/// Resolves when the breaker closed again; never without a breaker (in process) or once it is
/// gone.
async fn recovered(recoveries: &mut Option<watch::Receiver<u64>>) {
    if let Some(receiver) = recoveries.as_mut() {
        if receiver.changed().await.is_ok() {
            return;
        }
    }
    *recoveries = None;
    std::future::pending::<()>().await;
}

impl Loyalty {
    /// Queues a committed transaction's board update; never waits. Called by `after_commit`.
    pub(crate) fn queue_leaderboard_update(&self, program: &Program, posted: Vec<Posting>) {
        let leaderboards = self.leaderboards();
        if leaderboards.losing_updates() {
            return;
        }
        let updates = &leaderboards.updates;
        let mut queued = match updates.queued.lock() {
            Ok(queued) => queued,
            Err(poisoned) => poisoned.into_inner(),
        };
        let job = Job {
            program: program.clone(),
            posted,
        };
        match updates.sender.try_send(job) {
            Ok(()) => *queued += 1,
            Err(_) => {
                drop(queued);
                metrics::counter!("loyalty_leaderboard_updates_dropped_total").increment(1);
                tracing::warn!(
                    program = program.id,
                    "leaderboard update queue full; the program's boards will be rebuilt"
                );
                leaderboards.mark_dirty(program.id);
            }
        }
    }

    /// Starts the task applying this service's queued updates. It holds the service weakly,
    /// so it ends with it (or at `shutdown`); what it had not applied then is what a crash
    /// loses, and the catch-up pass repairs that.
    pub(crate) fn start_leaderboard_updates(&self, shutdown: CancellationToken) {
        let leaderboards = self.leaderboards();
        let receiver = match leaderboards.updates.receiver.lock() {
            Ok(mut receiver) => receiver.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(mut jobs) = receiver else { return };
        let mut recoveries = leaderboards.recoveries();
        let service = self.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    job = jobs.recv() => {
                        let (Some(job), Some(loyalty)) = (job, service.upgrade()) else {
                            return;
                        };
                        loyalty.apply_leaderboard_update(&job.program, &job.posted).await;
                        loyalty
                            .leaderboards()
                            .updates
                            .applied
                            .send_modify(|n| *n += 1);
                    }
                    () = recovered(&mut recoveries) => {
                        let Some(loyalty) = service.upgrade() else { return };
                        loyalty.rebuild_dirty_leaderboards().await;
                    }
                }
            }
        });
    }

    /// Waits until every board update this instance queued before the call is applied (or
    /// failed and marked its program for a rebuild), at most `within`; whether it got there.
    /// Reads do this with [`READ_WAIT`]; tests and tools reading the boards through another
    /// instance, or Redis directly, do it on the instance that posted.
    pub async fn settle_leaderboard_updates(&self, within: Duration) -> bool {
        let updates = &self.leaderboards().updates;
        let target = match updates.queued.lock() {
            Ok(queued) => *queued,
            Err(poisoned) => *poisoned.into_inner(),
        };
        let mut applied = updates.applied.subscribe();
        let settled = tokio::time::timeout(within, applied.wait_for(|n| *n >= target))
            .await
            .is_ok_and(|seen| seen.is_ok());
        settled
    }

    /// Starts a rebuild of every program whose update failed here (after Redis came back).
    async fn rebuild_dirty_leaderboards(&self) {
        for program_id in self.leaderboards().dirty_programs() {
            match self.program_by_id(program_id).await {
                Ok(program) => self.spawn_rebuild(&program),
                Err(err) => tracing::warn!(error = %err, program_id, "leaderboard repair skipped"),
            }
        }
    }
}
