use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "redemptions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub gift_id: i64,
    pub cost_minor: i64,
    /// `PENDING`, `FULFILLED` or `CANCELLED`.
    pub status: String,
    /// `redeem` (bought with points) or `wheel` (a prize).
    pub origin: String,
    pub spend_entry_id: Option<i64>,
    pub refund_entry_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
