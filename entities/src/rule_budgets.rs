use sea_orm::entity::prelude::*;

/// Points a campaign rule has issued against its total budget (by draft rule id).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rule_budgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub program_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub rule_id: i64,
    pub spent_minor: i64,
    /// Awards counted against the budget.
    pub awards: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
