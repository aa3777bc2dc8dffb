//! Expiry: earned lots past their `expires_at` post an `EXPIRE` for what remains. The job can run
//! on every instance at once: each member is handled under its lock and each lot's expiry has
//! the natural ledger key `expire:{lot}`, so a lot expires exactly once.

use chrono::{DateTime, Utc};
use loyalty_entities::ledger_entries;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::error::DomainResult;
use crate::ledger::db::{MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Tx};
use crate::money::Points;

/// Members handled per pass of the job.
const BATCH_MEMBERS: u64 = 500;

/// Expires every due lot of one member (the job runs it through `execute`).
#[derive(Clone, Serialize)]
pub(crate) struct ExpireOp {
    pub member_id: i64,
}

#[async_trait::async_trait]
impl Operation for ExpireOp {
    type Output = Points;
    const NAME: &'static str = "expire";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Points> {
        let due = ledger_entries::Entity::find()
            .filter(ledger_entries::Column::MemberId.eq(self.member_id))
            .filter(ledger_entries::Column::RemainingMinor.gt(0))
            .filter(ledger_entries::Column::ExpiresAt.lte(tx.now))
            .order_by_asc(ledger_entries::Column::ExpiresAt)
            .order_by_asc(ledger_entries::Column::Id)
            .all(tx.txn)
            .await?;
        let mut expired = Points::ZERO;
        for lot in due {
            let remaining = Points::from_minor(lot.remaining_minor.unwrap_or_default());
            let mut entry = Entry::new(Account::Points, Kind::Expire, remaining)
                .reference("lot", lot.id.to_string())
                .key(Some(format!("expire:{}", lot.id)));
            entry.reverses = Some(lot.id);
            if tx.debit(entry, false, &[lot.id]).await?.is_some() {
                expired = expired.checked_add(remaining).unwrap_or(expired);
            }
        }
        Ok(expired)
    }
}

#[derive(FromQueryResult)]
pub(crate) struct DueMember {
    pub member_id: i64,
    pub program_id: i64,
}

/// Up to a batch of members with lots due at `now`.
pub(crate) async fn due_members<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
) -> DomainResult<Vec<DueMember>> {
    Ok(ledger_entries::Entity::find()
        .select_only()
        .column(ledger_entries::Column::MemberId)
        .column(ledger_entries::Column::ProgramId)
        .filter(ledger_entries::Column::RemainingMinor.gt(0))
        .filter(ledger_entries::Column::ExpiresAt.lte(now))
        .distinct()
        .limit(BATCH_MEMBERS)
        .into_model::<DueMember>()
        .all(conn)
        .await?)
}

/// A member's unexpired lots, first to expire first (at most 200).
pub(crate) async fn upcoming_lots<C: ConnectionTrait>(
    conn: &C,
    member_id: i64,
    now: DateTime<Utc>,
) -> DomainResult<Vec<ledger_entries::Model>> {
    Ok(ledger_entries::Entity::find()
        .filter(ledger_entries::Column::MemberId.eq(member_id))
        .filter(ledger_entries::Column::RemainingMinor.gt(0))
        .filter(ledger_entries::Column::ExpiresAt.gt(now))
        .order_by_asc(ledger_entries::Column::ExpiresAt)
        .limit(200)
        .all(conn)
        .await?)
}

/// The next points to expire for a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringSoon {
    pub points: Points,
    /// The first instant of that amount's expiry.
    pub at: DateTime<Utc>,
}
