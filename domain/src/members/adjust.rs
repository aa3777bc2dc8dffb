//! Admin adjustments: a signed correction, posted like any other change (never an update).

use rust_decimal::Decimal;
use serde::Serialize;

use crate::actor::AdminActor;
use crate::earning::actions::ActionOutcome;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Tx};
use crate::money::Points;
use crate::service::Loyalty;

const MAX_REASON_LEN: usize = 500;

#[derive(Clone, Serialize)]
struct AdjustOp {
    member_id: i64,
    amount: Points,
    reason: String,
    #[serde(skip)]
    key: IdempotencyKey,
}

#[async_trait::async_trait]
impl Operation for AdjustOp {
    type Output = ActionOutcome;
    const NAME: &'static str = "adjustPoints";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.member_id)
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(&self.key)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<ActionOutcome> {
        let entry = Entry::new(Account::Points, Kind::Adjust, self.amount.abs())
            .label("admin_adjustment")
            .note(self.reason.clone())
            .key(Some(self.key.ledger_key(0)));
        let posting = if self.amount.is_positive() {
            tx.credit(entry).await?
        } else {
            tx.debit_in_full(entry).await?
        };
        Ok(ActionOutcome {
            awarded: true,
            points: posting.amount,
            balance: tx.balance(Account::Points).await?,
            transactions: vec![posting],
            reason: None,
            rules: Vec::new(),
            detail: None,
            challenges: Vec::new(),
        })
    }
}

impl Loyalty {
    /// Adds (positive) or removes (negative) points; refuses to overdraw.
    pub async fn adjust_points(
        &self,
        actor: &AdminActor,
        member_id: i64,
        amount: Decimal,
        reason: &str,
        idempotency_key: &str,
    ) -> DomainResult<ActionOutcome> {
        let amount = Points::parse(amount, "amount")?;
        if amount.is_zero() {
            return Err(DomainError::validation("amount must not be zero"));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
            return Err(DomainError::validation(format!(
                "reason must be 1–{MAX_REASON_LEN} characters"
            )));
        }
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let op = AdjustOp {
            member_id,
            amount,
            reason: reason.to_owned(),
            key,
        };
        self.execute(&program, &op).await
    }
}
