use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{
    ActionRequest, EvalContext, Limit, MemberFacts, Period, Reward, Rule, RuleFacts, Ruleset,
};
use crate::error::DomainError;
use crate::money::{round2, Points};
use crate::periods::{week_start, Windows};

/// One earn the ledger must post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedEarn {
    pub rule_id: i64,
    pub rule_name: String,
    pub source: String,
    pub points: Points,
    /// Ledger idempotency key derived from the rule's limit (one-off rewards), so the database's
    /// unique index refuses a second payout even if two requests raced past every other check.
    pub natural_key: Option<String>,
    pub object_id: Option<String>,
    /// Credit the same points to QUALIFICATION too.
    pub qualifying: bool,
}

/// Why nothing was paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Refusal {
    /// A one-time reward (per lifetime, per object or once per period) was already paid.
    AlreadyClaimed,
    /// The rule's N-per-period limit is used up.
    LimitReached,
    /// Every rule for the action is disabled or outside its active window.
    RuleInactive,
    /// No rule pays for this action.
    NoRule,
    /// The rule matched but computed zero points (e.g. a tiny purchase).
    NothingToAward,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AlreadyClaimed => "ALREADY_CLAIMED",
            Refusal::LimitReached => "LIMIT_REACHED",
            Refusal::RuleInactive => "RULE_INACTIVE",
            Refusal::NoRule => "NO_RULE",
            Refusal::NothingToAward => "NOTHING_TO_AWARD",
        }
    }

    /// When several rules refuse, the most informative reason wins.
    fn rank(self) -> u8 {
        match self {
            Refusal::NoRule => 0,
            Refusal::RuleInactive => 1,
            Refusal::NothingToAward => 2,
            Refusal::LimitReached => 3,
            Refusal::AlreadyClaimed => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub earns: Vec<PlannedEarn>,
    /// Set when `earns` is empty.
    pub refusal: Option<Refusal>,
    /// The member's login streak after this action (daily logins only).
    pub streak: Option<(NaiveDate, u32)>,
}

/// Evaluates one action. Validation errors (missing object id or amount) are returned as `Err`.
pub fn evaluate(
    ruleset: &Ruleset,
    facts: &MemberFacts,
    request: &ActionRequest,
    ctx: &EvalContext,
) -> Result<Evaluation, DomainError> {
    let windows = Windows::at(ctx.tz, ctx.now);
    let streak_day = next_streak_day(facts, windows.today);
    let mut earns = Vec::new();
    let mut refusal: Option<Refusal> = None;
    let mut refuse = |reason: Refusal| {
        if refusal.is_none_or(|current| reason.rank() > current.rank()) {
            refusal = Some(reason);
        }
    };

    let mut matched = false;
    for rule in ruleset.rules_for(&request.action) {
        matched = true;
        if !rule.is_live(ctx.now) {
            refuse(Refusal::RuleInactive);
            continue;
        }
        if rule.per_object && request.object_id.is_none() {
            return Err(DomainError::validation(format!(
                "action `{}` needs an objectId",
                request.action
            )));
        }
        let rule_facts = facts.rules.get(&rule.id).copied().unwrap_or_default();
        if let Some(reason) = limit_refusal(rule, &rule_facts) {
            refuse(reason);
            continue;
        }
        let points = payout(rule, request, ctx, streak_day)?;
        if !points.is_positive() {
            refuse(Refusal::NothingToAward);
            continue;
        }
        earns.push(PlannedEarn {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            source: rule.source.clone(),
            points,
            natural_key: natural_key(rule, facts, request, windows.today, &rule_facts),
            object_id: request.object_id.clone(),
            qualifying: rule.qualifying,
        });
    }
    if !matched {
        refuse(Refusal::NoRule);
    }
    let streak = (request.action == "daily_login" && !earns.is_empty())
        .then_some((windows.today, streak_day));
    Ok(Evaluation {
        refusal: if earns.is_empty() { refusal } else { None },
        earns,
        streak,
    })
}

fn limit_refusal(rule: &Rule, facts: &RuleFacts) -> Option<Refusal> {
    if rule.per_object && facts.object_claimed {
        return Some(Refusal::AlreadyClaimed);
    }
    let Limit { count, period } = rule.limit?;
    if facts.count(period) < count {
        None
    } else if count == 1 {
        Some(Refusal::AlreadyClaimed)
    } else {
        Some(Refusal::LimitReached)
    }
}

/// Day number of the streak a login today would make: consecutive local days count up.
fn next_streak_day(facts: &MemberFacts, today: NaiveDate) -> u32 {
    match facts.last_login_date {
        Some(last) if last == today => facts.login_streak.max(1),
        Some(last) if today.pred_opt() == Some(last) => facts.login_streak.saturating_add(1),
        _ => 1,
    }
}

fn payout(
    rule: &Rule,
    request: &ActionRequest,
    ctx: &EvalContext,
    streak_day: u32,
) -> Result<Points, DomainError> {
    let overflow = || DomainError::validation("the computed reward is out of range");
    let base = match rule.reward {
        Reward::Fixed(points) => match rule.streak {
            Some(streak) => {
                let bonus = streak
                    .step
                    .decimal()
                    .checked_mul(Decimal::from(streak_day.saturating_sub(1)))
                    .ok_or_else(overflow)?;
                let grown = points.decimal().checked_add(bonus).ok_or_else(overflow)?;
                grown.min(streak.cap.decimal().max(points.decimal()))
            }
            None => points.decimal(),
        },
        Reward::Percent(percent) => {
            let amount = request.amount.ok_or_else(|| {
                DomainError::validation(format!("action `{}` needs an amount", request.action))
            })?;
            amount
                .decimal()
                .checked_mul(percent)
                .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
                .and_then(|v| v.checked_mul(ctx.points_per_currency))
                .ok_or_else(overflow)?
        }
    };
    let scaled = round2(base)
        .checked_mul(ctx.multiplier)
        .ok_or_else(overflow)?;
    Points::round_from(scaled)
}

fn natural_key(
    rule: &Rule,
    facts: &MemberFacts,
    request: &ActionRequest,
    today: NaiveDate,
    rule_facts: &RuleFacts,
) -> Option<String> {
    let member = facts.member_id;
    let source = &rule.source;
    let rule_id = rule.id;
    if rule.per_object {
        let object = request.object_id.as_deref().unwrap_or_default();
        return Some(format!("{source}:{member}:obj:{object}:r{rule_id}"));
    }
    let limit = rule.limit?;
    let n = rule_facts.count(limit.period) + 1;
    let label = match limit.period {
        Period::Lifetime => "life".to_owned(),
        Period::Day => today.to_string(),
        Period::Week => format!("w{}", week_start(today)),
        Period::Month => format!("{:04}-{:02}", today.year(), today.month()),
    };
    Some(format!("{source}:{member}:{label}#{n}:r{rule_id}"))
}

/// An earning opportunity as a member sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opportunity {
    pub rule: Rule,
    /// What the next award would pay (fixed rules; percent rules pay per amount).
    pub next_points: Option<Points>,
    /// Awards still available in the limit's current period (`None` = unlimited).
    pub remaining: Option<u32>,
    pub claimed: bool,
}

/// Every live rule with what it pays and what is left for this member.
pub fn opportunities(
    ruleset: &Ruleset,
    facts: &MemberFacts,
    ctx: &EvalContext,
) -> Vec<Opportunity> {
    let today = Windows::at(ctx.tz, ctx.now).today;
    let streak_day = next_streak_day(facts, today);
    ruleset
        .rules
        .iter()
        .filter(|rule| rule.is_live(ctx.now))
        .map(|rule| {
            let rule_facts = facts.rules.get(&rule.id).copied().unwrap_or_default();
            let remaining = rule
                .limit
                .map(|limit| limit.count.saturating_sub(rule_facts.count(limit.period)));
            let request = ActionRequest {
                action: rule.action.clone(),
                object_id: None,
                amount: None,
            };
            let next_points = match rule.reward {
                Reward::Fixed(_) => payout(rule, &request, ctx, streak_day).ok(),
                Reward::Percent(_) => None,
            };
            Opportunity {
                claimed: remaining == Some(0) && !rule.per_object,
                remaining,
                next_points,
                rule: rule.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
