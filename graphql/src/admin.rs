//! Admin: the rules draft, "apply changes" (`publishRules`), test mode (`testRules`), replay
//! before publish (`replayRules`) and `adjustPoints`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::earning::replay::ReplayReport;
use loyalty_domain::earning::rulebook::RuleInput as DRuleInput;
use loyalty_domain::earning::rules::{Limit as DLimit, Reward, Rule as DRule, Streak};
use loyalty_domain::earning::RulesTarget;
use loyalty_domain::{AdminActor, DomainError, Loyalty, Points};
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
    pub reward_kind: RewardKind,
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
}

impl RuleInput {
    fn into_domain(self) -> Result<DRuleInput, DomainError> {
        let reward = match (self.reward_kind, self.points, self.percent) {
            (RewardKind::Fixed, Some(points), None) => {
                Reward::Fixed(Points::parse(points, "points")?)
            }
            (RewardKind::Percent, None, Some(percent)) => Reward::Percent(percent),
            (RewardKind::Fixed, _, _) => {
                return Err(DomainError::validation(
                    "a FIXED rule needs `points` and no `percent`",
                ))
            }
            (RewardKind::Percent, _, _) => {
                return Err(DomainError::validation(
                    "a PERCENT rule needs `percent` and no `points`",
                ))
            }
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
        })
    }
}

#[derive(SimpleObject)]
pub struct StreakBonus {
    pub step: Decimal,
    pub cap: Decimal,
}

/// An earning rule (draft or published copy).
#[derive(SimpleObject)]
pub struct Rule {
    pub id: ID,
    pub name: String,
    pub action: String,
    pub source: String,
    pub reward_kind: RewardKind,
    pub points: Option<Decimal>,
    pub percent: Option<Decimal>,
    pub limit: Option<Limit>,
    pub per_object: bool,
    pub streak: Option<StreakBonus>,
    pub active_from: Option<DateTime<Utc>>,
    pub active_to: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub qualifying: bool,
}

impl From<DRule> for Rule {
    fn from(r: DRule) -> Self {
        let (reward_kind, points, percent) = match r.reward {
            Reward::Fixed(p) => (RewardKind::Fixed, Some(p.decimal()), None),
            Reward::Percent(p) => (RewardKind::Percent, None, Some(p)),
            // Shown in full once the admin API speaks the campaign effects.
            _ => (RewardKind::Fixed, None, None),
        };
        Rule {
            id: ID(r.id.to_string()),
            name: r.name,
            action: r.action,
            source: r.source,
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
        }
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

#[derive(InputObject)]
pub struct TestRulesInput {
    pub member_id: ID,
    pub action: String,
    pub object_id: Option<String>,
    pub amount: Option<Decimal>,
    #[graphql(default_with = "RulesTargetInput::Draft")]
    pub target: RulesTargetInput,
}

#[derive(SimpleObject)]
pub struct PlannedPosting {
    pub rule_id: ID,
    pub rule_name: String,
    pub source: String,
    pub points: Decimal,
}

#[derive(SimpleObject)]
pub struct TestRulesResult {
    /// The ruleset evaluated (0 = the draft).
    pub ruleset_version: i64,
    pub would_award: bool,
    pub points: Decimal,
    pub postings: Vec<PlannedPosting>,
    pub reason: Option<ActionReason>,
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
        Ok(loyalty
            .draft_rules(&program)
            .await
            .gql(ctx)?
            .into_iter()
            .map(Rule::from)
            .collect())
    }

    /// The published ruleset members earn by.
    async fn live_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Ruleset> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let ruleset = loyalty.live_ruleset(&program).await.gql(ctx)?;
        Ok(Ruleset {
            version: ruleset.version,
            rules: ruleset.rules.iter().cloned().map(Rule::from).collect(),
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
        loyalty
            .create_rule(&program, input)
            .await
            .gql(ctx)
            .map(Rule::from)
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
        loyalty
            .update_rule(&program, id, input)
            .await
            .gql(ctx)
            .map(Rule::from)
    }

    async fn delete_rule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Rule> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .delete_rule(&program, id)
            .await
            .gql(ctx)
            .map(Rule::from)
    }

    /// "Apply changes": freezes the draft into a new immutable version; every instance
    /// switches to it.
    async fn publish_rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Ruleset> {
        let (actor, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let ruleset = loyalty
            .publish_rules(&program, &actor.subject)
            .await
            .gql(ctx)?;
        Ok(Ruleset {
            version: ruleset.version,
            rules: ruleset.rules.iter().cloned().map(Rule::from).collect(),
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
        let (version, evaluation) = loyalty
            .test_rules(
                &program,
                member_id,
                target,
                &input.action,
                input.object_id.as_deref(),
                input.amount,
            )
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
