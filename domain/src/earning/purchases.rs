//! Purchases report money; the `purchase` rules turn it into points. Refunds reverse the
//! accrual in proportion to the refunded amount, and never drive a balance below zero: what
//! could not be clawed back is recorded on the purchase and the refund row.

use loyalty_entities::{purchases, refunds};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::actor::ServiceActor;
use crate::earning::actions::{outcome, Earned};
use crate::earning::rules::ActionRequest;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Posting, Tx};
use crate::money::{Money, Points};
use crate::service::Loyalty;

const MAX_ORDER_ID_LEN: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseOutcome {
    pub order_id: String,
    pub member_id: i64,
    pub amount: Money,
    pub points_awarded: Points,
    pub balance: Points,
    pub transactions: Vec<Posting>,
    /// Every rule that paid, in the order applied (absent from answers stored before it).
    #[serde(default)]
    pub rules: Vec<Earned>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOutcome {
    pub order_id: String,
    pub member_id: i64,
    pub refunded_amount: Money,
    pub total_refunded: Money,
    /// Points taken back by this refund.
    pub points_reversed: Points,
    /// Points this refund should have taken back but the balance no longer held.
    pub points_unrecovered: Points,
    pub balance: Points,
    pub transaction: Option<Posting>,
}

fn validate_order_id(order_id: &str) -> DomainResult<&str> {
    let order_id = order_id.trim();
    if order_id.is_empty() || order_id.len() > MAX_ORDER_ID_LEN {
        return Err(DomainError::validation(format!(
            "orderId must be 1–{MAX_ORDER_ID_LEN} characters"
        )));
    }
    Ok(order_id)
}

#[derive(Clone, Serialize)]
struct PurchaseOp {
    member_id: i64,
    order_id: String,
    amount: Money,
    #[serde(skip)]
    key: IdempotencyKey,
    /// The rules and member facts come from the service, never through the transaction.
    #[serde(skip)]
    loyalty: Loyalty,
}

#[async_trait::async_trait]
impl Operation for PurchaseOp {
    type Output = PurchaseOutcome;
    const NAME: &'static str = "recordPurchase";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(&self.key)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<PurchaseOutcome> {
        let request = ActionRequest {
            action: "purchase".into(),
            object_id: None,
            amount: Some(self.amount),
            ..Default::default()
        };
        let award = self
            .loyalty
            .award(
                tx,
                &request,
                Some(&self.key),
                Some(("order", &self.order_id)),
            )
            .await?;
        crate::referrals::qualify_on_purchase(&self.loyalty, tx).await?;
        let outcome = outcome(tx, award).await?;
        // One purchase per order id: a second report (any key, any member) inserts nothing and
        // the accrual above is rolled back with the refusal.
        let inserted = purchases::Entity::insert(purchases::ActiveModel {
            program_id: Set(tx.program.id),
            member_id: Set(self.member_id),
            order_id: Set(self.order_id.clone()),
            amount_minor: Set(self.amount.minor()),
            refunded_minor: Set(0),
            points_minor: Set(outcome.points.minor()),
            reversed_minor: Set(0),
            unrecovered_minor: Set(0),
            created_at: Set(tx.now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([purchases::Column::ProgramId, purchases::Column::OrderId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx.txn)
        .await?;
        if inserted == 0 {
            return Err(TxError::Domain(DomainError::AlreadyClaimed(format!(
                "order `{}` was already recorded",
                self.order_id
            ))));
        }
        Ok(PurchaseOutcome {
            order_id: self.order_id.clone(),
            member_id: self.member_id,
            amount: self.amount,
            points_awarded: outcome.points,
            balance: outcome.balance,
            transactions: outcome.transactions,
            rules: outcome.rules,
        })
    }
}

#[derive(Clone, Serialize)]
struct RefundOp {
    member_id: i64,
    purchase_id: i64,
    amount: Money,
    #[serde(skip)]
    key: Option<IdempotencyKey>,
}

#[async_trait::async_trait]
impl Operation for RefundOp {
    type Output = RefundOutcome;
    const NAME: &'static str = "refundPurchase";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<RefundOutcome> {
        let purchase = self.purchase(tx).await?;
        let refunded_after = purchase.refunded_minor + self.amount.minor();
        let share = |total: i64| pro_rata(total, refunded_after, purchase.amount_minor);
        let target = share(purchase.points_minor)?;
        let due = Points::from_minor((target - purchase.reversed_minor).max(0));
        let order = OrderRows::read(tx, &purchase.order_id).await?;
        let posting = self.reverse_points(tx, &purchase, due, &order).await?;
        let reversed = posting.as_ref().map(|p| p.amount.abs()).unwrap_or_default();
        let unrecovered = Points::from_minor(due.minor() - reversed.minor());
        // Qualification credited for the order goes back in the same proportion (it is never
        // spent, so it is always there to take).
        let qualification_due = share(order.qualified)? - order.disqualified;
        self.reverse_qualification(tx, &purchase, qualification_due)
            .await?;
        let refund = Refunded {
            refunded_after,
            target,
            reversed,
            unrecovered,
        };
        self.record(tx, &purchase, &refund).await?;
        Ok(RefundOutcome {
            order_id: purchase.order_id,
            member_id: purchase.member_id,
            refunded_amount: self.amount,
            total_refunded: Money::from_minor(refunded_after),
            points_reversed: reversed,
            points_unrecovered: unrecovered,
            balance: tx.balance(Account::Points).await?,
            transaction: posting,
        })
    }
}

/// `total` in the proportion of the order refunded so far: a cumulative target, so partial
/// refunds add up to exactly `total` on a full refund.
fn pro_rata(total: i64, refunded_minor: i64, amount_minor: i64) -> TxResult<i64> {
    if refunded_minor == amount_minor {
        return Ok(total);
    }
    let share = Points::from_minor(total).decimal() * Decimal::from(refunded_minor)
        / Decimal::from(amount_minor);
    Ok(Points::round_from(share)?.minor())
}

/// What one refund moved, recorded on the purchase and the refund row.
struct Refunded {
    refunded_after: i64,
    /// Points the refunds so far should have taken back in total.
    target: i64,
    reversed: Points,
    unrecovered: Points,
}

/// The ledger rows of an order: its accrual lots and the qualification it credited and
/// already took back.
struct OrderRows {
    accrual_lots: Vec<i64>,
    qualified: i64,
    disqualified: i64,
}

impl OrderRows {
    async fn read(tx: &Tx<'_>, order_id: &str) -> TxResult<OrderRows> {
        use loyalty_entities::ledger_entries as le;
        let rows = le::Entity::find()
            .filter(le::Column::MemberId.eq(tx.member.id))
            .filter(le::Column::RefType.eq("order"))
            .filter(le::Column::RefId.eq(order_id))
            .all(tx.txn)
            .await?;
        let of = |account: Account, kind: Kind| {
            rows.iter()
                .filter(move |r| r.account == account.as_str() && r.kind == kind.as_str())
        };
        Ok(OrderRows {
            accrual_lots: of(Account::Points, Kind::Earn).map(|r| r.id).collect(),
            qualified: of(Account::Qualification, Kind::Earn)
                .map(|r| r.amount_minor)
                .sum(),
            disqualified: -of(Account::Qualification, Kind::Reversal)
                .map(|r| r.amount_minor)
                .sum::<i64>(),
        })
    }
}

impl RefundOp {
    /// The purchase, checked to still hold `amount` to refund. Purchases change only under
    /// their member's lock, so this read is current.
    async fn purchase(&self, tx: &Tx<'_>) -> TxResult<purchases::Model> {
        let purchase = purchases::Entity::find_by_id(self.purchase_id)
            .one(tx.txn)
            .await?
            .ok_or_else(|| DomainError::not_found("order not found"))?;
        let refundable = purchase.amount_minor - purchase.refunded_minor;
        if self.amount.minor() > refundable {
            return Err(TxError::Domain(DomainError::validation(format!(
                "refund {} exceeds the refundable {}",
                self.amount.decimal(),
                Money::from_minor(refundable).decimal()
            ))));
        }
        Ok(purchase)
    }

    /// Takes back `due` points from the order's own lots first, as far as the balance allows.
    async fn reverse_points(
        &self,
        tx: &mut Tx<'_>,
        purchase: &purchases::Model,
        due: Points,
        order: &OrderRows,
    ) -> TxResult<Option<Posting>> {
        if !due.is_positive() {
            return Ok(None);
        }
        let mut entry = Entry::new(Account::Points, Kind::Reversal, due)
            .label("purchase")
            .reference("order", purchase.order_id.clone())
            .note(format!("refund of {}", self.amount.decimal()))
            .key(self.key.as_ref().map(|k| k.ledger_key(0)));
        entry.reverses = order.accrual_lots.first().copied();
        tx.debit(entry, true, &order.accrual_lots).await
    }

    async fn reverse_qualification(
        &self,
        tx: &mut Tx<'_>,
        purchase: &purchases::Model,
        due_minor: i64,
    ) -> TxResult<()> {
        if due_minor <= 0 {
            return Ok(());
        }
        let entry = Entry::new(
            Account::Qualification,
            Kind::Reversal,
            Points::from_minor(due_minor),
        )
        .label("purchase")
        .reference("order", purchase.order_id.clone())
        .key(self.key.as_ref().map(|k| format!("{}:q", k.ledger_key(0))));
        tx.debit(entry, true, &[]).await?;
        Ok(())
    }

    /// Records the refund on the purchase and as a refund row.
    async fn record(
        &self,
        tx: &Tx<'_>,
        purchase: &purchases::Model,
        refund: &Refunded,
    ) -> TxResult<()> {
        purchases::Entity::update_many()
            .col_expr(
                purchases::Column::RefundedMinor,
                Expr::value(refund.refunded_after),
            )
            .col_expr(
                purchases::Column::ReversedMinor,
                Expr::value(refund.target.max(purchase.reversed_minor)),
            )
            .col_expr(
                purchases::Column::UnrecoveredMinor,
                Expr::col(purchases::Column::UnrecoveredMinor).add(refund.unrecovered.minor()),
            )
            .filter(purchases::Column::Id.eq(purchase.id))
            .exec(tx.txn)
            .await?;
        refunds::Entity::insert(refunds::ActiveModel {
            program_id: Set(tx.program.id),
            purchase_id: Set(purchase.id),
            amount_minor: Set(self.amount.minor()),
            points_reversed_minor: Set(refund.reversed.minor()),
            points_unrecovered_minor: Set(refund.unrecovered.minor()),
            created_at: Set(tx.now),
            ..Default::default()
        })
        .exec_without_returning(tx.txn)
        .await?;
        Ok(())
    }
}

impl Loyalty {
    pub async fn record_purchase(
        &self,
        actor: &ServiceActor,
        member_external_id: &str,
        order_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> DomainResult<PurchaseOutcome> {
        let order_id = validate_order_id(order_id)?;
        let amount = Money::parse(amount, "amount")?;
        if amount.minor() <= 0 {
            return Err(DomainError::validation("amount must be positive"));
        }
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let member_id = self
            .find_or_join(&program, member_external_id, None, false, None)
            .await?
            .0;
        let op = PurchaseOp {
            member_id,
            order_id: order_id.to_owned(),
            amount,
            key,
            loyalty: self.clone(),
        };
        self.execute(&program, &op).await
    }

    /// Refunds `amount` of an order. Without an idempotency key every call is a new refund
    /// (bounded by the order's amount); send one so retries are safe.
    pub async fn refund_purchase(
        &self,
        actor: &ServiceActor,
        order_id: &str,
        amount: Decimal,
        idempotency_key: Option<&str>,
    ) -> DomainResult<RefundOutcome> {
        let order_id = validate_order_id(order_id)?;
        let amount = Money::parse(amount, "amount")?;
        if amount.minor() <= 0 {
            return Err(DomainError::validation("amount must be positive"));
        }
        let key = IdempotencyKey::optional(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let purchase = purchases::Entity::find()
            .filter(purchases::Column::ProgramId.eq(program.id))
            .filter(purchases::Column::OrderId.eq(order_id))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("order `{order_id}` not found")))?;
        let op = RefundOp {
            member_id: purchase.member_id,
            purchase_id: purchase.id,
            amount,
            key,
        };
        self.execute(&program, &op).await
    }
}

#[cfg(test)]
mod tests {
    use super::pro_rata;

    #[test]
    fn partial_refunds_add_up_to_the_whole() {
        // 10.00 points on a 3.00 order refunded a third at a time.
        let steps: Vec<i64> = [100, 200, 300]
            .iter()
            .map(|refunded| pro_rata(1000, *refunded, 300).unwrap())
            .collect();
        assert_eq!(steps, [333, 667, 1000]);
        assert_eq!(pro_rata(7, 300, 300).unwrap(), 7);
        assert_eq!(pro_rata(0, 100, 300).unwrap(), 0);
    }
}
