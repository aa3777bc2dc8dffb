//! The claim's "no earlier pending event of this member" probe gets an index of its own:
//! `(endpoint_id, member_id, id)` over pending rows. Every condition of the probe is then an
//! index condition, so it reads at most the member's pending rows. Without it, statistics taken
//! while the table was small let PostgreSQL probe through `ix_webhook_outbox_created`
//! (`endpoint_id` only) and filter the endpoint's every row: `auto_explain` of a 10,000-event
//! backlog showed 11,787 rows removed per probe, 2.6 ms each, 84–99 ms per claim of 32.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_member_pending \
     ON webhook_outbox (endpoint_id, member_id, id) WHERE status = 'PENDING'";

const DOWN: &str = "DROP INDEX IF EXISTS ix_webhook_outbox_member_pending";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
