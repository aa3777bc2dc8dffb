//! Mini-app launch secrets: the per-program, per-platform secret that signs launch payloads
//! (Telegram: the bot token). Kept out of `programs` so that no program read carries it.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum LaunchSecrets {
    Table,
    Id,
    ProgramId,
    Platform,
    Secret,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LaunchSecrets::Table)
                    .col(pk(LaunchSecrets::Id))
                    .col(big_integer(LaunchSecrets::ProgramId))
                    .col(string_len(LaunchSecrets::Platform, 16))
                    .col(string_len(LaunchSecrets::Secret, 256))
                    .col(timestamp_with_time_zone(LaunchSecrets::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_launch_secrets_program",
                        (LaunchSecrets::Table, LaunchSecrets::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_launch_secrets_program_platform",
                LaunchSecrets::Table,
                &["program_id", "platform"],
                true,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LaunchSecrets::Table).to_owned())
            .await
    }
}
