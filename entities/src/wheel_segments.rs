use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wheel_segments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub wheel_id: i64,
    pub position: i32,
    pub label: String,
    pub weight: i64,
    pub prize_kind: String,
    pub prize_points_minor: Option<i64>,
    pub prize_gift_id: Option<i64>,
    /// Prizes of this segment still available (`None` = unlimited).
    pub prize_stock: Option<i64>,
    pub archived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
