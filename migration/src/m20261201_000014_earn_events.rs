//! The earn event log (issue 11, "replay before publish"): every earning event the server
//! recorded (mini-app actions, purchases, registration and join, referral rewards), paid or not,
//! one lean row each, written in the posting's transaction. Replay runs a ruleset over these
//! rows; `actionCountAtLeast` counts them.
//!
//! Append-only and deliberately lean: no foreign keys (each would cost a lookup per insert on
//! the hot earn path; rows are only ever written next to the member's own posting), two indexes
//! (a program's events in time order for replay; one member's events of one action in time
//! order for the count condition).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{index, pk};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EarnEvents {
    Table,
    Id,
    ProgramId,
    MemberId,
    Action,
    ObjectId,
    AmountMinor,
    OrderId,
    ChosenMinor,
    TierId,
    PointsMinor,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EarnEvents::Table)
                    .col(pk(EarnEvents::Id))
                    .col(big_integer(EarnEvents::ProgramId))
                    .col(big_integer(EarnEvents::MemberId))
                    .col(string_len(EarnEvents::Action, 64))
                    .col(string_len_null(EarnEvents::ObjectId, 200))
                    .col(big_integer_null(EarnEvents::AmountMinor))
                    .col(string_len_null(EarnEvents::OrderId, 200))
                    .col(big_integer_null(EarnEvents::ChosenMinor))
                    .col(big_integer_null(EarnEvents::TierId))
                    .col(big_integer(EarnEvents::PointsMinor).default(0))
                    .col(timestamp_with_time_zone(EarnEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_earn_events_program_created",
                EarnEvents::Table,
                &["program_id", "created_at"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_earn_events_member_action_created",
                EarnEvents::Table,
                &["member_id", "action", "created_at"],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EarnEvents::Table).to_owned())
            .await
    }
}
