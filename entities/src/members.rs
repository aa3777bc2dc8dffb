use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub external_id: String,
    pub display_name: Option<String>,
    #[sea_orm(unique)]
    pub referral_code: String,
    pub referrer_id: Option<i64>,
    pub registered_at: Option<DateTimeUtc>,
    pub joined_at: DateTimeUtc,
    pub login_streak: i32,
    pub last_login_date: Option<String>,
    pub tier_id: Option<i64>,
    /// JSON object of string → string set by the service role (`setMemberAttributes`), at
    /// most 20 keys; `{}` when none.
    pub attributes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
