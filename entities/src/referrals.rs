use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "referrals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub referrer_id: i64,
    pub referee_id: i64,
    /// PENDING until the friend qualifies, then REWARDED.
    pub status: String,
    pub created_at: DateTimeUtc,
    /// When the friend qualified and was paid.
    pub rewarded_at: Option<DateTimeUtc>,
    /// The friend's place among the inviter's referrals (unique per inviter: the caps' guard).
    pub ordinal: Option<i64>,
    /// When the inviter's reward ran (its own operation, after the friend's).
    pub inviter_rewarded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
