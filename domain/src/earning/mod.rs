//! Read-only views of the rules: what a member can still earn, and `testRules` dry runs.

pub mod actions;
pub mod budgets;
pub mod events;
pub mod purchases;
pub mod replay;
pub mod rulebook;
pub mod rules;
#[cfg(test)]
mod spins_and_attributes_tests;

use chrono::{DateTime, Utc};
use loyalty_entities::{members, tiers};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::actor::MemberActor;
use crate::earning::rules::conditions::Line;
use crate::earning::rules::{
    evaluate, opportunities, ActionRequest, EvalContext, Evaluation, Opportunity,
};
use crate::error::{DomainError, DomainResult};
use crate::money::{Money, Points};
use crate::program::Program;
use crate::service::Loyalty;

/// The event a `testRules` dry run evaluates.
#[derive(Clone, Debug, Default)]
pub struct TestEvent {
    pub action: String,
    pub object_id: Option<String>,
    /// The order amount; without it, the lines' total when lines are given.
    pub amount: Option<Decimal>,
    /// A purchase's lines (their total must equal `amount` when both are given).
    pub lines: Vec<Line>,
    /// Caller-chosen points.
    pub points: Option<Decimal>,
    /// Evaluate as of this instant (default: now), e.g. a weekend rule on a Tuesday.
    pub at: Option<DateTime<Utc>>,
}

/// Which rules a dry run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesTarget {
    Draft,
    Live,
}

impl Loyalty {
    fn context(&self, program: &Program) -> EvalContext {
        EvalContext {
            tz: program.tz,
            now: self.now(),
            points_per_currency: program.points_per_currency,
            multiplier: Decimal::ONE,
        }
    }

    /// Every live rule with what it pays and what is left for the calling member.
    pub async fn earn_opportunities(&self, actor: &MemberActor) -> DomainResult<Vec<Opportunity>> {
        let program = self.program(&actor.program).await?;
        let member = self
            .find_member(&program, &actor.subject)
            .await?
            .ok_or_else(|| {
                DomainError::not_found("member is not registered: call register first")
            })?;
        let ruleset = self.live_ruleset(&program).await?;
        let ctx = self.context(&program);
        let live: Vec<_> = ruleset
            .rules
            .iter()
            .filter(|r| r.is_live(ctx.now))
            .collect();
        let facts = self
            .member_facts(self.db(), &program, &member, (&live, None), (ctx.now, None))
            .await?;
        Ok(opportunities(&ruleset, &facts, &ctx))
    }

    /// What an event would post for a real member against the draft or the live rules, with
    /// the facts the real award loads (tier and its multiplier, joining date, purchase
    /// ordinal) as of `event.at`. Writes nothing ("test mode").
    pub async fn test_rules(
        &self,
        program: &Program,
        member_id: i64,
        target: RulesTarget,
        event: TestEvent,
    ) -> DomainResult<(i64, Evaluation)> {
        let member = members::Entity::find_by_id(member_id)
            .filter(members::Column::ProgramId.eq(program.id))
            .one(self.db())
            .await?
            .ok_or_else(|| DomainError::not_found(format!("member {member_id} not found")))?;
        let ruleset = match target {
            RulesTarget::Draft => std::sync::Arc::new(self.draft_ruleset(program).await?),
            RulesTarget::Live => self.live_ruleset(program).await?,
        };
        let request = ActionRequest {
            action: event.action.trim().to_owned(),
            object_id: event.object_id,
            amount: test_amount(event.amount, &event.lines)?,
            lines: event.lines,
            points: event
                .points
                .map(|p| Points::parse(p, "points"))
                .transpose()?,
        };
        let rules: Vec<_> = ruleset.rules_for(&request.action).collect();
        let mut ctx = self.context(program);
        if let Some(at) = event.at {
            ctx.now = at;
        }
        if let Some(tier_id) = member.tier_id {
            if let Some(tier) = tiers::Entity::find_by_id(tier_id).one(self.db()).await? {
                ctx.multiplier = Points::from_minor(tier.multiplier_minor).decimal();
            }
        }
        let facts = self
            .facts(
                self.db(),
                program,
                &member,
                (&rules, &[]),
                &request,
                (ctx.now, None),
            )
            .await?;
        Ok((ruleset.version, evaluate(&ruleset, &facts, &request, &ctx)?))
    }
}

/// A dry run's order amount: the one given, else the lines' total; both must agree.
fn test_amount(amount: Option<Decimal>, lines: &[Line]) -> DomainResult<Option<Money>> {
    let amount = amount.map(|a| Money::parse(a, "amount")).transpose()?;
    if lines.is_empty() {
        return Ok(amount);
    }
    let total = lines
        .iter()
        .try_fold(0i64, |sum, line| sum.checked_add(line.value().minor()))
        .map(Money::from_minor)
        .ok_or_else(|| DomainError::validation("lines: the total is out of range"))?;
    match amount {
        Some(amount) if amount != total => Err(DomainError::validation(format!(
            "lines: their total {} does not equal the amount {}",
            total.decimal(),
            amount.decimal()
        ))),
        _ => Ok(Some(total)),
    }
}
