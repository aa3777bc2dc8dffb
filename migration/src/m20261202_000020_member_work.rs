//! Cross-member work (issue 16): every posting touches exactly one member.
//!
//! - `member_work`: work one member's transaction owes another member, written in that
//!   transaction and run afterwards as the other member's own idempotent operation (today: a
//!   referral inviter's reward, queued by the friend's qualifying transaction). `(kind,
//!   subject)` is unique, so work is queued once; the row is deleted by the transaction that
//!   does the work. `due_at` is both when it may run and a claim's lease; `attempts` and
//!   `last_error` tell an operator why it waits.
//! - `referrals.ordinal`: the friend's place among the inviter's referrals, unique per inviter.
//!   Two friends of one inviter linked at the same time take the same place, so one waits for
//!   the other's commit and counts again: the inviter's caps hold without locking the inviter.
//! - `referrals.inviter_rewarded_at`: when the inviter's reward ran (`rewarded_at` is when the
//!   friend qualified and was paid).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index, pk};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MemberWork {
    Table,
    Id,
    ProgramId,
    MemberId,
    Kind,
    Subject,
    CreatedAt,
    DueAt,
    Attempts,
    LastError,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Ordinal,
    InviterRewardedAt,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MemberWork::Table)
                    .col(pk(MemberWork::Id))
                    .col(big_integer(MemberWork::ProgramId))
                    .col(big_integer(MemberWork::MemberId))
                    .col(string_len(MemberWork::Kind, 32))
                    .col(string_len(MemberWork::Subject, 100))
                    .col(timestamp_with_time_zone(MemberWork::CreatedAt))
                    .col(timestamp_with_time_zone(MemberWork::DueAt))
                    .col(integer(MemberWork::Attempts).default(0))
                    .col(string_len_null(MemberWork::LastError, 1000))
                    .foreign_key(&mut fk(
                        "fk_member_work_member",
                        (MemberWork::Table, MemberWork::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_member_work_kind_subject",
                MemberWork::Table,
                &["kind", "subject"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_member_work_due",
                MemberWork::Table,
                &["due_at", "id"],
                false,
            ))
            .await?;
        for column in [
            big_integer_null(Referrals::Ordinal).take(),
            timestamp_with_time_zone_null(Referrals::InviterRewardedAt).take(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Referrals::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // Referrals linked before: their places in the order they were made, and both members
        // were paid in one transaction.
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE referrals SET ordinal = (SELECT COUNT(*) FROM referrals r \
             WHERE r.referrer_id = referrals.referrer_id AND r.id <= referrals.id)",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE referrals SET inviter_rewarded_at = rewarded_at WHERE status = 'REWARDED'",
        )
        .await?;
        manager
            .create_index(index(
                "ux_referrals_referrer_ordinal",
                Alias::new("referrals"),
                &["referrer_id", "ordinal"],
                true,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_referrals_referrer_ordinal")
                    .table(Referrals::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Referrals::Ordinal, Referrals::InviterRewardedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Referrals::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(MemberWork::Table).to_owned())
            .await
    }
}
