//! Rule conditions (issue 11, item 2): typed, validated values that must all hold for a rule to
//! pay, and the explanation of the first one that does not (item 6, test mode).
//!
//! The admin API sends each condition
//! as an internally tagged JSON object (`{"kind": "orderTotalAtLeast", "amount": "50.00"}`);
//! [`validate`] turns a list of them into [`Condition`]s or refuses the first bad field with its
//! path, and [`evaluate`] checks them against the [`Facts`] of one event.

mod evaluate;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde::{Serialize, Serializer};

use crate::earning::rules::Period;
use crate::money::Money;

pub use evaluate::{
    evaluate, is_line_condition, line_matches, matching_lines_value, ActionCounts, Facts, Line,
    Outcome, TierFact,
};
pub use parse::validate;

/// At most this many conditions on one rule.
pub const MAX_CONDITIONS: usize = 20;
/// At most this many values in one set (SKUs, categories, tiers, days, object ids).
pub const MAX_SET_LEN: usize = 100;
/// A SKU, category, object id or object id prefix: 1 to this many characters.
pub const MAX_VALUE_CHARS: usize = 64;
/// A member attribute key: 1 to this many characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
/// A member attribute value: 1 to this many characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
/// `nthPurchase`: n in 1..=this.
pub const MAX_NTH_PURCHASE: u32 = 1_000;
/// `joinedWithinDays`: days in 1..=this (ten years).
pub const MAX_JOINED_WITHIN_DAYS: u32 = 3_650;
/// `minQuantity` of a line condition: 1..=this.
pub const MAX_MIN_QUANTITY: u32 = 1_000_000;
/// `actionCountAtLeast`: count in 1..=this.
pub const MAX_ACTION_COUNT: u32 = 1_000;

/// One condition. Serializes to the admin API's JSON shape; deserializing goes through the same
/// validation as [`validate`], so a `Condition` always holds a valid value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    try_from = "serde_json::Value"
)]
pub enum Condition {
    /// The order total is at least `amount`.
    OrderTotalAtLeast {
        #[serde(serialize_with = "money_str")]
        amount: Money,
    },
    /// The order total is below `amount`.
    OrderTotalBelow {
        #[serde(serialize_with = "money_str")]
        amount: Money,
    },
    /// Lines whose SKU is in `skus` exist and, together, reach the minimums.
    LinesWithSku {
        skus: BTreeSet<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        min_quantity: Option<u32>,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "opt_money_str"
        )]
        min_value: Option<Money>,
    },
    /// Lines whose category is in `categories` exist and, together, reach the minimums.
    LinesInCategory {
        categories: BTreeSet<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        min_quantity: Option<u32>,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "opt_money_str"
        )]
        min_value: Option<Money>,
    },
    /// The member's tier (by tier id, as `program::tiers::Tier::id`) is one of these.
    TierIn { tier_ids: BTreeSet<i64> },
    /// The event's local day of week (program timezone) is one of these.
    DayOfWeekIn { days: BTreeSet<Weekday> },
    /// The event's local time of day (program timezone) is in `[from, to)`. `from < to`: a
    /// window never crosses midnight (use two rules); `to` may be `24:00`.
    LocalTimeBetween { from: TimeOfDay, to: TimeOfDay },
    /// The event is the member's first purchase.
    FirstPurchase,
    /// The event is the member's n-th purchase (1 = first).
    NthPurchase { n: u32 },
    /// The member joined less than `days` × 24 hours before the event.
    JoinedWithinDays { days: u32 },
    /// The event's object id is one of these.
    ObjectIdIn { ids: BTreeSet<String> },
    /// The event's object id starts with `prefix` (e.g. a news category `news/sport/`).
    ObjectIdPrefix { prefix: String },
    /// The member attribute `key` (set by the service role) equals `value` exactly.
    MemberAttributeEquals { key: String, value: String },
    /// This event is at least the `count`-th of its action by the member in the `period`
    /// (program timezone; `LIFETIME` = ever), this one included, paid or not: "the fifth news
    /// read of the day" (with a rule limit of 1 per day, "five reads grant one spin").
    ActionCountAtLeast { count: u32, period: Period },
    /// The member holds the badge with this code (however it was granted).
    HasBadge { code: String },
}

/// A day of the week, as the API spells it: `"monday"` … `"sunday"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    pub fn from_chrono(day: chrono::Weekday) -> Self {
        match day {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        }
    }
}

/// A local time of day in whole minutes since midnight, `00:00` to `24:00` (the end of the day,
/// allowed as the end of a window only). Written `"HH:MM"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub const END_OF_DAY: TimeOfDay = TimeOfDay(24 * 60);

    /// `hours:minutes`, or `None` past `24:00`.
    pub fn new(hours: u16, minutes: u16) -> Option<Self> {
        let total = hours.checked_mul(60)?.checked_add(minutes)?;
        (minutes < 60 && total <= Self::END_OF_DAY.0).then_some(TimeOfDay(total))
    }

    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn money_str<S: Serializer>(amount: &Money, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&amount.decimal())
}

fn opt_money_str<S: Serializer>(amount: &Option<Money>, serializer: S) -> Result<S::Ok, S::Error> {
    match amount {
        Some(amount) => money_str(amount, serializer),
        None => serializer.serialize_none(),
    }
}

/// A string as JSON writes it (quoted, escaped), so neither a refusal nor an explanation can be
/// forged by the text it quotes.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A member attribute key as `setMemberAttributes` stores it and `memberAttributeEquals` names
/// it: 1 to [`MAX_ATTRIBUTE_KEY_CHARS`] of `a–z`, `0–9` and `_`.
pub fn is_attribute_key(key: &str) -> bool {
    (1..=MAX_ATTRIBUTE_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl TryFrom<serde_json::Value> for Condition {
    type Error = crate::error::DomainError;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        parse::parse_one(&value, "condition")
    }
}
