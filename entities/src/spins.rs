use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spins")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub wheel_id: i64,
    pub segment_id: i64,
    pub client_seed: String,
    pub nonce: i64,
    pub server_seed: String,
    pub server_seed_hash: String,
    /// JSON list of `[segment id, weight]` in the draw, in position order.
    pub draw: String,
    pub cost_minor: i64,
    pub prize_kind: String,
    pub prize_points_minor: Option<i64>,
    pub redemption_id: Option<i64>,
    pub voucher_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
