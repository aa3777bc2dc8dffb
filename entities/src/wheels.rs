use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wheels")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub name: String,
    pub spin_cost_minor: i64,
    pub daily_spin_limit: i32,
    pub archived_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
