//! Outbound webhooks (issue 16).
//!
//! - `webhook_endpoints`: a program's receivers: URL, the event types sent (a JSON array of
//!   names), enabled flag, the signing secret (`whsec_…`) and, during a rotation's overlap, the
//!   previous one with when it stops signing; `failing_since` (the first failure after the last
//!   success) and `disabled_reason` when the worker switched the endpoint off. Soft-deleted, so
//!   its events and attempts stay readable.
//! - `webhook_outbox`: one row per (endpoint, event), written in the transaction that made the
//!   change, so nothing committed is lost and nothing rolled back is sent. `event_id` is stable
//!   (derived from the posting) and unique per endpoint; `member_id` + `id` order a member's
//!   events; `status` `PENDING` → `DELIVERED` | `DEAD`; `next_attempt_at` is both the retry time
//!   and a claim's lease; retries stop three days after `retry_from` (the event's creation, or
//!   its resend).
//! - `webhook_attempts`: every delivery attempt: status code or error, latency, the first bytes
//!   of the answer.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index, pk};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    ProgramId,
    Url,
    EventTypes,
    Enabled,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    FailingSince,
    DisabledReason,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookOutbox {
    Table,
    Id,
    ProgramId,
    EndpointId,
    EventId,
    EventType,
    MemberId,
    MemberVersion,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    RetryFrom,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    OutboxId,
    EndpointId,
    AttemptedAt,
    Success,
    StatusCode,
    LatencyMs,
    ResponseHead,
    Error,
}

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(pk(WebhookEndpoints::Id))
                    .col(big_integer(WebhookEndpoints::ProgramId))
                    .col(string_len(WebhookEndpoints::Url, 2000))
                    .col(text(WebhookEndpoints::EventTypes))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(string_len(WebhookEndpoints::Secret, 100))
                    .col(string_len_null(WebhookEndpoints::PreviousSecret, 100))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::PreviousSecretUntil,
                    ))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::FailingSince,
                    ))
                    .col(string_len_null(WebhookEndpoints::DisabledReason, 1000))
                    .col(timestamp_with_time_zone_null(WebhookEndpoints::DeletedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_webhook_endpoints_program",
                        (WebhookEndpoints::Table, WebhookEndpoints::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_endpoints_program",
                WebhookEndpoints::Table,
                &["program_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookOutbox::Table)
                    .col(pk(WebhookOutbox::Id))
                    .col(big_integer(WebhookOutbox::ProgramId))
                    .col(big_integer(WebhookOutbox::EndpointId))
                    .col(string_len(WebhookOutbox::EventId, 100))
                    .col(string_len(WebhookOutbox::EventType, 64))
                    .col(big_integer_null(WebhookOutbox::MemberId))
                    .col(big_integer_null(WebhookOutbox::MemberVersion))
                    .col(text(WebhookOutbox::Payload))
                    .col(string_len(WebhookOutbox::Status, 16).check(
                        Expr::col(WebhookOutbox::Status).is_in(["PENDING", "DELIVERED", "DEAD"]),
                    ))
                    .col(
                        integer(WebhookOutbox::Attempts)
                            .default(0)
                            .check(Expr::col(WebhookOutbox::Attempts).gte(0)),
                    )
                    .col(timestamp_with_time_zone(WebhookOutbox::NextAttemptAt))
                    .col(timestamp_with_time_zone(WebhookOutbox::RetryFrom))
                    .col(string_len_null(WebhookOutbox::LastError, 1000))
                    .col(timestamp_with_time_zone(WebhookOutbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookOutbox::DeliveredAt))
                    .foreign_key(&mut fk(
                        "fk_webhook_outbox_endpoint",
                        (WebhookOutbox::Table, WebhookOutbox::EndpointId),
                        (WebhookEndpoints::Table, WebhookEndpoints::Id),
                    ))
                    .take(),
            )
            .await?;
        for (name, cols, unique) in [
            (
                "ux_webhook_outbox_endpoint_event",
                &["endpoint_id", "event_id"][..],
                true,
            ),
            // The claim: due rows first, then "no earlier pending row of the same member".
            (
                "ix_webhook_outbox_due",
                &["status", "next_attempt_at", "id"][..],
                false,
            ),
            (
                "ix_webhook_outbox_member",
                &["endpoint_id", "member_id", "status", "id"][..],
                false,
            ),
            (
                "ix_webhook_outbox_created",
                &["endpoint_id", "created_at"][..],
                false,
            ),
        ] {
            manager
                .create_index(index(name, WebhookOutbox::Table, cols, unique))
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(pk(WebhookAttempts::Id))
                    .col(big_integer(WebhookAttempts::OutboxId))
                    .col(big_integer(WebhookAttempts::EndpointId))
                    .col(timestamp_with_time_zone(WebhookAttempts::AttemptedAt))
                    .col(boolean(WebhookAttempts::Success))
                    .col(integer_null(WebhookAttempts::StatusCode))
                    .col(big_integer(WebhookAttempts::LatencyMs))
                    .col(string_len_null(WebhookAttempts::ResponseHead, 1000))
                    .col(string_len_null(WebhookAttempts::Error, 1000))
                    .foreign_key(&mut fk(
                        "fk_webhook_attempts_outbox",
                        (WebhookAttempts::Table, WebhookAttempts::OutboxId),
                        (WebhookOutbox::Table, WebhookOutbox::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_attempts_outbox",
                WebhookAttempts::Table,
                &["outbox_id", "id"],
                false,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookOutbox::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
