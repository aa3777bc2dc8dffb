//! Earning: `recordAction` for mini-app actions and the shared award step every earn path uses.

use serde::{Deserialize, Serialize};

use crate::actor::ActionCaller;
use crate::earning::rules::{evaluate, ActionRequest, EvalContext, Refusal};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{Account, Entry, Kind, Posting, Tx};
use crate::money::Points;
use crate::service::Loyalty;

/// Actions only the server itself records (through register, join and recordPurchase).
const RESERVED_ACTIONS: &[&str] = &[
    "registration",
    "join",
    "purchase",
    "referral_friend",
    "referral_inviter",
];
const MAX_OBJECT_ID_LEN: usize = 200;

/// What an earn attempt did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub awarded: bool,
    pub points: Points,
    pub balance: Points,
    pub transactions: Vec<Posting>,
    /// Why nothing was paid (`None` when awarded).
    pub reason: Option<Refusal>,
}

/// The postings of one award step.
pub(crate) struct Award {
    pub posted: Vec<Posting>,
    pub refusal: Option<Refusal>,
}

#[derive(Clone, Serialize)]
struct RecordActionOp {
    member: MemberRef,
    action: String,
    object_id: Option<String>,
    #[serde(skip)]
    key: Option<IdempotencyKey>,
    /// The rules and member facts come from the service, never through the transaction.
    #[serde(skip)]
    loyalty: Loyalty,
}

#[async_trait::async_trait]
impl Operation for RecordActionOp {
    type Output = ActionOutcome;
    const NAME: &'static str = "recordAction";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<ActionOutcome> {
        let request = ActionRequest {
            action: self.action.clone(),
            object_id: self.object_id.clone(),
            amount: None,
        };
        let award = self
            .loyalty
            .award(tx, &request, self.key.as_ref(), None)
            .await?;
        outcome(tx, award).await
    }
}

pub(crate) async fn outcome(tx: &mut Tx<'_>, award: Award) -> TxResult<ActionOutcome> {
    let points = award
        .posted
        .iter()
        .filter(|p| p.account == Account::Points)
        .fold(Points::ZERO, |sum, p| {
            sum.checked_add(p.amount).unwrap_or(sum)
        });
    Ok(ActionOutcome {
        awarded: !award.posted.is_empty(),
        points,
        balance: tx.balance(Account::Points).await?,
        transactions: award.posted,
        reason: award.refusal,
    })
}

impl Loyalty {
    /// Records a mini-app action for the calling member (or, for a service token, for
    /// `member_external_id`) and pays what the live rules say.
    pub async fn record_action(
        &self,
        actor: &ActionCaller,
        action: &str,
        object_id: Option<&str>,
        member_external_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> DomainResult<ActionOutcome> {
        let action = action.trim();
        if RESERVED_ACTIONS.contains(&action) {
            return Err(DomainError::validation(format!(
                "`{action}` is recorded by the server itself, not through recordAction"
            )));
        }
        if action.is_empty()
            || action.len() > 64
            || !action
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(DomainError::validation(
                "action must be 1–64 characters of a–z, 0–9 and `_`",
            ));
        }
        let object_id = object_id.map(str::trim).filter(|o| !o.is_empty());
        if object_id.is_some_and(|o| o.len() > MAX_OBJECT_ID_LEN) {
            return Err(DomainError::validation(format!(
                "objectId must be at most {MAX_OBJECT_ID_LEN} characters"
            )));
        }
        let key = IdempotencyKey::optional(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let member = self.member_ref(&program, actor, member_external_id).await?;
        let op = RecordActionOp {
            member,
            action: action.to_owned(),
            object_id: object_id.map(str::to_owned),
            key,
            loyalty: self.clone(),
        };
        self.execute(&program, &op).await
    }

    /// Evaluates the live rules for `request` under the member's lock and posts the earns.
    pub(crate) async fn award(
        &self,
        tx: &mut Tx<'_>,
        request: &ActionRequest,
        client_key: Option<&IdempotencyKey>,
        reference: Option<(&str, &str)>,
    ) -> TxResult<Award> {
        let version = tx.live_version;
        let ruleset = self.ruleset(tx.txn, tx.program.id, version).await?;
        let rules: Vec<_> = ruleset.rules_for(&request.action).collect();
        let facts = self
            .member_facts(
                tx.txn,
                tx.program,
                &tx.member,
                &rules,
                request.object_id.as_deref(),
                tx.now,
            )
            .await?;
        let ctx = EvalContext {
            tz: tx.program.tz,
            now: tx.now,
            points_per_currency: tx.program.points_per_currency,
            multiplier: rust_decimal::Decimal::new(tx.multiplier_minor, 2),
        };
        let evaluation = evaluate(&ruleset, &facts, request, &ctx)?;
        let mut posted = Vec::with_capacity(evaluation.earns.len());
        for (n, earn) in evaluation.earns.into_iter().enumerate() {
            let key = match (earn.natural_key, client_key) {
                (Some(natural), _) => natural,
                (None, Some(client)) => client.ledger_key(n),
                (None, None) => {
                    return Err(TxError::Domain(DomainError::validation(format!(
                        "idempotencyKey is required for the repeatable action `{}`",
                        request.action
                    ))))
                }
            };
            let mut entry = Entry::new(Account::Points, Kind::Earn, earn.points)
                .label(earn.source)
                .key(Some(key.clone()));
            entry.rule = Some((earn.rule_id, version));
            entry = match (reference, earn.object_id) {
                (Some((kind, id)), _) => entry.reference(kind, id),
                (None, Some(object)) => entry.reference("object", object),
                (None, None) => entry,
            };
            if earn.qualifying {
                let mut qualification = entry.clone();
                qualification.account = Account::Qualification;
                qualification.key = Some(format!("{key}:q"));
                posted.push(tx.credit(entry).await?);
                posted.push(tx.credit(qualification).await?);
            } else {
                posted.push(tx.credit(entry).await?);
            }
        }
        if let Some((date, streak)) = evaluation.streak {
            tx.member.last_login_date = Some(date.to_string());
            tx.member.login_streak = i32::try_from(streak).unwrap_or(i32::MAX);
            tx.touch_member();
        }
        Ok(Award {
            posted,
            refusal: evaluation.refusal,
        })
    }
}
