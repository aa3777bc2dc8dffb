//! Rules as the engine sees them (also the JSON frozen into a published ruleset).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::conditions::{ActionCounts, Condition, Line, TierFact};
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

/// What a rule pays when it applies (its effect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reward {
    /// A fixed number of points.
    Fixed(Points),
    /// A percentage of the action's money amount (a purchase: the order total), converted with
    /// the program's points-per-currency ratio: `amount × percent / 100 × ratio`.
    Percent(Decimal),
    /// A percentage of the value of the lines the rule's line conditions match (all lines when it
    /// has none), converted like `Percent`: product-level accrual.
    PercentOfLines(Decimal),
    /// `points` for every whole `per` of the amount, the count of units rounded as `rounding`
    /// says (Square's "1 point per $10": 99.99 pays 9 rounded down).
    PerUnit {
        points: Points,
        per: Money,
        rounding: Rounding,
    },
    /// Pays `(factor − 1) ×` what the point-paying rules paid for the same event (after the tier
    /// multiplier): ×2 at weekends doubles the event's points.
    Multiplier(Decimal),
    /// The caller names the points (`recordAction(points:)`, service role) within `[min, max]`.
    CallerChosen { min: Points, max: Points },
    /// Free wheel spins, spent before points by `spinWheel`.
    FreeSpins(u32),
    /// Grants the badge with this id (held once: a second grant is a no-op); pays no points.
    GrantBadge(i64),
}

/// How `PerUnit` rounds the number of units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rounding {
    /// Whole units only: 99.99 per 10.00 is 9 units.
    #[default]
    Down,
    /// Half up: 95.00 per 10.00 is 10 units.
    Nearest,
    /// Any started unit counts: 90.01 per 10.00 is 10 units.
    Up,
}

stored_enum!(Rounding {
    Down => "DOWN",
    Nearest => "NEAREST",
    Up => "UP",
});

/// A campaign's caps over its whole life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Points the rule may issue in total, over all members (never exceeded; an award that does
    /// not fit whole is refused).
    pub total: Option<Points>,
    /// Points the rule may issue to one member over its life.
    pub per_member: Option<Points>,
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
    /// All must hold for the rule to pay.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Rules apply in descending priority, then ascending id.
    #[serde(default)]
    pub priority: i32,
    /// When this rule pays, no lower-priority rule pays for the same event.
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub budget: Budget,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionRequest {
    pub action: String,
    pub object_id: Option<String>,
    pub amount: Option<Money>,
    /// A purchase's lines (empty: none were sent).
    pub lines: Vec<Line>,
    /// Points the caller chose (`CallerChosen` rules; service role only).
    pub points: Option<Points>,
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
    /// Points this rule paid the member over its life (per-member budget caps).
    pub lifetime_points: Points,
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
    /// The member's tier, for `tierIn` conditions.
    pub tier: Option<TierFact>,
    pub joined_at: Option<DateTime<Utc>>,
    /// This purchase's place among the member's purchases (1 = first); `None` for an action.
    pub purchase_ordinal: Option<u32>,
    /// Attributes set by the service role (`setMemberAttributes`).
    pub attributes: HashMap<String, String>,
    /// Rules whose total budget cannot take their award (found while reserving it).
    pub exhausted: std::collections::HashSet<i64>,
    /// This event's place among the member's events of its action, for `actionCountAtLeast`
    /// (loaded only when a rule for the action has one).
    pub action_counts: Option<ActionCounts>,
    /// The codes of the badges the member holds (loaded only for a `hasBadge` condition).
    pub badges: std::collections::BTreeSet<String>,
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
