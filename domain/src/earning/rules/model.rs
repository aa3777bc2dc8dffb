//! Rules as the engine sees them (also the JSON frozen into a published ruleset).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Money, Points};
use crate::stored::stored_enum;

/// Built-in mini-app actions and the report source each one pays.
pub const BUILTIN_ACTIONS: &[(&str, &str)] = &[
    ("daily_login", "daily_login"),
    ("product_view", "first_product_view"),
    ("news_read", "first_news_read"),
    ("product_share", "first_product_share"),
    ("registration", "new_account_registration"),
    ("join", "new_member_reward"),
    ("purchase", "purchase"),
    ("referral_friend", "new_user_referral"),
    ("referral_inviter", "referrer_reward"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Period {
    Lifetime,
    Day,
    Week,
    Month,
}

stored_enum!(Period {
    Lifetime => "LIFETIME",
    Day => "DAY",
    Week => "WEEK",
    Month => "MONTH",
});

/// At most `count` awards per `period` (program timezone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub count: u32,
    pub period: Period,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reward {
    /// A fixed number of points.
    Fixed(Points),
    /// A percentage of the action's money amount, converted with the program's
    /// points-per-currency ratio: `amount × percent / 100 × ratio`.
    Percent(Decimal),
}

/// Daily-login streak: day `n` of an unbroken streak pays `min(base + step × (n − 1), cap)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    pub step: Points,
    pub cap: Points,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub action: String,
    pub source: String,
    pub reward: Reward,
    pub limit: Option<Limit>,
    pub per_object: bool,
    pub streak: Option<Streak>,
    pub active_from: Option<DateTime<Utc>>,
    pub active_to: Option<DateTime<Utc>>,
    pub enabled: bool,
    /// Also credits the QUALIFICATION account (what tiers count).
    #[serde(default)]
    pub qualifying: bool,
}

impl Rule {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.enabled
            && self.active_from.is_none_or(|from| from <= now)
            && self.active_to.is_none_or(|to| now < to)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// 0 = the draft (never published); published versions start at 1.
    pub version: i64,
    pub rules: Vec<Rule>,
}

impl Ruleset {
    pub fn rules_for<'a>(&'a self, action: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |rule| rule.action == action)
    }
}

/// What the member did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRequest {
    pub action: String,
    pub object_id: Option<String>,
    pub amount: Option<Money>,
}

/// How often a member was already paid by one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleFacts {
    pub lifetime: u32,
    pub in_day: u32,
    pub in_week: u32,
    pub in_month: u32,
    /// Paid for this action's object already (per-object rules).
    pub object_claimed: bool,
}

impl RuleFacts {
    pub fn count(&self, period: Period) -> u32 {
        match period {
            Period::Lifetime => self.lifetime,
            Period::Day => self.in_day,
            Period::Week => self.in_week,
            Period::Month => self.in_month,
        }
    }
}

/// The member state the engine needs, loaded under the member's lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFacts {
    pub member_id: i64,
    pub login_streak: u32,
    pub last_login_date: Option<NaiveDate>,
    pub rules: HashMap<i64, RuleFacts>,
}

/// Program settings and the clock reading the engine evaluates against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalContext {
    pub tz: Tz,
    pub now: DateTime<Utc>,
    /// Points worth one unit of money.
    pub points_per_currency: Decimal,
    /// The member's tier earn multiplier (1 without tiers).
    pub multiplier: Decimal,
}
