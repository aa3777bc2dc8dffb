//! Admin: the challenges draft, `publishChallenges`, badges and `grantBadge`. Members see their
//! challenges with progress and their badges on `me { challenges badges lockedBadges }`
//! (`members.rs`, DTOs here).

use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::challenges::badges::{
    Badge as DBadge, BadgeInput as DBadgeInput, BadgeSource as DBadgeSource,
    EarnedBadge as DEarnedBadge,
};
use loyalty_domain::challenges::member::MemberChallenge as DMemberChallenge;
use loyalty_domain::challenges::{
    Challenge as DChallenge, ChallengeInput as DChallengeInput, ChallengeSet as DChallengeSet,
    GoalInput as DGoalInput, Measure, Window, WindowKind,
};
use loyalty_domain::{AdminActor, Money};
use rust_decimal::Decimal;

use crate::error::{parse_id, scope, IntoGql};

/// What a goal measures over the events that meet its conditions.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum GoalMeasure {
    /// How many events.
    Count,
    /// The sum of their amounts (the order total, or the value of the lines the goal's line
    /// condition matches); the target is a money amount.
    SumAmount,
    /// How many distinct object ids.
    DistinctObjects,
    /// How many distinct line categories.
    DistinctCategories,
    /// The run of consecutive local days with at least one event.
    StreakDays,
}

impl From<GoalMeasure> for Measure {
    fn from(m: GoalMeasure) -> Self {
        match m {
            GoalMeasure::Count => Measure::Count,
            GoalMeasure::SumAmount => Measure::SumAmount,
            GoalMeasure::DistinctObjects => Measure::DistinctObjects,
            GoalMeasure::DistinctCategories => Measure::DistinctCategories,
            GoalMeasure::StreakDays => Measure::StreakDays,
        }
    }
}

impl From<Measure> for GoalMeasure {
    fn from(m: Measure) -> Self {
        match m {
            Measure::Count => GoalMeasure::Count,
            Measure::SumAmount => GoalMeasure::SumAmount,
            Measure::DistinctObjects => GoalMeasure::DistinctObjects,
            Measure::DistinctCategories => GoalMeasure::DistinctCategories,
            Measure::StreakDays => GoalMeasure::StreakDays,
        }
    }
}

/// When progress counts.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeWindowKind {
    /// `[from, to)`.
    Fixed,
    /// Every local week from Monday 00:00 in the program's timezone; progress starts again.
    Weekly,
    /// Every local month from the 1st at 00:00 in the program's timezone.
    Monthly,
}

impl From<ChallengeWindowKind> for WindowKind {
    fn from(k: ChallengeWindowKind) -> Self {
        match k {
            ChallengeWindowKind::Fixed => WindowKind::Fixed,
            ChallengeWindowKind::Weekly => WindowKind::Weekly,
            ChallengeWindowKind::Monthly => WindowKind::Monthly,
        }
    }
}

#[derive(InputObject)]
pub struct ChallengeWindowInput {
    pub kind: ChallengeWindowKind,
    /// FIXED only.
    pub from: Option<DateTime<Utc>>,
    /// FIXED only; after `from`.
    pub to: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct ChallengeGoalInput {
    /// The trigger: a built-in action or one the program's rules name.
    pub action: String,
    /// Campaign conditions, exactly as `createRule` takes them.
    #[graphql(default)]
    pub conditions: Vec<Json<serde_json::Value>>,
    pub measure: GoalMeasure,
    /// A money amount for SUM_AMOUNT, a whole number otherwise; greater than 0.
    pub target: Decimal,
}

/// Paid once per member and window on completion; at least one field.
#[derive(InputObject, Default)]
pub struct ChallengeRewardInput {
    pub points: Option<Decimal>,
    /// 1 to 100.
    pub free_spins: Option<i64>,
    pub gift_id: Option<ID>,
    pub badge_id: Option<ID>,
}

#[derive(InputObject)]
pub struct ChallengeInput {
    pub name: String,
    #[graphql(default)]
    pub description: String,
    /// The goals are ordered steps, each unlocking the next.
    #[graphql(default)]
    pub mission: bool,
    pub window: ChallengeWindowInput,
    /// 1 to 10 goals (a mission's steps, in order).
    pub goals: Vec<ChallengeGoalInput>,
    pub reward: ChallengeRewardInput,
    #[graphql(default = true)]
    pub enabled: bool,
}

impl ChallengeInput {
    fn into_domain(self, ctx: &Context<'_>) -> async_graphql::Result<DChallengeInput> {
        let id = |id: Option<ID>| id.map(|id| parse_id(&id, ctx)).transpose();
        Ok(DChallengeInput {
            name: self.name,
            description: self.description,
            mission: self.mission,
            window_kind: self.window.kind.into(),
            window_from: self.window.from,
            window_to: self.window.to,
            goals: self
                .goals
                .into_iter()
                .map(|g| DGoalInput {
                    action: g.action,
                    conditions: g.conditions.into_iter().map(|c| c.0).collect(),
                    measure: g.measure.into(),
                    target: g.target,
                })
                .collect(),
            reward_points: self.reward.points,
            // Out of range becomes 0, which the domain refuses naming the field.
            reward_free_spins: self
                .reward
                .free_spins
                .map(|n| u32::try_from(n).unwrap_or(0)),
            reward_gift_id: id(self.reward.gift_id)?,
            reward_badge_id: id(self.reward.badge_id)?,
            enabled: self.enabled,
        })
    }
}

#[derive(SimpleObject)]
pub struct ChallengeWindow {
    pub kind: ChallengeWindowKind,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct ChallengeGoal {
    /// 0, 1, …: a mission's step order.
    pub position: i32,
    pub action: String,
    pub conditions: Vec<Json<serde_json::Value>>,
    pub measure: GoalMeasure,
    /// A money amount for SUM_AMOUNT, a whole number otherwise.
    pub target: Decimal,
}

#[derive(SimpleObject)]
pub struct ChallengeReward {
    /// Null when the challenge pays no points.
    pub points: Option<Decimal>,
    pub free_spins: u32,
    pub gift_id: Option<ID>,
    pub badge_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct Challenge {
    pub id: ID,
    pub name: String,
    pub description: String,
    pub mission: bool,
    pub window: ChallengeWindow,
    pub goals: Vec<ChallengeGoal>,
    pub reward: ChallengeReward,
    pub enabled: bool,
}

impl From<DChallenge> for Challenge {
    fn from(c: DChallenge) -> Self {
        let window = match c.window {
            Window::Fixed { from, to } => ChallengeWindow {
                kind: ChallengeWindowKind::Fixed,
                from: Some(from),
                to: Some(to),
            },
            Window::Weekly => ChallengeWindow {
                kind: ChallengeWindowKind::Weekly,
                from: None,
                to: None,
            },
            Window::Monthly => ChallengeWindow {
                kind: ChallengeWindowKind::Monthly,
                from: None,
                to: None,
            },
        };
        let goals = c
            .goals
            .into_iter()
            .zip(0..)
            .map(|(g, position)| ChallengeGoal {
                position,
                conditions: g
                    .conditions
                    .iter()
                    .map(|c| Json(serde_json::to_value(c).unwrap_or_default()))
                    .collect(),
                target: match g.measure {
                    Measure::SumAmount => Money::from_minor(g.target).decimal(),
                    _ => Decimal::from(g.target),
                },
                measure: g.measure.into(),
                action: g.action,
            })
            .collect();
        Challenge {
            id: ID(c.id.to_string()),
            name: c.name,
            description: c.description,
            mission: c.mission,
            window,
            goals,
            reward: ChallengeReward {
                points: c
                    .reward
                    .points
                    .is_positive()
                    .then(|| c.reward.points.decimal()),
                free_spins: c.reward.free_spins,
                gift_id: c.reward.gift_id.map(|id| ID(id.to_string())),
                badge_id: c.reward.badge_id.map(|id| ID(id.to_string())),
            },
            enabled: c.enabled,
        }
    }
}

/// A goal's measure in the unit of its target: money for SUM_AMOUNT, a whole number otherwise.
fn in_unit(measure: Measure, value: i64) -> Decimal {
    match measure {
        Measure::SumAmount => Money::from_minor(value).decimal(),
        _ => Decimal::from(value),
    }
}

/// A goal of a member's challenge.
#[derive(SimpleObject)]
pub struct GoalProgress {
    pub position: i32,
    pub action: String,
    pub measure: GoalMeasure,
    /// So far in this window (money for SUM_AMOUNT; the current run for STREAK_DAYS).
    pub progress: Decimal,
    pub target: Decimal,
    /// What is still missing (0 once completed).
    pub left: Decimal,
    pub completed: bool,
    pub completed_at: Option<DateTime<Utc>>,
    /// False for a mission step whose step before is not complete (it counts nothing yet).
    pub unlocked: bool,
}

/// A live challenge as the member sees it, in its current window.
#[derive(SimpleObject)]
pub struct MemberChallenge {
    pub id: ID,
    pub name: String,
    pub description: String,
    pub mission: bool,
    pub window_kind: ChallengeWindowKind,
    pub window_starts_at: DateTime<Utc>,
    /// Exclusive.
    pub window_ends_at: DateTime<Utc>,
    pub goals: Vec<GoalProgress>,
    pub reward: ChallengeReward,
    /// Completed (and rewarded) in this window.
    pub completed: bool,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<DMemberChallenge> for MemberChallenge {
    fn from(m: DMemberChallenge) -> Self {
        let c = Challenge::from(m.challenge);
        MemberChallenge {
            id: c.id,
            name: c.name,
            description: c.description,
            mission: c.mission,
            window_kind: c.window.kind,
            window_starts_at: m.window.starts_at,
            window_ends_at: m.window.ends_at,
            goals: m
                .goals
                .into_iter()
                .map(|g| GoalProgress {
                    position: i32::try_from(g.position).unwrap_or(i32::MAX),
                    action: g.action,
                    measure: g.measure.into(),
                    progress: in_unit(g.measure, g.value),
                    target: in_unit(g.measure, g.target),
                    left: in_unit(g.measure, g.left),
                    completed: g.completed_at.is_some(),
                    completed_at: g.completed_at,
                    unlocked: g.unlocked,
                })
                .collect(),
            reward: c.reward,
            completed: m.completed_at.is_some(),
            completed_at: m.completed_at,
        }
    }
}

/// One goal (a mission's step) of a challenge's funnel.
#[derive(SimpleObject)]
pub struct StepFunnel {
    pub position: i32,
    pub action: String,
    /// Members with progress on it in some window.
    pub members_started: i64,
    /// Members who completed it in some window.
    pub members_completed: i64,
}

/// A challenge's report over every window so far.
#[derive(SimpleObject)]
pub struct ChallengeReport {
    pub challenge_id: ID,
    pub name: String,
    pub members_started: i64,
    pub members_completed: i64,
    /// One per member and window completed.
    pub completions: i64,
    pub points_issued: Decimal,
    pub steps: Vec<StepFunnel>,
}

/// A published version (0: nothing published yet).
#[derive(SimpleObject)]
pub struct ChallengeSet {
    pub version: i64,
    pub challenges: Vec<Challenge>,
}

impl From<DChallengeSet> for ChallengeSet {
    fn from(s: DChallengeSet) -> Self {
        ChallengeSet {
            version: s.version,
            challenges: s.challenges.into_iter().map(Challenge::from).collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct Badge {
    pub id: ID,
    /// Unique in the program.
    pub code: String,
    pub name: String,
    pub image_url: String,
}

impl From<DBadge> for Badge {
    fn from(b: DBadge) -> Self {
        Badge {
            id: ID(b.id.to_string()),
            code: b.code,
            name: b.name,
            image_url: b.image_url,
        }
    }
}

#[derive(InputObject)]
pub struct BadgeInput {
    /// 1–64 characters of a–z, 0–9 and `_`; unique in the program (`CONFLICT` otherwise).
    pub code: String,
    pub name: String,
    /// An http(s) URL.
    pub image_url: String,
}

impl From<BadgeInput> for DBadgeInput {
    fn from(b: BadgeInput) -> Self {
        DBadgeInput {
            code: b.code,
            name: b.name,
            image_url: b.image_url,
        }
    }
}

/// Who gave a member a badge.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum BadgeSource {
    Admin,
    Challenge,
    Campaign,
}

/// A badge a member holds (once, whoever granted it first).
#[derive(SimpleObject)]
pub struct EarnedBadge {
    pub id: ID,
    pub code: String,
    pub name: String,
    pub image_url: String,
    pub earned_at: DateTime<Utc>,
    pub source: BadgeSource,
}

impl From<DEarnedBadge> for EarnedBadge {
    fn from(e: DEarnedBadge) -> Self {
        EarnedBadge {
            id: ID(e.badge.id.to_string()),
            code: e.badge.code,
            name: e.badge.name,
            image_url: e.badge.image_url,
            earned_at: e.earned_at,
            source: match e.source {
                DBadgeSource::Admin => BadgeSource::Admin,
                DBadgeSource::Challenge => BadgeSource::Challenge,
                DBadgeSource::Campaign => BadgeSource::Campaign,
            },
        }
    }
}

#[derive(SimpleObject)]
pub struct BadgeGrant {
    pub badge: EarnedBadge,
    /// False when the member already held the badge (the first grant stands).
    pub newly_granted: bool,
}

#[derive(Default)]
pub struct ChallengeQuery;

#[Object]
impl ChallengeQuery {
    /// Admin: the challenges draft (what `publishChallenges` would freeze).
    async fn challenges(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Challenge>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let challenges = loyalty.draft_challenges(&program).await.gql(ctx)?;
        Ok(challenges.into_iter().map(Challenge::from).collect())
    }

    /// Admin: the published challenges.
    async fn live_challenges(&self, ctx: &Context<'_>) -> async_graphql::Result<ChallengeSet> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        Ok(loyalty.live_challenges(&program).await.gql(ctx)?.into())
    }

    /// Admin: one published challenge's report over every window so far: members who started
    /// and completed, completions, the funnel per goal (a mission's steps) and the points its
    /// rewards issued (in `loyaltyReport`'s `pointsIssued.bySource` under `challenge_…`).
    async fn challenge_report(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ChallengeReport> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let report = loyalty.challenge_report(&program, id).await.gql(ctx)?;
        Ok(ChallengeReport {
            challenge_id: ID(report.challenge_id.to_string()),
            name: report.name,
            members_started: report.members_started,
            members_completed: report.members_completed,
            completions: report.completions,
            points_issued: report.points_issued.decimal(),
            steps: report
                .steps
                .into_iter()
                .map(|s| StepFunnel {
                    position: i32::try_from(s.position).unwrap_or(i32::MAX),
                    action: s.action,
                    members_started: s.members_started,
                    members_completed: s.members_completed,
                })
                .collect(),
        })
    }

    /// Admin: the program's badges.
    async fn badges(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Badge>> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let badges = loyalty.badges(&program).await.gql(ctx)?;
        Ok(badges.into_iter().map(Badge::from).collect())
    }
}

#[derive(Default)]
pub struct ChallengeMutation;

#[Object]
impl ChallengeMutation {
    async fn create_challenge(
        &self,
        ctx: &Context<'_>,
        input: ChallengeInput,
    ) -> async_graphql::Result<Challenge> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let input = input.into_domain(ctx)?;
        Ok(loyalty
            .create_challenge(&program, input)
            .await
            .gql(ctx)?
            .into())
    }

    async fn update_challenge(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ChallengeInput,
    ) -> async_graphql::Result<Challenge> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        let input = input.into_domain(ctx)?;
        Ok(loyalty
            .update_challenge(&program, id, input)
            .await
            .gql(ctx)?
            .into())
    }

    /// Removes a challenge from the draft; published versions keep their copy.
    async fn delete_challenge(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Challenge> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        Ok(loyalty
            .delete_challenge(&program, id)
            .await
            .gql(ctx)?
            .into())
    }

    /// Freezes the challenges draft into a new immutable version.
    async fn publish_challenges(&self, ctx: &Context<'_>) -> async_graphql::Result<ChallengeSet> {
        let (actor, loyalty, program) = scope::<AdminActor>(ctx).await?;
        Ok(loyalty
            .publish_challenges(&program, &actor.subject)
            .await
            .gql(ctx)?
            .into())
    }

    async fn create_badge(
        &self,
        ctx: &Context<'_>,
        input: BadgeInput,
    ) -> async_graphql::Result<Badge> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        Ok(loyalty
            .create_badge(&program, input.into())
            .await
            .gql(ctx)?
            .into())
    }

    async fn update_badge(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: BadgeInput,
    ) -> async_graphql::Result<Badge> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        Ok(loyalty
            .update_badge(&program, id, input.into())
            .await
            .gql(ctx)?
            .into())
    }

    /// Gives a member a badge; a member holds each badge once (a second grant changes nothing
    /// and answers `newlyGranted: false`).
    async fn grant_badge(
        &self,
        ctx: &Context<'_>,
        member_id: ID,
        badge_id: ID,
    ) -> async_graphql::Result<BadgeGrant> {
        let (actor, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let member_id = parse_id(&member_id, ctx)?;
        let badge_id = parse_id(&badge_id, ctx)?;
        let grant = loyalty
            .grant_badge(&program, member_id, badge_id, &actor.subject)
            .await
            .gql(ctx)?;
        Ok(BadgeGrant {
            badge: grant.earned.into(),
            newly_granted: grant.newly_granted,
        })
    }
}
