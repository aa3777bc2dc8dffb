//! The webhook worker's claim reads only pending rows (issue 16, faster delivery).
//!
//! The outbox keeps delivered and dead rows for 30 days, so pending rows are a small, moving
//! part of it. Two partial indexes over `status = 'PENDING'` (PostgreSQL and SQLite both have
//! them; statements must spell the literal `'PENDING'` for the planner to use them) replace the
//! full ones of migration 019:
//!
//! - `ix_webhook_outbox_pending (id)`: the claim walks pending rows oldest first and stops after
//!   a pass's worth, instead of walking every row since the first (or sorting every due row);
//! - `ix_webhook_outbox_pending_member (endpoint_id, member_id, id)`: "no earlier pending row of
//!   the same member for the same endpoint", probed once per candidate.
//!
//! A delivered row leaves both, so marking rows delivered writes two index entries fewer than
//! before, and the posting path's outbox insert maintains as many indexes as before.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 4] = [
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_pending ON webhook_outbox (id) \
     WHERE status = 'PENDING'",
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_pending_member \
     ON webhook_outbox (endpoint_id, member_id, id) WHERE status = 'PENDING'",
    "DROP INDEX IF EXISTS ix_webhook_outbox_due",
    "DROP INDEX IF EXISTS ix_webhook_outbox_member",
];

const DOWN: [&str; 4] = [
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_due \
     ON webhook_outbox (status, next_attempt_at, id)",
    "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_member \
     ON webhook_outbox (endpoint_id, member_id, status, id)",
    "DROP INDEX IF EXISTS ix_webhook_outbox_pending",
    "DROP INDEX IF EXISTS ix_webhook_outbox_pending_member",
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
