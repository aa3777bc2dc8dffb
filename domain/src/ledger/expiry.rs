//! Expiry: earned lots past their `expires_at` post an `EXPIRE` for what remains. The job can run
//! on every instance at once: each member is handled under its lock and each lot's expiry has
//! the natural ledger key `expire:{lot}`, so a lot expires exactly once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use loyalty_entities::{ledger_entries, programs};
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Tx};
use crate::money::Points;
use crate::periods::local_date;
use crate::program::Program;
use crate::service::Loyalty;

/// Members handled per pass of the job.
const BATCH_MEMBERS: u64 = 500;

#[derive(Clone, Serialize)]
struct ExpireOp {
    member_id: i64,
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
struct DueMember {
    member_id: i64,
    program_id: i64,
}

/// The next points to expire for a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringSoon {
    pub points: Points,
    /// The first instant of that amount's expiry.
    pub at: DateTime<Utc>,
}

impl Loyalty {
    /// Expires every lot due at the clock's now; returns the points expired. Safe to run
    /// concurrently on several instances.
    pub async fn expire_due(&self) -> DomainResult<Points> {
        let mut total = Points::ZERO;
        loop {
            let now = self.now();
            let members = ledger_entries::Entity::find()
                .select_only()
                .column(ledger_entries::Column::MemberId)
                .column(ledger_entries::Column::ProgramId)
                .filter(ledger_entries::Column::RemainingMinor.gt(0))
                .filter(ledger_entries::Column::ExpiresAt.lte(now))
                .distinct()
                .limit(BATCH_MEMBERS)
                .into_model::<DueMember>()
                .all(self.db())
                .await?;
            if members.is_empty() {
                return Ok(total);
            }
            for due in members {
                let program = self.program_by_id(due.program_id).await?;
                let expired = self
                    .execute(
                        &program,
                        &ExpireOp {
                            member_id: due.member_id,
                        },
                    )
                    .await?;
                total = total.checked_add(expired).unwrap_or(total);
            }
        }
    }

    /// Runs [`Loyalty::expire_due`] every `interval` until shutdown.
    pub fn spawn_expiry(&self, interval: Duration, shutdown: CancellationToken) {
        let loyalty = self.clone();
        crate::jobs::every(
            "expiry",
            interval,
            shutdown,
            move || {
                let loyalty = loyalty.clone();
                async move { loyalty.expire_due().await }
            },
            |points: &Points| {
                if !points.is_zero() {
                    tracing::info!(%points, "expired points");
                }
            },
        );
    }

    /// The next amount to expire (lots expiring on the same program-local day add up).
    pub async fn expiring_soon(
        &self,
        program: &Program,
        member_id: i64,
    ) -> DomainResult<Option<ExpiringSoon>> {
        let lots = ledger_entries::Entity::find()
            .filter(ledger_entries::Column::MemberId.eq(member_id))
            .filter(ledger_entries::Column::RemainingMinor.gt(0))
            .filter(ledger_entries::Column::ExpiresAt.gt(self.now()))
            .order_by_asc(ledger_entries::Column::ExpiresAt)
            .limit(200)
            .all(self.db())
            .await?;
        let Some(at) = lots.first().and_then(|lot| lot.expires_at) else {
            return Ok(None);
        };
        let day = local_date(program.tz, at);
        let minor: i64 = lots
            .iter()
            .filter(|lot| {
                lot.expires_at
                    .is_some_and(|e| local_date(program.tz, e) == day)
            })
            .filter_map(|lot| lot.remaining_minor)
            .sum();
        Ok(Some(ExpiringSoon {
            points: Points::from_minor(minor),
            at,
        }))
    }

    pub(crate) async fn program_by_id(&self, id: i64) -> DomainResult<std::sync::Arc<Program>> {
        let model = programs::Entity::find_by_id(id)
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("program {id} not found")))?;
        self.program(&model.external_id).await
    }
}
