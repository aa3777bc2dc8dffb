//! A program (tenant) as every layer sees it: plain settings, no behaviour. It sits below the
//! ledger, which posts under a program's id and lot validity; reading and changing programs is
//! `program/`.

use chrono_tz::Tz;
use rust_decimal::Decimal;

/// A program as the domain uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub tz: Tz,
    pub currency: String,
    /// Points worth one unit of money.
    pub points_per_currency: Decimal,
    /// Days an earned lot stays spendable; `None` = never expires.
    pub validity_days: Option<u32>,
    pub referral_link_template: Option<String>,
    pub referrals: ReferralPolicy,
}

/// When a referred friend qualifies, and how many friends an inviter may bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferralPolicy {
    /// `true`: on the friend's first purchase; `false`: on registration.
    pub on_first_purchase: bool,
    pub daily_cap: Option<u32>,
    pub lifetime_cap: Option<u32>,
}
