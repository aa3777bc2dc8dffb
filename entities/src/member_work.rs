use sea_orm::entity::prelude::*;

/// Work one member's transaction owes another member, run as that member's own operation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "member_work")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    /// The member the work posts to.
    pub member_id: i64,
    pub kind: String,
    pub subject: String,
    pub created_at: DateTimeUtc,
    /// When it may run; also a claim's lease.
    pub due_at: DateTimeUtc,
    pub attempts: i32,
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
