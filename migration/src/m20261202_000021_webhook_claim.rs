//! The webhook worker's claim reads only pending rows (issue 16, faster delivery).
//!
//! The outbox keeps delivered and dead rows for 30 days, and the claim walked the primary key
//! from the first of them (`ORDER BY id LIMIT n` filtered on `status`): 38 ms a claim with
//! 8,625 delivered rows, growing with every row kept. `ix_webhook_outbox_pending` holds the
//! pending rows only, in id order, so the claim reads about a pass's worth of rows (1.3 ms).
//!
//! Its predicate also names `next_attempt_at IS NOT NULL` (always true: the column is NOT NULL)
//! so that only statements with a condition on `next_attempt_at` can use it (both planners
//! prove `IS NOT NULL` from a comparison): the claim's scan and the idle worker's read. The
//! claim's "no earlier pending row of the same member" probe cannot, and keeps the full
//! `ix_webhook_outbox_member (endpoint_id, member_id, status, id)` of migration 019. Statistics
//! taken while nearly every row was delivered estimate about one pending row; a tiny index the
//! probe could read whole looked free then, and after a burst of 10,000 events PostgreSQL
//! re-read all of them for each candidate (217 ms a claim, seconds later in the burst).
//! `ix_webhook_outbox_due (status, next_attempt_at, id)` is dropped: it served only the claim,
//! and its leading `status` was the same trap.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_pending ON webhook_outbox (id) \
     WHERE status = 'PENDING' AND next_attempt_at IS NOT NULL",
    "DROP INDEX IF EXISTS ix_webhook_outbox_due",
];

const DOWN: [&str; 2] = [
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_due \
     ON webhook_outbox (status, next_attempt_at, id)",
    "DROP INDEX IF EXISTS ix_webhook_outbox_pending",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for statement in UP {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for statement in DOWN {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
