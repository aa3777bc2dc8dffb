//! Spending points: gifts and their redemptions, discount vouchers, the lucky wheel. Each spend
//! and what it buys are one transaction.

pub mod gifts;
pub mod vouchers;
pub mod wheel;
