use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tiers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub name: String,
    pub min_qualification_minor: i64,
    /// Earn multiplier in hundredths (150 = ×1.5).
    pub multiplier_minor: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
