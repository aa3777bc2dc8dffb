//! `recordAction` and `earnOpportunities`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use loyalty_domain::earning::actions::{ActionOutcome, Earned};
use loyalty_domain::earning::rules::{Period as DPeriod, Refusal, Reward};
use loyalty_domain::{ActionCaller, Loyalty, MemberActor};
use rust_decimal::Decimal;

use crate::error::{authorize, IntoGql};
use crate::types::{transactions, Transaction};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ActionReason {
    /// A one-time reward (per lifetime, per object or once per period) was already paid.
    AlreadyClaimed,
    /// The rule's N-per-period limit is used up.
    LimitReached,
    /// The rules for this action are disabled or outside their active window.
    RuleInactive,
    /// No rule pays for this action.
    NoRule,
    /// A rule matched but computed zero points.
    NothingToAward,
    /// A condition of the rule does not hold for this event.
    ConditionsNotMet,
    /// The campaign's total points budget cannot take this award.
    BudgetExhausted,
    /// The campaign's per-member cap cannot take this award.
    MemberCapReached,
    /// A higher-priority exclusive rule paid for the event.
    Excluded,
    /// A non-member's order (`recordPurchase` without a member): it never earns points.
    NotAMember,
}

pub(crate) fn reason(refusal: Refusal) -> ActionReason {
    match refusal {
        Refusal::AlreadyClaimed => ActionReason::AlreadyClaimed,
        Refusal::LimitReached => ActionReason::LimitReached,
        Refusal::RuleInactive => ActionReason::RuleInactive,
        Refusal::NoRule => ActionReason::NoRule,
        Refusal::NothingToAward => ActionReason::NothingToAward,
        Refusal::ConditionsNotMet => ActionReason::ConditionsNotMet,
        Refusal::BudgetExhausted => ActionReason::BudgetExhausted,
        Refusal::MemberCapReached => ActionReason::MemberCapReached,
        Refusal::Excluded => ActionReason::Excluded,
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Lifetime,
    Day,
    Week,
    Month,
}

impl From<DPeriod> for Period {
    fn from(p: DPeriod) -> Self {
        match p {
            DPeriod::Lifetime => Period::Lifetime,
            DPeriod::Day => Period::Day,
            DPeriod::Week => Period::Week,
            DPeriod::Month => Period::Month,
        }
    }
}

impl From<Period> for DPeriod {
    fn from(p: Period) -> Self {
        match p {
            Period::Lifetime => DPeriod::Lifetime,
            Period::Day => DPeriod::Day,
            Period::Week => DPeriod::Week,
            Period::Month => DPeriod::Month,
        }
    }
}

#[derive(SimpleObject)]
pub struct ActionResult {
    pub awarded: bool,
    /// Points paid by this call.
    pub points: Decimal,
    /// Free wheel spins credited by this call (`FREE_SPINS` rules).
    pub spins: u32,
    /// Spendable balance after the call.
    pub balance: Decimal,
    /// The (first) posting, when something was paid.
    pub transaction: Option<Transaction>,
    pub transactions: Vec<Transaction>,
    /// Why nothing was paid; null when awarded.
    pub reason: Option<ActionReason>,
    /// Every rule that paid (points or free spins), in the order applied.
    pub rules: Vec<PaidRule>,
    /// When nothing was paid: the explanation of the reason, when a rule gave one
    /// ("conditions[0]: order total 42.00 < 50.00").
    pub detail: Option<String>,
}

/// One rule that paid for an event.
#[derive(SimpleObject)]
pub struct PaidRule {
    pub rule_id: ID,
    pub name: String,
    /// The report source its points are issued under.
    pub source: String,
    pub points: Decimal,
    /// Free wheel spins it credited.
    pub spins: u32,
}

pub(crate) fn paid_rules(earned: Vec<Earned>) -> Vec<PaidRule> {
    earned
        .into_iter()
        .map(|e| PaidRule {
            rule_id: ID(e.rule_id.to_string()),
            name: e.rule_name,
            source: e.source,
            points: e.points.decimal(),
            spins: e.spins,
        })
        .collect()
}

impl From<ActionOutcome> for ActionResult {
    fn from(o: ActionOutcome) -> Self {
        let transactions = transactions(o.transactions);
        ActionResult {
            awarded: o.awarded,
            points: o.points.decimal(),
            spins: o.rules.iter().map(|r| r.spins).sum(),
            balance: o.balance.decimal(),
            transaction: transactions.first().cloned(),
            transactions,
            reason: o.reason.map(reason),
            rules: paid_rules(o.rules),
            detail: o.detail,
        }
    }
}

#[derive(InputObject)]
pub struct RecordActionInput {
    /// `daily_login`, `product_view`, `news_read`, `product_share` or a custom action key.
    pub action: String,
    /// The product / news item / object the action is about (per-object rules need it).
    pub object_id: Option<String>,
    /// Client key for safe retries; one-off rewards derive their own key too.
    pub idempotency_key: Option<String>,
    /// Service tokens only: the member acted for.
    pub member_external_id: Option<String>,
    /// Service tokens only: the points a CALLER_CHOSEN rule pays, within its range
    /// (`VALIDATION` outside it; `FORBIDDEN` from a member token).
    pub points: Option<Decimal>,
}

#[derive(SimpleObject)]
pub struct Limit {
    pub count: u32,
    pub period: Period,
}

#[derive(SimpleObject)]
pub struct EarnOpportunity {
    pub rule_id: ID,
    pub name: String,
    pub action: String,
    pub source: String,
    /// What the next award pays (fixed rules, streak included).
    pub points: Option<Decimal>,
    /// Percent of the amount (purchase rules).
    pub percent: Option<Decimal>,
    pub per_object: bool,
    pub limit: Option<Limit>,
    /// Awards left in the limit's current period; null = unlimited.
    pub remaining: Option<u32>,
    /// A one-time reward already taken (for this period).
    pub claimed: bool,
}

#[derive(Default)]
pub struct EarningQuery;

#[Object]
impl EarningQuery {
    /// Every live rule with what it pays and what is left today / already claimed.
    async fn earn_opportunities(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<EarnOpportunity>> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let list = loyalty.earn_opportunities(actor).await.gql(ctx)?;
        Ok(list
            .into_iter()
            .map(|o| EarnOpportunity {
                rule_id: ID(o.rule.id.to_string()),
                points: o.next_points.map(|p| p.decimal()),
                percent: match o.rule.reward {
                    Reward::Percent(p) | Reward::PercentOfLines(p) => Some(p),
                    _ => None,
                },
                per_object: o.rule.per_object,
                limit: o.rule.limit.map(|l| Limit {
                    count: l.count,
                    period: l.period.into(),
                }),
                remaining: o.remaining,
                claimed: o.claimed,
                name: o.rule.name,
                action: o.rule.action,
                source: o.rule.source,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct EarningMutation;

#[Object]
impl EarningMutation {
    /// Records a mini-app action and pays what the live rules say.
    async fn record_action(
        &self,
        ctx: &Context<'_>,
        input: RecordActionInput,
    ) -> async_graphql::Result<ActionResult> {
        let actor = &authorize::<ActionCaller>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        loyalty
            .record_action(
                actor,
                &input.action,
                input.object_id.as_deref(),
                input.member_external_id.as_deref(),
                input.idempotency_key.as_deref(),
                input.points,
            )
            .await
            .gql(ctx)
            .map(ActionResult::from)
    }
}
