use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::conditions::{self, quoted, Facts, Outcome};
use super::model::{
    ActionRequest, EvalContext, Limit, MemberFacts, Period, Reward, Rounding, Rule, RuleFacts,
    Ruleset,
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
    /// Free wheel spins this earn credits (`FreeSpins` rules; `points` is then zero).
    pub spins: u32,
    /// The badge this earn grants (`GrantBadge` rules; no points, no spins).
    pub badge: Option<i64>,
    /// The order lines the points were computed on (indices into the request's lines), so a
    /// refund of other lines leaves them be; `None` = the whole order.
    pub lines: Option<Vec<usize>>,
    /// The rule's total budget: the poster reserves `points` against it before posting and, when
    /// it does not fit, marks the rule exhausted in the facts and evaluates again.
    pub budget_total: Option<Points>,
}

/// What one rule did with an event, in the order rules were considered (test mode explains
/// itself with these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub rule_id: i64,
    pub rule_name: String,
    pub points: Points,
    pub spins: u32,
    /// `None` when the rule paid.
    pub refusal: Option<Refusal>,
    /// Why it did not pay, with the value seen ("order total 42.00 < 50.00").
    pub detail: Option<String>,
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
    /// A condition of the rule does not hold for this event.
    ConditionsNotMet,
    /// The campaign's total budget cannot take this award.
    BudgetExhausted,
    /// The campaign's per-member cap cannot take this award.
    MemberCapReached,
    /// A higher-priority exclusive rule paid for the event (only in verdicts: something paid).
    Excluded,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AlreadyClaimed => "ALREADY_CLAIMED",
            Refusal::LimitReached => "LIMIT_REACHED",
            Refusal::RuleInactive => "RULE_INACTIVE",
            Refusal::NoRule => "NO_RULE",
            Refusal::NothingToAward => "NOTHING_TO_AWARD",
            Refusal::ConditionsNotMet => "CONDITIONS_NOT_MET",
            Refusal::BudgetExhausted => "BUDGET_EXHAUSTED",
            Refusal::MemberCapReached => "MEMBER_CAP_REACHED",
            Refusal::Excluded => "EXCLUDED",
        }
    }

    /// When several rules refuse, the most informative reason wins.
    fn rank(self) -> u8 {
        match self {
            Refusal::NoRule | Refusal::Excluded => 0,
            Refusal::RuleInactive => 1,
            Refusal::ConditionsNotMet => 2,
            Refusal::NothingToAward => 3,
            Refusal::LimitReached => 4,
            Refusal::MemberCapReached => 5,
            Refusal::BudgetExhausted => 6,
            Refusal::AlreadyClaimed => 7,
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
    /// Every rule for the action, in the order considered.
    pub verdicts: Vec<Verdict>,
}

/// Evaluates one action. Validation errors (missing object id, amount or caller-chosen points)
/// are returned as `Err`.
///
/// Rules for the action apply in descending `priority`, then ascending id. Point-paying rules
/// first compute their base (fixed, % of the amount, % of the matching lines, per unit) and the
/// tier multiplier scales it; then `Multiplier` rules each pay `(factor − 1) ×` the sum those
/// paid, so two ×2 campaigns make ×3, not ×4, and a multiplier never multiplies another one.
/// A paying `exclusive` rule stops every rule after it (multipliers included).
pub fn evaluate(
    ruleset: &Ruleset,
    facts: &MemberFacts,
    request: &ActionRequest,
    ctx: &EvalContext,
) -> Result<Evaluation, DomainError> {
    let windows = Windows::at(ctx.tz, ctx.now);
    let streak_day = next_streak_day(facts, windows.today);
    let event = event_facts(facts, request, ctx);
    let mut rules: Vec<&Rule> = ruleset.rules_for(&request.action).collect();
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));

    let mut earns = Vec::new();
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(rules.len());
    // Multipliers wait for the sum of the point-paying rules: (verdict index, rule, its facts).
    let mut multipliers: Vec<(usize, &Rule, RuleFacts)> = Vec::new();
    let mut excluded_by: Option<&str> = None;
    for rule in rules.iter().copied() {
        let mut verdict = Verdict {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            points: Points::ZERO,
            spins: 0,
            refusal: None,
            detail: None,
        };
        let refused = |mut verdict: Verdict, refusal: Refusal, detail: Option<String>| {
            verdict.refusal = Some(refusal);
            verdict.detail = detail;
            verdict
        };
        if let Some(name) = excluded_by {
            let detail = format!("the exclusive rule {} paid first", quoted(name));
            verdicts.push(refused(verdict, Refusal::Excluded, Some(detail)));
            continue;
        }
        if !rule.is_live(ctx.now) {
            verdicts.push(refused(verdict, Refusal::RuleInactive, None));
            continue;
        }
        if rule.per_object && request.object_id.is_none() {
            return Err(DomainError::validation(format!(
                "action `{}` needs an objectId",
                request.action
            )));
        }
        if let Outcome::Fail { index, reason } = conditions::evaluate(&rule.conditions, &event) {
            let detail = format!("conditions[{index}]: {reason}");
            verdicts.push(refused(verdict, Refusal::ConditionsNotMet, Some(detail)));
            continue;
        }
        let rule_facts = facts.rules.get(&rule.id).copied().unwrap_or_default();
        if let Some(reason) = limit_refusal(rule, &rule_facts) {
            verdicts.push(refused(verdict, reason, None));
            continue;
        }
        if facts.exhausted.contains(&rule.id) {
            let detail = "the campaign's budget is spent".to_owned();
            verdicts.push(refused(verdict, Refusal::BudgetExhausted, Some(detail)));
            continue;
        }
        if let Reward::Multiplier(_) = rule.reward {
            multipliers.push((verdicts.len(), rule, rule_facts));
            verdicts.push(verdict);
            continue;
        }
        let on_amount = matches!(
            rule.reward,
            Reward::Percent(_) | Reward::PercentOfLines(_) | Reward::PerUnit { .. }
        );
        if on_amount && request.amount.is_none() {
            // A money effect on an event without an amount (a misconfigured rule on a
            // mini-app action) pays nothing; the event's other rules still apply.
            let detail = "no amount: only purchases carry one".to_owned();
            verdicts.push(refused(verdict, Refusal::NothingToAward, Some(detail)));
            continue;
        }
        let (points, spins, lines) = match rule.reward {
            Reward::FreeSpins(spins) => (Points::ZERO, spins, None),
            Reward::GrantBadge(_) => (Points::ZERO, 0, None),
            _ => {
                let (points, lines) = payout(rule, request, &event, ctx, streak_day)?;
                (points, 0, lines)
            }
        };
        let grants_badge = matches!(rule.reward, Reward::GrantBadge(_));
        if !points.is_positive() && spins == 0 && !grants_badge {
            verdicts.push(refused(verdict, Refusal::NothingToAward, None));
            continue;
        }
        if let Some(detail) = over_member_cap(rule, &rule_facts, points) {
            verdicts.push(refused(verdict, Refusal::MemberCapReached, Some(detail)));
            continue;
        }
        earns.push(planned(
            rule,
            facts,
            request,
            windows.today,
            &rule_facts,
            points,
            spins,
            lines,
        ));
        verdict.points = points;
        verdict.spins = spins;
        verdicts.push(verdict);
        if rule.exclusive {
            excluded_by = Some(&rule.name);
        }
    }

    let base = earns
        .iter()
        .fold(Decimal::ZERO, |sum, e| sum + e.points.decimal());
    // A multiplier without a limit of its own pays once per event: when the earns it multiplies
    // carry a natural key (a per-object or limited rule), its key derives from theirs, so a
    // retried news read never pays the ×3 twice and needs no client key.
    let event_key = earns.iter().find_map(|e| e.natural_key.clone());
    let mut cut = false;
    for (slot, rule, rule_facts) in multipliers {
        // A paying exclusive rule before the multiplier's own place already stopped it above;
        // one among the multipliers stops the multipliers after it.
        let verdict = &mut verdicts[slot];
        if cut {
            verdict.refusal = Some(Refusal::Excluded);
            verdict.detail = Some("an exclusive multiplier paid first".to_owned());
            continue;
        }
        let Reward::Multiplier(factor) = rule.reward else {
            continue;
        };
        let extra = base
            .checked_mul(factor - Decimal::ONE)
            .ok_or_else(|| DomainError::validation("the computed reward is out of range"))?;
        let points = Points::round_from(extra)?;
        if !points.is_positive() {
            verdict.refusal = Some(Refusal::NothingToAward);
            verdict.detail = Some("no other rule paid for this event".to_owned());
            continue;
        }
        if let Some(detail) = over_member_cap(rule, &rule_facts, points) {
            verdict.refusal = Some(Refusal::MemberCapReached);
            verdict.detail = Some(detail);
            continue;
        }
        verdict.points = points;
        let mut earn = planned(
            rule,
            facts,
            request,
            windows.today,
            &rule_facts,
            points,
            0,
            None,
        );
        if earn.natural_key.is_none() {
            earn.natural_key = event_key.as_ref().map(|key| format!("{key}:x{}", rule.id));
        }
        earns.push(earn);
        cut = rule.exclusive;
    }

    let refusal = if earns.is_empty() {
        Some(
            verdicts
                .iter()
                .filter_map(|v| v.refusal)
                .max_by_key(|r| r.rank())
                .unwrap_or(Refusal::NoRule),
        )
    } else {
        None
    };
    let streak = (request.action == "daily_login" && !earns.is_empty())
        .then_some((windows.today, streak_day));
    Ok(Evaluation {
        refusal,
        earns,
        streak,
        verdicts,
    })
}

#[allow(clippy::too_many_arguments)]
fn planned(
    rule: &Rule,
    facts: &MemberFacts,
    request: &ActionRequest,
    today: NaiveDate,
    rule_facts: &RuleFacts,
    points: Points,
    spins: u32,
    lines: Option<Vec<usize>>,
) -> PlannedEarn {
    PlannedEarn {
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        source: rule.source.clone(),
        points,
        natural_key: natural_key(rule, facts, request, today, rule_facts),
        object_id: request.object_id.clone(),
        qualifying: rule.qualifying,
        spins,
        badge: match rule.reward {
            Reward::GrantBadge(badge) => Some(badge),
            _ => None,
        },
        lines,
        budget_total: rule.budget.total,
    }
}

/// The facts conditions see for this event.
pub fn event_facts(facts: &MemberFacts, request: &ActionRequest, ctx: &EvalContext) -> Facts {
    Facts {
        order_total: request.amount,
        lines: request.lines.clone(),
        tier: facts.tier.clone(),
        at: ctx.now,
        tz: ctx.tz,
        purchase_ordinal: facts.purchase_ordinal,
        joined_at: facts.joined_at,
        object_id: request.object_id.clone(),
        attributes: facts.attributes.clone(),
        action_counts: facts.action_counts.clone(),
        badges: facts.badges.clone(),
    }
}

/// `Some(explanation)` when `points` would take the member past the rule's per-member cap.
fn over_member_cap(rule: &Rule, facts: &RuleFacts, points: Points) -> Option<String> {
    let cap = rule.budget.per_member?;
    let after = facts.lifetime_points.checked_add(points)?;
    (after > cap).then(|| {
        format!(
            "member already has {} of the cap {}, this award is {}",
            facts.lifetime_points.decimal(),
            cap.decimal(),
            points.decimal()
        )
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

/// The lines a rule's line conditions match (any of them); `None` when it has no line
/// condition or the event has no lines (the whole order).
fn matched_lines(rule: &Rule, event: &Facts) -> Option<Vec<usize>> {
    let filters: Vec<_> = rule
        .conditions
        .iter()
        .filter(|c| conditions::is_line_condition(c))
        .collect();
    if filters.is_empty() || event.lines.is_empty() {
        return None;
    }
    Some(
        event
            .lines
            .iter()
            .enumerate()
            .filter(|(_, line)| filters.iter().any(|c| conditions::line_matches(c, line)))
            .map(|(index, _)| index)
            .collect(),
    )
}

/// Points a point-paying rule computes (tier multiplier applied where it applies) and the lines
/// they were computed on.
fn payout(
    rule: &Rule,
    request: &ActionRequest,
    event: &Facts,
    ctx: &EvalContext,
    streak_day: u32,
) -> Result<(Points, Option<Vec<usize>>), DomainError> {
    let overflow = || DomainError::validation("the computed reward is out of range");
    let amount = || {
        request.amount.ok_or_else(|| {
            DomainError::validation(format!("action `{}` needs an amount", request.action))
        })
    };
    let percent_of = |value: Decimal, percent: Decimal| {
        value
            .checked_mul(percent)
            .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
            .and_then(|v| v.checked_mul(ctx.points_per_currency))
            .ok_or_else(overflow)
    };
    let lines = matched_lines(rule, event);
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
        Reward::Percent(percent) => percent_of(amount()?.decimal(), percent)?,
        Reward::PercentOfLines(percent) => {
            let value = match &lines {
                Some(indices) => indices
                    .iter()
                    .map(|&i| event.lines[i].value().decimal())
                    .sum(),
                None => amount()?.decimal(),
            };
            percent_of(value, percent)?
        }
        Reward::PerUnit {
            points,
            per,
            rounding,
        } => {
            let units = amount()?
                .decimal()
                .checked_div(per.decimal())
                .ok_or_else(overflow)?;
            let units = match rounding {
                Rounding::Down => units.floor(),
                Rounding::Nearest => units.round_dp_with_strategy(
                    0,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                ),
                Rounding::Up => units.ceil(),
            };
            points.decimal().checked_mul(units).ok_or_else(overflow)?
        }
        Reward::CallerChosen { min, max } => {
            let chosen = request.points.ok_or_else(|| {
                DomainError::validation(format!(
                    "rule {} lets the caller choose the points: send `points` ({}–{})",
                    quoted(&rule.name),
                    min.decimal(),
                    max.decimal()
                ))
            })?;
            if chosen < min || chosen > max {
                return Err(DomainError::validation(format!(
                    "points: {} is outside the range {}–{} of rule {}",
                    chosen.decimal(),
                    min.decimal(),
                    max.decimal(),
                    quoted(&rule.name)
                )));
            }
            // The caller named the exact points: no tier multiplier.
            return Ok((chosen, lines));
        }
        Reward::Multiplier(_) | Reward::FreeSpins(_) | Reward::GrantBadge(_) => {
            return Ok((Points::ZERO, None))
        }
    };
    let scaled = round2(base)
        .checked_mul(ctx.multiplier)
        .ok_or_else(overflow)?;
    Ok((Points::round_from(scaled)?, lines))
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
                ..Default::default()
            };
            let next_points = match rule.reward {
                Reward::Fixed(_) => {
                    let event = event_facts(facts, &request, ctx);
                    payout(rule, &request, &event, ctx, streak_day)
                        .ok()
                        .map(|(points, _)| points)
                }
                Reward::CallerChosen { max, .. } => Some(max),
                Reward::Percent(_)
                | Reward::PercentOfLines(_)
                | Reward::PerUnit { .. }
                | Reward::Multiplier(_)
                | Reward::FreeSpins(_)
                | Reward::GrantBadge(_) => None,
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
