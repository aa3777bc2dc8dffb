//! Checking conditions against what one event knows, and saying why the first one fails.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::{quoted, Condition, TimeOfDay, Weekday};
use crate::earning::rules::Period;
use crate::money::Money;

/// One order line, as a purchase reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub category: Option<String>,
    pub quantity: u32,
    pub unit_price: Money,
}

impl Line {
    /// `quantity × unit_price`, saturating (inputs are bounded well below overflow upstream).
    pub fn value(&self) -> Money {
        Money::from_minor(
            self.unit_price
                .minor()
                .saturating_mul(i64::from(self.quantity)),
        )
    }
}

/// The member's tier: the id conditions name, the name explanations show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierFact {
    pub id: i64,
    pub name: String,
}

/// How many events of this action the member recorded, this one included, paid or not, in the
/// local day, ISO week and month of the event (program timezone) and ever.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    pub action: String,
    pub day: u32,
    pub week: u32,
    pub month: u32,
    pub lifetime: u32,
}

impl ActionCounts {
    pub fn count(&self, period: Period) -> u32 {
        match period {
            Period::Day => self.day,
            Period::Week => self.week,
            Period::Month => self.month,
            Period::Lifetime => self.lifetime,
        }
    }
}

/// What an event knows. `None` where the event has no such fact (an action has no order total,
/// a purchase may have no object id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub order_total: Option<Money>,
    pub lines: Vec<Line>,
    pub tier: Option<TierFact>,
    /// When the event happened, and the program's timezone that makes it local.
    pub at: DateTime<Utc>,
    pub tz: Tz,
    /// This purchase's place among the member's purchases (1 = first); `None` for an action.
    pub purchase_ordinal: Option<u32>,
    pub joined_at: Option<DateTime<Utc>>,
    pub object_id: Option<String>,
    pub attributes: HashMap<String, String>,
    /// Loaded only when a rule for the action has an `actionCountAtLeast` condition.
    pub action_counts: Option<ActionCounts>,
    /// The codes of the badges the member holds; loaded only when a condition is `hasBadge`.
    pub badges: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The first failing condition (index into the rule's list) and why, with the value seen.
    Fail {
        index: usize,
        reason: String,
    },
}

/// All conditions must hold; the first that does not is explained.
pub fn evaluate(conditions: &[Condition], facts: &Facts) -> Outcome {
    conditions
        .iter()
        .enumerate()
        .find_map(|(index, condition)| {
            check(condition, facts)
                .err()
                .map(|reason| Outcome::Fail { index, reason })
        })
        .unwrap_or(Outcome::Pass)
}

/// The value of the lines a line condition matches (the base of "% of the matching lines");
/// `None` for any other condition.
pub fn matching_lines_value(condition: &Condition, facts: &Facts) -> Option<Money> {
    let filter = LineFilter::of(condition)?;
    Some(filter.matching(facts).1)
}

/// Whether `condition` is one of the two line conditions.
pub fn is_line_condition(condition: &Condition) -> bool {
    LineFilter::of(condition).is_some()
}

/// Whether a line condition matches `line` by SKU or category (minimums aside); `false` for any
/// other condition.
pub fn line_matches(condition: &Condition, line: &Line) -> bool {
    LineFilter::of(condition).is_some_and(|filter| filter.matches(line))
}

fn check(condition: &Condition, facts: &Facts) -> Result<(), String> {
    match condition {
        Condition::OrderTotalAtLeast { amount } => {
            let total = facts.order_total.ok_or("no order total (not a purchase)")?;
            pass_if(total >= *amount, || {
                format!("order total {} < {}", total.decimal(), amount.decimal())
            })
        }
        Condition::OrderTotalBelow { amount } => {
            let total = facts.order_total.ok_or("no order total (not a purchase)")?;
            pass_if(total < *amount, || {
                format!("order total {} >= {}", total.decimal(), amount.decimal())
            })
        }
        Condition::LinesWithSku { .. } | Condition::LinesInCategory { .. } => {
            match LineFilter::of(condition) {
                Some(filter) => filter.check(facts),
                None => Ok(()),
            }
        }
        Condition::TierIn { tier_ids } => {
            let tier = facts.tier.as_ref().ok_or("member has no tier")?;
            pass_if(tier_ids.contains(&tier.id), || {
                format!(
                    "tier {} (id {}) is not in {}",
                    tier.name,
                    tier.id,
                    set(tier_ids, |id| id.to_string())
                )
            })
        }
        Condition::DayOfWeekIn { days } => {
            let day = Weekday::from_chrono(facts.at.with_timezone(&facts.tz).weekday());
            pass_if(days.contains(&day), || {
                format!(
                    "local day {} is not in {}",
                    day.name(),
                    set(days, |d| d.name().to_owned())
                )
            })
        }
        Condition::LocalTimeBetween { from, to } => {
            let local = facts.at.with_timezone(&facts.tz);
            // Whole minutes: 19:59:59 is before 20:00, 20:00:00 is not.
            let hours = u16::try_from(local.hour()).unwrap_or_default();
            let minutes = u16::try_from(local.minute()).unwrap_or_default();
            let now = TimeOfDay::new(hours, minutes).unwrap_or_default();
            pass_if(*from <= now && now < *to, || {
                format!("local time {now} is not in {from}–{to}")
            })
        }
        Condition::FirstPurchase => {
            let ordinal = facts.purchase_ordinal.ok_or("not a purchase")?;
            pass_if(ordinal == 1, || {
                format!("purchase #{ordinal} is not the first")
            })
        }
        Condition::NthPurchase { n } => {
            let ordinal = facts.purchase_ordinal.ok_or("not a purchase")?;
            pass_if(ordinal == *n, || format!("purchase #{ordinal} is not #{n}"))
        }
        Condition::JoinedWithinDays { days } => {
            let joined = facts.joined_at.ok_or("join date unknown")?;
            let since = facts.at.signed_duration_since(joined);
            pass_if(since < chrono::Duration::days(i64::from(*days)), || {
                format!("joined {} days ago, not within {days}", since.num_days())
            })
        }
        Condition::ObjectIdIn { ids } => {
            let id = facts.object_id.as_deref().ok_or("no object id")?;
            pass_if(ids.contains(id), || {
                format!(
                    "object {} is not in {}",
                    quoted(id),
                    set(ids, |i| quoted(i))
                )
            })
        }
        Condition::ObjectIdPrefix { prefix } => {
            let id = facts.object_id.as_deref().ok_or("no object id")?;
            pass_if(id.starts_with(prefix.as_str()), || {
                format!(
                    "object {} does not start with {}",
                    quoted(id),
                    quoted(prefix)
                )
            })
        }
        Condition::MemberAttributeEquals { key, value } => {
            let Some(actual) = facts.attributes.get(key) else {
                return Err(format!("attribute {} is not set", quoted(key)));
            };
            pass_if(actual == value, || {
                format!(
                    "attribute {} is {}, not {}",
                    quoted(key),
                    quoted(actual),
                    quoted(value)
                )
            })
        }
        Condition::HasBadge { code } => pass_if(facts.badges.contains(code), || {
            format!("the member does not hold the badge {}", quoted(code))
        }),
        Condition::ActionCountAtLeast { count, period } => {
            let counts = facts.action_counts.as_ref().ok_or("action count unknown")?;
            let seen = counts.count(*period);
            let when = match period {
                Period::Day => "today",
                Period::Week => "this week",
                Period::Month => "this month",
                Period::Lifetime => "ever",
            };
            pass_if(seen >= *count, || {
                format!("{} #{seen} {when} < {count}", counts.action)
            })
        }
    }
}

fn pass_if(holds: bool, reason: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(reason())
    }
}

/// `{a, b, c}`, at most five values shown (a set may hold a hundred).
fn set<T>(values: &BTreeSet<T>, show: impl Fn(&T) -> String) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = values.iter().take(SHOWN).map(show).collect();
    if values.len() > SHOWN {
        parts.push(format!("… {} more", values.len() - SHOWN));
    }
    format!("{{{}}}", parts.join(", "))
}

/// The two line conditions, seen alike.
struct LineFilter<'a> {
    by_category: bool,
    values: &'a BTreeSet<String>,
    min_quantity: Option<u32>,
    min_value: Option<Money>,
}

impl<'a> LineFilter<'a> {
    fn of(condition: &'a Condition) -> Option<Self> {
        match condition {
            Condition::LinesWithSku {
                skus,
                min_quantity,
                min_value,
            } => Some(LineFilter {
                by_category: false,
                values: skus,
                min_quantity: *min_quantity,
                min_value: *min_value,
            }),
            Condition::LinesInCategory {
                categories,
                min_quantity,
                min_value,
            } => Some(LineFilter {
                by_category: true,
                values: categories,
                min_quantity: *min_quantity,
                min_value: *min_value,
            }),
            Condition::OrderTotalAtLeast { .. }
            | Condition::OrderTotalBelow { .. }
            | Condition::TierIn { .. }
            | Condition::DayOfWeekIn { .. }
            | Condition::LocalTimeBetween { .. }
            | Condition::FirstPurchase
            | Condition::NthPurchase { .. }
            | Condition::JoinedWithinDays { .. }
            | Condition::ObjectIdIn { .. }
            | Condition::ObjectIdPrefix { .. }
            | Condition::MemberAttributeEquals { .. }
            | Condition::HasBadge { .. }
            | Condition::ActionCountAtLeast { .. } => None,
        }
    }

    fn matches(&self, line: &Line) -> bool {
        if self.by_category {
            line.category
                .as_ref()
                .is_some_and(|category| self.values.contains(category))
        } else {
            self.values.contains(&line.sku)
        }
    }

    /// (lines matched, their total quantity, their total value), saturating.
    fn matching(&self, facts: &Facts) -> (usize, Money, u64) {
        let (mut count, mut value, mut quantity) = (0, 0_i64, 0_u64);
        for line in facts.lines.iter().filter(|line| self.matches(line)) {
            count += 1;
            value = value.saturating_add(line.value().minor());
            quantity = quantity.saturating_add(u64::from(line.quantity));
        }
        (count, Money::from_minor(value), quantity)
    }

    fn check(&self, facts: &Facts) -> Result<(), String> {
        let (count, value, quantity) = self.matching(facts);
        let what = if self.by_category {
            "in category"
        } else {
            "with SKU"
        };
        let values = set(self.values, |v| quoted(v));
        if count == 0 {
            return Err(format!("no line {what} {values}"));
        }
        if let Some(min) = self.min_quantity.filter(|min| quantity < u64::from(*min)) {
            return Err(format!(
                "quantity of lines {what} {values} is {quantity} < {min}"
            ));
        }
        if let Some(min) = self.min_value.filter(|min| value < *min) {
            return Err(format!(
                "value of lines {what} {values} is {} < {}",
                value.decimal(),
                min.decimal()
            ));
        }
        Ok(())
    }
}
