use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "purchases")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub order_id: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub points_minor: i64,
    pub reversed_minor: i64,
    pub unrecovered_minor: i64,
    /// JSON: what each paid rule accrued and what refunds reversed of it (NULL before lines).
    pub accruals: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
