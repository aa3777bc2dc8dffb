//! Incremental aggregates of the Customer Loyalty Report. A background folder adds committed
//! ledger, member, purchase and refund rows to per-(program, local day, kind, key) sums and moves
//! a watermark (the last folded id of each source table); the report reads the sums plus the
//! rows past the watermark, so its cost does not grow with the ledger. Nothing on the posting
//! path writes here. See `loyalty_domain::report::fold` for why the watermark is safe.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ReportDaily {
    Table,
    ProgramId,
    Day,
    Kind,
    Key,
    AmountMinor,
    Count,
}

#[derive(DeriveIden)]
enum ReportMemberDays {
    Table,
    ProgramId,
    Day,
    MemberId,
}

#[derive(DeriveIden)]
enum ReportWatermarks {
    Table,
    Name,
    LastId,
}

#[derive(DeriveIden)]
enum ReportPrograms {
    Table,
    ProgramId,
    Timezone,
}

#[derive(DeriveIden)]
enum Members {
    Table,
}

/// The source tables the folder reads, each with its own watermark row.
pub const SOURCES: [&str; 4] = ["ledger_entries", "members", "purchases", "refunds"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // kind: EARN, REVERSAL, ADJUST_IN (key = source); SPEND, REFUND, ADJUST_OUT (key =
        // purpose); EXPIRE; JOINED (members); PURCHASE, PURCHASE_REFUND (money, key '').
        // amount_minor: the signed sum of ledger amounts (points) or money in hundredths.
        manager
            .create_table(
                Table::create()
                    .table(ReportDaily::Table)
                    .col(big_integer(ReportDaily::ProgramId))
                    .col(string_len(ReportDaily::Day, 10))
                    .col(string_len(ReportDaily::Kind, 16))
                    .col(string_len(ReportDaily::Key, 64))
                    .col(big_integer(ReportDaily::AmountMinor).default(0))
                    .col(big_integer(ReportDaily::Count).default(0))
                    .primary_key(
                        Index::create()
                            .col(ReportDaily::ProgramId)
                            .col(ReportDaily::Day)
                            .col(ReportDaily::Kind)
                            .col(ReportDaily::Key),
                    )
                    .take(),
            )
            .await?;
        // Who posted on which local day: "active members" is a distinct count, which sums
        // cannot give.
        manager
            .create_table(
                Table::create()
                    .table(ReportMemberDays::Table)
                    .col(big_integer(ReportMemberDays::ProgramId))
                    .col(string_len(ReportMemberDays::Day, 10))
                    .col(big_integer(ReportMemberDays::MemberId))
                    .primary_key(
                        Index::create()
                            .col(ReportMemberDays::ProgramId)
                            .col(ReportMemberDays::Day)
                            .col(ReportMemberDays::MemberId),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportWatermarks::Table)
                    .col(string_len(ReportWatermarks::Name, 32).primary_key())
                    .col(big_integer(ReportWatermarks::LastId).default(0))
                    .take(),
            )
            .await?;
        for name in SOURCES {
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table(ReportWatermarks::Table)
                        .columns([ReportWatermarks::Name, ReportWatermarks::LastId])
                        .values([name.into(), 0i64.into()])
                        .map_err(|e| DbErr::Custom(e.to_string()))?
                        .to_owned(),
                )
                .await?;
        }
        // The timezone each program's days were cut in: a program whose timezone changed is
        // rebuilt, and until then its report ignores the stale sums.
        manager
            .create_table(
                Table::create()
                    .table(ReportPrograms::Table)
                    .col(big_integer(ReportPrograms::ProgramId).primary_key())
                    .col(string_len(ReportPrograms::Timezone, 64))
                    .take(),
            )
            .await?;
        // Tier distribution counts members per tier without reading the member rows.
        manager
            .create_index(index(
                "ix_members_program_tier",
                Members::Table,
                &["program_id", "tier_id"],
                false,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_members_program_tier")
                    .table(Members::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            ReportPrograms::Table.into_iden(),
            ReportWatermarks::Table.into_iden(),
            ReportMemberDays::Table.into_iden(),
            ReportDaily::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
