use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "earning_rules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub action: String,
    pub source: String,
    pub name: String,
    pub reward_kind: String,
    pub points_minor: i64,
    pub percent_minor: i64,
    pub limit_count: Option<i32>,
    pub limit_period: Option<String>,
    pub per_object: bool,
    pub streak_step_minor: Option<i64>,
    pub streak_cap_minor: Option<i64>,
    pub active_from: Option<DateTimeUtc>,
    pub active_to: Option<DateTimeUtc>,
    pub enabled: bool,
    pub qualifying: bool,
    /// JSON array of conditions (the admin API's shape).
    pub conditions: String,
    pub priority: i32,
    pub exclusive: bool,
    pub budget_total_minor: Option<i64>,
    pub member_cap_minor: Option<i64>,
    /// JSON of the effect for kinds beyond FIXED/PERCENT; NULL for those.
    pub effect: Option<String>,
    pub deleted_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
