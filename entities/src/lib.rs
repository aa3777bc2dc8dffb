//! sea-orm entities of the loyalty database. Amounts are `i64` hundredths (`*_minor`); the domain
//! crate turns them into exact decimals. These models never leave the domain crate: the GraphQL
//! layer maps them to its own DTOs.

pub mod badges;
pub mod balances;
pub mod challenge_completions;
pub mod challenge_goals;
pub mod challenge_marks;
pub mod challenge_progress;
pub mod challenge_sets;
pub mod challenges;
pub mod earn_events;
pub mod earning_rules;
pub mod gifts;
pub mod idempotency_records;
pub mod launch_secrets;
pub mod ledger_entries;
pub mod member_badges;
pub mod member_work;
pub mod members;
pub mod programs;
pub mod purchase_lines;
pub mod purchases;
pub mod redemptions;
pub mod referral_clicks;
pub mod referrals;
pub mod refunds;
pub mod rule_budgets;
pub mod rulesets;
pub mod spins;
pub mod tiers;
pub mod vouchers;
pub mod webhook_attempts;
pub mod webhook_endpoints;
pub mod webhook_outbox;
pub mod wheel_seeds;
pub mod wheel_segments;
pub mod wheels;
