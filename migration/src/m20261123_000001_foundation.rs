//! Programs, members, balances, the ledger, idempotency records, earning rules and rulesets,
//! purchases and refunds.

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
    ExternalId,
    Name,
    Timezone,
    Currency,
    PointsPerCurrencyMinor,
    ValidityDays,
    ReferralLinkTemplate,
    RulesetVersion,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
    ProgramId,
    ExternalId,
    DisplayName,
    ReferralCode,
    ReferrerId,
    RegisteredAt,
    JoinedAt,
    LoginStreak,
    LastLoginDate,
}

#[derive(DeriveIden)]
enum Balances {
    Table,
    Id,
    ProgramId,
    MemberId,
    Account,
    BalanceMinor,
    EarnedMinor,
    SpentMinor,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    ProgramId,
    MemberId,
    Account,
    AmountMinor,
    Kind,
    Source,
    Purpose,
    RefType,
    RefId,
    RuleId,
    RulesetVersion,
    IdempotencyKey,
    ReversesId,
    ExpiresAt,
    RemainingMinor,
    MemberVersion,
    Note,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecords {
    Table,
    Id,
    ProgramId,
    Caller,
    Key,
    RequestHash,
    Response,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EarningRules {
    Table,
    Id,
    ProgramId,
    Action,
    Source,
    Name,
    RewardKind,
    PointsMinor,
    PercentMinor,
    LimitCount,
    LimitPeriod,
    PerObject,
    StreakStepMinor,
    StreakCapMinor,
    ActiveFrom,
    ActiveTo,
    Enabled,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Rulesets {
    Table,
    Id,
    ProgramId,
    Version,
    Rules,
    PublishedBy,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Purchases {
    Table,
    Id,
    ProgramId,
    MemberId,
    OrderId,
    AmountMinor,
    RefundedMinor,
    PointsMinor,
    ReversedMinor,
    UnrecoveredMinor,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    ProgramId,
    PurchaseId,
    AmountMinor,
    PointsReversedMinor,
    PointsUnrecoveredMinor,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Programs::Table)
                    .col(pk(Programs::Id))
                    .col(string_len_uniq(Programs::ExternalId, 64))
                    .col(string_len(Programs::Name, 200))
                    .col(string_len(Programs::Timezone, 64))
                    .col(string_len(Programs::Currency, 8))
                    .col(
                        big_integer(Programs::PointsPerCurrencyMinor)
                            .check(Expr::col(Programs::PointsPerCurrencyMinor).gt(0)),
                    )
                    .col(integer_null(Programs::ValidityDays))
                    .col(text_null(Programs::ReferralLinkTemplate))
                    .col(big_integer(Programs::RulesetVersion).default(0))
                    .col(timestamp_with_time_zone(Programs::CreatedAt))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Members::Table)
                    .col(pk(Members::Id))
                    .col(big_integer(Members::ProgramId))
                    .col(string_len(Members::ExternalId, 128))
                    .col(string_len_null(Members::DisplayName, 100))
                    .col(string_len_uniq(Members::ReferralCode, 16))
                    .col(big_integer_null(Members::ReferrerId))
                    .col(timestamp_with_time_zone_null(Members::RegisteredAt))
                    .col(timestamp_with_time_zone(Members::JoinedAt))
                    .col(integer(Members::LoginStreak).default(0))
                    .col(string_len_null(Members::LastLoginDate, 10))
                    .foreign_key(&mut fk(
                        "fk_members_program",
                        (Members::Table, Members::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_members_referrer",
                        (Members::Table, Members::ReferrerId),
                        (Members::Table, Members::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_members_program_external",
                Members::Table,
                &["program_id", "external_id"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Balances::Table)
                    .col(pk(Balances::Id))
                    .col(big_integer(Balances::ProgramId))
                    .col(big_integer(Balances::MemberId))
                    .col(string_len(Balances::Account, 16))
                    .col(
                        big_integer(Balances::BalanceMinor)
                            .default(0)
                            .check(Expr::col(Balances::BalanceMinor).gte(0)),
                    )
                    .col(big_integer(Balances::EarnedMinor).default(0))
                    .col(big_integer(Balances::SpentMinor).default(0))
                    .col(timestamp_with_time_zone(Balances::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_balances_program",
                        (Balances::Table, Balances::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_balances_member",
                        (Balances::Table, Balances::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_balances_member_account",
                Balances::Table,
                &["member_id", "account"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(pk(LedgerEntries::Id))
                    .col(big_integer(LedgerEntries::ProgramId))
                    .col(big_integer(LedgerEntries::MemberId))
                    .col(string_len(LedgerEntries::Account, 16))
                    .col(
                        big_integer(LedgerEntries::AmountMinor)
                            .check(Expr::col(LedgerEntries::AmountMinor).ne(0)),
                    )
                    .col(
                        string_len(LedgerEntries::Kind, 16)
                            .check(Expr::col(LedgerEntries::Kind).is_in([
                                "EARN", "SPEND", "EXPIRE", "REFUND", "REVERSAL", "ADJUST",
                            ])),
                    )
                    .col(string_len_null(LedgerEntries::Source, 64))
                    .col(string_len_null(LedgerEntries::Purpose, 64))
                    .col(string_len_null(LedgerEntries::RefType, 32))
                    .col(string_len_null(LedgerEntries::RefId, 200))
                    .col(big_integer_null(LedgerEntries::RuleId))
                    .col(big_integer_null(LedgerEntries::RulesetVersion))
                    .col(string_len_null(LedgerEntries::IdempotencyKey, 300))
                    .col(big_integer_null(LedgerEntries::ReversesId))
                    .col(timestamp_with_time_zone_null(LedgerEntries::ExpiresAt))
                    .col(
                        big_integer_null(LedgerEntries::RemainingMinor).check(
                            Expr::col(LedgerEntries::RemainingMinor)
                                .is_null()
                                .or(Expr::col(LedgerEntries::RemainingMinor).gte(0).and(
                                    Expr::col(LedgerEntries::RemainingMinor)
                                        .lte(Expr::col(LedgerEntries::AmountMinor)),
                                )),
                        ),
                    )
                    .col(big_integer(LedgerEntries::MemberVersion))
                    .col(text_null(LedgerEntries::Note))
                    .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_ledger_program",
                        (LedgerEntries::Table, LedgerEntries::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_member",
                        (LedgerEntries::Table, LedgerEntries::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_ledger_reverses",
                        (LedgerEntries::Table, LedgerEntries::ReversesId),
                        (LedgerEntries::Table, LedgerEntries::Id),
                    ))
                    .take(),
            )
            .await?;
        for (name, cols, unique) in [
            (
                "ux_ledger_program_key",
                &["program_id", "idempotency_key"][..],
                true,
            ),
            (
                "ux_ledger_member_version",
                &["member_id", "member_version"][..],
                true,
            ),
            (
                "ix_ledger_member_rule",
                &["member_id", "rule_id", "created_at"][..],
                false,
            ),
            (
                "ix_ledger_member_lots",
                &["member_id", "account", "expires_at"][..],
                false,
            ),
            (
                "ix_ledger_program_created",
                &["program_id", "created_at"][..],
                false,
            ),
        ] {
            manager
                .create_index(index(name, LedgerEntries::Table, cols, unique))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecords::Table)
                    .col(pk(IdempotencyRecords::Id))
                    .col(big_integer(IdempotencyRecords::ProgramId))
                    .col(string_len(IdempotencyRecords::Caller, 200))
                    .col(string_len(IdempotencyRecords::Key, 200))
                    .col(string_len(IdempotencyRecords::RequestHash, 64))
                    .col(text(IdempotencyRecords::Response))
                    .col(timestamp_with_time_zone(IdempotencyRecords::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_idempotency_program",
                        (IdempotencyRecords::Table, IdempotencyRecords::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_idempotency_scope",
                IdempotencyRecords::Table,
                &["program_id", "caller", "key"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_idempotency_created",
                IdempotencyRecords::Table,
                &["created_at"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EarningRules::Table)
                    .col(pk(EarningRules::Id))
                    .col(big_integer(EarningRules::ProgramId))
                    .col(string_len(EarningRules::Action, 64))
                    .col(string_len(EarningRules::Source, 64))
                    .col(string_len(EarningRules::Name, 200))
                    .col(string_len(EarningRules::RewardKind, 16))
                    .col(big_integer(EarningRules::PointsMinor).default(0))
                    .col(big_integer(EarningRules::PercentMinor).default(0))
                    .col(integer_null(EarningRules::LimitCount))
                    .col(string_len_null(EarningRules::LimitPeriod, 16))
                    .col(boolean(EarningRules::PerObject).default(false))
                    .col(big_integer_null(EarningRules::StreakStepMinor))
                    .col(big_integer_null(EarningRules::StreakCapMinor))
                    .col(timestamp_with_time_zone_null(EarningRules::ActiveFrom))
                    .col(timestamp_with_time_zone_null(EarningRules::ActiveTo))
                    .col(boolean(EarningRules::Enabled).default(true))
                    .col(timestamp_with_time_zone_null(EarningRules::DeletedAt))
                    .col(timestamp_with_time_zone(EarningRules::CreatedAt))
                    .col(timestamp_with_time_zone(EarningRules::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_rules_program",
                        (EarningRules::Table, EarningRules::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_rules_program",
                EarningRules::Table,
                &["program_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Rulesets::Table)
                    .col(pk(Rulesets::Id))
                    .col(big_integer(Rulesets::ProgramId))
                    .col(big_integer(Rulesets::Version))
                    .col(text(Rulesets::Rules))
                    .col(string_len(Rulesets::PublishedBy, 200))
                    .col(timestamp_with_time_zone(Rulesets::PublishedAt))
                    .foreign_key(&mut fk(
                        "fk_rulesets_program",
                        (Rulesets::Table, Rulesets::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_rulesets_program_version",
                Rulesets::Table,
                &["program_id", "version"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Purchases::Table)
                    .col(pk(Purchases::Id))
                    .col(big_integer(Purchases::ProgramId))
                    .col(big_integer(Purchases::MemberId))
                    .col(string_len(Purchases::OrderId, 200))
                    .col(
                        big_integer(Purchases::AmountMinor)
                            .check(Expr::col(Purchases::AmountMinor).gt(0)),
                    )
                    .col(
                        big_integer(Purchases::RefundedMinor).default(0).check(
                            Expr::col(Purchases::RefundedMinor).gte(0).and(
                                Expr::col(Purchases::RefundedMinor)
                                    .lte(Expr::col(Purchases::AmountMinor)),
                            ),
                        ),
                    )
                    .col(big_integer(Purchases::PointsMinor).default(0))
                    .col(big_integer(Purchases::ReversedMinor).default(0))
                    .col(big_integer(Purchases::UnrecoveredMinor).default(0))
                    .col(timestamp_with_time_zone(Purchases::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_purchases_program",
                        (Purchases::Table, Purchases::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_purchases_member",
                        (Purchases::Table, Purchases::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_purchases_program_order",
                Purchases::Table,
                &["program_id", "order_id"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(pk(Refunds::Id))
                    .col(big_integer(Refunds::ProgramId))
                    .col(big_integer(Refunds::PurchaseId))
                    .col(big_integer(Refunds::AmountMinor))
                    .col(big_integer(Refunds::PointsReversedMinor))
                    .col(big_integer(Refunds::PointsUnrecoveredMinor))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_refunds_program",
                        (Refunds::Table, Refunds::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_refunds_purchase",
                        (Refunds::Table, Refunds::PurchaseId),
                        (Purchases::Table, Purchases::Id),
                    ))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Refunds::Table.into_iden(),
            Purchases::Table.into_iden(),
            Rulesets::Table.into_iden(),
            EarningRules::Table.into_iden(),
            IdempotencyRecords::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            Balances::Table.into_iden(),
            Members::Table.into_iden(),
            Programs::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
