//! Purchases with lines (issue 11, item 1): the lines an order was reported with, each with what
//! line refunds took back of it, and on the purchase the accruals its refunds reverse (one JSON
//! array per purchase: the POINTS row, points, qualifying, the lines they were computed on and
//! what refunds reversed so far), so a refund of some lines reverses only the bonuses paid on
//! them.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::fk;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Purchases {
    Table,
    Id,
    Accruals,
}

#[derive(DeriveIden)]
enum PurchaseLines {
    Table,
    PurchaseId,
    LineNumber,
    Sku,
    Category,
    Quantity,
    UnitPriceMinor,
    RefundedQuantity,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // NULL for purchases recorded before: their refunds treat the order as one accrual.
        manager
            .alter_table(
                Table::alter()
                    .table(Purchases::Table)
                    .add_column(text_null(Purchases::Accruals))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PurchaseLines::Table)
                    .col(big_integer(PurchaseLines::PurchaseId))
                    // 1-based, in the order the lines were sent.
                    .col(integer(PurchaseLines::LineNumber))
                    .col(string_len(PurchaseLines::Sku, 64))
                    .col(string_len_null(PurchaseLines::Category, 64))
                    .col(
                        big_integer(PurchaseLines::Quantity)
                            .check(Expr::col(PurchaseLines::Quantity).gte(1)),
                    )
                    .col(
                        big_integer(PurchaseLines::UnitPriceMinor)
                            .check(Expr::col(PurchaseLines::UnitPriceMinor).gte(0)),
                    )
                    .col(
                        big_integer(PurchaseLines::RefundedQuantity)
                            .default(0)
                            .check(
                                Expr::col(PurchaseLines::RefundedQuantity).gte(0).and(
                                    Expr::col(PurchaseLines::RefundedQuantity)
                                        .lte(Expr::col(PurchaseLines::Quantity)),
                                ),
                            ),
                    )
                    .primary_key(
                        Index::create()
                            .col(PurchaseLines::PurchaseId)
                            .col(PurchaseLines::LineNumber),
                    )
                    .foreign_key(&mut fk(
                        "fk_purchase_lines_purchase",
                        (PurchaseLines::Table, PurchaseLines::PurchaseId),
                        (Purchases::Table, Purchases::Id),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PurchaseLines::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Purchases::Table)
                    .drop_column(Purchases::Accruals)
                    .to_owned(),
            )
            .await
    }
}
