use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "programs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub external_id: String,
    pub name: String,
    pub timezone: String,
    pub currency: String,
    pub points_per_currency_minor: i64,
    pub validity_days: Option<i32>,
    pub referral_link_template: Option<String>,
    pub ruleset_version: i64,
    /// REGISTRATION or FIRST_PURCHASE: when a referred friend qualifies.
    pub referral_qualify_on: String,
    pub referral_daily_cap: Option<i32>,
    pub referral_lifetime_cap: Option<i32>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
