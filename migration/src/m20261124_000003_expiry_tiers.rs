//! Expiry needs a way to find due lots across members; tiers give members a level with an earn
//! multiplier.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    ExpiresAt,
    RemainingMinor,
}

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    TierId,
}

#[derive(DeriveIden)]
enum EarningRules {
    Table,
    Qualifying,
}

#[derive(DeriveIden)]
enum Tiers {
    Table,
    Id,
    ProgramId,
    Name,
    MinQualificationMinor,
    MultiplierMinor,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_ledger_due_lots")
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::ExpiresAt)
                    .col(LedgerEntries::RemainingMinor)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Tiers::Table)
                    .col(big_integer(Tiers::Id).auto_increment().primary_key())
                    .col(big_integer(Tiers::ProgramId))
                    .col(string_len(Tiers::Name, 100))
                    .col(
                        big_integer(Tiers::MinQualificationMinor)
                            .check(Expr::col(Tiers::MinQualificationMinor).gte(0)),
                    )
                    .col(
                        big_integer(Tiers::MultiplierMinor)
                            .check(Expr::col(Tiers::MultiplierMinor).gt(0)),
                    )
                    .col(timestamp_with_time_zone(Tiers::CreatedAt))
                    .col(timestamp_with_time_zone(Tiers::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tiers_program")
                            .from(Tiers::Table, Tiers::ProgramId)
                            .to(Programs::Table, Programs::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_tiers_program_threshold")
                    .table(Tiers::Table)
                    .col(Tiers::ProgramId)
                    .col(Tiers::MinQualificationMinor)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // No foreign key to tiers: SQLite cannot add one to an existing table, and a member's
        // tier is recomputed from the thresholds whenever they change.
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .add_column(big_integer_null(Members::TierId))
                    .to_owned(),
            )
            .await?;
        // A qualifying rule credits the QUALIFICATION account as well (tiers count it).
        manager
            .alter_table(
                Table::alter()
                    .table(EarningRules::Table)
                    .add_column(boolean(EarningRules::Qualifying).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EarningRules::Table)
                    .drop_column(EarningRules::Qualifying)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .drop_column(Members::TierId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Tiers::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_ledger_due_lots")
                    .table(LedgerEntries::Table)
                    .to_owned(),
            )
            .await
    }
}
