//! Rules as stored: the draft admins edit, published immutable rulesets, and the member facts
//! the engine needs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_entities::{earning_rules, ledger_entries, programs, rulesets};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, SimpleExpr};

use crate::ledger::db::{run_detached, sum_of, HistoryQuery, RuleHistory};
use crate::ledger::Account;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::earning::rules::conditions::{self, Condition};
use crate::earning::rules::{
    Budget, Limit, MemberFacts, Period, Reward, Rule, RuleFacts, Ruleset, Streak,
};
use crate::error::{DomainError, DomainResult};
use crate::money::Points;
use crate::periods::Windows;
use crate::program::Program;
use crate::service::Loyalty;
use crate::stored::{stored_enum, Stored};

/// Most rules a program may have in its draft.
pub const MAX_RULES: u64 = 200;

/// An admin's rule edit.
#[derive(Clone, Debug)]
pub struct RuleInput {
    pub name: String,
    pub action: String,
    /// Report source key; defaults to the built-in source of the action, or the action itself.
    pub source: Option<String>,
    pub reward: Reward,
    pub limit: Option<Limit>,
    pub per_object: bool,
    pub streak: Option<Streak>,
    pub active_from: Option<DateTime<Utc>>,
    pub active_to: Option<DateTime<Utc>>,
    pub enabled: bool,
    /// Also credit QUALIFICATION (tiers).
    pub qualifying: bool,
    /// The admin API's JSON conditions, validated by [`conditions::validate`] on save.
    pub conditions: Vec<serde_json::Value>,
    /// Rules apply in descending priority (−1000..=1000), then ascending id.
    pub priority: i32,
    /// When this rule pays, no lower-priority rule pays for the same event.
    pub exclusive: bool,
    pub budget: Budget,
}

/// Most a rule's priority may be, in absolute value.
pub const MAX_PRIORITY: i32 = 1_000;
/// Most a `Multiplier` effect's factor may be.
pub const MAX_FACTOR: Decimal = Decimal::ONE_HUNDRED;
/// Most free spins one award may credit.
pub const MAX_FREE_SPINS: u32 = 100;

fn valid_key(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RuleInput {
    /// A rule with everything but its name, action and effect at its default: no source
    /// override, no limit, enabled, no conditions, priority 0, not exclusive, no budget.
    pub fn new(name: &str, action: &str, reward: Reward) -> Self {
        RuleInput {
            name: name.to_owned(),
            action: action.to_owned(),
            source: None,
            reward,
            limit: None,
            per_object: false,
            streak: None,
            active_from: None,
            active_to: None,
            enabled: true,
            qualifying: false,
            conditions: Vec::new(),
            priority: 0,
            exclusive: false,
            budget: Budget::default(),
        }
    }

    /// Checks every field and returns the typed conditions. Tier ids named by `tierIn` are
    /// checked against the program by the caller (it needs the database).
    fn validate(&self) -> DomainResult<Vec<Condition>> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(DomainError::validation("name must be 1–200 characters"));
        }
        if !valid_key(&self.action) {
            return Err(DomainError::validation(
                "action must be 1–64 characters of a–z, 0–9 and `_`",
            ));
        }
        if self.source.as_deref().is_some_and(|s| !valid_key(s)) {
            return Err(DomainError::validation(
                "source must be 1–64 characters of a–z, 0–9 and `_`",
            ));
        }
        validate_reward(&self.reward)?;
        if self.limit.is_some_and(|l| l.count == 0 || l.count > 10_000) {
            return Err(DomainError::validation(
                "limit count must be between 1 and 10000",
            ));
        }
        if let Some(streak) = self.streak {
            if streak.step.minor() < 0 || !streak.cap.is_positive() {
                return Err(DomainError::validation(
                    "streak step must be ≥ 0 and cap > 0",
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.active_from, self.active_to) {
            if from >= to {
                return Err(DomainError::validation(
                    "activeFrom must be before activeTo",
                ));
            }
        }
        if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(DomainError::validation(format!(
                "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
            )));
        }
        if self.budget.total.is_some_and(|t| t.minor() < 1) {
            return Err(DomainError::validation(
                "budget.total must be at least 0.01",
            ));
        }
        if self.budget.per_member.is_some_and(|c| !c.is_positive()) {
            return Err(DomainError::validation(
                "budget.perMember must be greater than 0",
            ));
        }
        conditions::validate(&self.conditions)
    }

    fn source(&self) -> String {
        self.source.clone().unwrap_or_else(|| {
            crate::earning::rules::BUILTIN_ACTIONS
                .iter()
                .find(|(action, _)| *action == self.action)
                .map(|(_, source)| (*source).to_owned())
                .unwrap_or_else(|| self.action.clone())
        })
    }
}

/// A percent (`field` names it): in (0, 1000], at most two fraction digits.
fn validate_percent(p: Decimal, field: &str) -> DomainResult<()> {
    if p <= Decimal::ZERO || p > Decimal::ONE_THOUSAND {
        return Err(DomainError::validation(format!(
            "{field} must be in (0, 1000]"
        )));
    }
    if p.normalize().scale() > 2 {
        return Err(DomainError::validation(format!(
            "{field} has at most two fraction digits"
        )));
    }
    Ok(())
}

fn validate_reward(reward: &Reward) -> DomainResult<()> {
    match *reward {
        Reward::Fixed(points) if !points.is_positive() => {
            Err(DomainError::validation("points must be positive"))
        }
        Reward::Fixed(_) => Ok(()),
        Reward::Percent(p) | Reward::PercentOfLines(p) => validate_percent(p, "percent"),
        Reward::PerUnit { points, per, .. } => {
            if !points.is_positive() {
                return Err(DomainError::validation("effect.points must be positive"));
            }
            if per.minor() < 1 {
                return Err(DomainError::validation("effect.per must be positive"));
            }
            Ok(())
        }
        Reward::Multiplier(factor) => {
            if factor <= Decimal::ONE || factor > MAX_FACTOR {
                return Err(DomainError::validation(format!(
                    "effect.factor must be in (1, {MAX_FACTOR}]"
                )));
            }
            if factor.normalize().scale() > 2 {
                return Err(DomainError::validation(
                    "effect.factor has at most two fraction digits",
                ));
            }
            Ok(())
        }
        Reward::CallerChosen { min, max } => {
            if !min.is_positive() {
                return Err(DomainError::validation("effect.min must be positive"));
            }
            if max < min || max > Points::MAX {
                return Err(DomainError::validation(format!(
                    "effect.max must be between effect.min and {}",
                    Points::MAX
                )));
            }
            Ok(())
        }
        Reward::GrantBadge(badge) => {
            if badge <= 0 {
                return Err(DomainError::validation("effect.badgeId must be a badge id"));
            }
            Ok(())
        }
        Reward::FreeSpins(spins) => {
            if !(1..=MAX_FREE_SPINS).contains(&spins) {
                return Err(DomainError::validation(format!(
                    "effect.spins must be between 1 and {MAX_FREE_SPINS}"
                )));
            }
            Ok(())
        }
    }
}

/// What `earning_rules.reward_kind` holds. FIXED and PERCENT keep their value in `points_minor`
/// / `percent_minor` (as before campaigns); the other kinds keep the whole effect as JSON in
/// `effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RewardKind {
    Fixed,
    Percent,
    PercentOfLines,
    PerUnit,
    Multiplier,
    CallerChosen,
    FreeSpins,
    GrantBadge,
}

stored_enum!(RewardKind {
    Fixed => "FIXED",
    Percent => "PERCENT",
    PercentOfLines => "PERCENT_OF_LINES",
    PerUnit => "PER_UNIT",
    Multiplier => "MULTIPLIER",
    CallerChosen => "CALLER_CHOSEN",
    FreeSpins => "FREE_SPINS",
    GrantBadge => "GRANT_BADGE",
});

impl RewardKind {
    fn of(reward: &Reward) -> Self {
        match reward {
            Reward::Fixed(_) => RewardKind::Fixed,
            Reward::Percent(_) => RewardKind::Percent,
            Reward::PercentOfLines(_) => RewardKind::PercentOfLines,
            Reward::PerUnit { .. } => RewardKind::PerUnit,
            Reward::Multiplier(_) => RewardKind::Multiplier,
            Reward::CallerChosen { .. } => RewardKind::CallerChosen,
            Reward::FreeSpins(_) => RewardKind::FreeSpins,
            Reward::GrantBadge(_) => RewardKind::GrantBadge,
        }
    }
}

fn to_rule(m: earning_rules::Model) -> DomainResult<Rule> {
    let reward = match RewardKind::read("earning_rules.reward_kind", &m.reward_kind)? {
        RewardKind::Percent => Reward::Percent(Points::from_minor(m.percent_minor).decimal()),
        RewardKind::Fixed => Reward::Fixed(Points::from_minor(m.points_minor)),
        kind => {
            let reward: Reward = m
                .effect
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| {
                    DomainError::internal(format!("earning_rules.effect of rule {}: {e}", m.id))
                })?
                .ok_or_else(|| {
                    DomainError::internal(format!("earning_rules.effect of rule {} is NULL", m.id))
                })?;
            if RewardKind::of(&reward) != kind {
                return Err(DomainError::internal(format!(
                    "earning_rules.effect of rule {} is not a {}",
                    m.id,
                    kind.as_str()
                )));
            }
            reward
        }
    };
    let conditions: Vec<Condition> = serde_json::from_str(&m.conditions).map_err(|e| {
        DomainError::internal(format!("earning_rules.conditions of rule {}: {e}", m.id))
    })?;
    let limit_period = m
        .limit_period
        .as_deref()
        .map(|period| Period::read("earning_rules.limit_period", period))
        .transpose()?;
    Ok(Rule {
        id: m.id,
        name: m.name,
        action: m.action,
        source: m.source,
        reward,
        limit: match (m.limit_count, limit_period) {
            (Some(count), Some(period)) => u32::try_from(count)
                .ok()
                .map(|count| Limit { count, period }),
            _ => None,
        },
        per_object: m.per_object,
        streak: match (m.streak_step_minor, m.streak_cap_minor) {
            (Some(step), Some(cap)) => Some(Streak {
                step: Points::from_minor(step),
                cap: Points::from_minor(cap),
            }),
            _ => None,
        },
        active_from: m.active_from,
        active_to: m.active_to,
        enabled: m.enabled,
        qualifying: m.qualifying,
        conditions,
        priority: m.priority,
        exclusive: m.exclusive,
        budget: Budget {
            total: m.budget_total_minor.map(Points::from_minor),
            per_member: m.member_cap_minor.map(Points::from_minor),
        },
    })
}

fn fill(
    model: &mut earning_rules::ActiveModel,
    input: &RuleInput,
    conditions: &[Condition],
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let (points, percent, effect) = match input.reward {
        Reward::Fixed(points) => (points.minor(), 0, None),
        Reward::Percent(p) => (0, Points::parse(p, "percent")?.minor(), None),
        ref other => (
            0,
            0,
            Some(serde_json::to_string(other).map_err(DomainError::internal)?),
        ),
    };
    let kind = RewardKind::of(&input.reward);
    model.name = Set(input.name.trim().to_owned());
    model.action = Set(input.action.clone());
    model.source = Set(input.source());
    model.reward_kind = Set(kind.as_str().to_owned());
    model.points_minor = Set(points);
    model.percent_minor = Set(percent);
    model.limit_count = Set(input.limit.and_then(|l| i32::try_from(l.count).ok()));
    model.limit_period = Set(input.limit.map(|l| l.period.as_str().to_owned()));
    model.per_object = Set(input.per_object);
    model.streak_step_minor = Set(input.streak.map(|s| s.step.minor()));
    model.streak_cap_minor = Set(input.streak.map(|s| s.cap.minor()));
    model.active_from = Set(input.active_from);
    model.active_to = Set(input.active_to);
    model.enabled = Set(input.enabled);
    model.qualifying = Set(input.qualifying);
    model.conditions = Set(serde_json::to_string(conditions).map_err(DomainError::internal)?);
    model.priority = Set(input.priority);
    model.exclusive = Set(input.exclusive);
    model.budget_total_minor = Set(input.budget.total.map(Points::minor));
    model.member_cap_minor = Set(input.budget.per_member.map(Points::minor));
    model.effect = Set(effect);
    model.updated_at = Set(now);
    Ok(())
}

#[derive(FromQueryResult)]
struct FactRow {
    rule_id: Option<i64>,
    lifetime: i64,
    in_day: Option<i64>,
    in_week: Option<i64>,
    in_month: Option<i64>,
    on_object: Option<i64>,
    lifetime_points: Option<i64>,
}

fn count(value: Option<i64>) -> u32 {
    u32::try_from(value.unwrap_or_default()).unwrap_or(u32::MAX)
}

impl Loyalty {
    pub async fn draft_rules(&self, program: &Program) -> DomainResult<Vec<Rule>> {
        earning_rules::Entity::find()
            .filter(earning_rules::Column::ProgramId.eq(program.id))
            .filter(earning_rules::Column::DeletedAt.is_null())
            .order_by_asc(earning_rules::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(to_rule)
            .collect()
    }

    /// Validates an edit: its fields, its conditions, and that every tier a `tierIn` names
    /// and every badge a `hasBadge` names exists in the program.
    async fn checked(&self, program: &Program, input: &RuleInput) -> DomainResult<Vec<Condition>> {
        let conditions = input.validate()?;
        self.check_tier_ids(program, &conditions, "").await?;
        self.check_badge_codes(program, &conditions, "").await?;
        if let Reward::GrantBadge(badge_id) = input.reward {
            self.check_badge_id(program, badge_id, "effect.badgeId")
                .await?;
        }
        Ok(conditions)
    }

    /// Refuses a `tierIn` naming a tier the program does not have; the refusal's path is
    /// `{path}conditions[i].tierIds` (a challenge passes `goals[2].`).
    pub(crate) async fn check_tier_ids(
        &self,
        program: &Program,
        conditions: &[Condition],
        path: &str,
    ) -> DomainResult<()> {
        let named: Vec<(usize, i64)> = conditions
            .iter()
            .enumerate()
            .flat_map(|(index, c)| match c {
                Condition::TierIn { tier_ids } => tier_ids.iter().map(|id| (index, *id)).collect(),
                _ => Vec::new(),
            })
            .collect();
        if !named.is_empty() {
            let tiers = self.tiers(program).await?;
            if let Some((index, id)) = named
                .iter()
                .find(|(_, id)| !tiers.iter().any(|t| t.id == *id))
            {
                return Err(DomainError::validation(format!(
                    "{path}conditions[{index}].tierIds: no tier {id} in this program"
                )));
            }
        }
        Ok(())
    }

    pub async fn create_rule(&self, program: &Program, input: RuleInput) -> DomainResult<Rule> {
        let conditions = self.checked(program, &input).await?;
        let existing = earning_rules::Entity::find()
            .filter(earning_rules::Column::ProgramId.eq(program.id))
            .filter(earning_rules::Column::DeletedAt.is_null())
            .count(self.db())
            .await?;
        if existing >= MAX_RULES {
            return Err(DomainError::LimitReached(format!(
                "a program has at most {MAX_RULES} rules"
            )));
        }
        let now = self.now();
        let mut model = earning_rules::ActiveModel {
            program_id: Set(program.id),
            created_at: Set(now),
            deleted_at: Set(None),
            ..Default::default()
        };
        fill(&mut model, &input, &conditions, now)?;
        let row = earning_rules::Entity::insert(model)
            .exec_with_returning(self.db())
            .await?;
        to_rule(row)
    }

    pub async fn update_rule(
        &self,
        program: &Program,
        id: i64,
        input: RuleInput,
    ) -> DomainResult<Rule> {
        let conditions = self.checked(program, &input).await?;
        let row = self.draft_row(program, id).await?;
        let mut model: earning_rules::ActiveModel = row.into();
        fill(&mut model, &input, &conditions, self.now())?;
        let row = earning_rules::Entity::update(model).exec(self.db()).await?;
        to_rule(row)
    }

    /// Removes a rule from the draft; published rulesets keep their copy.
    pub async fn delete_rule(&self, program: &Program, id: i64) -> DomainResult<Rule> {
        let row = self.draft_row(program, id).await?;
        let mut model: earning_rules::ActiveModel = row.into();
        model.deleted_at = Set(Some(self.now()));
        let row = earning_rules::Entity::update(model).exec(self.db()).await?;
        to_rule(row)
    }

    async fn draft_row(&self, program: &Program, id: i64) -> DomainResult<earning_rules::Model> {
        earning_rules::Entity::find_by_id(id)
            .filter(earning_rules::Column::ProgramId.eq(program.id))
            .filter(earning_rules::Column::DeletedAt.is_null())
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("rule {id} not found")))
    }

    /// "Apply changes": freezes the draft into the next immutable version and tells every
    /// instance to switch to it.
    pub async fn publish_rules(
        &self,
        program: &Program,
        published_by: &str,
    ) -> DomainResult<Arc<Ruleset>> {
        let (loyalty, program, published_by) =
            (self.clone(), program.clone(), published_by.to_owned());
        run_detached(async move {
            loyalty
                .publish_rules_attached(&program, &published_by)
                .await
        })
        .await
    }

    async fn publish_rules_attached(
        &self,
        program: &Program,
        published_by: &str,
    ) -> DomainResult<Arc<Ruleset>> {
        let rules = self.draft_rules(program).await?;
        let txn = self.db().begin().await?;
        // Bumping the version first takes the program row's lock: concurrent publishes queue.
        programs::Entity::update_many()
            .col_expr(
                programs::Column::RulesetVersion,
                Expr::col(programs::Column::RulesetVersion).add(1),
            )
            .filter(programs::Column::Id.eq(program.id))
            .exec(&txn)
            .await?;
        let version = self.live_version(&txn, program.id).await?;
        let ruleset = Ruleset { version, rules };
        let json = serde_json::to_string(&ruleset.rules).map_err(DomainError::internal)?;
        rulesets::Entity::insert(rulesets::ActiveModel {
            program_id: Set(program.id),
            version: Set(version),
            rules: Set(json),
            published_by: Set(published_by.to_owned()),
            published_at: Set(self.now()),
            ..Default::default()
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        let ruleset = Arc::new(ruleset);
        self.cache_ruleset(program.id, ruleset.clone());
        self.announce("ruleset.published", format!("{}:{version}", program.id))
            .await;
        Ok(ruleset)
    }

    /// The live ruleset (as of now, outside any transaction).
    pub async fn live_ruleset(&self, program: &Program) -> DomainResult<Arc<Ruleset>> {
        let version = self.live_version(self.db(), program.id).await?;
        self.ruleset(self.db(), program.id, version).await
    }

    pub async fn draft_ruleset(&self, program: &Program) -> DomainResult<Ruleset> {
        Ok(Ruleset {
            version: 0,
            rules: self.draft_rules(program).await?,
        })
    }

    /// A published version (version 0 = nothing published yet: no rules).
    pub(crate) async fn ruleset<C: ConnectionTrait>(
        &self,
        conn: &C,
        program_id: i64,
        version: i64,
    ) -> DomainResult<Arc<Ruleset>> {
        if version == 0 {
            return Ok(Arc::new(Ruleset::default()));
        }
        if let Some(ruleset) = self.cached_ruleset(program_id, version) {
            return Ok(ruleset);
        }
        let row = rulesets::Entity::find()
            .filter(rulesets::Column::ProgramId.eq(program_id))
            .filter(rulesets::Column::Version.eq(version))
            .one(conn)
            .await?
            .ok_or_else(|| DomainError::internal(format!("ruleset {version} missing")))?;
        let rules: Vec<Rule> = serde_json::from_str(&row.rules).map_err(DomainError::internal)?;
        let ruleset = Arc::new(Ruleset { version, rules });
        self.cache_ruleset(program_id, ruleset.clone());
        Ok(ruleset)
    }

    /// What the member's earn history for `rules` (of ruleset `version`) is, asked of the
    /// ledger: the same windows and object [`Loyalty::member_facts`] counts.
    pub(crate) fn history_query(
        program: &Program,
        version: i64,
        rules: &[&Rule],
        object_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> HistoryQuery {
        let w = Windows::at(program.tz, now);
        HistoryQuery {
            day_start: w.day_start,
            week_start: w.week_start,
            month_start: w.month_start,
            object_id: object_id.map(str::to_owned),
            rules: rules.iter().map(|rule| rule.id).collect(),
            ruleset_version: version,
        }
    }

    /// The history to read with the member's lock for `action` on `object_id`, from the newest
    /// ruleset this instance holds (the lock's read tells whether it is still the live one).
    pub(crate) fn history_for(
        &self,
        program: &Program,
        action: &str,
        object_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<HistoryQuery> {
        let ruleset = self.newest_cached_ruleset(program.id)?;
        let rules: Vec<&Rule> = ruleset.rules_for(action).collect();
        Some(Self::history_query(
            program,
            ruleset.version,
            &rules,
            object_id,
            now,
        ))
    }

    /// How often each of `rules` already paid this member, in one query, unless `read` (the
    /// same, read with the member's lock: [`Tx::take_history`]) already says. Counted on
    /// `/metrics` as `loyalty_rule_facts_reads_total{read="with_lock"|"query"}`.
    pub(crate) async fn member_facts<C: ConnectionTrait>(
        &self,
        conn: &C,
        program: &Program,
        member: &loyalty_entities::members::Model,
        (rules, object_id): (&[&Rule], Option<&str>),
        (now, read): (DateTime<Utc>, Option<Vec<RuleHistory>>),
    ) -> DomainResult<MemberFacts> {
        let mut facts = MemberFacts {
            member_id: member.id,
            login_streak: u32::try_from(member.login_streak).unwrap_or_default(),
            last_login_date: member
                .last_login_date
                .as_deref()
                .and_then(|d| d.parse::<NaiveDate>().ok()),
            rules: HashMap::new(),
            ..Default::default()
        };
        if rules.is_empty() {
            return Ok(facts);
        }
        let source = if read.is_some() { "with_lock" } else { "query" };
        metrics::counter!("loyalty_rule_facts_reads_total", "read" => source).increment(1);
        if let Some(read) = read {
            for row in read {
                facts.rules.insert(
                    row.rule_id,
                    RuleFacts {
                        lifetime: count(Some(row.lifetime)),
                        in_day: count(Some(row.in_day)),
                        in_week: count(Some(row.in_week)),
                        in_month: count(Some(row.in_month)),
                        object_claimed: row.on_object > 0,
                        lifetime_points: Points::from_minor(row.lifetime_points),
                    },
                );
            }
            return Ok(facts);
        }
        let w = Windows::at(program.tz, now);
        let since = |at: DateTime<Utc>| {
            sum_of(Expr::case(ledger_entries::Column::CreatedAt.gte(at), 1).finally(0))
        };
        let on_object: SimpleExpr = match object_id {
            Some(object) => Expr::case(ledger_entries::Column::RefId.eq(object), 1)
                .finally(0)
                .into(),
            None => Expr::value(0),
        };
        let rows = ledger_entries::Entity::find()
            .select_only()
            .column(ledger_entries::Column::RuleId)
            .column_as(Expr::col(ledger_entries::Column::Id).count(), "lifetime")
            .column_as(since(w.day_start), "in_day")
            .column_as(since(w.week_start), "in_week")
            .column_as(since(w.month_start), "in_month")
            .column_as(sum_of(on_object), "on_object")
            .column_as(
                sum_of(
                    Expr::case(
                        ledger_entries::Column::Account.eq(Account::Points.as_str()),
                        Expr::col(ledger_entries::Column::AmountMinor),
                    )
                    .finally(0),
                ),
                "lifetime_points",
            )
            .filter(ledger_entries::Column::MemberId.eq(member.id))
            .filter(ledger_entries::Column::Kind.eq("EARN"))
            // A qualifying award also credits QUALIFICATION under the same rule: one award.
            .filter(ledger_entries::Column::Account.ne(Account::Qualification.as_str()))
            .filter(ledger_entries::Column::RuleId.is_in(rules.iter().map(|r| r.id)))
            .group_by(ledger_entries::Column::RuleId)
            .into_model::<FactRow>()
            .all(conn)
            .await?;
        for row in rows {
            let Some(rule_id) = row.rule_id else { continue };
            facts.rules.insert(
                rule_id,
                RuleFacts {
                    lifetime: count(Some(row.lifetime)),
                    in_day: count(row.in_day),
                    in_week: count(row.in_week),
                    in_month: count(row.in_month),
                    object_claimed: row.on_object.unwrap_or_default() > 0,
                    lifetime_points: Points::from_minor(row.lifetime_points.unwrap_or_default()),
                },
            );
        }
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    #[test]
    fn a_ruleset_published_before_campaigns_still_reads() {
        // The JSON a version published before issue 11 holds: no conditions, priority,
        // exclusive or budget keys.
        let old = r#"[{"id":3,"name":"Quiz","action":"quiz_done","source":"quiz_done",
            "reward":{"kind":"FIXED","value":750},"limit":{"count":2,"period":"DAY"},
            "per_object":false,"streak":null,"active_from":null,"active_to":null,
            "enabled":true,"qualifying":false}]"#;
        let rules: Vec<Rule> = serde_json::from_str(old).unwrap();
        assert_eq!(rules[0].reward, Reward::Fixed(Points::from_minor(750)));
        assert!(rules[0].conditions.is_empty());
        assert_eq!(rules[0].priority, 0);
        assert!(!rules[0].exclusive);
        assert_eq!(rules[0].budget, Budget::default());
    }

    #[test]
    fn a_campaign_rule_survives_the_published_json() {
        let rule = Rule {
            id: 1,
            name: "Weekend".into(),
            action: "purchase".into(),
            source: "weekend".into(),
            reward: Reward::PerUnit {
                points: Points::from_minor(100),
                per: crate::money::Money::from_minor(1000),
                rounding: crate::earning::rules::Rounding::Up,
            },
            limit: None,
            per_object: false,
            streak: None,
            active_from: None,
            active_to: None,
            enabled: true,
            qualifying: false,
            conditions: conditions::validate(&[
                json!({"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]}),
                json!({"kind": "localTimeBetween", "from": "18:00", "to": "24:00"}),
            ])
            .unwrap(),
            priority: -3,
            exclusive: true,
            budget: Budget {
                total: Some(Points::from_minor(100_000)),
                per_member: None,
            },
        };
        let text = serde_json::to_string(&vec![rule.clone()]).unwrap();
        let back: Vec<Rule> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![rule]);
    }

    fn input(reward: Reward) -> RuleInput {
        RuleInput::new("Campaign", "purchase", reward)
    }

    fn refusal(input: RuleInput) -> String {
        match input.validate() {
            Err(DomainError::Validation(message)) => message,
            other => panic!("expected VALIDATION, got {other:?}"),
        }
    }

    #[test]
    fn bad_effects_budgets_and_priorities_are_refused_naming_the_field() {
        let p = Points::from_minor;
        let cases: Vec<(RuleInput, &str)> = vec![
            (input(Reward::Percent(dec!(-5))), "percent"),
            (input(Reward::PercentOfLines(dec!(10.001))), "percent"),
            (input(Reward::Multiplier(dec!(1))), "effect.factor"),
            (input(Reward::Multiplier(dec!(100.01))), "effect.factor"),
            (
                input(Reward::CallerChosen {
                    min: p(2000),
                    max: p(1000),
                }),
                "effect.max",
            ),
            (
                input(Reward::CallerChosen {
                    min: p(0),
                    max: p(1000),
                }),
                "effect.min",
            ),
            (input(Reward::FreeSpins(0)), "effect.spins"),
            (input(Reward::FreeSpins(101)), "effect.spins"),
            (
                input(Reward::PerUnit {
                    points: p(100),
                    per: crate::money::Money::from_minor(0),
                    rounding: Default::default(),
                }),
                "effect.per",
            ),
            (
                RuleInput {
                    budget: Budget {
                        total: Some(p(-100)),
                        per_member: None,
                    },
                    ..input(Reward::Fixed(p(100)))
                },
                "budget.total",
            ),
            (
                RuleInput {
                    budget: Budget {
                        total: None,
                        per_member: Some(p(0)),
                    },
                    ..input(Reward::Fixed(p(100)))
                },
                "budget.perMember",
            ),
            (
                RuleInput {
                    priority: 1001,
                    ..input(Reward::Fixed(p(100)))
                },
                "priority",
            ),
            (
                RuleInput {
                    conditions: vec![
                        json!({"kind": "localTimeBetween", "from": "25:00", "to": "26:00"}),
                    ],
                    ..input(Reward::Fixed(p(100)))
                },
                "conditions[0].from",
            ),
        ];
        for (input, field) in cases {
            let message = refusal(input);
            assert!(message.starts_with(field), "{message} should name {field}");
        }
    }

    #[test]
    fn every_effect_kind_is_accepted_in_range() {
        let p = Points::from_minor;
        for reward in [
            Reward::Fixed(p(1)),
            Reward::Percent(dec!(1000)),
            Reward::PercentOfLines(dec!(0.01)),
            Reward::PerUnit {
                points: p(100),
                per: crate::money::Money::from_minor(1000),
                rounding: Default::default(),
            },
            Reward::Multiplier(dec!(1.01)),
            Reward::Multiplier(dec!(100)),
            Reward::CallerChosen {
                min: p(1000),
                max: p(1000),
            },
            Reward::FreeSpins(1),
            Reward::FreeSpins(100),
        ] {
            assert!(input(reward).validate().is_ok(), "{reward:?}");
        }
    }
}
