//! Campaign fields of the rules draft (issue 11): conditions, stacking (priority, exclusive),
//! budgets and the effects the two old columns cannot hold. Old rows read exactly as before:
//! no conditions, priority 0, not exclusive, no budget, and `effect` NULL (their reward stays in
//! `reward_kind`/`points_minor`/`percent_minor`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EarningRules {
    Table,
    /// JSON array of conditions in the admin API's shape.
    Conditions,
    Priority,
    Exclusive,
    BudgetTotalMinor,
    MemberCapMinor,
    /// JSON of the whole effect for the kinds beyond FIXED and PERCENT; NULL for those two.
    Effect,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds a single column per ALTER TABLE.
        for column in [
            text(EarningRules::Conditions).default("[]").take(),
            integer(EarningRules::Priority).default(0).take(),
            boolean(EarningRules::Exclusive).default(false).take(),
            big_integer_null(EarningRules::BudgetTotalMinor).take(),
            big_integer_null(EarningRules::MemberCapMinor).take(),
            text_null(EarningRules::Effect).take(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EarningRules::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            EarningRules::Effect,
            EarningRules::MemberCapMinor,
            EarningRules::BudgetTotalMinor,
            EarningRules::Exclusive,
            EarningRules::Priority,
            EarningRules::Conditions,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EarningRules::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
