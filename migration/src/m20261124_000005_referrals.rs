//! Referrals: who invited whom (once and for ever), when the pair is rewarded, the program's
//! referral policy and inviter caps, and landing-page clicks.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
    ReferralQualifyOn,
    ReferralDailyCap,
    ReferralLifetimeCap,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
    ProgramId,
    ReferrerId,
    RefereeId,
    Status,
    CreatedAt,
    RewardedAt,
}

#[derive(DeriveIden)]
enum ReferralClicks {
    Table,
    Id,
    ProgramId,
    ReferrerId,
    VisitorId,
    Day,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_len(Programs::ReferralQualifyOn, 16)
                .default("REGISTRATION")
                .take(),
            integer_null(Programs::ReferralDailyCap).take(),
            integer_null(Programs::ReferralLifetimeCap).take(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Programs::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Referrals::Table)
                    .col(pk(Referrals::Id))
                    .col(big_integer(Referrals::ProgramId))
                    .col(big_integer(Referrals::ReferrerId))
                    .col(big_integer_uniq(Referrals::RefereeId))
                    .col(
                        string_len(Referrals::Status, 16)
                            .check(Expr::col(Referrals::Status).is_in(["PENDING", "REWARDED"])),
                    )
                    .col(timestamp_with_time_zone(Referrals::CreatedAt))
                    .col(timestamp_with_time_zone_null(Referrals::RewardedAt))
                    .foreign_key(&mut fk(
                        "fk_referrals_program",
                        (Referrals::Table, Referrals::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_referrals_referrer",
                        (Referrals::Table, Referrals::ReferrerId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_referrals_referee",
                        (Referrals::Table, Referrals::RefereeId),
                        (Members::Table, Members::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_referrals_referrer_created",
                Referrals::Table,
                &["referrer_id", "created_at"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReferralClicks::Table)
                    .col(pk(ReferralClicks::Id))
                    .col(big_integer(ReferralClicks::ProgramId))
                    .col(big_integer(ReferralClicks::ReferrerId))
                    .col(string_len(ReferralClicks::VisitorId, 128))
                    .col(string_len(ReferralClicks::Day, 10))
                    .col(timestamp_with_time_zone(ReferralClicks::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_clicks_referrer",
                        (ReferralClicks::Table, ReferralClicks::ReferrerId),
                        (Members::Table, Members::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_clicks_once_a_day",
                ReferralClicks::Table,
                &["referrer_id", "visitor_id", "day"],
                true,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReferralClicks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Referrals::Table).to_owned())
            .await?;
        for column in [
            Programs::ReferralQualifyOn,
            Programs::ReferralDailyCap,
            Programs::ReferralLifetimeCap,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Programs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
