//! The loyalty domain: rule engine, ledger, idempotency and program logic. Pure logic and
//! database transactions; nothing in here knows about HTTP or GraphQL.

pub mod actions;
pub mod actor;
pub mod adjust;
pub mod audit;
pub mod clock;
pub mod db;
pub mod demo;
pub mod deployment;
pub mod earning;
pub mod error;
pub mod events;
pub mod expiry;
pub mod gifts;
mod jobs;
pub mod leaderboard;
pub mod ledger;
pub mod members;
pub mod miniapp;
pub mod money;
pub mod ops;
pub mod periods;
pub mod program;
pub mod purchases;
pub mod referrals;
pub mod report;
pub mod rulebook;
pub mod rules;
pub mod service;
mod settled;
pub mod store;
pub mod tiers;
pub mod vouchers;
pub mod wheel;

pub use actor::{Actor, Role};
pub use error::{DomainError, DomainResult};
pub use money::{Money, Points};
pub use service::Loyalty;
