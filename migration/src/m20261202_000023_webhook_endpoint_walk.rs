//! The webhook claim walks each enabled endpoint's pending rows on their own, and skips an
//! endpoint whose last pass failed until its retry time.
//!
//! The claim walked every pending row in id order (`ix_webhook_outbox_pending`) and joined the
//! endpoint: rows of a disabled endpoint stay pending until it is enabled again, and a down
//! endpoint's rows wait in backoff (or behind a member's earlier row that does) for up to three
//! days, so every claim of every endpoint stepped over all of them. Now the claim walks, per
//! enabled endpoint, `ix_webhook_outbox_endpoint_pending (endpoint_id, id)` over pending rows and
//! stops at the pass's size; and `webhook_endpoints.retry_at`, set when a pass failed every
//! attempt to an endpoint (its earliest retry, at most a minute away) and cleared by a success
//! or a resend, keeps a down endpoint out of the walk until then.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    RetryAt,
}

const INDEX: &str = "CREATE INDEX IF NOT EXISTS ix_webhook_outbox_endpoint_pending \
     ON webhook_outbox (endpoint_id, id) WHERE status = 'PENDING'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .add_column(
                        ColumnDef::new(WebhookEndpoints::RetryAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager.get_connection().execute_unprepared(INDEX).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_webhook_outbox_endpoint_pending")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEndpoints::Table)
                    .drop_column(WebhookEndpoints::RetryAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
