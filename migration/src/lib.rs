//! The loyalty database schema. The same migrations run on PostgreSQL and on the embedded SQLite
//! default, so only portable column types are used: amounts are `BIGINT` hundredths of a point (or
//! of a currency unit), never floating point, and every guarantee the ledger relies on is also a
//! database constraint (unique idempotency keys, `CHECK (balance_minor >= 0)`, foreign keys).

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261124_000002_gifts_vouchers;
mod m20261124_000003_expiry_tiers;
mod m20261124_000004_wheel;
mod m20261124_000005_referrals;
mod m20261125_000006_launch_secrets;
mod m20261125_000007_report_aggregates;
mod m20261125_000008_report_member_blocks;
mod m20261201_000009_deployment;
mod m20261201_000010_rule_budgets;
mod m20261201_000011_purchase_lines;
mod m20261201_000012_spins_attributes;
mod m20261201_000013_rule_campaigns;
mod m20261201_000014_earn_events;
mod m20261202_000015_report_sections;
mod m20261202_000016_challenges;
mod m20261202_000017_report_gaps;
mod m20261202_000019_webhooks;
mod m20261202_000020_member_work;
mod m20261202_000021_webhook_claim;
mod m20261202_000022_webhook_probe;
mod m20261202_000023_webhook_endpoint_walk;
mod m20261203_000024_lock_member;
mod util;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261124_000002_gifts_vouchers::Migration),
            Box::new(m20261124_000003_expiry_tiers::Migration),
            Box::new(m20261124_000004_wheel::Migration),
            Box::new(m20261124_000005_referrals::Migration),
            Box::new(m20261125_000006_launch_secrets::Migration),
            Box::new(m20261125_000007_report_aggregates::Migration),
            Box::new(m20261125_000008_report_member_blocks::Migration),
            Box::new(m20261201_000009_deployment::Migration),
            Box::new(m20261201_000010_rule_budgets::Migration),
            Box::new(m20261201_000011_purchase_lines::Migration),
            Box::new(m20261201_000012_spins_attributes::Migration),
            Box::new(m20261201_000013_rule_campaigns::Migration),
            Box::new(m20261201_000014_earn_events::Migration),
            Box::new(m20261202_000015_report_sections::Migration),
            Box::new(m20261202_000016_challenges::Migration),
            Box::new(m20261202_000017_report_gaps::Migration),
            Box::new(m20261202_000019_webhooks::Migration),
            Box::new(m20261202_000020_member_work::Migration),
            Box::new(m20261202_000021_webhook_claim::Migration),
            Box::new(m20261202_000022_webhook_probe::Migration),
            Box::new(m20261202_000023_webhook_endpoint_walk::Migration),
            Box::new(m20261203_000024_lock_member::Migration),
        ]
    }
}
