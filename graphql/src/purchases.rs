//! Service operations: `recordPurchase`, `refundPurchase`.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use loyalty_domain::{Loyalty, ServiceActor};
use rust_decimal::Decimal;

use crate::earning::{paid_rules, PaidRule};
use crate::error::{authorize, IntoGql};
use crate::types::{transactions, Transaction};

#[derive(InputObject)]
pub struct RecordPurchaseInput {
    pub member_external_id: String,
    pub order_id: String,
    /// Money, two fraction digits at most.
    pub amount: Decimal,
    pub idempotency_key: String,
}

#[derive(SimpleObject)]
pub struct PurchaseResult {
    pub order_id: String,
    pub amount: Decimal,
    pub points_awarded: Decimal,
    pub balance: Decimal,
    pub transaction: Option<Transaction>,
    pub transactions: Vec<Transaction>,
    /// Every rule that paid (points or free spins), in the order applied.
    pub rules: Vec<PaidRule>,
}

#[derive(SimpleObject)]
pub struct RefundResult {
    pub order_id: String,
    pub refunded_amount: Decimal,
    pub total_refunded: Decimal,
    /// Points taken back by this refund.
    pub points_reversed: Decimal,
    /// Points due back that the balance no longer held (already spent).
    pub points_unrecovered: Decimal,
    pub balance: Decimal,
    pub transaction: Option<Transaction>,
}

#[derive(Default)]
pub struct PurchaseMutation;

#[Object]
impl PurchaseMutation {
    /// Reports a purchase; the `purchase` rules accrue points on it.
    async fn record_purchase(
        &self,
        ctx: &Context<'_>,
        input: RecordPurchaseInput,
    ) -> async_graphql::Result<PurchaseResult> {
        let actor = &authorize::<ServiceActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let o = loyalty
            .record_purchase(
                actor,
                &input.member_external_id,
                &input.order_id,
                input.amount,
                &input.idempotency_key,
            )
            .await
            .gql(ctx)?;
        let transactions = transactions(o.transactions);
        Ok(PurchaseResult {
            order_id: o.order_id,
            amount: o.amount.decimal(),
            points_awarded: o.points_awarded.decimal(),
            balance: o.balance.decimal(),
            transaction: transactions.first().cloned(),
            transactions,
            rules: paid_rules(o.rules),
        })
    }

    /// Refunds part or all of an order and reverses its accrual proportionally. Send an
    /// `idempotencyKey` so a retried refund is not applied twice.
    async fn refund_purchase(
        &self,
        ctx: &Context<'_>,
        order_id: String,
        amount: Decimal,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<RefundResult> {
        let actor = &authorize::<ServiceActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let o = loyalty
            .refund_purchase(actor, &order_id, amount, idempotency_key.as_deref())
            .await
            .gql(ctx)?;
        Ok(RefundResult {
            order_id: o.order_id,
            refunded_amount: o.refunded_amount.decimal(),
            total_refunded: o.total_refunded.decimal(),
            points_reversed: o.points_reversed.decimal(),
            points_unrecovered: o.points_unrecovered.decimal(),
            balance: o.balance.decimal(),
            transaction: o.transaction.map(Transaction::from),
        })
    }
}
