//! Rules as stored: the draft admins edit, published immutable rulesets, and the member facts
//! the engine needs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use loyalty_entities::{earning_rules, ledger_entries, programs, rulesets};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, SimpleExpr};

use crate::ledger::db::{run_detached, sum_of};
use crate::ledger::Account;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::earning::rules::{Limit, MemberFacts, Period, Reward, Rule, RuleFacts, Ruleset, Streak};
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
}

fn valid_key(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RuleInput {
    fn validate(&self) -> DomainResult<()> {
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
        match self.reward {
            Reward::Fixed(points) if !points.is_positive() => {
                return Err(DomainError::validation("points must be positive"))
            }
            Reward::Percent(p) if p <= Decimal::ZERO || p > Decimal::ONE_THOUSAND => {
                return Err(DomainError::validation("percent must be in (0, 1000]"))
            }
            Reward::Percent(p) if p.scale() > 2 => {
                return Err(DomainError::validation(
                    "percent has at most two fraction digits",
                ))
            }
            Reward::Fixed(_) | Reward::Percent(_) => {}
            Reward::PercentOfLines(_)
            | Reward::PerUnit { .. }
            | Reward::Multiplier(_)
            | Reward::CallerChosen { .. }
            | Reward::FreeSpins(_) => {
                return Err(DomainError::validation(
                    "this reward kind cannot be stored yet",
                ))
            }
        }
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
        Ok(())
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

/// What `earning_rules.reward_kind` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RewardKind {
    Fixed,
    Percent,
}

stored_enum!(RewardKind {
    Fixed => "FIXED",
    Percent => "PERCENT",
});

fn to_rule(m: earning_rules::Model) -> DomainResult<Rule> {
    let reward = match RewardKind::read("earning_rules.reward_kind", &m.reward_kind)? {
        RewardKind::Percent => Reward::Percent(Points::from_minor(m.percent_minor).decimal()),
        RewardKind::Fixed => Reward::Fixed(Points::from_minor(m.points_minor)),
    };
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
        conditions: Vec::new(),
        priority: 0,
        exclusive: false,
        budget: Default::default(),
    })
}

fn fill(
    model: &mut earning_rules::ActiveModel,
    input: &RuleInput,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let (kind, points, percent) = match input.reward {
        Reward::Fixed(points) => (RewardKind::Fixed, points.minor(), 0),
        Reward::Percent(p) => (RewardKind::Percent, 0, Points::parse(p, "percent")?.minor()),
        _ => {
            return Err(DomainError::validation(
                "this reward kind cannot be stored yet",
            ))
        }
    };
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

    pub async fn create_rule(&self, program: &Program, input: RuleInput) -> DomainResult<Rule> {
        input.validate()?;
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
        fill(&mut model, &input, now)?;
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
        input.validate()?;
        let row = self.draft_row(program, id).await?;
        let mut model: earning_rules::ActiveModel = row.into();
        fill(&mut model, &input, self.now())?;
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

    /// How often each of `rules` already paid this member, in one query.
    pub(crate) async fn member_facts<C: ConnectionTrait>(
        &self,
        conn: &C,
        program: &Program,
        member: &loyalty_entities::members::Model,
        rules: &[&Rule],
        object_id: Option<&str>,
        now: DateTime<Utc>,
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
