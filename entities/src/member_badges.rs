use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "member_badges")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub badge_id: i64,
    pub source: String,
    pub source_ref: Option<String>,
    pub earned_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::badges::Entity",
        from = "Column::BadgeId",
        to = "super::badges::Column::Id"
    )]
    Badge,
}

impl Related<super::badges::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Badge.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
