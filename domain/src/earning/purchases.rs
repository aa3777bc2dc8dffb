//! Purchases report money (and, optionally, their lines); the `purchase` rules turn it into
//! points. Refunds (of an amount or of lines) reverse each paid rule's accrual in proportion to
//! what they give back of it (`lines.rs`), and never drive a balance below zero: what could not
//! be clawed back is recorded on the purchase and the refund row.

pub mod guests;
pub mod lines;

use loyalty_entities::{purchase_lines, purchases, refunds};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};

use crate::actor::ServiceActor;
use crate::earning::actions::{outcome, Earned};
use crate::earning::rules::{ActionRequest, Refusal};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{retry, run_detached, HistoryQuery, MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Posting, Tx};
use crate::money::{Money, Points};
use crate::program::Program;
use crate::service::Loyalty;

use lines::{Accrual, LineRefund, LineState, OrderAfter, OrderLine};
pub use lines::{PurchaseLineInput, RefundBy, RefundLineInput, MAX_LINES, MAX_LINE_QUANTITY};

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
    /// Why no rule paid (`None` when one did; absent from answers stored before it).
    #[serde(default)]
    pub reason: Option<Refusal>,
    #[serde(default)]
    pub detail: Option<String>,
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
    /// The first reversal (`transactions[0]`).
    pub transaction: Option<Posting>,
    /// One reversal per accrual this refund took points back from, with its rule's source.
    #[serde(default)]
    pub transactions: Vec<Posting>,
    /// A non-member's order: no member, no points.
    #[serde(default)]
    pub non_member: bool,
}

/// Who placed an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buyer<'a> {
    /// A member, by external id; a customer the program does not know yet joins it.
    Member(&'a str),
    /// A customer who joins only if already a member (`joinProgram: false`): a known member's
    /// order is theirs, anyone else's is a non-member's order.
    Customer(&'a str),
    /// No customer id: a non-member's order.
    Anonymous,
}

/// A recorded order: a member's (with what it paid) or a non-member's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderOutcome {
    Member(PurchaseOutcome),
    NonMember(guests::GuestOrder),
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
    /// Left out of the serialized form when empty, so a purchase without lines is the same
    /// request as before lines existed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lines: Vec<OrderLine>,
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

    fn history(
        &self,
        program: &Program,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<HistoryQuery> {
        self.loyalty.history_for(program, "purchase", None, now)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<PurchaseOutcome> {
        let request = ActionRequest {
            action: "purchase".into(),
            object_id: None,
            amount: Some(self.amount),
            lines: self.lines.iter().map(OrderLine::to_line).collect(),
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
        let accruals = accruals_of(&outcome.rules);
        let accruals = serde_json::to_string(&accruals).map_err(DomainError::internal)?;
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
            accruals: Set(Some(accruals)),
            created_at: Set(tx.now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([purchases::Column::ProgramId, purchases::Column::OrderId])
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning(tx.txn)
        .await;
        let purchase = match inserted {
            Ok(purchase) => purchase,
            Err(DbErr::RecordNotFound(_) | DbErr::RecordNotInserted) => {
                return Err(TxError::Domain(DomainError::AlreadyClaimed(format!(
                    "order `{}` was already recorded",
                    self.order_id
                ))))
            }
            Err(err) => return Err(err.into()),
        };
        if !self.lines.is_empty() {
            let rows =
                self.lines
                    .iter()
                    .zip(1..)
                    .map(|(line, number)| purchase_lines::ActiveModel {
                        purchase_id: Set(purchase.id),
                        line_number: Set(number),
                        sku: Set(line.sku.clone()),
                        category: Set(line.category.clone()),
                        quantity: Set(i64::from(line.quantity)),
                        unit_price_minor: Set(line.unit_price.minor()),
                        refunded_quantity: Set(0),
                    });
            purchase_lines::Entity::insert_many(rows)
                .exec_without_returning(tx.txn)
                .await?;
        }
        Ok(PurchaseOutcome {
            order_id: self.order_id.clone(),
            member_id: self.member_id,
            amount: self.amount,
            points_awarded: outcome.points,
            balance: outcome.balance,
            transactions: outcome.transactions,
            rules: outcome.rules,
            reason: outcome.reason,
            detail: outcome.detail,
        })
    }
}

/// What refunds need of every rule that paid points (free spins are not reversed).
fn accruals_of(earned: &[Earned]) -> Vec<Accrual> {
    earned
        .iter()
        .filter(|earned| earned.points.is_positive())
        .filter_map(|earned| {
            Some(Accrual {
                entry: earned.entry_id?,
                points: earned.points.minor(),
                qualifying: earned.qualifying,
                lines: earned.lines.clone(),
                reversed: 0,
            })
        })
        .collect()
}

#[derive(Clone, Serialize)]
struct RefundOp {
    member_id: i64,
    purchase_id: i64,
    /// `None` for a refund of lines (its amount follows from them).
    amount: Option<Money>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lines: Vec<LineRefund>,
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
        let order = OrderRows::read(tx, &purchase.order_id).await?;
        let mut accruals = Accruals::of(&purchase, &order)?;
        let needs_lines = !self.lines.is_empty() || accruals.on_lines();
        let mut order_lines = if needs_lines {
            OrderLines::read(tx, purchase.id).await?
        } else {
            OrderLines::default()
        };
        let amount = match self.amount {
            Some(amount) => amount,
            None => order_lines.refund(&purchase, &self.lines)?,
        };
        let refunded_after = purchase.refunded_minor + amount.minor();
        let after = OrderAfter {
            amount_minor: purchase.amount_minor,
            refunded_minor: refunded_after,
            lines: &order_lines.states,
        };
        let mut postings = Vec::new();
        let mut due_total = 0;
        let mut qualification_target = 0;
        for accrual in &mut accruals.list {
            let scope = accrual.stored.lines.as_deref();
            qualification_target += lines::target(accrual.qualified, scope, &after);
            let target = lines::target(accrual.stored.points, scope, &after);
            let due = (target - accrual.stored.reversed).max(0);
            accrual.stored.reversed = accrual.stored.reversed.max(target);
            if due == 0 {
                continue;
            }
            due_total += due;
            let mut entry = Entry::new(Account::Points, Kind::Reversal, Points::from_minor(due))
                .label(accrual.source.clone())
                .reference("order", purchase.order_id.clone())
                .note(format!("refund of {}", amount.decimal()))
                .key(self.key.as_ref().map(|k| k.ledger_key(postings.len())));
            entry.reverses = accrual.reverses;
            if let Some(posting) = tx.debit(entry, true, &order.accrual_lots).await? {
                postings.push(posting);
            }
        }
        let reversed: i64 = postings.iter().map(|p| p.amount.minor().abs()).sum();
        let unrecovered = Points::from_minor(due_total - reversed);
        // Qualification credited for the order goes back in the same proportion (it is never
        // spent, so it is always there to take).
        self.reverse_qualification(tx, &purchase, qualification_target - order.disqualified)
            .await?;
        let refund = Refunded {
            amount,
            refunded_after,
            reversed_total: accruals.list.iter().map(|a| a.stored.reversed).sum(),
            reversed: Points::from_minor(reversed),
            unrecovered,
        };
        self.record(tx, &purchase, &refund, &accruals, &order_lines)
            .await?;
        crate::challenges::advance::take_back(
            tx,
            &purchase.order_id,
            purchase.amount_minor,
            (purchase.refunded_minor, refunded_after),
        )
        .await?;
        Ok(RefundOutcome {
            order_id: purchase.order_id,
            member_id: purchase.member_id,
            refunded_amount: amount,
            total_refunded: Money::from_minor(refunded_after),
            points_reversed: refund.reversed,
            points_unrecovered: unrecovered,
            balance: tx.balance(Account::Points).await?,
            transaction: postings.first().cloned(),
            transactions: postings,
            non_member: false,
        })
    }
}

/// What one refund moved, recorded on the purchase and the refund row.
struct Refunded {
    amount: Money,
    refunded_after: i64,
    /// Points the refunds so far should have taken back in total.
    reversed_total: i64,
    reversed: Points,
    unrecovered: Points,
}

/// The ledger rows of an order: its accrual lots (with their sources) and the qualification it
/// credited and already took back.
struct OrderRows {
    accrual_lots: Vec<i64>,
    sources: Vec<(i64, Option<String>)>,
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
            sources: of(Account::Points, Kind::Earn)
                .map(|r| (r.id, r.source.clone()))
                .collect(),
            qualified: of(Account::Qualification, Kind::Earn)
                .map(|r| r.amount_minor)
                .sum(),
            disqualified: -of(Account::Qualification, Kind::Reversal)
                .map(|r| r.amount_minor)
                .sum::<i64>(),
        })
    }

    fn source_of(&self, entry: i64) -> Option<String> {
        self.sources
            .iter()
            .find(|(id, _)| *id == entry)
            .and_then(|(_, source)| source.clone())
    }
}

/// One accrual with what a refund needs beside it.
struct OrderAccrual {
    stored: Accrual,
    /// The QUALIFICATION it credited.
    qualified: i64,
    /// The source its reversal carries (the report nets it out of that source).
    source: String,
    reverses: Option<i64>,
}

/// A purchase's accruals: as stored, or, for a purchase recorded before they were kept, the
/// whole order as one accrual (reversed exactly as refunds always did).
struct Accruals {
    list: Vec<OrderAccrual>,
    stored: bool,
}

impl Accruals {
    fn of(purchase: &purchases::Model, order: &OrderRows) -> TxResult<Accruals> {
        let Some(json) = &purchase.accruals else {
            let legacy = OrderAccrual {
                stored: Accrual {
                    entry: order.accrual_lots.first().copied().unwrap_or_default(),
                    points: purchase.points_minor,
                    qualifying: order.qualified > 0,
                    lines: None,
                    reversed: purchase.reversed_minor,
                },
                qualified: order.qualified,
                source: "purchase".to_owned(),
                reverses: order.accrual_lots.first().copied(),
            };
            return Ok(Accruals {
                list: vec![legacy],
                stored: false,
            });
        };
        let stored: Vec<Accrual> = serde_json::from_str(json).map_err(|err| {
            DomainError::internal(format!("purchases.accruals of {}: {err}", purchase.id))
        })?;
        let list = stored
            .into_iter()
            .map(|accrual| OrderAccrual {
                qualified: if accrual.qualifying {
                    accrual.points
                } else {
                    0
                },
                source: order
                    .source_of(accrual.entry)
                    .unwrap_or_else(|| "purchase".to_owned()),
                reverses: Some(accrual.entry),
                stored: accrual,
            })
            .collect();
        Ok(Accruals { list, stored: true })
    }

    /// Whether an accrual was computed on some lines only (its share needs the lines).
    fn on_lines(&self) -> bool {
        self.list.iter().any(|a| a.stored.lines.is_some())
    }

    /// The JSON to store back (`None`: a purchase from before, which keeps none).
    fn json(&self) -> TxResult<Option<String>> {
        if !self.stored {
            return Ok(None);
        }
        let list: Vec<&Accrual> = self.list.iter().map(|a| &a.stored).collect();
        Ok(Some(
            serde_json::to_string(&list).map_err(DomainError::internal)?,
        ))
    }
}

/// An order's lines in line-number order, and the ones this refund changed.
#[derive(Default)]
struct OrderLines {
    states: Vec<LineState>,
    /// (line number, refunded quantity after this refund).
    changed: Vec<(i32, i64)>,
}

impl OrderLines {
    async fn read(tx: &Tx<'_>, purchase_id: i64) -> TxResult<OrderLines> {
        let states = purchase_lines::Entity::find()
            .filter(purchase_lines::Column::PurchaseId.eq(purchase_id))
            .order_by_asc(purchase_lines::Column::LineNumber)
            .all(tx.txn)
            .await?
            .into_iter()
            .map(|row| LineState {
                quantity: row.quantity,
                unit_price_minor: row.unit_price_minor,
                refunded_quantity: row.refunded_quantity,
            })
            .collect();
        Ok(OrderLines {
            states,
            changed: Vec::new(),
        })
    }

    /// Applies a refund of lines; returns the money it gives back.
    fn refund(&mut self, purchase: &purchases::Model, refund: &[LineRefund]) -> TxResult<Money> {
        let order = &purchase.order_id;
        if self.states.is_empty() {
            return Err(TxError::Domain(DomainError::validation(format!(
                "lines: order `{order}` was recorded without lines; refund an amount instead"
            ))));
        }
        if purchase.refunded_minor > lines::refunded_by_lines(&self.states) {
            return Err(TxError::Domain(DomainError::validation(format!(
                "lines: order `{order}` was already refunded by amount; refund the rest by amount"
            ))));
        }
        let amount = lines::apply_line_refund(order, &mut self.states, refund)?;
        for part in refund {
            let after = usize::try_from(part.line)
                .ok()
                .and_then(|line| line.checked_sub(1))
                .and_then(|index| self.states.get(index))
                .map(|state| state.refunded_quantity);
            if let (Ok(number), Some(after)) = (i32::try_from(part.line), after) {
                self.changed.push((number, after));
            }
        }
        Ok(amount)
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
        if let Some(amount) = self.amount.filter(|a| a.minor() > refundable) {
            return Err(TxError::Domain(DomainError::validation(format!(
                "refund {} exceeds the refundable {}",
                amount.decimal(),
                Money::from_minor(refundable).decimal()
            ))));
        }
        Ok(purchase)
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

    /// Records the refund on the purchase (and its lines) and as a refund row.
    async fn record(
        &self,
        tx: &Tx<'_>,
        purchase: &purchases::Model,
        refund: &Refunded,
        accruals: &Accruals,
        lines: &OrderLines,
    ) -> TxResult<()> {
        let mut update = purchases::Entity::update_many()
            .col_expr(
                purchases::Column::RefundedMinor,
                Expr::value(refund.refunded_after),
            )
            .col_expr(
                purchases::Column::ReversedMinor,
                Expr::value(refund.reversed_total),
            )
            .col_expr(
                purchases::Column::UnrecoveredMinor,
                Expr::col(purchases::Column::UnrecoveredMinor).add(refund.unrecovered.minor()),
            );
        if let Some(json) = accruals.json()? {
            update = update.col_expr(purchases::Column::Accruals, Expr::value(json));
        }
        update
            .filter(purchases::Column::Id.eq(purchase.id))
            .exec(tx.txn)
            .await?;
        for (number, refunded) in &lines.changed {
            purchase_lines::Entity::update_many()
                .col_expr(
                    purchase_lines::Column::RefundedQuantity,
                    Expr::value(*refunded),
                )
                .filter(purchase_lines::Column::PurchaseId.eq(purchase.id))
                .filter(purchase_lines::Column::LineNumber.eq(*number))
                .exec(tx.txn)
                .await?;
        }
        refunds::Entity::insert(refunds::ActiveModel {
            program_id: Set(tx.program.id),
            purchase_id: Set(purchase.id),
            amount_minor: Set(refund.amount.minor()),
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
    /// Records a purchase without lines (see [`Loyalty::record_purchase_with_lines`]).
    pub async fn record_purchase(
        &self,
        actor: &ServiceActor,
        member_external_id: &str,
        order_id: &str,
        amount: Decimal,
        idempotency_key: &str,
    ) -> DomainResult<PurchaseOutcome> {
        self.record_purchase_with_lines(
            actor,
            member_external_id,
            order_id,
            amount,
            None,
            idempotency_key,
        )
        .await
    }

    /// Records a purchase and pays what the live `purchase` rules say. `lines`, when given, must
    /// add up to `amount`; the rules' line conditions and `PercentOfLines` see them, and refunds
    /// may then name lines.
    pub async fn record_purchase_with_lines(
        &self,
        actor: &ServiceActor,
        member_external_id: &str,
        order_id: &str,
        amount: Decimal,
        lines: Option<&[PurchaseLineInput]>,
        idempotency_key: &str,
    ) -> DomainResult<PurchaseOutcome> {
        match self
            .record_order(
                actor,
                Buyer::Member(member_external_id),
                order_id,
                amount,
                lines,
                idempotency_key,
            )
            .await?
        {
            OrderOutcome::Member(outcome) => Ok(outcome),
            OrderOutcome::NonMember(_) => Err(DomainError::internal("a member's order was not")),
        }
    }

    /// Records an order of a member or of someone else (see [`Buyer`]). A non-member's order is
    /// kept for the report's totals only: it never posts points.
    pub async fn record_order(
        &self,
        actor: &ServiceActor,
        buyer: Buyer<'_>,
        order_id: &str,
        amount: Decimal,
        lines: Option<&[PurchaseLineInput]>,
        idempotency_key: &str,
    ) -> DomainResult<OrderOutcome> {
        let order_id = validate_order_id(order_id)?;
        let amount = Money::parse(amount, "amount")?;
        if amount.minor() <= 0 {
            return Err(DomainError::validation("amount must be positive"));
        }
        let lines = match lines {
            Some(lines) => lines::validate_lines(lines, amount)?,
            None => Vec::new(),
        };
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let member_id = match buyer {
            Buyer::Member(external_id) => {
                self.find_or_join(&program, external_id, None, false, None)
                    .await?
                    .0
            }
            Buyer::Customer(external_id) => {
                crate::program::validate_external_id(external_id, "member external id")?;
                match self.find_member(&program, external_id).await? {
                    Some(member) => member.id,
                    None => {
                        return self
                            .record_guest_order(&program, order_id, Some(external_id), amount, &key)
                            .await
                    }
                }
            }
            Buyer::Anonymous => {
                return self
                    .record_guest_order(&program, order_id, None, amount, &key)
                    .await
            }
        };
        let op = PurchaseOp {
            member_id,
            order_id: order_id.to_owned(),
            amount,
            lines,
            key,
            loyalty: self.clone(),
        };
        self.execute(&program, &op).await.map(OrderOutcome::Member)
    }

    async fn record_guest_order(
        &self,
        program: &crate::tenant::Program,
        order_id: &str,
        customer_id: Option<&str>,
        amount: Money,
        key: &IdempotencyKey,
    ) -> DomainResult<OrderOutcome> {
        let (db, program, now) = (self.db().clone(), program.clone(), self.now());
        let (order_id, customer_id) = (order_id.to_owned(), customer_id.map(str::to_owned));
        let key = key.ledger_key(0);
        let order = run_detached(async move {
            retry("guest_order", || {
                guests::record(
                    &db,
                    &program,
                    &order_id,
                    customer_id.as_deref(),
                    amount,
                    &key,
                    now,
                )
            })
            .await
        })
        .await?;
        Ok(OrderOutcome::NonMember(order))
    }

    /// Refunds `amount` of an order (see [`Loyalty::refund_purchase_with`]).
    pub async fn refund_purchase(
        &self,
        actor: &ServiceActor,
        order_id: &str,
        amount: Decimal,
        idempotency_key: Option<&str>,
    ) -> DomainResult<RefundOutcome> {
        self.refund_purchase_with(actor, order_id, RefundBy::Amount(amount), idempotency_key)
            .await
    }

    /// Refunds an amount, or units of the order's lines, and reverses the accruals they carry.
    /// Without an idempotency key every call is a new refund (bounded by the order's amount and
    /// lines); send one so retries are safe.
    pub async fn refund_purchase_with(
        &self,
        actor: &ServiceActor,
        order_id: &str,
        refund: RefundBy,
        idempotency_key: Option<&str>,
    ) -> DomainResult<RefundOutcome> {
        let order_id = validate_order_id(order_id)?;
        let (amount, lines) = match refund {
            RefundBy::Amount(amount) => {
                let amount = Money::parse(amount, "amount")?;
                if amount.minor() <= 0 {
                    return Err(DomainError::validation("amount must be positive"));
                }
                (Some(amount), Vec::new())
            }
            RefundBy::Lines(lines) => (None, lines::validate_refund_lines(&lines)?),
        };
        let key = IdempotencyKey::optional(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let purchase = purchases::Entity::find()
            .filter(purchases::Column::ProgramId.eq(program.id))
            .filter(purchases::Column::OrderId.eq(order_id))
            .one(self.db())
            .await?;
        let Some(purchase) = purchase else {
            let order = guests::find_order(self.db(), program.id, order_id)
                .await
                .map_err(DomainError::from)?
                .ok_or_else(|| DomainError::not_found(format!("order `{order_id}` not found")))?;
            let Some(amount) = amount else {
                return Err(DomainError::validation(format!(
                    "lines: order `{order_id}` is a non-member's order, refunded by amount"
                )));
            };
            let key = key.map(|k| k.ledger_key(0));
            let (db, now) = (self.db().clone(), self.now());
            let (program, guest) = (program.clone(), order.clone());
            let refund = run_detached(async move {
                retry("guest_refund", || {
                    guests::refund(&db, &program, &guest, amount, key.as_deref(), now)
                })
                .await
            })
            .await?;
            return Ok(RefundOutcome {
                order_id: order.order_id,
                member_id: 0,
                refunded_amount: refund.refunded,
                total_refunded: refund.total_refunded,
                points_reversed: Points::ZERO,
                points_unrecovered: Points::ZERO,
                balance: Points::ZERO,
                transaction: None,
                transactions: Vec::new(),
                non_member: true,
            });
        };
        let op = RefundOp {
            member_id: purchase.member_id,
            purchase_id: purchase.id,
            amount,
            lines,
            key,
        };
        self.execute(&program, &op).await
    }
}

#[cfg(test)]
mod tests {
    use super::lines::share;

    #[test]
    fn partial_refunds_add_up_to_the_whole() {
        // 10.00 points on a 3.00 order refunded a third at a time.
        let steps: Vec<i64> = [100, 200, 300]
            .iter()
            .map(|refunded| share(1000, *refunded, 300))
            .collect();
        assert_eq!(steps, [333, 667, 1000]);
        assert_eq!(share(7, 300, 300), 7);
        assert_eq!(share(0, 100, 300), 0);
    }
}
