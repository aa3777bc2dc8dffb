//! Admin: the rules draft, "apply changes" (`publishRules`), test mode (`testRules`), replay
//! before publish (`replayRules`) and `adjustPoints`.

use std::collections::HashMap;

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::earning::budgets::BudgetUsage;
use loyalty_domain::earning::replay::ReplayReport;
use loyalty_domain::earning::rulebook::RuleInput as DRuleInput;
use loyalty_domain::earning::rules::conditions::Line;
use loyalty_domain::earning::rules::Verdict;
use loyalty_domain::earning::rules::{
    Budget as DBudget, Limit as DLimit, Reward, Rounding as DRounding, Rule as DRule, Streak,
};
use loyalty_domain::earning::{RulesTarget, TestEvent};
use loyalty_domain::program::Program;
use loyalty_domain::{AdminActor, DomainError, Loyalty, Money, Points};
use rust_decimal::Decimal;

use crate::earning::{reason, ActionReason, ActionResult, Limit, Period};
use crate::error::{authorize, parse_id, scope, to_gql, IntoGql};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RewardKind {
    /// A fixed number of points.
    Fixed,
    /// Percent of the amount × the program's points-per-currency ratio.
    Percent,
}

/// What a rule pays (its effect).
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EffectKind {
    /// `points`.
    Fixed,
    /// `percent` of the order amount × the program's points-per-currency ratio.
    Percent,
    /// `percent` of the value of the lines the rule's line conditions match (all lines without
    /// one), converted like PERCENT.
    PercentOfLines,
    /// `points` for every `per` of the amount, the number of units rounded as `rounding` says
    /// (DOWN unless given).
    PerUnit,
    /// Pays `(factor − 1) ×` what the other rules paid for the same event.
    Multiplier,
    /// The service names the points in `recordAction(points:)`, within `[min, max]`.
    CallerChosen,
    /// `spins` free wheel spins.
    FreeSpins,
    /// Grants the badge `badgeId` (held once; no points).
    GrantBadge,
}

impl EffectKind {
    fn name(self) -> &'static str {
        match self {
            EffectKind::Fixed => "FIXED",
            EffectKind::Percent => "PERCENT",
            EffectKind::PercentOfLines => "PERCENT_OF_LINES",
            EffectKind::PerUnit => "PER_UNIT",
            EffectKind::Multiplier => "MULTIPLIER",
            EffectKind::CallerChosen => "CALLER_CHOSEN",
            EffectKind::FreeSpins => "FREE_SPINS",
            EffectKind::GrantBadge => "GRANT_BADGE",
        }
    }
}

/// How a PER_UNIT effect rounds the number of units.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Whole units only: 99.99 per 10.00 is 9.
    Down,
    /// Half up: 95.00 per 10.00 is 10.
    Nearest,
    /// Any started unit counts: 90.01 per 10.00 is 10.
    Up,
}

impl From<Rounding> for DRounding {
    fn from(r: Rounding) -> Self {
        match r {
            Rounding::Down => DRounding::Down,
            Rounding::Nearest => DRounding::Nearest,
            Rounding::Up => DRounding::Up,
        }
    }
}

impl From<DRounding> for Rounding {
    fn from(r: DRounding) -> Self {
        match r {
            DRounding::Down => Rounding::Down,
            DRounding::Nearest => Rounding::Nearest,
            DRounding::Up => Rounding::Up,
        }
    }
}

/// A rule's effect: `kind` and only the fields that kind has (any other field is refused with
/// `VALIDATION`).
#[derive(InputObject)]
pub struct EffectInput {
    pub kind: EffectKind,
    /// FIXED, PER_UNIT.
    pub points: Option<Decimal>,
    /// PERCENT, PERCENT_OF_LINES: in (0, 1000].
    pub percent: Option<Decimal>,
    /// PER_UNIT: the money amount one unit is.
    pub per: Option<Decimal>,
    /// PER_UNIT (default DOWN).
    pub rounding: Option<Rounding>,
    /// MULTIPLIER: in (1, 100].
    pub factor: Option<Decimal>,
    /// CALLER_CHOSEN.
    pub min: Option<Decimal>,
    /// CALLER_CHOSEN.
    pub max: Option<Decimal>,
    /// FREE_SPINS: 1 to 100.
    pub spins: Option<i64>,
    /// GRANT_BADGE: a badge of the program.
    pub badge_id: Option<ID>,
}

impl EffectInput {
    fn into_reward(self) -> Result<Reward, DomainError> {
        let kind = self.kind;
        let allowed: &[&str] = match kind {
            EffectKind::Fixed => &["points"],
            EffectKind::Percent | EffectKind::PercentOfLines => &["percent"],
            EffectKind::PerUnit => &["points", "per", "rounding"],
            EffectKind::Multiplier => &["factor"],
            EffectKind::CallerChosen => &["min", "max"],
            EffectKind::FreeSpins => &["spins"],
            EffectKind::GrantBadge => &["badgeId"],
        };
        let given = [
            ("points", self.points.is_some()),
            ("percent", self.percent.is_some()),
            ("per", self.per.is_some()),
            ("rounding", self.rounding.is_some()),
            ("factor", self.factor.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("spins", self.spins.is_some()),
            ("badgeId", self.badge_id.is_some()),
        ];
        if let Some((field, _)) = given
            .iter()
            .find(|(field, set)| *set && !allowed.contains(field))
        {
            return Err(DomainError::validation(format!(
                "effect.{field} does not belong to a {} effect",
                kind.name()
            )));
        }
        let need = |value: Option<Decimal>, field: &str| {
            value.ok_or_else(|| {
                DomainError::validation(format!(
                    "effect.{field} is required for a {} effect",
                    kind.name()
                ))
            })
        };
        let points = |value: Option<Decimal>, field: &str| {
            Points::parse(need(value, field)?, &format!("effect.{field}"))
        };
        Ok(match kind {
            EffectKind::Fixed => Reward::Fixed(points(self.points, "points")?),
            EffectKind::Percent => Reward::Percent(need(self.percent, "percent")?),
            EffectKind::PercentOfLines => Reward::PercentOfLines(need(self.percent, "percent")?),
            EffectKind::PerUnit => Reward::PerUnit {
                points: points(self.points, "points")?,
                per: Money::parse(need(self.per, "per")?, "effect.per")?,
                rounding: self.rounding.map(DRounding::from).unwrap_or_default(),
            },
            EffectKind::Multiplier => Reward::Multiplier(need(self.factor, "factor")?),
            EffectKind::CallerChosen => Reward::CallerChosen {
                min: points(self.min, "min")?,
                max: points(self.max, "max")?,
            },
            EffectKind::FreeSpins => {
                let spins = self.spins.ok_or_else(|| {
                    DomainError::validation("effect.spins is required for a FREE_SPINS effect")
                })?;
                Reward::FreeSpins(u32::try_from(spins).map_err(|_| {
                    DomainError::validation("effect.spins must be between 1 and 100")
                })?)
            }
            EffectKind::GrantBadge => {
                let id = self.badge_id.ok_or_else(|| {
                    DomainError::validation("effect.badgeId is required for a GRANT_BADGE effect")
                })?;
                Reward::GrantBadge(
                    id.parse::<i64>().map_err(|_| {
                        DomainError::validation("effect.badgeId must be a badge id")
                    })?,
                )
            }
        })
    }
}

/// A campaign's caps over its whole life.
#[derive(InputObject)]
pub struct BudgetInput {
    /// Points the rule may issue in total, over all members (at least 0.01).
    pub total: Option<Decimal>,
    /// Points the rule may issue to one member (greater than 0).
    pub per_member: Option<Decimal>,
}

#[derive(InputObject)]
pub struct LimitInput {
    pub count: u32,
    pub period: Period,
}

#[derive(InputObject)]
pub struct StreakInput {
    /// Extra points per consecutive day.
    pub step: Decimal,
    /// Most a single daily award pays.
    pub cap: Decimal,
}

#[derive(InputObject)]
pub struct RuleInput {
    pub name: String,
    pub action: String,
    pub source: Option<String>,
    /// What the rule pays; give this or the older `rewardKind` (+ `points`/`percent`).
    pub effect: Option<EffectInput>,
    /// The pre-campaign way to say FIXED `points` or PERCENT `percent` (still accepted).
    pub reward_kind: Option<RewardKind>,
    pub points: Option<Decimal>,
    pub percent: Option<Decimal>,
    pub limit: Option<LimitInput>,
    #[graphql(default)]
    pub per_object: bool,
    pub streak: Option<StreakInput>,
    pub active_from: Option<DateTime<Utc>>,
    pub active_to: Option<DateTime<Utc>>,
    #[graphql(default = true)]
    pub enabled: bool,
    /// Also credit the QUALIFICATION account (what tiers count).
    #[graphql(default)]
    pub qualifying: bool,
    /// All must hold for the rule to pay: objects like `{"kind": "orderTotalAtLeast",
    /// "amount": "50.00"}` (README, "Rule conditions").
    #[graphql(default)]
    pub conditions: Vec<Json<serde_json::Value>>,
    /// Rules apply in descending priority (−1000 to 1000), then in creation order.
    #[graphql(default)]
    pub priority: i32,
    /// When this rule pays, no lower-priority rule pays for the same event.
    #[graphql(default)]
    pub exclusive: bool,
    pub budget: Option<BudgetInput>,
}

impl RuleInput {
    fn into_domain(self) -> Result<DRuleInput, DomainError> {
        let reward = match (self.effect, self.reward_kind, self.points, self.percent) {
            (Some(effect), None, None, None) => effect.into_reward()?,
            (Some(_), _, _, _) => {
                return Err(DomainError::validation(
                    "give either `effect` or `rewardKind` (with `points`/`percent`), not both",
                ))
            }
            (None, None, _, _) => {
                return Err(DomainError::validation("`effect` is required"));
            }
            (None, Some(RewardKind::Fixed), Some(points), None) => {
                Reward::Fixed(Points::parse(points, "points")?)
            }
            (None, Some(RewardKind::Percent), None, Some(percent)) => Reward::Percent(percent),
            (None, Some(RewardKind::Fixed), _, _) => {
                return Err(DomainError::validation(
                    "a FIXED rule needs `points` and no `percent`",
                ))
            }
            (None, Some(RewardKind::Percent), _, _) => {
                return Err(DomainError::validation(
                    "a PERCENT rule needs `percent` and no `points`",
                ))
            }
        };
        let budget = match self.budget {
            Some(b) => DBudget {
                total: b
                    .total
                    .map(|t| Points::parse(t, "budget.total"))
                    .transpose()?,
                per_member: b
                    .per_member
                    .map(|c| Points::parse(c, "budget.perMember"))
                    .transpose()?,
            },
            None => DBudget::default(),
        };
        let streak = match self.streak {
            Some(s) => Some(Streak {
                step: Points::parse(s.step, "streak.step")?,
                cap: Points::parse(s.cap, "streak.cap")?,
            }),
            None => None,
        };
        Ok(DRuleInput {
            name: self.name,
            action: self.action,
            source: self.source,
            reward,
            limit: self.limit.map(|l| DLimit {
                count: l.count,
                period: l.period.into(),
            }),
            per_object: self.per_object,
            streak,
            active_from: self.active_from,
            active_to: self.active_to,
            enabled: self.enabled,
            qualifying: self.qualifying,
            conditions: self.conditions.into_iter().map(|c| c.0).collect(),
            priority: self.priority,
            exclusive: self.exclusive,
            budget,
        })
    }
}

#[derive(SimpleObject)]
pub struct StreakBonus {
    pub step: Decimal,
    pub cap: Decimal,
}

/// What a rule pays: `kind` and the fields that kind has (the others are null).
#[derive(SimpleObject)]
pub struct Effect {
    pub kind: EffectKind,
    pub points: Option<Decimal>,
    pub percent: Option<Decimal>,
    pub per: Option<Decimal>,
    pub rounding: Option<Rounding>,
    pub factor: Option<Decimal>,
    pub min: Option<Decimal>,
    pub max: Option<Decimal>,
    pub spins: Option<u32>,
    pub badge_id: Option<ID>,
}

impl Effect {
    fn of(kind: EffectKind) -> Self {
        Effect {
            kind,
            points: None,
            percent: None,
            per: None,
            rounding: None,
            factor: None,
            min: None,
            max: None,
            spins: None,
            badge_id: None,
        }
    }
}

/// A percent or factor as the API shows it: two fraction digits (`7.5` → `7.50`).
fn two_places(mut value: Decimal) -> Decimal {
    value.rescale(2);
    value
}

impl From<Reward> for Effect {
    fn from(reward: Reward) -> Self {
        match reward {
            Reward::Fixed(p) => Effect {
                points: Some(p.decimal()),
                ..Effect::of(EffectKind::Fixed)
            },
            Reward::Percent(p) => Effect {
                percent: Some(two_places(p)),
                ..Effect::of(EffectKind::Percent)
            },
            Reward::PercentOfLines(p) => Effect {
                percent: Some(two_places(p)),
                ..Effect::of(EffectKind::PercentOfLines)
            },
            Reward::PerUnit {
                points,
                per,
                rounding,
            } => Effect {
                points: Some(points.decimal()),
                per: Some(per.decimal()),
                rounding: Some(rounding.into()),
                ..Effect::of(EffectKind::PerUnit)
            },
            Reward::Multiplier(factor) => Effect {
                factor: Some(two_places(factor)),
                ..Effect::of(EffectKind::Multiplier)
            },
            Reward::CallerChosen { min, max } => Effect {
                min: Some(min.decimal()),
                max: Some(max.decimal()),
                ..Effect::of(EffectKind::CallerChosen)
            },
            Reward::FreeSpins(spins) => Effect {
                spins: Some(spins),
                ..Effect::of(EffectKind::FreeSpins)
            },
            Reward::GrantBadge(badge) => Effect {
                badge_id: Some(ID(badge.to_string())),
                ..Effect::of(EffectKind::GrantBadge)
            },
        }
    }
}

/// A campaign's caps and what it has used.
#[derive(SimpleObject)]
pub struct RuleBudget {
    /// Points the rule may issue over all members; null = no total budget.
    pub total: Option<Decimal>,
    /// Points the rule may issue to one member; null = no cap.
    pub per_member: Option<Decimal>,
    /// Points issued against the total budget (0 before the first award).
    pub spent: Decimal,
    /// `total − spent`; null without a total budget.
    pub remaining: Option<Decimal>,
    /// Awards counted against the total budget.
    pub awards: i64,
}

/// An earning rule (draft or published copy).
#[derive(SimpleObject)]
pub struct Rule {
    pub id: ID,
    pub name: String,
    pub action: String,
    pub source: String,
    pub effect: Effect,
    /// FIXED or PERCENT rules as before campaigns (null for the other effects; see `effect`).
    pub reward_kind: Option<RewardKind>,
    pub points: Option<Decimal>,
    pub percent: Option<Decimal>,
    pub limit: Option<Limit>,
    pub per_object: bool,
    pub streak: Option<StreakBonus>,
    pub active_from: Option<DateTime<Utc>>,
    pub active_to: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub qualifying: bool,
    /// All must hold for the rule to pay, in the shape `createRule` takes.
    pub conditions: Vec<Json<serde_json::Value>>,
    pub priority: i32,
    pub exclusive: bool,
    /// Null when the rule has neither a total budget nor a per-member cap.
    pub budget: Option<RuleBudget>,
}

/// Budget usage by (draft) rule id, for [`Rule::new`].
type Usage = HashMap<i64, BudgetUsage>;

async fn usage(loyalty: &Loyalty, program: &Program) -> Result<Usage, DomainError> {
    loyalty.budget_usage(program).await
}

impl Rule {
    fn new(r: DRule, usage: &Usage) -> Self {
        let (reward_kind, points, percent) = match r.reward {
            Reward::Fixed(p) => (Some(RewardKind::Fixed), Some(p.decimal()), None),
            Reward::Percent(p) => (Some(RewardKind::Percent), None, Some(p)),
            _ => (None, None, None),
        };
        let budget = (r.budget.total.is_some() || r.budget.per_member.is_some()).then(|| {
            let used = usage.get(&r.id).copied().unwrap_or_default();
            RuleBudget {
                total: r.budget.total.map(Points::decimal),
                per_member: r.budget.per_member.map(Points::decimal),
                spent: used.spent.decimal(),
                remaining: r
                    .budget
                    .total
                    .map(|t| (t.decimal() - used.spent.decimal()).max(Decimal::ZERO)),
                awards: used.awards,
            }
        });
        Rule {
            id: ID(r.id.to_string()),
            name: r.name,
            action: r.action,
            source: r.source,
            effect: r.reward.into(),
            reward_kind,
            points,
            percent,
            limit: r.limit.map(|l| Limit {
                count: l.count,
                period: l.period.into(),
            }),
            per_object: r.per_object,
            streak: r.streak.map(|s| StreakBonus {
                step: s.step.decimal(),
                cap: s.cap.decimal(),
            }),
            active_from: r.active_from,
            active_to: r.active_to,
            enabled: r.enabled,
            qualifying: r.qualifying,
            conditions: r
                .conditions
                .iter()
                .map(|c| serde_json::to_value(c).map(Json))
                .collect::<Result<_, _>>()
                .unwrap_or_default(),
            priority: r.priority,
            exclusive: r.exclusive,
            budget,
        }
    }

    fn list(rules: impl IntoIterator<Item = DRule>, usage: &Usage) -> Vec<Rule> {
        rules.into_iter().map(|r| Rule::new(r, usage)).collect()
    }
}

#[derive(SimpleObject)]
pub struct Ruleset {
    /// 0 = nothing published yet.
    pub version: i64,
    pub rules: Vec<Rule>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RulesTargetInput {
    Draft,
    Live,
}

/// One order line of a dry run (as `recordPurchase` takes them).
#[derive(InputObject)]
pub struct TestLineInput {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: u32,
    pub unit_price: Decimal,
}

#[derive(InputObject)]
pub struct TestRulesInput {
    pub member_id: ID,
    pub action: String,
    pub object_id: Option<String>,
    /// The order amount; defaults to the lines' total when lines are given.
    pub amount: Option<Decimal>,
    /// A purchase's lines, for line conditions and PERCENT_OF_LINES.
    #[graphql(default)]
    pub lines: Vec<TestLineInput>,
    /// What a service would send for a CALLER_CHOSEN rule.
    pub points: Option<Decimal>,
    /// Evaluate as of this instant (default: now), e.g. a weekend rule on a Tuesday.
    pub at: Option<DateTime<Utc>>,
    #[graphql(default_with = "RulesTargetInput::Draft")]
    pub target: RulesTargetInput,
}

impl TestRulesInput {
    fn event(self) -> Result<TestEvent, DomainError> {
        let lines = self
            .lines
            .into_iter()
            .enumerate()
            .map(|(n, line)| {
                if line.sku.trim().is_empty() {
                    return Err(DomainError::validation(format!(
                        "lines[{n}].sku must not be empty"
                    )));
                }
                if line.quantity == 0 {
                    return Err(DomainError::validation(format!(
                        "lines[{n}].quantity must be at least 1"
                    )));
                }
                let unit_price = Money::parse(line.unit_price, &format!("lines[{n}].unitPrice"))?;
                if unit_price.minor() < 0 {
                    return Err(DomainError::validation(format!(
                        "lines[{n}].unitPrice must not be negative"
                    )));
                }
                Ok(Line {
                    sku: line.sku,
                    category: line.category,
                    quantity: line.quantity,
                    unit_price,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TestEvent {
            action: self.action,
            object_id: self.object_id,
            amount: self.amount,
            lines,
            points: self.points,
            at: self.at,
        })
    }
}

#[derive(SimpleObject)]
pub struct PlannedPosting {
    pub rule_id: ID,
    pub rule_name: String,
    pub source: String,
    pub points: Decimal,
}

/// What one rule would do with the event.
#[derive(SimpleObject)]
pub struct RuleVerdict {
    pub rule_id: ID,
    pub rule_name: String,
    pub would_pay: bool,
    pub points: Decimal,
    pub spins: u32,
    /// Why it would not pay; null when it would.
    pub reason: Option<ActionReason>,
    /// The explanation, with the value seen ("conditions[0]: order total 42.00 < 50.00").
    pub detail: Option<String>,
}

impl From<Verdict> for RuleVerdict {
    fn from(v: Verdict) -> Self {
        RuleVerdict {
            rule_id: ID(v.rule_id.to_string()),
            rule_name: v.rule_name,
            would_pay: v.refusal.is_none(),
            points: v.points.decimal(),
            spins: v.spins,
            reason: v.refusal.map(reason),
            detail: v.detail,
        }
    }
}

#[derive(SimpleObject)]
pub struct TestRulesResult {
    /// The ruleset evaluated (0 = the draft).
    pub ruleset_version: i64,
    pub would_award: bool,
    pub points: Decimal,
    pub postings: Vec<PlannedPosting>,
    pub reason: Option<ActionReason>,
    /// Every rule for the action, in the order they apply, and what each would do.
    pub verdicts: Vec<RuleVerdict>,
}

/// What one rule would have done over the replayed events, beside what the live rules did.
#[derive(SimpleObject)]
pub struct RuleReplay {
    pub rule_id: ID,
    pub name: String,
    /// `false`: a rule only the live rules had (it issued points in the period but is not in
    /// the ruleset replayed).
    pub in_ruleset: bool,
    /// Events it would have paid (points or free spins).
    pub events_matched: i64,
    /// Distinct members it would have paid.
    pub members_reached: i64,
    pub points_issued: Decimal,
    pub spins: i64,
    /// What the live rules actually issued under this rule in the period (ledger EARN rows).
    pub actually_issued: Decimal,
}

#[derive(SimpleObject)]
pub struct ReplayTotals {
    /// Recorded events replayed.
    pub events: i64,
    /// Events at least one rule would have paid.
    pub events_matched: i64,
    pub members_reached: i64,
    pub points_issued: Decimal,
    pub spins: i64,
    pub actually_issued: Decimal,
}

#[derive(SimpleObject)]
pub struct ReplayResult {
    /// The ruleset replayed (0 = the draft).
    pub ruleset_version: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub rules: Vec<RuleReplay>,
    pub totals: ReplayTotals,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<ReplayReport> for ReplayResult {
    fn from(report: ReplayReport) -> Self {
        ReplayResult {
            ruleset_version: report.ruleset_version,
            from: report.from,
            to: report.to,
            rules: report
                .rules
                .into_iter()
                .map(|rule| RuleReplay {
                    rule_id: ID(rule.rule_id.to_string()),
                    name: rule.name,
                    in_ruleset: rule.in_ruleset,
                    events_matched: count(rule.events_matched),
                    members_reached: count(rule.members_reached),
                    points_issued: rule.points_issued.decimal(),
                    spins: count(rule.spins),
                    actually_issued: rule.actually_issued.decimal(),
                })
                .collect(),
            totals: ReplayTotals {
                events: count(report.events),
                events_matched: count(report.events_matched),
                members_reached: count(report.members_reached),
                points_issued: report.points_issued.decimal(),
                spins: count(report.spins),
                actually_issued: report.actually_issued.decimal(),
            },
        }
    }
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The rules draft (what `publishRules` would freeze).
    async fn rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Rule>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let rules = loyalty.draft_rules(&program).await.gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Rule::list(rules, &usage))
    }

    /// The published ruleset members earn by.
    async fn live_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Ruleset> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let ruleset = loyalty.live_ruleset(&program).await.gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Ruleset {
            version: ruleset.version,
            rules: Rule::list(ruleset.rules.iter().cloned(), &usage),
        })
    }

    /// Replay before publish: runs the draft (or the live rules) over `[from, to)`'s recorded
    /// earn events and returns, per rule, what it would have issued beside what the live rules
    /// actually issued. At most 93 days and 500,000 events. Writes nothing.
    async fn replay_rules(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default_with = "RulesTargetInput::Draft")] target: RulesTargetInput,
    ) -> async_graphql::Result<ReplayResult> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let target = match target {
            RulesTargetInput::Draft => RulesTarget::Draft,
            RulesTargetInput::Live => RulesTarget::Live,
        };
        loyalty
            .replay_rules(&program, from, to, target)
            .await
            .gql(ctx)
            .map(Into::into)
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    async fn create_rule(
        &self,
        ctx: &Context<'_>,
        input: RuleInput,
    ) -> async_graphql::Result<Rule> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let input = input.into_domain().map_err(|e| to_gql(e, ctx))?;
        let rule = loyalty.create_rule(&program, input).await.gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Rule::new(rule, &usage))
    }

    async fn update_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: RuleInput,
    ) -> async_graphql::Result<Rule> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let input = input.into_domain().map_err(|e| to_gql(e, ctx))?;
        let rule = loyalty.update_rule(&program, id, input).await.gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Rule::new(rule, &usage))
    }

    async fn delete_rule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Rule> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let rule = loyalty.delete_rule(&program, id).await.gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Rule::new(rule, &usage))
    }

    /// "Apply changes": freezes the draft into a new immutable version; every instance
    /// switches to it.
    async fn publish_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Ruleset> {
        let (actor, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let ruleset = loyalty
            .publish_rules(&program, &actor.subject)
            .await
            .gql(ctx)?;
        let usage = usage(loyalty, &program).await.gql(ctx)?;
        Ok(Ruleset {
            version: ruleset.version,
            rules: Rule::list(ruleset.rules.iter().cloned(), &usage),
        })
    }

    /// Test mode: what an action would post for a real member. Writes nothing.
    async fn test_rules(
        &self,
        ctx: &Context<'_>,
        input: TestRulesInput,
    ) -> async_graphql::Result<TestRulesResult> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let member_id = parse_id(&input.member_id, ctx)?;
        let target = match input.target {
            RulesTargetInput::Draft => RulesTarget::Draft,
            RulesTargetInput::Live => RulesTarget::Live,
        };
        let event = input.event().map_err(|e| to_gql(e, ctx))?;
        let (version, evaluation) = loyalty
            .test_rules(&program, member_id, target, event)
            .await
            .gql(ctx)?;
        let points = evaluation.earns.iter().map(|e| e.points.decimal()).sum();
        Ok(TestRulesResult {
            ruleset_version: version,
            would_award: !evaluation.earns.is_empty(),
            points,
            postings: evaluation
                .earns
                .into_iter()
                .map(|e| PlannedPosting {
                    rule_id: ID(e.rule_id.to_string()),
                    rule_name: e.rule_name,
                    source: e.source,
                    points: e.points.decimal(),
                })
                .collect(),
            reason: evaluation.refusal.map(reason),
            verdicts: evaluation
                .verdicts
                .into_iter()
                .map(RuleVerdict::from)
                .collect(),
        })
    }

    /// Adds (positive) or removes (negative) points with a reason. Refuses to overdraw.
    async fn adjust_points(
        &self,
        ctx: &Context<'_>,
        member_id: ID,
        amount: Decimal,
        reason: String,
        idempotency_key: String,
    ) -> async_graphql::Result<ActionResult> {
        let actor = &authorize::<AdminActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let member_id = parse_id(&member_id, ctx)?;
        loyalty
            .adjust_points(actor, member_id, amount, &reason, &idempotency_key)
            .await
            .gql(ctx)
            .map(ActionResult::from)
    }
}
