use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "purchase_lines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub purchase_id: i64,
    /// 1-based, in the order the lines were sent.
    #[sea_orm(primary_key, auto_increment = false)]
    pub line_number: i32,
    pub sku: String,
    pub category: Option<String>,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub refunded_quantity: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
