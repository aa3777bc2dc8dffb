//! The lucky wheel: wheels, their segments (prizes with optional stock), per-member server seeds
//! (the commitment shown before a spin) and spins (everything needed to recompute them).

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
enum Wheels {
    Table,
    Id,
    ProgramId,
    Name,
    SpinCostMinor,
    DailySpinLimit,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WheelSegments {
    Table,
    Id,
    WheelId,
    Position,
    Label,
    Weight,
    PrizeKind,
    PrizePointsMinor,
    PrizeGiftId,
    PrizeStock,
    ArchivedAt,
}

#[derive(DeriveIden)]
enum WheelSeeds {
    Table,
    Id,
    MemberId,
    WheelId,
    ServerSeed,
    Nonce,
}

#[derive(DeriveIden)]
enum Spins {
    Table,
    Id,
    ProgramId,
    MemberId,
    WheelId,
    SegmentId,
    ClientSeed,
    Nonce,
    ServerSeed,
    ServerSeedHash,
    Draw,
    CostMinor,
    PrizeKind,
    PrizePointsMinor,
    RedemptionId,
    VoucherId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Wheels::Table)
                    .col(pk(Wheels::Id))
                    .col(big_integer(Wheels::ProgramId))
                    .col(string_len(Wheels::Name, 200))
                    .col(
                        big_integer(Wheels::SpinCostMinor)
                            .check(Expr::col(Wheels::SpinCostMinor).gte(0)),
                    )
                    .col(
                        integer(Wheels::DailySpinLimit)
                            .check(Expr::col(Wheels::DailySpinLimit).gt(0)),
                    )
                    .col(timestamp_with_time_zone_null(Wheels::ArchivedAt))
                    .col(timestamp_with_time_zone(Wheels::CreatedAt))
                    .col(timestamp_with_time_zone(Wheels::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_wheels_program")
                            .from(Wheels::Table, Wheels::ProgramId)
                            .to(Programs::Table, Programs::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WheelSegments::Table)
                    .col(pk(WheelSegments::Id))
                    .col(big_integer(WheelSegments::WheelId))
                    .col(integer(WheelSegments::Position))
                    .col(string_len(WheelSegments::Label, 100))
                    .col(
                        big_integer(WheelSegments::Weight)
                            .check(Expr::col(WheelSegments::Weight).gt(0)),
                    )
                    .col(
                        string_len(WheelSegments::PrizeKind, 16).check(
                            Expr::col(WheelSegments::PrizeKind)
                                .is_in(["POINTS", "GIFT", "VOUCHER", "NOTHING"]),
                        ),
                    )
                    .col(big_integer_null(WheelSegments::PrizePointsMinor))
                    .col(big_integer_null(WheelSegments::PrizeGiftId))
                    .col(
                        big_integer_null(WheelSegments::PrizeStock).check(
                            Expr::col(WheelSegments::PrizeStock)
                                .is_null()
                                .or(Expr::col(WheelSegments::PrizeStock).gte(0)),
                        ),
                    )
                    .col(timestamp_with_time_zone_null(WheelSegments::ArchivedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_segments_wheel")
                            .from(WheelSegments::Table, WheelSegments::WheelId)
                            .to(Wheels::Table, Wheels::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WheelSeeds::Table)
                    .col(pk(WheelSeeds::Id))
                    .col(big_integer(WheelSeeds::MemberId))
                    .col(big_integer(WheelSeeds::WheelId))
                    .col(string_len(WheelSeeds::ServerSeed, 64))
                    .col(big_integer(WheelSeeds::Nonce).default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_seeds_member")
                            .from(WheelSeeds::Table, WheelSeeds::MemberId)
                            .to(Members::Table, Members::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_seeds_wheel")
                            .from(WheelSeeds::Table, WheelSeeds::WheelId)
                            .to(Wheels::Table, Wheels::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_seeds_member_wheel")
                    .table(WheelSeeds::Table)
                    .col(WheelSeeds::MemberId)
                    .col(WheelSeeds::WheelId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Spins::Table)
                    .col(pk(Spins::Id))
                    .col(big_integer(Spins::ProgramId))
                    .col(big_integer(Spins::MemberId))
                    .col(big_integer(Spins::WheelId))
                    .col(big_integer(Spins::SegmentId))
                    .col(string_len(Spins::ClientSeed, 64))
                    .col(big_integer(Spins::Nonce))
                    .col(string_len(Spins::ServerSeed, 64))
                    .col(string_len(Spins::ServerSeedHash, 64))
                    .col(text(Spins::Draw))
                    .col(big_integer(Spins::CostMinor))
                    .col(string_len(Spins::PrizeKind, 16))
                    .col(big_integer_null(Spins::PrizePointsMinor))
                    .col(big_integer_null(Spins::RedemptionId))
                    .col(big_integer_null(Spins::VoucherId))
                    .col(timestamp_with_time_zone(Spins::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_spins_member")
                            .from(Spins::Table, Spins::MemberId)
                            .to(Members::Table, Members::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_spins_segment")
                            .from(Spins::Table, Spins::SegmentId)
                            .to(WheelSegments::Table, WheelSegments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_spins_member_wheel_created")
                    .table(Spins::Table)
                    .col(Spins::MemberId)
                    .col(Spins::WheelId)
                    .col(Spins::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Spins::Table.into_iden(),
            WheelSeeds::Table.into_iden(),
            WheelSegments::Table.into_iden(),
            Wheels::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
