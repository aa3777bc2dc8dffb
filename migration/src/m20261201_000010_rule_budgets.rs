//! Campaign budgets: what each rule (by its draft id, stable across published versions) has
//! issued against its total points budget. A reservation is one conditional `UPDATE` that holds
//! the row's lock until the posting commits, so a budget is never exceeded however many members
//! qualify at once.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RuleBudgets {
    Table,
    ProgramId,
    RuleId,
    SpentMinor,
    Awards,
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
                    .table(RuleBudgets::Table)
                    .col(big_integer(RuleBudgets::ProgramId))
                    .col(big_integer(RuleBudgets::RuleId))
                    .col(big_integer(RuleBudgets::SpentMinor).default(0))
                    .col(big_integer(RuleBudgets::Awards).default(0))
                    .primary_key(
                        Index::create()
                            .col(RuleBudgets::ProgramId)
                            .col(RuleBudgets::RuleId),
                    )
                    .foreign_key(&mut fk(
                        "fk_rule_budgets_program",
                        (RuleBudgets::Table, RuleBudgets::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RuleBudgets::Table).to_owned())
            .await
    }
}
