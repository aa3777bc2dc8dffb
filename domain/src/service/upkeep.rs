//! The service's calls into the ledger's housekeeping: the expiry job, the next expiry a member
//! sees, the invariant audit and the idempotency-record purge. The work itself is in
//! `ledger/expiry.rs`, `ledger/audit.rs` and `ledger/ops.rs`.

use std::time::Duration;

use loyalty_entities::programs;
use sea_orm::EntityTrait;
use tokio_util::sync::CancellationToken;

use crate::error::{DomainError, DomainResult};
use crate::ledger::audit::AuditReport;
use crate::ledger::expiry::{due_members, upcoming_lots, ExpireOp, ExpiringSoon};
use crate::money::Points;
use crate::periods::local_date;
use crate::program::Program;
use crate::service::Loyalty;

impl Loyalty {
    /// Expires every lot due at the clock's now; returns the points expired. Safe to run
    /// concurrently on several instances.
    pub async fn expire_due(&self) -> DomainResult<Points> {
        let mut total = Points::ZERO;
        loop {
            let members = due_members(self.db(), self.now()).await?;
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
        let lots = upcoming_lots(self.db(), member_id, self.now()).await?;
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

    /// The ledger invariants of a program (SPEC §4.3).
    pub async fn audit(&self, program: &Program) -> DomainResult<AuditReport> {
        crate::ledger::audit::audit(self.db(), program.id).await
    }

    /// Deletes client idempotency records older than `retention`; returns how many.
    pub async fn purge_idempotency(&self, retention: Duration) -> DomainResult<u64> {
        crate::ledger::ops::purge_records(self.db(), self.now(), retention).await
    }
}
