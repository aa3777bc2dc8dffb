//! The deployment id: a random UUID created once per database and never copied from anywhere
//! else. Every Redis key and channel carries it (`{REDIS_PREFIX}{deployment}:…`), so a Redis that
//! served another database (a test suite's earlier run, a staging database pointed at the
//! production Redis) holds nothing this database reads: it is only a cold cache.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deployment {
    Table,
    Id,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployment::Table)
                    .col(string_len(Deployment::Id, 36).primary_key())
                    .col(
                        timestamp_with_time_zone(Deployment::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        let mut insert = Query::insert();
        insert
            .into_table(Deployment::Table)
            .columns([Deployment::Id])
            .values([uuid::Uuid::new_v4().to_string().into()])
            .map_err(|err| DbErr::Custom(err.to_string()))?;
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Deployment::Table).to_owned())
            .await
    }
}
