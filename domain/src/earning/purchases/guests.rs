//! Orders of customers who are not members (issue 12: coverage and the non-member average order
//! value). The service records them through `recordPurchase` without a member, or with
//! `joinProgram: false` and a customer id the program does not know. They are counted in the
//! report's revenue totals and never touch the ledger: no member, no points, no balance.
//!
//! Exactly once without a member lock: the idempotency key is a unique column of the order (and
//! of each refund), claimed by the insert itself; a retry finds its row and gets the same answer.
//! Each call is one transaction for the caller to run detached and retried (`run_detached`,
//! `retry`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, FromQueryResult, TransactionTrait,
};

use crate::error::DomainError;
use crate::ledger::db::{stmt, TxResult};
use crate::money::Money;
use crate::tenant::Program;

/// A non-member's order as recorded.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct GuestOrder {
    pub id: i64,
    pub order_id: String,
    pub customer_id: Option<String>,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
}

/// A refund of a non-member's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRefund {
    pub refunded: Money,
    pub total_refunded: Money,
}

#[derive(FromQueryResult)]
struct RefundRow {
    guest_order_id: i64,
    amount_minor: i64,
}

#[derive(FromQueryResult)]
struct Refunded {
    refunded_minor: i64,
}

#[derive(FromQueryResult)]
struct Exists {
    n: i64,
}

const ORDER_COLUMNS: &str =
    "id, order_id, customer_id, amount_minor, refunded_minor, idempotency_key, created_at";

async fn order_by<C: ConnectionTrait>(
    db: &C,
    program_id: i64,
    column: &str,
    value: &str,
) -> TxResult<Option<GuestOrder>> {
    Ok(GuestOrder::find_by_statement(stmt(
        db.get_database_backend(),
        &format!(
            "SELECT {ORDER_COLUMNS} FROM guest_orders WHERE program_id = $1 AND {column} = $2"
        ),
        vec![program_id.into(), value.into()],
    ))
    .one(db)
    .await?)
}

/// The non-member order `order_id` of the program, if there is one.
pub async fn find_order<C: ConnectionTrait>(
    db: &C,
    program_id: i64,
    order_id: &str,
) -> TxResult<Option<GuestOrder>> {
    order_by(db, program_id, "order_id", order_id).await
}

/// Records a non-member's order. The same key with the same order answers the same; with another
/// order, `IDEMPOTENCY_KEY_REUSED`; an order id already recorded (for a member or not),
/// `ALREADY_CLAIMED`.
pub async fn record(
    db: &DatabaseConnection,
    program: &Program,
    order_id: &str,
    customer_id: Option<&str>,
    amount: Money,
    key: &str,
    now: DateTime<Utc>,
) -> TxResult<GuestOrder> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    if let Some(known) = order_by(&txn, program.id, "idempotency_key", key).await? {
        txn.commit().await?;
        return replay(known, order_id, customer_id, amount);
    }
    let member_order = Exists::find_by_statement(stmt(
        backend,
        "SELECT COUNT(*) AS n FROM purchases WHERE program_id = $1 AND order_id = $2",
        vec![program.id.into(), order_id.into()],
    ))
    .one(&txn)
    .await?
    .is_some_and(|e| e.n > 0);
    if member_order {
        return Err(already_recorded(order_id).into());
    }
    let inserted = GuestOrder::find_by_statement(stmt(
        backend,
        &format!(
            "INSERT INTO guest_orders (program_id, order_id, customer_id, amount_minor, \
             refunded_minor, idempotency_key, created_at) VALUES ($1, $2, $3, $4, 0, $5, $6) \
             ON CONFLICT DO NOTHING RETURNING {ORDER_COLUMNS}"
        ),
        vec![
            program.id.into(),
            order_id.into(),
            customer_id.map(str::to_owned).into(),
            amount.minor().into(),
            key.into(),
            now.into(),
        ],
    ))
    .one(&txn)
    .await?;
    txn.commit().await?;
    if let Some(order) = inserted {
        return Ok(order);
    }
    // A concurrent call claimed the key (then this is its retry) or the order id first.
    match order_by(db, program.id, "idempotency_key", key).await? {
        Some(known) => replay(known, order_id, customer_id, amount),
        None => Err(already_recorded(order_id).into()),
    }
}

fn already_recorded(order_id: &str) -> DomainError {
    DomainError::AlreadyClaimed(format!("order `{order_id}` was already recorded"))
}

fn replay(
    known: GuestOrder,
    order_id: &str,
    customer_id: Option<&str>,
    amount: Money,
) -> TxResult<GuestOrder> {
    if known.order_id == order_id
        && known.customer_id.as_deref() == customer_id
        && known.amount_minor == amount.minor()
    {
        Ok(known)
    } else {
        Err(DomainError::IdempotencyKeyReused(
            "this idempotencyKey was used with different arguments".into(),
        )
        .into())
    }
}

/// Refunds `amount` of a non-member's order, at most what is left of it. With a key, a retry
/// answers the same and refunds nothing more.
pub async fn refund(
    db: &DatabaseConnection,
    program: &Program,
    order: &GuestOrder,
    amount: Money,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> TxResult<GuestRefund> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    // The key is claimed first: a concurrent retry waits on it, then finds it taken.
    let claimed = txn
        .execute(stmt(
            backend,
            "INSERT INTO guest_refunds (program_id, guest_order_id, amount_minor, \
             idempotency_key, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![
                program.id.into(),
                order.id.into(),
                amount.minor().into(),
                key.map(str::to_owned).into(),
                now.into(),
            ],
        ))
        .await?
        .rows_affected()
        == 1;
    if !claimed {
        return replay_refund(&txn, program, order, amount, key).await;
    }
    let refunded = Refunded::find_by_statement(stmt(
        backend,
        "UPDATE guest_orders SET refunded_minor = refunded_minor + $1 WHERE id = $2 \
         AND refunded_minor + $1 <= amount_minor RETURNING refunded_minor",
        vec![amount.minor().into(), order.id.into()],
    ))
    .one(&txn)
    .await?;
    let Some(refunded) = refunded else {
        let left = find_order(&txn, program.id, &order.order_id)
            .await?
            .ok_or_else(|| {
                DomainError::not_found(format!("order `{}` not found", order.order_id))
            })?;
        txn.rollback().await?;
        return Err(DomainError::validation(format!(
            "amount: order `{}` has {} left to refund",
            order.order_id,
            Money::from_minor(left.amount_minor - left.refunded_minor).decimal()
        ))
        .into());
    };
    txn.commit().await?;
    Ok(GuestRefund {
        refunded: amount,
        total_refunded: Money::from_minor(refunded.refunded_minor),
    })
}

async fn replay_refund(
    txn: &DatabaseTransaction,
    program: &Program,
    order: &GuestOrder,
    amount: Money,
    key: Option<&str>,
) -> TxResult<GuestRefund> {
    let backend = txn.get_database_backend();
    let earlier = RefundRow::find_by_statement(stmt(
        backend,
        "SELECT guest_order_id, amount_minor FROM guest_refunds WHERE program_id = $1 \
         AND idempotency_key = $2",
        vec![program.id.into(), key.map(str::to_owned).into()],
    ))
    .one(txn)
    .await?
    .ok_or_else(|| DomainError::Conflict("refund changed; try again".into()))?;
    if earlier.guest_order_id != order.id || earlier.amount_minor != amount.minor() {
        return Err(DomainError::IdempotencyKeyReused(
            "this idempotencyKey was used with different arguments".into(),
        )
        .into());
    }
    let now = find_order(txn, program.id, &order.order_id)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("order `{}` not found", order.order_id)))?;
    Ok(GuestRefund {
        refunded: amount,
        total_refunded: Money::from_minor(now.refunded_minor),
    })
}
