//! End-to-end tests: the real server on a free port, real HTTP, and either PostgreSQL + Redis
//! (a fresh database and Redis key prefix per test) or the embedded SQLite default. Every test
//! runs on both (`e2e!` makes a `postgres` and a `sqlite` case).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod attributes;
mod auth;
mod bank;
mod browser;
mod campaign_rules;
mod campaigns;
mod cancellation;
mod catch_up;
mod challenge_progress;
mod challenges;
mod csv_injection;
mod dashboard;
mod demo;
mod earning;
mod expiry;
pub mod free_spins;
mod gifts;
mod group_commit;
mod http;
mod idempotency;
mod leaderboard;
mod limits;
pub mod live;
mod miniapp;
mod persisted_queries;
mod program;
mod purchase_lines;
mod purchases;
mod redis_faults;
mod redis_namespaces;
mod redis_outage;
mod referrals;
mod replay;
mod report;
mod report_sections;
mod rules;
mod stored_values;
mod telegram;
mod tiers;
mod transport;
mod vouchers;
mod webhooks;
mod wheel;
