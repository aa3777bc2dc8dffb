//! Gifts (catalogue with optional stock), redemptions of gifts (bought or won) and discount
//! vouchers. The guarantees the code relies on are constraints too: stock never below zero,
//! costs positive, statuses from a fixed set, voucher codes unique.

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
enum Members {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Gifts {
    Table,
    Id,
    ProgramId,
    Name,
    Description,
    ImageUrl,
    CostMinor,
    Stock,
    PerMemberLimit,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Redemptions {
    Table,
    Id,
    ProgramId,
    MemberId,
    GiftId,
    CostMinor,
    Status,
    Origin,
    SpendEntryId,
    RefundEntryId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Vouchers {
    Table,
    Id,
    ProgramId,
    MemberId,
    Code,
    PointsMinor,
    ValueMinor,
    Status,
    Origin,
    SpendEntryId,
    ExpiresAt,
    UsedAt,
    OrderId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Gifts::Table)
                    .col(pk(Gifts::Id))
                    .col(big_integer(Gifts::ProgramId))
                    .col(string_len(Gifts::Name, 200))
                    .col(text_null(Gifts::Description))
                    .col(text_null(Gifts::ImageUrl))
                    .col(big_integer(Gifts::CostMinor).check(Expr::col(Gifts::CostMinor).gt(0)))
                    // NULL = unlimited; otherwise what is left, never below zero.
                    .col(
                        integer_null(Gifts::Stock).check(
                            Expr::col(Gifts::Stock)
                                .is_null()
                                .or(Expr::col(Gifts::Stock).gte(0)),
                        ),
                    )
                    .col(
                        integer_null(Gifts::PerMemberLimit).check(
                            Expr::col(Gifts::PerMemberLimit)
                                .is_null()
                                .or(Expr::col(Gifts::PerMemberLimit).gt(0)),
                        ),
                    )
                    .col(timestamp_with_time_zone_null(Gifts::ArchivedAt))
                    .col(timestamp_with_time_zone(Gifts::CreatedAt))
                    .col(timestamp_with_time_zone(Gifts::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_gifts_program",
                        (Gifts::Table, Gifts::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_gifts_program",
                Gifts::Table,
                &["program_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Redemptions::Table)
                    .col(pk(Redemptions::Id))
                    .col(big_integer(Redemptions::ProgramId))
                    .col(big_integer(Redemptions::MemberId))
                    .col(big_integer(Redemptions::GiftId))
                    // 0 for prizes won on the wheel.
                    .col(
                        big_integer(Redemptions::CostMinor)
                            .check(Expr::col(Redemptions::CostMinor).gte(0)),
                    )
                    .col(string_len(Redemptions::Status, 16).check(
                        Expr::col(Redemptions::Status).is_in(["PENDING", "FULFILLED", "CANCELLED"]),
                    ))
                    .col(
                        string_len(Redemptions::Origin, 16)
                            .check(Expr::col(Redemptions::Origin).is_in(["redeem", "wheel"])),
                    )
                    .col(big_integer_null(Redemptions::SpendEntryId))
                    .col(
                        // Only a cancelled redemption carries a refund.
                        big_integer_null(Redemptions::RefundEntryId).check(
                            Expr::col(Redemptions::RefundEntryId)
                                .is_null()
                                .or(Expr::col(Redemptions::Status).eq("CANCELLED")),
                        ),
                    )
                    .col(timestamp_with_time_zone(Redemptions::CreatedAt))
                    .col(timestamp_with_time_zone(Redemptions::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_redemptions_program",
                        (Redemptions::Table, Redemptions::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_redemptions_member",
                        (Redemptions::Table, Redemptions::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_redemptions_gift",
                        (Redemptions::Table, Redemptions::GiftId),
                        (Gifts::Table, Gifts::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_redemptions_spend",
                        (Redemptions::Table, Redemptions::SpendEntryId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_redemptions_refund",
                        (Redemptions::Table, Redemptions::RefundEntryId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .take(),
            )
            .await?;
        for (name, cols) in [
            ("ix_redemptions_member_gift", &["member_id", "gift_id"][..]),
            (
                "ix_redemptions_program_status",
                &["program_id", "status"][..],
            ),
        ] {
            manager
                .create_index(index(name, Redemptions::Table, cols, false))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Vouchers::Table)
                    .col(pk(Vouchers::Id))
                    .col(big_integer(Vouchers::ProgramId))
                    .col(big_integer(Vouchers::MemberId))
                    .col(string_len(Vouchers::Code, 32))
                    .col(
                        big_integer(Vouchers::PointsMinor)
                            .check(Expr::col(Vouchers::PointsMinor).gt(0)),
                    )
                    .col(
                        big_integer(Vouchers::ValueMinor)
                            .check(Expr::col(Vouchers::ValueMinor).gt(0)),
                    )
                    .col(
                        // A used voucher records when and for which order.
                        string_len(Vouchers::Status, 16).check(
                            Expr::col(Vouchers::Status).eq("ACTIVE").or(Expr::col(
                                Vouchers::Status,
                            )
                            .eq("USED")
                            .and(Expr::col(Vouchers::UsedAt).is_not_null())
                            .and(Expr::col(Vouchers::OrderId).is_not_null())),
                        ),
                    )
                    .col(
                        string_len(Vouchers::Origin, 16)
                            .check(Expr::col(Vouchers::Origin).is_in(["discount", "wheel"])),
                    )
                    .col(big_integer_null(Vouchers::SpendEntryId))
                    .col(timestamp_with_time_zone(Vouchers::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Vouchers::UsedAt))
                    .col(string_len_null(Vouchers::OrderId, 200))
                    .col(timestamp_with_time_zone(Vouchers::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_vouchers_program",
                        (Vouchers::Table, Vouchers::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_vouchers_member",
                        (Vouchers::Table, Vouchers::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_vouchers_spend",
                        (Vouchers::Table, Vouchers::SpendEntryId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index("ux_vouchers_code", Vouchers::Table, &["code"], true))
            .await?;
        manager
            .create_index(index(
                "ix_vouchers_member",
                Vouchers::Table,
                &["member_id"],
                false,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Vouchers::Table.into_iden(),
            Redemptions::Table.into_iden(),
            Gifts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
