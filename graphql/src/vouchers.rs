//! Discount vouchers: `redeemDiscount`, `myVouchers` and the checkout's `consumeVoucher`.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::spending::vouchers::{
    DiscountOutcome, Voucher as DVoucher, VoucherOrigin as DOrigin, VoucherStatus as DStatus,
};
use loyalty_domain::{Loyalty, MemberActor, ServiceActor};
use rust_decimal::Decimal;

use crate::error::{authorize, IntoGql};
use crate::gifts::cursor;
use crate::members::page_size;
use crate::types::Transaction;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum VoucherStatus {
    Active,
    Used,
    /// Not used before `expiresAt`.
    Expired,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum VoucherOrigin {
    /// Bought with points (`redeemDiscount`).
    Discount,
    /// Won on the lucky wheel.
    Wheel,
}

/// A discount voucher: `value` off an order in `currency`, once, before `expiresAt`.
#[derive(SimpleObject)]
pub struct Voucher {
    pub id: ID,
    pub code: String,
    /// Money: points ÷ the program's points-per-currency ratio, rounded half to even.
    pub value: Decimal,
    pub currency: String,
    /// Points it cost (or was worth, for a wheel prize).
    pub points: Decimal,
    pub status: VoucherStatus,
    pub origin: VoucherOrigin,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<DVoucher> for Voucher {
    fn from(v: DVoucher) -> Self {
        Voucher {
            id: ID(v.id.to_string()),
            code: v.code,
            value: v.value.decimal(),
            currency: v.currency,
            points: v.points.decimal(),
            status: match v.status {
                DStatus::Active => VoucherStatus::Active,
                DStatus::Used => VoucherStatus::Used,
                DStatus::Expired => VoucherStatus::Expired,
            },
            origin: match v.origin {
                DOrigin::Discount => VoucherOrigin::Discount,
                DOrigin::Wheel => VoucherOrigin::Wheel,
            },
            expires_at: v.expires_at,
            used_at: v.used_at,
            order_id: v.order_id,
            created_at: v.created_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct RedeemDiscountResult {
    pub voucher: Voucher,
    /// Spendable balance after the debit.
    pub balance: Decimal,
    /// The SPEND posting (purpose `discount`).
    pub transaction: Transaction,
}

impl From<DiscountOutcome> for RedeemDiscountResult {
    fn from(o: DiscountOutcome) -> Self {
        RedeemDiscountResult {
            voucher: o.voucher.into(),
            balance: o.balance.decimal(),
            transaction: o.transaction.into(),
        }
    }
}

#[derive(Default)]
pub struct VoucherQuery;

#[Object]
impl VoucherQuery {
    /// The calling member's vouchers, newest first.
    #[graphql(complexity = "crate::members::page_complexity(first, child_complexity)")]
    async fn my_vouchers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Voucher, EmptyFields, EmptyFields>> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let first = page_size(first, ctx)?;
        let before = cursor(after, ctx)?;
        let (rows, has_next) = loyalty.my_vouchers(actor, first, before).await.gql(ctx)?;
        let mut connection = Connection::new(before.is_some(), has_next);
        connection.edges.extend(
            rows.into_iter()
                .map(|v| Edge::new(v.id.to_string(), Voucher::from(v))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct VoucherMutation;

#[Object]
impl VoucherMutation {
    /// Turns points into a voucher worth points ÷ the program's points-per-currency ratio.
    async fn redeem_discount(
        &self,
        ctx: &Context<'_>,
        points: Decimal,
        idempotency_key: String,
    ) -> async_graphql::Result<RedeemDiscountResult> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        loyalty
            .redeem_discount(actor, points, &idempotency_key)
            .await
            .gql(ctx)
            .map(RedeemDiscountResult::from)
    }

    /// Service (checkout): uses a voucher for an order, once. Used → `ALREADY_CLAIMED`,
    /// expired → `VALIDATION`, unknown → `NOT_FOUND`.
    async fn consume_voucher(
        &self,
        ctx: &Context<'_>,
        code: String,
        order_id: String,
    ) -> async_graphql::Result<Voucher> {
        let actor = &authorize::<ServiceActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        loyalty
            .consume_voucher(actor, &code, &order_id)
            .await
            .gql(ctx)
            .map(Voucher::from)
    }
}
