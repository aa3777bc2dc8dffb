//! Read-only views of the rules: what a member can still earn, and `testRules` dry runs.

pub mod actions;
pub mod budgets;
pub mod events;
pub mod purchases;
pub mod replay;
pub mod rulebook;
pub mod rules;

use loyalty_entities::members;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::actor::MemberActor;
use crate::earning::rules::{
    evaluate, opportunities, ActionRequest, EvalContext, Evaluation, Opportunity,
};
use crate::error::{DomainError, DomainResult};
use crate::money::Money;
use crate::program::Program;
use crate::service::Loyalty;

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
            .member_facts(self.db(), &program, &member, &live, None, ctx.now)
            .await?;
        Ok(opportunities(&ruleset, &facts, &ctx))
    }

    /// What `action` would post for a real member against the draft or the live rules.
    /// Writes nothing ("test mode").
    pub async fn test_rules(
        &self,
        program: &Program,
        member_id: i64,
        target: RulesTarget,
        action: &str,
        object_id: Option<&str>,
        amount: Option<Decimal>,
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
            action: action.trim().to_owned(),
            object_id: object_id.map(str::to_owned),
            amount: amount.map(|a| Money::parse(a, "amount")).transpose()?,
            ..Default::default()
        };
        let rules: Vec<_> = ruleset.rules_for(&request.action).collect();
        let ctx = self.context(program);
        let mut facts = self
            .member_facts(
                self.db(),
                program,
                &member,
                &rules,
                request.object_id.as_deref(),
                ctx.now,
            )
            .await?;
        let counts_actions = |rule: &&rules::Rule| {
            rule.conditions
                .iter()
                .any(|c| matches!(c, rules::conditions::Condition::ActionCountAtLeast { .. }))
        };
        if rules.iter().any(counts_actions) {
            // As if this event were recorded now: its place among the member's events.
            facts.action_counts = Some(
                events::action_counts(self.db(), member.id, &request.action, ctx.tz, ctx.now)
                    .await?,
            );
        }
        Ok((ruleset.version, evaluate(&ruleset, &facts, &request, &ctx)?))
    }
}
