//! Service operations: `recordPurchase`, `refundPurchase`.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use loyalty_domain::earning::purchases::RefundLineInput as DomainRefundLine;
use loyalty_domain::earning::purchases::{
    Buyer, OrderOutcome, PurchaseLineInput as DomainLine, RefundBy,
};
use loyalty_domain::money::{Money, Points};
use loyalty_domain::{Loyalty, ServiceActor};
use rust_decimal::Decimal;

use crate::earning::{paid_rules, reason, ActionReason, PaidRule};
use crate::error::{authorize, IntoGql};
use crate::types::{transactions, Transaction};

#[derive(InputObject)]
pub struct RecordPurchaseInput {
    /// The customer's id in the program. Null: a non-member's order (counted in the report's
    /// totals, never earning points).
    pub member_external_id: Option<String>,
    /// Whether a customer the program does not know joins it with this order (the default).
    /// `false`: a known member's order is theirs, anyone else's is a non-member's order.
    #[graphql(default = true)]
    pub join_program: bool,
    pub order_id: String,
    /// Money, two fraction digits at most.
    pub amount: Decimal,
    pub idempotency_key: String,
    /// The order's lines (at most 200). When given, Σ quantity × unitPrice must equal `amount`.
    /// A line refund names them by their 1-based position in this list.
    pub lines: Option<Vec<PurchaseLineInput>>,
}

/// One order line.
#[derive(InputObject)]
pub struct PurchaseLineInput {
    /// 1–64 characters.
    pub sku: String,
    /// 1–64 characters.
    pub category: Option<String>,
    /// 1 to 1,000,000.
    pub quantity: i32,
    /// Money, two fraction digits at most, not negative.
    pub unit_price: Decimal,
}

/// Units of one line of the order to refund.
#[derive(InputObject)]
pub struct RefundLineInput {
    /// The line's 1-based position in `recordPurchase`'s `lines`.
    pub line_number: i32,
    pub quantity: i32,
}

#[derive(SimpleObject)]
pub struct PurchaseResult {
    pub order_id: String,
    /// False for a non-member's order: no member, no points (`reason: NOT_A_MEMBER`).
    pub member_order: bool,
    pub amount: Decimal,
    pub points_awarded: Decimal,
    pub balance: Decimal,
    pub transaction: Option<Transaction>,
    pub transactions: Vec<Transaction>,
    /// Every rule that paid (points or free spins), in the order applied.
    pub rules: Vec<PaidRule>,
    /// Whether any rule paid (points or free spins).
    pub awarded: bool,
    /// Why no rule paid (the order is recorded either way); null when one did.
    pub reason: Option<ActionReason>,
    /// The explanation of `reason` when a rule gave one.
    pub detail: Option<String>,
}

#[derive(SimpleObject)]
pub struct RefundResult {
    pub order_id: String,
    /// False for a non-member's order (nothing to reverse).
    pub member_order: bool,
    pub refunded_amount: Decimal,
    pub total_refunded: Decimal,
    /// Points taken back by this refund.
    pub points_reversed: Decimal,
    /// Points due back that the balance no longer held (already spent).
    pub points_unrecovered: Decimal,
    pub balance: Decimal,
    /// The first reversal.
    pub transaction: Option<Transaction>,
    /// One reversal per paid rule this refund took points back from (with its source).
    pub transactions: Vec<Transaction>,
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
        let lines: Option<Vec<DomainLine>> = input.lines.map(|lines| {
            lines
                .into_iter()
                .map(|line| DomainLine {
                    sku: line.sku,
                    category: line.category,
                    quantity: i64::from(line.quantity),
                    unit_price: line.unit_price,
                })
                .collect()
        });
        let buyer = match (&input.member_external_id, input.join_program) {
            (Some(id), true) => Buyer::Member(id),
            (Some(id), false) => Buyer::Customer(id),
            (None, _) => Buyer::Anonymous,
        };
        let o = match loyalty
            .record_order(
                actor,
                buyer,
                &input.order_id,
                input.amount,
                lines.as_deref(),
                &input.idempotency_key,
            )
            .await
            .gql(ctx)?
        {
            OrderOutcome::Member(o) => o,
            OrderOutcome::NonMember(order) => {
                return Ok(PurchaseResult {
                    order_id: order.order_id,
                    member_order: false,
                    amount: Money::from_minor(order.amount_minor).decimal(),
                    points_awarded: Points::ZERO.decimal(),
                    balance: Points::ZERO.decimal(),
                    transaction: None,
                    transactions: Vec::new(),
                    awarded: false,
                    reason: Some(ActionReason::NotAMember),
                    detail: None,
                    rules: Vec::new(),
                })
            }
        };
        let transactions = transactions(o.transactions);
        Ok(PurchaseResult {
            order_id: o.order_id,
            member_order: true,
            amount: o.amount.decimal(),
            points_awarded: o.points_awarded.decimal(),
            balance: o.balance.decimal(),
            transaction: transactions.first().cloned(),
            transactions,
            awarded: !o.rules.is_empty(),
            reason: o.reason.map(reason),
            detail: o.detail,
            rules: paid_rules(o.rules),
        })
    }

    /// Refunds part or all of an order, by `amount` or by `lines` (exactly one of them), and
    /// reverses the accrual: a paid rule computed on some lines in proportion of what is
    /// refunded of those lines, the others in proportion of the order. Send an
    /// `idempotencyKey` so a retried refund is not applied twice.
    async fn refund_purchase(
        &self,
        ctx: &Context<'_>,
        order_id: String,
        amount: Option<Decimal>,
        lines: Option<Vec<RefundLineInput>>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<RefundResult> {
        let actor = &authorize::<ServiceActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let lines = lines.map(|lines| {
            lines
                .into_iter()
                .map(|line| DomainRefundLine {
                    line_number: i64::from(line.line_number),
                    quantity: i64::from(line.quantity),
                })
                .collect()
        });
        let refund = RefundBy::one_of(amount, lines).gql(ctx)?;
        let o = loyalty
            .refund_purchase_with(actor, &order_id, refund, idempotency_key.as_deref())
            .await
            .gql(ctx)?;
        // A refund answered from before `transactions` existed has only `transaction`.
        let mut postings = o.transactions;
        if postings.is_empty() {
            postings.extend(o.transaction.clone());
        }
        Ok(RefundResult {
            order_id: o.order_id,
            member_order: !o.non_member,
            refunded_amount: o.refunded_amount.decimal(),
            total_refunded: o.total_refunded.decimal(),
            points_reversed: o.points_reversed.decimal(),
            points_unrecovered: o.points_unrecovered.decimal(),
            balance: o.balance.decimal(),
            transaction: o.transaction.map(Transaction::from),
            transactions: transactions(postings),
        })
    }
}
