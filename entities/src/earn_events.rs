use sea_orm::entity::prelude::*;

/// One recorded earning event, paid or not (the replay log; see the migration
/// `m20261201_000014_earn_events`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "earn_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub action: String,
    pub object_id: Option<String>,
    /// The event's money amount (a purchase's order total), hundredths.
    pub amount_minor: Option<i64>,
    /// A purchase's order id (its lines are looked up by it).
    pub order_id: Option<String>,
    /// Points the caller chose (caller-chosen rules), hundredths.
    pub chosen_minor: Option<i64>,
    /// The member's tier when the event was evaluated.
    pub tier_id: Option<i64>,
    /// POINTS the live rules paid for it (0 when nothing was paid).
    pub points_minor: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
