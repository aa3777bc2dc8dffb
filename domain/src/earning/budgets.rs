//! Campaign budgets: a rule's total points budget, shared by every member, reserved in the
//! posting's own transaction.
//!
//! A reservation is one conditional `UPDATE … SET spent = spent + x WHERE spent + x <= total`:
//! it takes the budget row's lock until commit, and a waiting transaction re-checks the condition
//! against the committed value, so the budget is never exceeded. An award that does not fit whole
//! is refused (never paid in part). Refunds do not give budget back: a budget counts points issued.

use std::collections::HashMap;

use loyalty_entities::rule_budgets;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::error::DomainResult;
use crate::program::Program;
use crate::service::Loyalty;

use crate::earning::rules::PlannedEarn;
use crate::ledger::db::TxResult;
use crate::ledger::Tx;
use crate::money::Points;

/// What a rule with a total budget has issued against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    pub spent: Points,
    pub awards: i64,
}

impl Loyalty {
    /// Every rule's budget usage in the program, by (draft) rule id; a rule without a row has
    /// spent nothing.
    pub async fn budget_usage(&self, program: &Program) -> DomainResult<HashMap<i64, BudgetUsage>> {
        Ok(rule_budgets::Entity::find()
            .filter(rule_budgets::Column::ProgramId.eq(program.id))
            .all(self.db())
            .await?
            .into_iter()
            .map(|row| {
                let usage = BudgetUsage {
                    spent: Points::from_minor(row.spent_minor),
                    awards: row.awards,
                };
                (row.rule_id, usage)
            })
            .collect())
    }
}

/// Reserves every budgeted earn of one evaluation. `Some(rule id)` names the first whose award
/// no longer fits; the reservations made before it are given back, so the caller can evaluate
/// again without that rule.
pub(crate) async fn reserve_all(tx: &Tx<'_>, earns: &[PlannedEarn]) -> TxResult<Option<i64>> {
    let budgeted: Vec<(i64, Points, Points)> = earns
        .iter()
        .filter_map(|e| Some((e.rule_id, e.budget_total?, e.points)))
        .filter(|(_, _, points)| points.is_positive())
        .collect();
    for (n, &(rule_id, total, points)) in budgeted.iter().enumerate() {
        if !reserve(tx, rule_id, total, points).await? {
            for &(rule_id, _, points) in &budgeted[..n] {
                give_back(tx, rule_id, points).await?;
            }
            return Ok(Some(rule_id));
        }
    }
    Ok(None)
}

/// The conditional `UPDATE` alone, while the rule's row exists (every award but its first);
/// when it changes nothing, the row is created if missing and the `UPDATE` tried once more.
async fn reserve(tx: &Tx<'_>, rule_id: i64, total: Points, points: Points) -> TxResult<bool> {
    if points > total {
        return Ok(false);
    }
    if take(tx, rule_id, total, points).await? {
        return Ok(true);
    }
    rule_budgets::Entity::insert(rule_budgets::ActiveModel {
        program_id: Set(tx.program.id),
        rule_id: Set(rule_id),
        spent_minor: Set(0),
        awards: Set(0),
    })
    .on_conflict(
        OnConflict::columns([
            rule_budgets::Column::ProgramId,
            rule_budgets::Column::RuleId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx.txn)
    .await?;
    take(tx, rule_id, total, points).await
}

/// Adds `points` to the rule's spent budget if they fit under `total`: `false` when they do not,
/// or when the rule has no budget row yet.
async fn take(tx: &Tx<'_>, rule_id: i64, total: Points, points: Points) -> TxResult<bool> {
    let updated = rule_budgets::Entity::update_many()
        .col_expr(
            rule_budgets::Column::SpentMinor,
            Expr::col(rule_budgets::Column::SpentMinor).add(points.minor()),
        )
        .col_expr(
            rule_budgets::Column::Awards,
            Expr::col(rule_budgets::Column::Awards).add(1),
        )
        .filter(rule_budgets::Column::ProgramId.eq(tx.program.id))
        .filter(rule_budgets::Column::RuleId.eq(rule_id))
        .filter(rule_budgets::Column::SpentMinor.lte(total.minor() - points.minor()))
        .exec(tx.txn)
        .await?;
    Ok(updated.rows_affected == 1)
}

async fn give_back(tx: &Tx<'_>, rule_id: i64, points: Points) -> TxResult<()> {
    rule_budgets::Entity::update_many()
        .col_expr(
            rule_budgets::Column::SpentMinor,
            Expr::col(rule_budgets::Column::SpentMinor).sub(points.minor()),
        )
        .col_expr(
            rule_budgets::Column::Awards,
            Expr::col(rule_budgets::Column::Awards).sub(1),
        )
        .filter(rule_budgets::Column::ProgramId.eq(tx.program.id))
        .filter(rule_budgets::Column::RuleId.eq(rule_id))
        .exec(tx.txn)
        .await?;
    Ok(())
}
