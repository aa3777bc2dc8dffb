//! The report sections merchants from Altcraft and Maestra look for (issue 12).
//!
//! - `guest_orders` / `guest_refunds`: orders of customers who are not members (coverage and the
//!   non-member average order value need them). They never touch the ledger.
//! - `voucher_uses`: one row per voucher consumed at checkout, so the average discount folds
//!   like everything else (a voucher row itself is updated in place, which a watermark by id
//!   cannot follow).
//! - `report_member_spans`: who did what on which local day, as bitmaps over spans of 384 days
//!   (six 64-bit words), each row holding its span's days (`l0..l5`) and the next span's
//!   (`h0..h5`). Any report window (at most 366 days) lies inside one span and the next, so a
//!   distinct count of members — active, buying, reached by a campaign — is one bit test over
//!   one row per member, for a 30-day window and for a 365-day one alike. It replaces
//!   `report_member_blocks` (64-day blocks: longer windows counted distinct member-days) and
//!   `report_member_days`.
//!
//! The folder starts again from the first row (the report stays exact meanwhile: it reads the
//! unfolded tail).

use sea_orm_migration::{prelude::*, schema::*};

use crate::util::{fk, index, pk};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GuestOrders {
    Table,
    Id,
    ProgramId,
    OrderId,
    CustomerId,
    AmountMinor,
    RefundedMinor,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GuestRefunds {
    Table,
    Id,
    ProgramId,
    GuestOrderId,
    AmountMinor,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum VoucherUses {
    Table,
    Id,
    ProgramId,
    VoucherId,
    MemberId,
    Origin,
    ValueMinor,
    OrderId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ReportMemberSpans {
    Table,
    ProgramId,
    What,
    Span,
    MemberId,
}

#[derive(DeriveIden)]
enum Programs {
    Table,
    Id,
}

/// The words of a span row: the span's own days, then the next span's.
pub const SPAN_WORDS: [&str; 12] = [
    "l0", "l1", "l2", "l3", "l4", "l5", "h0", "h1", "h2", "h3", "h4", "h5",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GuestOrders::Table)
                    .col(pk(GuestOrders::Id))
                    .col(big_integer(GuestOrders::ProgramId))
                    .col(string_len(GuestOrders::OrderId, 200))
                    .col(string_len_null(GuestOrders::CustomerId, 200))
                    .col(
                        big_integer(GuestOrders::AmountMinor)
                            .check(Expr::col(GuestOrders::AmountMinor).gt(0)),
                    )
                    .col(
                        big_integer(GuestOrders::RefundedMinor).default(0).check(
                            Expr::col(GuestOrders::RefundedMinor).gte(0).and(
                                Expr::col(GuestOrders::RefundedMinor)
                                    .lte(Expr::col(GuestOrders::AmountMinor)),
                            ),
                        ),
                    )
                    .col(string_len(GuestOrders::IdempotencyKey, 200))
                    .col(timestamp_with_time_zone(GuestOrders::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_guest_orders_program",
                        (GuestOrders::Table, GuestOrders::ProgramId),
                        (Programs::Table, Programs::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_guest_orders_program_order",
                GuestOrders::Table,
                &["program_id", "order_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ux_guest_orders_program_key",
                GuestOrders::Table,
                &["program_id", "idempotency_key"],
                true,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(GuestRefunds::Table)
                    .col(pk(GuestRefunds::Id))
                    .col(big_integer(GuestRefunds::ProgramId))
                    .col(big_integer(GuestRefunds::GuestOrderId))
                    .col(
                        big_integer(GuestRefunds::AmountMinor)
                            .check(Expr::col(GuestRefunds::AmountMinor).gt(0)),
                    )
                    .col(string_len_null(GuestRefunds::IdempotencyKey, 200))
                    .col(timestamp_with_time_zone(GuestRefunds::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_guest_refunds_order",
                        (GuestRefunds::Table, GuestRefunds::GuestOrderId),
                        (GuestOrders::Table, GuestOrders::Id),
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_guest_refunds_program_key",
                GuestRefunds::Table,
                &["program_id", "idempotency_key"],
                true,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VoucherUses::Table)
                    .col(pk(VoucherUses::Id))
                    .col(big_integer(VoucherUses::ProgramId))
                    .col(big_integer(VoucherUses::VoucherId).unique_key())
                    .col(big_integer(VoucherUses::MemberId))
                    .col(string_len(VoucherUses::Origin, 16))
                    .col(big_integer(VoucherUses::ValueMinor))
                    .col(string_len(VoucherUses::OrderId, 200))
                    .col(timestamp_with_time_zone(VoucherUses::CreatedAt))
                    .take(),
            )
            .await?;

        // The folder asks, for each purchase, whether the member bought before (acquisition:
        // members with a purchase); one index probe instead of a scan of the member's orders.
        manager
            .create_index(index(
                "ix_purchases_member",
                Alias::new("purchases"),
                &["member_id", "id"],
                false,
            ))
            .await?;

        let mut spans = Table::create();
        spans
            .table(ReportMemberSpans::Table)
            .col(big_integer(ReportMemberSpans::ProgramId))
            .col(string_len(ReportMemberSpans::What, 24))
            .col(integer(ReportMemberSpans::Span))
            .col(big_integer(ReportMemberSpans::MemberId));
        for word in SPAN_WORDS {
            spans.col(big_integer(Alias::new(word)).default(0));
        }
        spans.primary_key(
            Index::create()
                .col(ReportMemberSpans::ProgramId)
                .col(ReportMemberSpans::What)
                .col(ReportMemberSpans::Span)
                .col(ReportMemberSpans::MemberId),
        );
        manager.create_table(spans.take()).await?;

        let conn = manager.get_connection();
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // The folder ORs bits into rows it wrote before. With room left on each page those
            // updates are heap-only (the key never changes), so old versions are pruned as pages
            // are read and the table stays compact without waiting for VACUUM.
            conn.execute_unprepared("ALTER TABLE report_member_spans SET (fillfactor = 50)")
                .await?;
        }
        for table in ["report_member_blocks", "report_member_days"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        for statement in [
            "DELETE FROM report_daily",
            "DELETE FROM report_programs",
            "UPDATE report_watermarks SET last_id = 0",
            "INSERT INTO report_watermarks (name, last_id) VALUES ('guest_orders', 0), \
             ('guest_refunds', 0), ('voucher_uses', 0)",
        ] {
            conn.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "migration 015 dropped the 64-day activity blocks; restore from a backup".into(),
        ))
    }
}
