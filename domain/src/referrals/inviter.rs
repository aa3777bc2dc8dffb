//! The inviter's reward: its own idempotent operation on the inviter, queued by the friend's
//! qualifying transaction (`work.rs`) and run right after it, so neither transaction locks two
//! members. It runs once: under the inviter's lock it pays only a referral whose
//! `inviter_rewarded_at` is empty, sets it, and deletes its `member_work` row, all in one
//! transaction; the ledger's natural key of a per-object rule (the object is the referral)
//! backs that up.

use loyalty_entities::referrals;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::earning::rules::ActionRequest;
use crate::error::DomainResult;
use crate::ledger::db::{stmt, MemberRef, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::Tx;
use crate::service::Loyalty;
use crate::work::{Item, Kind};

#[derive(Clone, Serialize)]
struct InviterReward {
    inviter_id: i64,
    referral_id: i64,
    #[serde(skip)]
    loyalty: Loyalty,
}

#[async_trait::async_trait]
impl Operation for InviterReward {
    /// Whether this run paid (false: an earlier run did, or the referral is gone).
    type Output = bool;
    const NAME: &'static str = "referralInviterReward";

    fn member(&self) -> MemberRef {
        MemberRef::Id(self.inviter_id)
    }

    /// None: the referral is the key. Under the inviter's lock a run pays only a referral
    /// whose `inviter_rewarded_at` is empty, so a second run (a runner whose lease ran out)
    /// pays nothing and still deletes its row; the ledger's per-object key backs it up.
    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<bool> {
        let referral = referrals::Entity::find_by_id(self.referral_id)
            .one(tx.txn)
            .await?;
        let due = referral.filter(|r| {
            r.referrer_id == self.inviter_id
                && r.program_id == tx.program.id
                && r.inviter_rewarded_at.is_none()
        });
        if let Some(referral) = &due {
            // The object is the referral (one per friend, for life): a per-object rule is
            // checked against the posting's reference, which is the referral too.
            let id = referral.id.to_string();
            let request = ActionRequest {
                action: "referral_inviter".into(),
                object_id: Some(id.clone()),
                amount: None,
                ..Default::default()
            };
            self.loyalty
                .award(tx, &request, None, Some(("referral", &id)))
                .await?;
            referrals::Entity::update_many()
                .col_expr(
                    referrals::Column::InviterRewardedAt,
                    Expr::value(Some(tx.now)),
                )
                .filter(referrals::Column::Id.eq(referral.id))
                .exec(tx.txn)
                .await?;
        }
        tx.txn
            .execute(stmt(
                tx.txn.get_database_backend(),
                "DELETE FROM member_work WHERE kind = $1 AND subject = $2",
                vec![
                    Kind::ReferralInviter.as_str().into(),
                    self.referral_id.to_string().into(),
                ],
            ))
            .await?;
        Ok(due.is_some())
    }
}

/// Runs the inviter's reward of the referral `item` names.
pub(crate) async fn pay_inviter(loyalty: &Loyalty, item: &Item) -> DomainResult<()> {
    let referral_id: i64 = item.subject.parse().map_err(|_| {
        crate::error::DomainError::internal(format!(
            "member_work: referral id {:?} is not a number",
            item.subject
        ))
    })?;
    let program = loyalty.program_by_id(item.program_id).await?;
    let op = InviterReward {
        inviter_id: item.member_id,
        referral_id,
        loyalty: loyalty.clone(),
    };
    loyalty.execute(&program, &op).await.map(|_| ())
}
