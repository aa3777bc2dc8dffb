//! Member attributes: a JSON object of string → string the service role sets
//! (`setMemberAttributes`) and campaign conditions read (`memberAttributeEquals`). Bounded by
//! the domain (20 keys, 64-character keys, 256-character values), so a TEXT column is enough.
//!
//! Free wheel spins need no schema change: they are the `SPINS` account of the existing ledger
//! and balances tables, whose balance row is created on a member's first spin credit.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Members {
    Table,
    Attributes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .add_column(text(Members::Attributes).default("{}"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .drop_column(Members::Attributes)
                    .to_owned(),
            )
            .await
    }
}
