//! Distinct member counts from gap cells (issue 12's benchmark).
//!
//! - `report_gaps`: for each kind of activity (`what`, as in `report_member_spans`), how many
//!   member-days fell on local day `day` whose member's previous day of that kind was `gap` days
//!   earlier (`0`: none before). A member has a day in `[a, b]` exactly when their first day in
//!   it has its previous day before `a`, so the members of any window are
//!   `SUM(n) WHERE day BETWEEN a AND b AND (gap = 0 OR day - gap < a)`: a read of days × distinct
//!   gaps cells, whatever the number of members (one row per member and span before, which a
//!   backfill's rewrites bloated).
//! - `report_member_ends`: each member's first and last day of each kind, which the folder reads
//!   by key to extend the gaps (a day after the last one only adds a cell). No report scans it.
//!
//! Days are counted from 1970-01-01. The folder starts again from the first row (the report stays
//! exact meanwhile: it reads the unfolded tail).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Empties the folded sums so that the folder starts again from the first row.
const REFOLD: [&str; 4] = [
    "DELETE FROM report_daily",
    "DELETE FROM report_member_spans",
    "DELETE FROM report_programs",
    "UPDATE report_watermarks SET last_id = 0",
];

#[derive(DeriveIden)]
enum ReportGaps {
    Table,
    ProgramId,
    What,
    Day,
    Gap,
    N,
}

#[derive(DeriveIden)]
enum ReportMemberEnds {
    Table,
    ProgramId,
    What,
    MemberId,
    FirstDay,
    LastDay,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReportGaps::Table)
                    .col(big_integer(ReportGaps::ProgramId))
                    .col(string_len(ReportGaps::What, 24))
                    .col(integer(ReportGaps::Day))
                    .col(integer(ReportGaps::Gap))
                    .col(big_integer(ReportGaps::N))
                    .primary_key(
                        Index::create()
                            .col(ReportGaps::ProgramId)
                            .col(ReportGaps::What)
                            .col(ReportGaps::Day)
                            .col(ReportGaps::Gap),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportMemberEnds::Table)
                    .col(big_integer(ReportMemberEnds::ProgramId))
                    .col(string_len(ReportMemberEnds::What, 24))
                    .col(big_integer(ReportMemberEnds::MemberId))
                    .col(integer(ReportMemberEnds::FirstDay))
                    .col(integer(ReportMemberEnds::LastDay))
                    .primary_key(
                        Index::create()
                            .col(ReportMemberEnds::ProgramId)
                            .col(ReportMemberEnds::What)
                            .col(ReportMemberEnds::MemberId),
                    )
                    .take(),
            )
            .await?;
        let conn = manager.get_connection();
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // Updated in place by key, never scanned: room on each page keeps the updates
            // heap-only, as for the span rows.
            conn.execute_unprepared("ALTER TABLE report_member_ends SET (fillfactor = 50)")
                .await?;
        }
        for statement in REFOLD {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["report_member_ends", "report_gaps"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        // Fold again either way: the folder's state must match its tables.
        let conn = manager.get_connection();
        for statement in REFOLD {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
