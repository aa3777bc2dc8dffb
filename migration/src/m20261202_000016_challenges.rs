//! Challenges, missions and badges (issue 14, foundation slice).
//!
//! - `challenges`: the draft admins edit (stable ids, soft-deleted like `earning_rules`); the
//!   window (`FIXED` from/to instants, or `WEEKLY` / `MONTHLY` repeating in the program's
//!   timezone) and the reward (points, free spins, a gift, a badge; any combination) are columns;
//!   `mission` makes the goals ordered steps, each unlocking the next.
//! - `challenge_goals`: a challenge's goals in order (`position` 0, 1, …): the trigger action,
//!   the campaign conditions as the admin API's JSON, the measure and the target (minor units for
//!   `SUM_AMOUNT`, a count otherwise). An edit replaces the rows; progress names a goal by its
//!   position.
//! - `challenge_sets`: published versions, the whole typed draft as JSON (like `rulesets`);
//!   the live version is the highest.
//! - `badges` / `member_badges`: a badge code is unique per program; a member holds each badge
//!   once (`INSERT … ON CONFLICT DO NOTHING` on `(member_id, badge_id)`).
//! - `challenge_progress`: one row per (member, challenge, window, goal): the value so far, the
//!   last local day that counted (streaks) and when the goal completed.
//! - `challenge_completions`: one row per (member, challenge, window); the reward is paid only
//!   by the statement that inserts it, so completion pays once even under concurrent events.
//! - `challenge_marks`: what already counted, unique per (member, challenge, window, goal,
//!   mark): a distinct object or category, or an event's key with the amount it added (a retry
//!   counts once; a refund finds the contribution to take back).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index, pk};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Challenges {
    Table,
    Id,
    ProgramId,
    Name,
    Description,
    Mission,
    WindowKind,
    WindowFrom,
    WindowTo,
    RewardPointsMinor,
    RewardFreeSpins,
    RewardGiftId,
    RewardBadgeId,
    Enabled,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChallengeGoals {
    Table,
    Id,
    ChallengeId,
    Position,
    Action,
    Conditions,
    Measure,
    Target,
}

#[derive(DeriveIden)]
enum ChallengeSets {
    Table,
    Id,
    ProgramId,
    Version,
    Challenges,
    PublishedBy,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Badges {
    Table,
    Id,
    ProgramId,
    Code,
    Name,
    ImageUrl,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MemberBadges {
    Table,
    Id,
    ProgramId,
    MemberId,
    BadgeId,
    Source,
    SourceRef,
    EarnedAt,
}

#[derive(DeriveIden)]
enum ChallengeProgress {
    Table,
    Id,
    ProgramId,
    MemberId,
    ChallengeId,
    WindowKey,
    Goal,
    Value,
    LastDay,
    CompletedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChallengeCompletions {
    Table,
    Id,
    ProgramId,
    MemberId,
    ChallengeId,
    WindowKey,
    IdempotencyKey,
    CompletedAt,
}

#[derive(DeriveIden)]
enum ChallengeMarks {
    Table,
    Id,
    ProgramId,
    MemberId,
    ChallengeId,
    WindowKey,
    Goal,
    Mark,
    AmountMinor,
    CreatedAt,
}

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
enum Gifts {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Badges::Table)
                    .col(pk(Badges::Id))
                    .col(big_integer(Badges::ProgramId))
                    .col(string_len(Badges::Code, 64))
                    .col(string_len(Badges::Name, 200))
                    .col(string_len(Badges::ImageUrl, 2000))
                    .col(timestamp_with_time_zone(Badges::CreatedAt))
                    .col(timestamp_with_time_zone(Badges::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_badges_program",
                        (Badges::Table, Badges::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_badges_program_code",
                Badges::Table,
                &["program_id", "code"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MemberBadges::Table)
                    .col(pk(MemberBadges::Id))
                    .col(big_integer(MemberBadges::ProgramId))
                    .col(big_integer(MemberBadges::MemberId))
                    .col(big_integer(MemberBadges::BadgeId))
                    .col(string_len(MemberBadges::Source, 16))
                    .col(string_len_null(MemberBadges::SourceRef, 200))
                    .col(timestamp_with_time_zone(MemberBadges::EarnedAt))
                    .foreign_key(&mut fk(
                        "fk_member_badges_member",
                        (MemberBadges::Table, MemberBadges::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_member_badges_badge",
                        (MemberBadges::Table, MemberBadges::BadgeId),
                        (Badges::Table, Badges::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_member_badges_member_badge",
                MemberBadges::Table,
                &["member_id", "badge_id"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Challenges::Table)
                    .col(pk(Challenges::Id))
                    .col(big_integer(Challenges::ProgramId))
                    .col(string_len(Challenges::Name, 200))
                    .col(string_len(Challenges::Description, 1000).default(""))
                    .col(boolean(Challenges::Mission).default(false))
                    .col(string_len(Challenges::WindowKind, 16))
                    .col(timestamp_with_time_zone_null(Challenges::WindowFrom))
                    .col(timestamp_with_time_zone_null(Challenges::WindowTo))
                    .col(
                        big_integer(Challenges::RewardPointsMinor)
                            .default(0)
                            .check(Expr::col(Challenges::RewardPointsMinor).gte(0)),
                    )
                    .col(
                        integer(Challenges::RewardFreeSpins)
                            .default(0)
                            .check(Expr::col(Challenges::RewardFreeSpins).gte(0)),
                    )
                    .col(big_integer_null(Challenges::RewardGiftId))
                    .col(big_integer_null(Challenges::RewardBadgeId))
                    .col(boolean(Challenges::Enabled).default(true))
                    .col(timestamp_with_time_zone_null(Challenges::DeletedAt))
                    .col(timestamp_with_time_zone(Challenges::CreatedAt))
                    .col(timestamp_with_time_zone(Challenges::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_challenges_program",
                        (Challenges::Table, Challenges::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_challenges_gift",
                        (Challenges::Table, Challenges::RewardGiftId),
                        (Gifts::Table, Gifts::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_challenges_badge",
                        (Challenges::Table, Challenges::RewardBadgeId),
                        (Badges::Table, Badges::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_challenges_program",
                Challenges::Table,
                &["program_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChallengeGoals::Table)
                    .col(pk(ChallengeGoals::Id))
                    .col(big_integer(ChallengeGoals::ChallengeId))
                    .col(
                        integer(ChallengeGoals::Position)
                            .check(Expr::col(ChallengeGoals::Position).gte(0)),
                    )
                    .col(string_len(ChallengeGoals::Action, 64))
                    .col(text(ChallengeGoals::Conditions).default("[]"))
                    .col(string_len(ChallengeGoals::Measure, 32))
                    .col(
                        big_integer(ChallengeGoals::Target)
                            .check(Expr::col(ChallengeGoals::Target).gt(0)),
                    )
                    .foreign_key(&mut fk(
                        "fk_challenge_goals_challenge",
                        (ChallengeGoals::Table, ChallengeGoals::ChallengeId),
                        (Challenges::Table, Challenges::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_challenge_goals_position",
                ChallengeGoals::Table,
                &["challenge_id", "position"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChallengeSets::Table)
                    .col(pk(ChallengeSets::Id))
                    .col(big_integer(ChallengeSets::ProgramId))
                    .col(big_integer(ChallengeSets::Version))
                    .col(text(ChallengeSets::Challenges))
                    .col(string_len(ChallengeSets::PublishedBy, 200))
                    .col(timestamp_with_time_zone(ChallengeSets::PublishedAt))
                    .foreign_key(&mut fk(
                        "fk_challenge_sets_program",
                        (ChallengeSets::Table, ChallengeSets::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_challenge_sets_version",
                ChallengeSets::Table,
                &["program_id", "version"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChallengeProgress::Table)
                    .col(pk(ChallengeProgress::Id))
                    .col(big_integer(ChallengeProgress::ProgramId))
                    .col(big_integer(ChallengeProgress::MemberId))
                    .col(big_integer(ChallengeProgress::ChallengeId))
                    .col(string_len(ChallengeProgress::WindowKey, 32))
                    .col(integer(ChallengeProgress::Goal))
                    .col(big_integer(ChallengeProgress::Value).default(0))
                    .col(string_len_null(ChallengeProgress::LastDay, 10))
                    .col(timestamp_with_time_zone_null(
                        ChallengeProgress::CompletedAt,
                    ))
                    .col(timestamp_with_time_zone(ChallengeProgress::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_challenge_progress_member",
                        (ChallengeProgress::Table, ChallengeProgress::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_challenge_progress_challenge",
                        (ChallengeProgress::Table, ChallengeProgress::ChallengeId),
                        (Challenges::Table, Challenges::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_challenge_progress_key",
                ChallengeProgress::Table,
                &["member_id", "challenge_id", "window_key", "goal"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChallengeCompletions::Table)
                    .col(pk(ChallengeCompletions::Id))
                    .col(big_integer(ChallengeCompletions::ProgramId))
                    .col(big_integer(ChallengeCompletions::MemberId))
                    .col(big_integer(ChallengeCompletions::ChallengeId))
                    .col(string_len(ChallengeCompletions::WindowKey, 32))
                    .col(string_len_null(ChallengeCompletions::IdempotencyKey, 200))
                    .col(timestamp_with_time_zone(ChallengeCompletions::CompletedAt))
                    .foreign_key(&mut fk(
                        "fk_challenge_completions_member",
                        (ChallengeCompletions::Table, ChallengeCompletions::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_challenge_completions_challenge",
                        (
                            ChallengeCompletions::Table,
                            ChallengeCompletions::ChallengeId,
                        ),
                        (Challenges::Table, Challenges::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_challenge_completions_key",
                ChallengeCompletions::Table,
                &["member_id", "challenge_id", "window_key"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_challenge_completions_challenge",
                ChallengeCompletions::Table,
                &["program_id", "challenge_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChallengeMarks::Table)
                    .col(pk(ChallengeMarks::Id))
                    .col(big_integer(ChallengeMarks::ProgramId))
                    .col(big_integer(ChallengeMarks::MemberId))
                    .col(big_integer(ChallengeMarks::ChallengeId))
                    .col(string_len(ChallengeMarks::WindowKey, 32))
                    .col(integer(ChallengeMarks::Goal))
                    .col(string_len(ChallengeMarks::Mark, 300))
                    .col(big_integer(ChallengeMarks::AmountMinor).default(0))
                    .col(timestamp_with_time_zone(ChallengeMarks::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_challenge_marks_member",
                        (ChallengeMarks::Table, ChallengeMarks::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_challenge_marks_key",
                ChallengeMarks::Table,
                &["member_id", "challenge_id", "window_key", "goal", "mark"],
                true,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alias::new("challenge_marks"),
            Alias::new("challenge_completions"),
            Alias::new("challenge_progress"),
            Alias::new("challenge_sets"),
            Alias::new("challenge_goals"),
            Alias::new("challenges"),
            Alias::new("member_badges"),
            Alias::new("badges"),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
