//! Earning: `recordAction` for mini-app actions and the shared award step every earn path uses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::ActionCaller;
use loyalty_entities::{members, purchases};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::earning::budgets;
use crate::earning::rules::conditions::{Condition, TierFact};
use crate::earning::rules::{
    evaluate, ActionRequest, EvalContext, MemberFacts, Refusal, Rule, Verdict,
};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{HistoryQuery, MemberRef, RuleHistory, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{spins_amount, Account, Entry, Kind, Posting, Tx};
use crate::members::attributes;
use crate::money::Points;
use crate::program::Program;
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
    /// Every rule that paid (points or free spins), in the order applied.
    #[serde(default)]
    pub rules: Vec<Earned>,
    /// When nothing was paid: the explanation of the most telling refusal, if a rule gave one
    /// ("conditions[0]: order total 42.00 < 50.00").
    #[serde(default)]
    pub detail: Option<String>,
    /// The challenges this event moved (and whether it completed them).
    #[serde(default)]
    pub challenges: Vec<crate::challenges::advance::Moved>,
}

/// The postings of one award step.
pub(crate) struct Award {
    pub posted: Vec<Posting>,
    /// Every rule that paid, in order.
    pub earned: Vec<Earned>,
    pub refusal: Option<Refusal>,
    /// Every rule considered, paid or not, and why not.
    pub verdicts: Vec<Verdict>,
    /// The challenges the event moved, and what their completion paid.
    pub progress: crate::challenges::advance::Progress,
}

#[derive(Clone, Serialize)]
struct RecordActionOp {
    member: MemberRef,
    action: String,
    object_id: Option<String>,
    /// Caller-chosen points (service only); left out of the request hash when absent, so keys
    /// stored before it existed still match.
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<Points>,
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

    fn history(&self, program: &Program, now: DateTime<Utc>) -> Option<HistoryQuery> {
        self.loyalty
            .history_for(program, &self.action, self.object_id.as_deref(), now)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<ActionOutcome> {
        let request = ActionRequest {
            action: self.action.clone(),
            object_id: self.object_id.clone(),
            amount: None,
            points: self.points,
            ..Default::default()
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
    let detail = award.refusal.and_then(|refusal| {
        award
            .verdicts
            .iter()
            .find(|v| v.refusal == Some(refusal))
            .and_then(|v| v.detail.clone())
    });
    Ok(ActionOutcome {
        awarded: !award.earned.is_empty(),
        points,
        balance: tx.balance(Account::Points).await?,
        transactions: award.posted,
        reason: award.refusal,
        rules: award.earned,
        detail,
        challenges: award.progress.moved,
    })
}

impl Loyalty {
    /// Records a mini-app action for the calling member (or, for a service token, for
    /// `member_external_id`) and pays what the live rules say. `points` is what a service names
    /// for `CallerChosen` rules (a member may not send it: `FORBIDDEN`); the engine refuses a
    /// value outside the rule's range with `VALIDATION`.
    pub async fn record_action(
        &self,
        actor: &ActionCaller,
        action: &str,
        object_id: Option<&str>,
        member_external_id: Option<&str>,
        idempotency_key: Option<&str>,
        points: Option<rust_decimal::Decimal>,
    ) -> DomainResult<ActionOutcome> {
        if let (ActionCaller::Member(_), Some(_)) = (actor, points) {
            return Err(DomainError::Forbidden(
                "only the service may choose the points of an action".into(),
            ));
        }
        let points = points.map(|p| Points::parse(p, "points")).transpose()?;
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
            points,
            key,
            loyalty: self.clone(),
        };
        self.execute(&program, &op).await
    }

    /// Evaluates the live rules for `request` under the member's lock and posts the earns.
    ///
    /// A rule with a total budget reserves its award first (a conditional `UPDATE` whose row lock
    /// lasts until commit, so concurrent members never overspend it); when the award does not
    /// fit, the rule is marked exhausted and the event is evaluated again, so an exclusive rule
    /// that cannot pay leaves the rules after it free to.
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
        let challenges = self.challenges_moved_by(tx, &request.action).await?;
        let goal_conditions = crate::challenges::advance::conditions(&challenges);
        let asked = Self::history_query(
            tx.program,
            version,
            &rules,
            request.object_id.as_deref(),
            tx.now,
        );
        let read = tx.take_history(&asked);
        let mut facts = self
            .facts(
                tx.txn,
                tx.program,
                &tx.member,
                (&rules, &goal_conditions),
                request,
                (tx.now, read),
            )
            .await?;
        let ctx = EvalContext {
            tz: tx.program.tz,
            now: tx.now,
            points_per_currency: tx.program.points_per_currency,
            multiplier: rust_decimal::Decimal::new(tx.multiplier_minor, 2),
        };
        let evaluation = loop {
            let evaluation = evaluate(&ruleset, &facts, request, &ctx)?;
            match budgets::reserve_all(tx, &evaluation.earns).await? {
                None => break evaluation,
                Some(exhausted) => {
                    facts.exhausted.insert(exhausted);
                }
            }
        };
        let mut posted = Vec::with_capacity(evaluation.earns.len());
        let mut earned = Vec::with_capacity(evaluation.earns.len());
        for (n, earn) in evaluation.earns.into_iter().enumerate() {
            if let Some(badge_id) = earn.badge {
                // No ledger row: the badge is held once whoever grants it, so a retry or a
                // second paying event grants nothing more.
                crate::challenges::badges::insert_member_badge(
                    tx.txn,
                    tx.program.id,
                    tx.member.id,
                    badge_id,
                    crate::challenges::badges::BadgeSource::Campaign,
                    Some(earn.rule_id.to_string()),
                    tx.now,
                )
                .await?;
                earned.push(Earned {
                    rule_id: earn.rule_id,
                    rule_name: earn.rule_name,
                    source: earn.source,
                    points: Points::ZERO,
                    spins: 0,
                    qualifying: false,
                    lines: None,
                    entry_id: None,
                });
                continue;
            }
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
            let mut done = Earned {
                rule_id: earn.rule_id,
                rule_name: earn.rule_name.clone(),
                source: earn.source.clone(),
                points: earn.points,
                spins: earn.spins,
                qualifying: earn.qualifying,
                lines: earn.lines,
                entry_id: None,
            };
            // A free-spin reward credits SPINS (one spin = 1.00) under the same key, rule and
            // source as points would be: the rule's limits count it, a retry finds it, the
            // ledger shows it. Spins never qualify for tiers.
            let (account, amount) = if earn.points.is_positive() {
                (Account::Points, earn.points)
            } else {
                (Account::Spins, spins_amount(earn.spins))
            };
            let mut entry = Entry::new(account, Kind::Earn, amount)
                .label(earn.source)
                .key(Some(key.clone()));
            entry.rule = Some((earn.rule_id, version));
            entry = match (reference, earn.object_id) {
                (Some((kind, id)), _) => entry.reference(kind, id),
                (None, Some(object)) => entry.reference("object", object),
                (None, None) => entry,
            };
            if account == Account::Spins {
                if earn.spins > 0 {
                    posted.push(tx.credit(entry).await?);
                }
                earned.push(done);
                continue;
            }
            let qualification = earn.qualifying.then(|| {
                let mut qualification = entry.clone();
                qualification.account = Account::Qualification;
                qualification.key = Some(format!("{key}:q"));
                qualification
            });
            let posting = tx.credit(entry).await?;
            done.entry_id = Some(posting.id);
            posted.push(posting);
            if let Some(qualification) = qualification {
                posted.push(tx.credit(qualification).await?);
            }
            earned.push(done);
        }
        if let Some((date, streak)) = evaluation.streak {
            tx.member.last_login_date = Some(date.to_string());
            tx.member.login_streak = i32::try_from(streak).unwrap_or(i32::MAX);
            tx.touch_member();
        }
        // Before the event is logged: `actionCountAtLeast` counts it as "this one included".
        let event = crate::earning::rules::event_facts(&facts, request, &ctx);
        let progress =
            crate::challenges::advance::advance(tx, &challenges, request, reference, event).await?;
        crate::earning::events::record(tx, request, reference, &posted).await?;
        Ok(Award {
            posted,
            earned,
            refusal: evaluation.refusal,
            verdicts: evaluation.verdicts,
            progress,
        })
    }

    /// Everything the engine needs to know about the member for `request`, as of `now`: the
    /// per-rule counts ([`Loyalty::member_facts`]) and the facts only some conditions need
    /// ([`Loyalty::event_facts`]). The award (under the member's lock) and `testRules` (outside a
    /// transaction) both load them here.
    pub(crate) async fn facts<C: ConnectionTrait>(
        &self,
        conn: &C,
        program: &Program,
        member: &members::Model,
        (rules, goal_conditions): (&[&Rule], &[&Condition]),
        request: &ActionRequest,
        (now, read): (chrono::DateTime<chrono::Utc>, Option<Vec<RuleHistory>>),
    ) -> TxResult<MemberFacts> {
        let object_id = request.object_id.as_deref();
        let mut facts = self
            .member_facts(conn, program, member, (rules, object_id), (now, read))
            .await?;
        let conditions: Vec<&Condition> = rules
            .iter()
            .flat_map(|rule| rule.conditions.iter())
            .chain(goal_conditions.iter().copied())
            .collect();
        self.event_facts(
            conn,
            member,
            &conditions,
            request,
            (program.tz, now),
            &mut facts,
        )
        .await?;
        Ok(facts)
    }

    /// The facts only some conditions need, loaded only when a rule for the action (or a
    /// challenge goal the event may move) has one.
    async fn event_facts<C: ConnectionTrait>(
        &self,
        txn: &C,
        member: &members::Model,
        conditions: &[&Condition],
        request: &ActionRequest,
        (tz, now): (chrono_tz::Tz, chrono::DateTime<chrono::Utc>),
        facts: &mut MemberFacts,
    ) -> TxResult<()> {
        let needs = |wanted: fn(&Condition) -> bool| conditions.iter().any(|c| wanted(c));
        facts.joined_at = Some(member.joined_at);
        if needs(|c| matches!(c, Condition::MemberAttributeEquals { .. })) {
            // Read with the member's lock: `setMemberAttributes` writes under the same lock.
            facts.attributes = attributes::stored(&member.attributes)?
                .into_iter()
                .collect();
        }
        if let Some(tier_id) = member.tier_id {
            // The id (from the locked member row) decides; the name only explains a refusal,
            // so the cached ladder is good enough for it.
            let name = if needs(|c| matches!(c, Condition::TierIn { .. })) {
                self.tier_ladder(txn, member.program_id)
                    .await?
                    .iter()
                    .find(|tier| tier.id == tier_id)
                    .map(|tier| tier.name.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            facts.tier = Some(TierFact { id: tier_id, name });
        }
        let counts_purchases =
            |c: &Condition| matches!(c, Condition::FirstPurchase | Condition::NthPurchase { .. });
        if request.action == "purchase" && needs(counts_purchases) {
            // Under the member's lock: purchases of this member change only here.
            let before = purchases::Entity::find()
                .filter(purchases::Column::MemberId.eq(member.id))
                .count(txn)
                .await?;
            facts.purchase_ordinal = Some(u32::try_from(before + 1).unwrap_or(u32::MAX));
        }
        if needs(|c| matches!(c, Condition::HasBadge { .. })) {
            // Under the member's lock: grants inside postings of this member queue behind it.
            facts.badges = crate::challenges::badges::held_codes(txn, member.id).await?;
        }
        if needs(|c| matches!(c, Condition::ActionCountAtLeast { .. })) {
            facts.action_counts = Some(
                crate::earning::events::action_counts(txn, member.id, &request.action, tz, now)
                    .await?,
            );
        }
        Ok(())
    }
}

/// One earn as posted, with what refunds and answers need to know about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earned {
    pub rule_id: i64,
    pub rule_name: String,
    pub source: String,
    pub points: Points,
    pub spins: u32,
    pub qualifying: bool,
    /// The order lines the points were computed on; `None` = the whole order.
    pub lines: Option<Vec<usize>>,
    /// The POINTS ledger row (none for a spin credit).
    pub entry_id: Option<i64>,
}
