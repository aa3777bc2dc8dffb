//! The service's side of the ledger's seam ([`Host`]): what every balance-changing transaction
//! gets from above the ledger. The ledger runs the skeleton (`ledger/ops.rs`); here the service
//! lends it the database, the clock and the fast path, places the member in a tier when the
//! QUALIFICATION balance moved, writes the webhook outbox before the commit, and after the
//! commit tells the live layer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use crate::error::DomainResult;
use crate::ledger::batch::Batcher;
use crate::ledger::db::TxResult;
use crate::ledger::ops::{self, Host, Operation};
use crate::ledger::{Posting, Tx};
use crate::program::Program;
use crate::service::{Loyalty, IDEMPOTENCY_FAST_TTL};
use crate::store::FastStore;

impl Host for Loyalty {
    fn db(&self) -> &DatabaseConnection {
        Loyalty::db(self)
    }

    fn batcher(&self) -> &Batcher {
        Loyalty::batcher(self)
    }

    fn now(&self) -> DateTime<Utc> {
        Loyalty::now(self)
    }

    fn fast_path(&self) -> &Arc<dyn FastStore> {
        self.store()
    }

    fn fast_path_ttl(&self) -> std::time::Duration {
        IDEMPOTENCY_FAST_TTL
    }

    async fn place_in_tier(&self, tx: &mut Tx<'_>) -> TxResult<()> {
        self.place_in_tier_cached(tx).await
    }

    async fn before_commit(&self, tx: &mut Tx<'_>, posted: &[Posting]) -> TxResult<()> {
        self.write_outbox(tx, posted).await
    }

    async fn after_commit(
        &self,
        program: &Program,
        posted: Vec<Posting>,
        notes: Vec<crate::ledger::Note>,
    ) {
        Loyalty::after_commit(self, program, posted, notes).await;
    }
}

impl Loyalty {
    /// Runs a balance-changing operation through the ledger's one skeleton.
    pub(crate) async fn execute<O: Operation>(
        &self,
        program: &Program,
        op: &O,
    ) -> DomainResult<O::Output> {
        ops::execute(self, program, op).await
    }

    /// Runs once after every committed transaction that posted something or left notes: live
    /// events (postings, then challenge progress), leaderboards, then the cross-member work it
    /// queued (the runner woken, or the work run here: `work.rs`).
    pub(crate) async fn after_commit(
        &self,
        program: &Program,
        posted: Vec<Posting>,
        notes: Vec<crate::ledger::Note>,
    ) {
        // Neither waits on Redis: events reach this instance's subscribers at once and the bus
        // through the publisher's queue; the boards move on their own queue's task.
        if !posted.is_empty() {
            self.publish_postings(program, &posted);
            // The outbox rows are committed: this instance's worker sends them now rather than
            // at its next poll (other instances find them when they poll).
            if self.webhooks().may_have_events(program.id) {
                self.webhooks().wake();
            }
        }
        if !notes.is_empty() {
            self.publish_challenge_notes(&notes);
        }
        if !posted.is_empty() {
            self.queue_leaderboard_update(program, posted);
        }
        if !notes.is_empty() {
            self.after_work_queued(&notes).await;
        }
    }
}
