//! Who was active when, as bitmaps: one row per (program, block of 64 local days, member) with
//! the member's active days of that block (`lo`) and of the next (`hi`). Any window of at most
//! 65 days lies inside one block and the next, so its active members are the rows of a single
//! block that have a bit in the window: a plain count, one row per member, no DISTINCT over
//! member-days (which made a 30-day report on a busy program cost hundreds of milliseconds).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ReportMemberBlocks {
    Table,
    ProgramId,
    Block,
    MemberId,
    Lo,
    Hi,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportMemberBlocks::Table)
                    .col(big_integer(ReportMemberBlocks::ProgramId))
                    .col(integer(ReportMemberBlocks::Block))
                    .col(big_integer(ReportMemberBlocks::MemberId))
                    .col(big_integer(ReportMemberBlocks::Lo).default(0))
                    .col(big_integer(ReportMemberBlocks::Hi).default(0))
                    .primary_key(
                        Index::create()
                            .col(ReportMemberBlocks::ProgramId)
                            .col(ReportMemberBlocks::Block)
                            .col(ReportMemberBlocks::MemberId),
                    )
                    .to_owned(),
            )
            .await?;
        // Sums folded before this table existed lack its rows: fold everything again (the
        // report stays exact meanwhile: it reads the unfolded tail).
        let conn = manager.get_connection();
        for statement in [
            "DELETE FROM report_daily",
            "DELETE FROM report_member_days",
            "UPDATE report_watermarks SET last_id = 0",
        ] {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReportMemberBlocks::Table).to_owned())
            .await
    }
}
