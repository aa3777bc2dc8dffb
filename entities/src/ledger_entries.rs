use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub account: String,
    pub amount_minor: i64,
    pub kind: String,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub rule_id: Option<i64>,
    pub ruleset_version: Option<i64>,
    pub idempotency_key: Option<String>,
    pub reverses_id: Option<i64>,
    pub expires_at: Option<DateTimeUtc>,
    pub remaining_minor: Option<i64>,
    pub member_version: i64,
    pub note: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
