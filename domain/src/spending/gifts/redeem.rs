//! Redemptions: buying a gift (`redeemGift`), winning one ([`grant_gift`]), and the admin's
//! fulfilment or cancellation (with a refund) of a pending redemption.

use loyalty_entities::{gifts, redemptions};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::{
    find_gift, gift_not_found, CancelOutcome, RedeemOutcome, Redemption, RedemptionOrigin,
    RedemptionStatus, PURPOSE,
};
use crate::actor::MemberActor;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{retry, run_detached, MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Tx};
use crate::members::MAX_PAGE;
use crate::money::Points;
use crate::program::Program;
use crate::service::Loyalty;
use crate::stored::Stored;

/// Takes one unit of tracked stock (`OUT_OF_STOCK` when none is left); unlimited gifts are not
/// touched, so their redemptions do not queue on the gift row.
async fn take_stock(tx: &Tx<'_>, gift: &gifts::Model) -> TxResult<()> {
    if gift.stock.is_none() {
        return Ok(());
    }
    let taken = gifts::Entity::update_many()
        .col_expr(gifts::Column::Stock, Expr::col(gifts::Column::Stock).sub(1))
        .filter(gifts::Column::Id.eq(gift.id))
        .filter(gifts::Column::ProgramId.eq(tx.program.id))
        .filter(gifts::Column::Stock.gt(0))
        .exec(tx.txn)
        .await?
        .rows_affected;
    if taken == 0 {
        return Err(TxError::Domain(DomainError::OutOfStock(format!(
            "gift `{}` is out of stock",
            gift.name
        ))));
    }
    Ok(())
}

async fn insert_redemption(
    tx: &Tx<'_>,
    gift: &gifts::Model,
    cost: Points,
    origin: RedemptionOrigin,
) -> TxResult<redemptions::Model> {
    Ok(redemptions::Entity::insert(redemptions::ActiveModel {
        program_id: Set(tx.program.id),
        member_id: Set(tx.member.id),
        gift_id: Set(gift.id),
        cost_minor: Set(cost.minor()),
        status: Set(RedemptionStatus::Pending.as_str().to_owned()),
        origin: Set(origin.as_str().to_owned()),
        spend_entry_id: Set(None),
        refund_entry_id: Set(None),
        created_at: Set(tx.now),
        updated_at: Set(tx.now),
        ..Default::default()
    })
    .exec_with_returning(tx.txn)
    .await?)
}

/// Gives the locked member a gift as a prize, inside the caller's operation: takes one unit of
/// stock and records a `PENDING` redemption with cost 0 and origin `wheel`; debits nothing and
/// ignores the per-member limit. `OUT_OF_STOCK` when the gift is exhausted or archived,
/// `NOT_FOUND` when it is not a gift of this program.
pub(crate) async fn grant_gift(tx: &mut Tx<'_>, gift_id: i64) -> TxResult<Redemption> {
    grant_gift_as(tx, gift_id, RedemptionOrigin::Wheel).await
}

/// [`grant_gift`] with the origin the redemption records (a challenge's reward).
pub(crate) async fn grant_gift_as(
    tx: &mut Tx<'_>,
    gift_id: i64,
    origin: RedemptionOrigin,
) -> TxResult<Redemption> {
    let gift = find_gift(tx.txn, tx.program.id, gift_id)
        .await?
        .ok_or_else(|| gift_not_found(gift_id))?;
    if gift.archived_at.is_some() {
        return Err(TxError::Domain(DomainError::OutOfStock(format!(
            "gift `{}` is no longer available",
            gift.name
        ))));
    }
    take_stock(tx, &gift).await?;
    let row = insert_redemption(tx, &gift, Points::ZERO, origin).await?;
    Ok(Redemption::from_model(row, gift.name)?)
}

#[derive(Clone, Serialize)]
struct RedeemGiftOp {
    gift_id: i64,
    #[serde(skip)]
    member: MemberRef,
    #[serde(skip)]
    key: IdempotencyKey,
}

#[async_trait::async_trait]
impl Operation for RedeemGiftOp {
    type Output = RedeemOutcome;
    const NAME: &'static str = "redeemGift";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(&self.key)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<RedeemOutcome> {
        let gift = find_gift(tx.txn, tx.program.id, self.gift_id)
            .await?
            .ok_or_else(|| gift_not_found(self.gift_id))?;
        if gift.archived_at.is_some() {
            return Err(TxError::Domain(DomainError::validation(format!(
                "gift `{}` is archived and can no longer be redeemed",
                gift.name
            ))));
        }
        if let Some(limit) = gift.per_member_limit {
            // Under the member's lock: this member's other redemptions are all committed.
            let held = redemptions::Entity::find()
                .filter(redemptions::Column::MemberId.eq(tx.member.id))
                .filter(redemptions::Column::GiftId.eq(gift.id))
                .filter(redemptions::Column::Status.ne(RedemptionStatus::Cancelled.as_str()))
                .count(tx.txn)
                .await?;
            if held >= u64::try_from(limit).unwrap_or_default() {
                return Err(TxError::Domain(DomainError::LimitReached(format!(
                    "gift `{}` is limited to {limit} per member",
                    gift.name
                ))));
            }
        }
        let cost = Points::from_minor(gift.cost_minor);
        let balance = tx.balance(Account::Points).await?;
        if balance < cost {
            // Refused before the gift row is touched; the debit below checks again.
            return Err(TxError::Domain(DomainError::InsufficientPoints(format!(
                "balance {balance} is less than the gift's cost {cost}"
            ))));
        }
        take_stock(tx, &gift).await?;
        let row = insert_redemption(tx, &gift, cost, RedemptionOrigin::Redeem).await?;
        let entry = Entry::new(Account::Points, Kind::Spend, cost)
            .label(PURPOSE)
            .reference("redemption", row.id.to_string())
            .key(Some(self.key.ledger_key(0)));
        let posting = tx.debit_in_full(entry).await?;
        redemptions::Entity::update_many()
            .col_expr(
                redemptions::Column::SpendEntryId,
                Expr::value(Some(posting.id)),
            )
            .filter(redemptions::Column::Id.eq(row.id))
            .exec(tx.txn)
            .await?;
        Ok(RedeemOutcome {
            redemption: Redemption::from_model(row, gift.name)?,
            balance: tx.balance(Account::Points).await?,
            transaction: posting,
        })
    }
}

/// Cancels a `PENDING` redemption under its member's lock: refunds the cost as `REFUND` and
/// puts the gift back in stock. No idempotency key: the status change is the guard (a second
/// cancel finds it `CANCELLED`), and the refund's natural ledger key is the backstop.
#[derive(Clone, Serialize)]
struct CancelRedemptionOp {
    redemption_id: i64,
    member_id: i64,
}

#[async_trait::async_trait]
impl Operation for CancelRedemptionOp {
    type Output = CancelOutcome;
    const NAME: &'static str = "cancelRedemption";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<CancelOutcome> {
        let cancelled = redemptions::Entity::update_many()
            .col_expr(
                redemptions::Column::Status,
                Expr::value(RedemptionStatus::Cancelled.as_str()),
            )
            .col_expr(redemptions::Column::UpdatedAt, Expr::value(tx.now))
            .filter(redemptions::Column::Id.eq(self.redemption_id))
            .filter(redemptions::Column::ProgramId.eq(tx.program.id))
            .filter(redemptions::Column::Status.eq(RedemptionStatus::Pending.as_str()))
            .exec_with_returning(tx.txn)
            .await?
            .into_iter()
            .next();
        let Some(row) = cancelled else {
            return Err(TxError::Domain(
                not_pending(tx.txn, tx.program.id, self.redemption_id, "cancelled").await?,
            ));
        };
        let cost = Points::from_minor(row.cost_minor);
        let posting = if cost.is_positive() {
            let mut entry = Entry::new(Account::Points, Kind::Refund, cost)
                .label(PURPOSE)
                .reference("redemption", row.id.to_string())
                .key(Some(format!("refund:redemption:{}", row.id)))
                .note("redemption cancelled");
            entry.reverses = row.spend_entry_id;
            let posting = tx.credit(entry).await?;
            redemptions::Entity::update_many()
                .col_expr(
                    redemptions::Column::RefundEntryId,
                    Expr::value(Some(posting.id)),
                )
                .filter(redemptions::Column::Id.eq(row.id))
                .exec(tx.txn)
                .await?;
            Some(posting)
        } else {
            None
        };
        gifts::Entity::update_many()
            .col_expr(gifts::Column::Stock, Expr::col(gifts::Column::Stock).add(1))
            .filter(gifts::Column::Id.eq(row.gift_id))
            .filter(gifts::Column::Stock.is_not_null())
            .exec(tx.txn)
            .await?;
        let redemption = with_names(tx.txn, vec![row])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::internal("cancelled redemption vanished"))?;
        Ok(CancelOutcome {
            redemption,
            balance: tx.balance(Account::Points).await?,
            transaction: posting,
        })
    }
}

/// Why a redemption could not change state: `NOT_FOUND`, or `VALIDATION` naming its status.
async fn not_pending<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    redemption_id: i64,
    wanted: &str,
) -> DomainResult<DomainError> {
    let row = find_redemption(conn, program_id, redemption_id).await?;
    let status = RedemptionStatus::read("redemptions.status", &row.status)?;
    Ok(match status {
        status @ (RedemptionStatus::Fulfilled | RedemptionStatus::Cancelled) => {
            DomainError::validation(format!(
                "redemption {redemption_id} is {}: only a PENDING redemption can be {wanted}",
                status.as_str()
            ))
        }
        RedemptionStatus::Pending => {
            DomainError::Conflict(format!("redemption {redemption_id} changed; try again"))
        }
    })
}

async fn find_redemption<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    redemption_id: i64,
) -> DomainResult<redemptions::Model> {
    redemptions::Entity::find_by_id(redemption_id)
        .filter(redemptions::Column::ProgramId.eq(program_id))
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("redemption {redemption_id} not found")))
}

/// (id, name) of gifts.
async fn gift_names<C: ConnectionTrait>(conn: &C, ids: &[i64]) -> DomainResult<Vec<(i64, String)>> {
    Ok(gifts::Entity::find()
        .select_only()
        .column(gifts::Column::Id)
        .column(gifts::Column::Name)
        .filter(gifts::Column::Id.is_in(ids.iter().copied()))
        .into_tuple::<(i64, String)>()
        .all(conn)
        .await?)
}

async fn with_names<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<redemptions::Model>,
) -> DomainResult<Vec<Redemption>> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r.gift_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let names = gift_names(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let name = names
                .iter()
                .find(|(id, _)| *id == row.gift_id)
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            Redemption::from_model(row, name)
        })
        .collect()
}

impl Loyalty {
    /// Buys a gift for the calling member: checks the per-member limit, takes stock, debits the
    /// cost (purpose `gift_redemption`) and records a `PENDING` redemption, all in one
    /// transaction, exactly once per idempotency key.
    pub async fn redeem_gift(
        &self,
        actor: &MemberActor,
        gift_id: i64,
        idempotency_key: &str,
    ) -> DomainResult<RedeemOutcome> {
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let op = RedeemGiftOp {
            gift_id,
            member: MemberRef::External(actor.subject.clone()),
            key,
        };
        self.execute(&program, &op).await
    }

    /// The calling member's redemptions, newest first (`before_id`: the cursor).
    pub async fn my_redemptions(
        &self,
        actor: &MemberActor,
        first: u64,
        before_id: Option<i64>,
    ) -> DomainResult<(Vec<Redemption>, bool)> {
        let program = self.program(&actor.program).await?;
        let Some(member) = self.find_member(&program, &actor.subject).await? else {
            return Ok((Vec::new(), false));
        };
        self.list_redemptions(&program, Some(member.id), None, first, before_id)
            .await
    }

    /// The program's redemptions, newest first, optionally of one status.
    pub async fn redemptions(
        &self,
        program: &Program,
        status: Option<RedemptionStatus>,
        first: u64,
        before_id: Option<i64>,
    ) -> DomainResult<(Vec<Redemption>, bool)> {
        self.list_redemptions(program, None, status, first, before_id)
            .await
    }

    async fn list_redemptions(
        &self,
        program: &Program,
        member_id: Option<i64>,
        status: Option<RedemptionStatus>,
        first: u64,
        before_id: Option<i64>,
    ) -> DomainResult<(Vec<Redemption>, bool)> {
        let first = first.clamp(1, MAX_PAGE);
        let mut query = redemptions::Entity::find()
            .filter(redemptions::Column::ProgramId.eq(program.id))
            .order_by_desc(redemptions::Column::Id)
            .limit(first + 1);
        if let Some(member_id) = member_id {
            query = query.filter(redemptions::Column::MemberId.eq(member_id));
        }
        if let Some(status) = status {
            query = query.filter(redemptions::Column::Status.eq(status.as_str()));
        }
        if let Some(before) = before_id {
            query = query.filter(redemptions::Column::Id.lt(before));
        }
        let mut rows = query.all(self.db()).await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Ok((with_names(self.db(), rows).await?, has_next))
    }

    /// Marks a `PENDING` redemption handed over. No balance changes, so no member lock: the
    /// conditional update alone decides between a fulfil and a concurrent cancel. Its
    /// `redemption.fulfilled` webhook event commits with it.
    pub async fn fulfill_redemption(
        &self,
        program: &Program,
        redemption_id: i64,
    ) -> DomainResult<Redemption> {
        let fulfilled = {
            let (loyalty, program) = (self.clone(), program.clone());
            run_detached(async move {
                retry("fulfill_redemption", || {
                    fulfill(&loyalty, &program, redemption_id)
                })
                .await
            })
            .await?
        };
        let Some((row, event)) = fulfilled else {
            return Err(not_pending(self.db(), program.id, redemption_id, "fulfilled").await?);
        };
        if event {
            self.webhooks().wake();
        }
        with_names(self.db(), vec![row])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::internal("fulfilled redemption vanished"))
    }

    /// Cancels a `PENDING` redemption: refunds its cost (`REFUND`, purpose `gift_redemption`)
    /// and returns the gift to stock. `FULFILLED` or `CANCELLED` ones → `VALIDATION`.
    pub async fn cancel_redemption(
        &self,
        program: &Program,
        redemption_id: i64,
    ) -> DomainResult<CancelOutcome> {
        let row = find_redemption(self.db(), program.id, redemption_id).await?;
        let op = CancelRedemptionOp {
            redemption_id,
            member_id: row.member_id,
        };
        self.execute(program, &op).await
    }
}

/// The fulfilment in one transaction with its webhook event: the redemption (if it was still
/// pending) and whether an event was written.
async fn fulfill(
    loyalty: &Loyalty,
    program: &Program,
    redemption_id: i64,
) -> TxResult<Option<(redemptions::Model, bool)>> {
    use sea_orm::TransactionTrait as _;
    let txn = loyalty.db().begin().await?;
    let fulfilled = redemptions::Entity::update_many()
        .col_expr(
            redemptions::Column::Status,
            Expr::value(RedemptionStatus::Fulfilled.as_str()),
        )
        .col_expr(redemptions::Column::UpdatedAt, Expr::value(loyalty.now()))
        .filter(redemptions::Column::Id.eq(redemption_id))
        .filter(redemptions::Column::ProgramId.eq(program.id))
        .filter(redemptions::Column::Status.eq(RedemptionStatus::Pending.as_str()))
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .next();
    let Some(row) = fulfilled else {
        txn.rollback().await?;
        return Ok(None);
    };
    let object = serde_json::json!({
        "id": row.id.to_string(),
        "giftId": row.gift_id.to_string(),
        "status": RedemptionStatus::Fulfilled.as_str(),
        "cost": Points::from_minor(row.cost_minor).to_string(),
    });
    let event = loyalty
        .write_member_event(
            &txn,
            program,
            crate::webhooks::EventType::RedemptionFulfilled,
            format!("evt_redemption_{}_fulfilled", row.id),
            row.member_id,
            ("redemption", object),
        )
        .await?;
    txn.commit().await?;
    Ok(Some((row, event)))
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::spending::gifts::test_support::{demo, Prize, PrizeOp, Won};
    use crate::spending::gifts::{gift_in_stock, GiftInput};

    #[tokio::test]
    async fn a_won_gift_takes_stock_but_no_points() {
        let (loyalty, program, member_id) = demo().await;
        let input = GiftInput {
            name: "Prize".into(),
            description: None,
            image_url: None,
            cost: Decimal::from(500),
            stock: Some(1),
            per_member_limit: Some(1),
        };
        let gift = loyalty.create_gift(&program, input.clone()).await.unwrap();
        assert!(gift_in_stock(loyalty.db(), program.id, gift.id)
            .await
            .unwrap());
        let win = PrizeOp {
            member_id,
            prize: Prize::Gift(gift.id),
        };
        let Won::Gift(won) = loyalty.execute(&program, &win).await.unwrap() else {
            panic!("a gift prize grants a gift");
        };
        assert_eq!(won.cost, Points::ZERO);
        assert_eq!(won.origin, RedemptionOrigin::Wheel);
        assert_eq!(won.status, RedemptionStatus::Pending);
        assert_eq!(won.gift_name, "Prize");
        let member = loyalty.member(&program, member_id).await.unwrap();
        assert_eq!(member.balance, Points::from_minor(7_000));
        assert!(!gift_in_stock(loyalty.db(), program.id, gift.id)
            .await
            .unwrap());
        assert!(matches!(
            loyalty.execute(&program, &win).await,
            Err(DomainError::OutOfStock(_))
        ));

        // Cancelling a prize refunds nothing and restocks.
        let cancelled = loyalty.cancel_redemption(&program, won.id).await.unwrap();
        assert_eq!(cancelled.transaction, None);
        assert_eq!(cancelled.balance, Points::from_minor(7_000));
        assert!(gift_in_stock(loyalty.db(), program.id, gift.id)
            .await
            .unwrap());

        // The per-member limit (1) does not apply to prizes.
        let more = GiftInput {
            stock: Some(5),
            ..input
        };
        loyalty.update_gift(&program, gift.id, more).await.unwrap();
        for _ in 0..2 {
            loyalty.execute(&program, &win).await.unwrap();
        }

        // Archived or unknown gifts are not prizes.
        loyalty.archive_gift(&program, gift.id).await.unwrap();
        assert!(!gift_in_stock(loyalty.db(), program.id, gift.id)
            .await
            .unwrap());
        assert!(matches!(
            loyalty.execute(&program, &win).await,
            Err(DomainError::OutOfStock(_))
        ));
        assert!(!gift_in_stock(loyalty.db(), program.id, 999_999)
            .await
            .unwrap());
        assert!(!gift_in_stock(loyalty.db(), program.id + 1, gift.id)
            .await
            .unwrap());
        let unknown = PrizeOp {
            member_id,
            prize: Prize::Gift(999_999),
        };
        assert!(matches!(
            loyalty.execute(&program, &unknown).await,
            Err(DomainError::NotFound(_))
        ));
        assert!(loyalty.audit(&program).await.unwrap().violations.is_empty());
    }
}
