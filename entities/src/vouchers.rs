use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "vouchers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    #[sea_orm(unique)]
    pub code: String,
    pub points_minor: i64,
    /// Money, hundredths of the program's currency.
    pub value_minor: i64,
    /// `ACTIVE` or `USED`.
    pub status: String,
    /// `discount` (bought with points) or `wheel` (a prize).
    pub origin: String,
    pub spend_entry_id: Option<i64>,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    pub order_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
