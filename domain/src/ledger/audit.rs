//! The ledger invariants (SPEC §4.3), checked from the database: for every member and account
//! `balance == SUM(amount)`, balances never negative, every lot's remaining within
//! `[0, amount]`, and the POINTS lots together hold exactly the balance. SPINS (free wheel
//! spins) is checked like any account, and holds whole spins only.

use std::collections::{HashMap, HashSet};

use loyalty_entities::{balances, ledger_entries};
use sea_orm::sea_query::Expr;

use crate::ledger::db::sum_of;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
};

use crate::error::DomainResult;
use crate::ledger::{Account, ONE_SPIN};
use crate::stored::Stored;

#[derive(FromQueryResult)]
struct Sums {
    member_id: i64,
    account: String,
    total: Option<i64>,
    remaining: Option<i64>,
    bad_lots: Option<i64>,
}

/// Totals over a program's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub members: usize,
    pub outstanding_minor: i64,
    pub violations: Vec<String>,
}

/// Checks a program's ledger against its balances (`Loyalty::audit`).
pub async fn audit<C: ConnectionTrait>(conn: &C, program_id: i64) -> DomainResult<AuditReport> {
    let rows = balances::Entity::find()
        .filter(balances::Column::ProgramId.eq(program_id))
        .all(conn)
        .await?;
    let sums = ledger_entries::Entity::find()
        .select_only()
        .column(ledger_entries::Column::MemberId)
        .column(ledger_entries::Column::Account)
        .column_as(
            sum_of(Expr::col(ledger_entries::Column::AmountMinor)),
            "total",
        )
        .column_as(
            sum_of(Expr::col(ledger_entries::Column::RemainingMinor)),
            "remaining",
        )
        .column_as(
            sum_of(
                Expr::case(
                    Expr::col(ledger_entries::Column::RemainingMinor)
                        .lt(0)
                        .or(Expr::col(ledger_entries::Column::RemainingMinor)
                            .gt(Expr::col(ledger_entries::Column::AmountMinor))),
                    1,
                )
                .finally(0),
            ),
            "bad_lots",
        )
        .filter(ledger_entries::Column::ProgramId.eq(program_id))
        .group_by(ledger_entries::Column::MemberId)
        .group_by(ledger_entries::Column::Account)
        .into_model::<Sums>()
        .all(conn)
        .await?;
    let sums: HashMap<(i64, String), &Sums> = sums
        .iter()
        .map(|s| ((s.member_id, s.account.clone()), s))
        .collect();
    let mut report = AuditReport::default();
    for balance in &rows {
        let sum = sums.get(&(balance.member_id, balance.account.clone()));
        let total = sum.and_then(|s| s.total).unwrap_or_default();
        let account = Account::read("balances.account", &balance.account)?;
        if account == Account::Spins && balance.balance_minor % ONE_SPIN.minor() != 0 {
            report.violations.push(format!(
                "member {} SPINS: balance {} is not a whole number of spins",
                balance.member_id, balance.balance_minor
            ));
        }
        if account == Account::Points {
            report.members += 1;
            report.outstanding_minor += balance.balance_minor;
            let remaining = sum.and_then(|s| s.remaining).unwrap_or_default();
            if remaining != balance.balance_minor {
                report.violations.push(format!(
                    "member {}: lots hold {remaining} but balance is {}",
                    balance.member_id, balance.balance_minor
                ));
            }
        }
        if total != balance.balance_minor {
            report.violations.push(format!(
                "member {} {}: balance {} != ledger sum {total}",
                balance.member_id, balance.account, balance.balance_minor
            ));
        }
        if balance.balance_minor < 0 {
            report.violations.push(format!(
                "member {} has a negative balance",
                balance.member_id
            ));
        }
        if sum.and_then(|s| s.bad_lots).unwrap_or_default() > 0 {
            report.violations.push(format!(
                "member {} has lots with remaining outside [0, amount]",
                balance.member_id
            ));
        }
    }
    let with_balance: HashSet<(i64, &str)> = rows
        .iter()
        .map(|b| (b.member_id, b.account.as_str()))
        .collect();
    for (member_id, account) in sums.keys() {
        if !with_balance.contains(&(*member_id, account.as_str())) {
            report.violations.push(format!(
                "member {member_id} {account}: ledger rows without a balance"
            ));
        }
    }
    Ok(report)
}
