use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "challenges")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub name: String,
    pub description: String,
    pub mission: bool,
    pub window_kind: String,
    pub window_from: Option<DateTimeUtc>,
    pub window_to: Option<DateTimeUtc>,
    pub reward_points_minor: i64,
    pub reward_free_spins: i32,
    pub reward_gift_id: Option<i64>,
    pub reward_badge_id: Option<i64>,
    pub enabled: bool,
    pub deleted_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
