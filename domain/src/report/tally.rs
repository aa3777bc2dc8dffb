//! The unit both the folder and the report work in: signed sums and counts per (local day,
//! category, key), and who posted on which day. Pure: no database here.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::error::DomainResult;
use crate::ledger::{Account, Kind};
use crate::periods::local_date;
use crate::stored::{stored_enum, Stored};

/// What an aggregate row counts. Ledger categories carry the ledger's own attribution (earns and
/// their reversals a `source`, spends and their refunds a `purpose`), so a correction nets out
/// of exactly what it corrects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cat {
    Earn,
    Reversal,
    AdjustIn,
    Spend,
    Refund,
    AdjustOut,
    Expire,
    Joined,
    Purchase,
    PurchaseRefund,
}

stored_enum!(Cat {
    Earn => "EARN",
    Reversal => "REVERSAL",
    AdjustIn => "ADJUST_IN",
    Spend => "SPEND",
    Refund => "REFUND",
    AdjustOut => "ADJUST_OUT",
    Expire => "EXPIRE",
    Joined => "JOINED",
    Purchase => "PURCHASE",
    PurchaseRefund => "PURCHASE_REFUND",
});

impl Cat {
    /// Whether the amount is a POINTS ledger amount (what the outstanding balance sums).
    pub fn is_points(self) -> bool {
        match self {
            Cat::Earn
            | Cat::Reversal
            | Cat::AdjustIn
            | Cat::Spend
            | Cat::Refund
            | Cat::AdjustOut
            | Cat::Expire => true,
            Cat::Joined | Cat::Purchase | Cat::PurchaseRefund => false,
        }
    }

    /// The category of a POINTS ledger row and its key; `None` for other accounts.
    pub fn of_ledger(
        account: &str,
        kind: &str,
        amount_minor: i64,
        source: Option<&str>,
        purpose: Option<&str>,
    ) -> DomainResult<Option<(Cat, String)>> {
        match Account::read("ledger_entries.account", account)? {
            Account::Points => {}
            // Tiers' qualification and free wheel spins are not points.
            Account::Qualification | Account::Spins => return Ok(None),
        }
        let source = || source.unwrap_or_default().to_owned();
        let purpose = || purpose.unwrap_or_default().to_owned();
        Ok(Some(match Kind::read("ledger_entries.kind", kind)? {
            Kind::Earn => (Cat::Earn, source()),
            Kind::Reversal => (Cat::Reversal, source()),
            Kind::Adjust if amount_minor > 0 => (Cat::AdjustIn, source()),
            Kind::Adjust => (Cat::AdjustOut, purpose()),
            Kind::Spend => (Cat::Spend, purpose()),
            Kind::Refund => (Cat::Refund, purpose()),
            Kind::Expire => (Cat::Expire, String::new()),
        }))
    }
}

/// A sum and a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub amount_minor: i64,
    pub count: i64,
}

impl Cell {
    pub fn add(&mut self, other: Cell) {
        self.amount_minor += other.amount_minor;
        self.count += other.count;
    }
}

/// Sums per (day, category, key) and the (day, member) pairs that posted.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub cells: HashMap<(NaiveDate, Cat, String), Cell>,
    pub member_days: HashSet<(NaiveDate, i64)>,
}

/// One ledger row as the folder and the tail read it.
#[derive(Clone, Debug, sea_orm::FromQueryResult)]
pub struct LedgerRow {
    pub id: i64,
    pub program_id: i64,
    pub member_id: i64,
    pub account: String,
    pub kind: String,
    pub amount_minor: i64,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A member, purchase or refund row: when, and how much (money; 0 for members).
#[derive(Clone, Debug, sea_orm::FromQueryResult)]
pub struct EventRow {
    pub id: i64,
    pub program_id: i64,
    pub amount_minor: i64,
    pub created_at: DateTime<Utc>,
}

impl Tally {
    pub fn add(&mut self, day: NaiveDate, cat: Cat, key: String, cell: Cell) {
        self.cells.entry((day, cat, key)).or_default().add(cell);
    }

    pub fn ledger(&mut self, tz: Tz, row: &LedgerRow) -> DomainResult<()> {
        let day = local_date(tz, row.created_at);
        self.member_days.insert((day, row.member_id));
        if let Some((cat, key)) = Cat::of_ledger(
            &row.account,
            &row.kind,
            row.amount_minor,
            row.source.as_deref(),
            row.purpose.as_deref(),
        )? {
            self.add(
                day,
                cat,
                key,
                Cell {
                    amount_minor: row.amount_minor,
                    count: 1,
                },
            );
        }
        Ok(())
    }

    pub fn event(&mut self, tz: Tz, cat: Cat, row: &EventRow) {
        self.add(
            local_date(tz, row.created_at),
            cat,
            String::new(),
            Cell {
                amount_minor: row.amount_minor,
                count: 1,
            },
        );
    }

    pub fn merge(&mut self, other: Tally) {
        for ((day, cat, key), cell) in other.cells {
            self.add(day, cat, key, cell);
        }
        self.member_days.extend(other.member_days);
    }

    /// The cells of the days in `[from, to]`.
    pub fn within(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Iterator<Item = (&(NaiveDate, Cat, String), &Cell)> {
        self.cells
            .iter()
            .filter(move |((day, _, _), _)| *day >= from && *day <= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DomainError;

    #[test]
    fn ledger_rows_are_categorised_by_their_typed_account_and_kind() {
        let cat =
            |account, kind, amount| Cat::of_ledger(account, kind, amount, Some("s"), Some("p"));
        assert_eq!(cat("POINTS", "EARN", 5), Ok(Some((Cat::Earn, "s".into()))));
        assert_eq!(
            cat("POINTS", "ADJUST", 5),
            Ok(Some((Cat::AdjustIn, "s".into())))
        );
        assert_eq!(
            cat("POINTS", "ADJUST", -5),
            Ok(Some((Cat::AdjustOut, "p".into())))
        );
        assert_eq!(
            cat("POINTS", "EXPIRE", -5),
            Ok(Some((Cat::Expire, String::new())))
        );
        assert_eq!(cat("QUALIFICATION", "EARN", 5), Ok(None));
        assert_eq!(cat("SPINS", "EARN", 100), Ok(None));
        assert_eq!(cat("SPINS", "SPEND", -100), Ok(None));
        // An unknown value stops the fold instead of vanishing from the report.
        assert_eq!(
            cat("POINTS", "FOO", 5),
            Err(DomainError::Internal(
                "ledger_entries.kind: unknown value \"FOO\"".into()
            ))
        );
        assert_eq!(
            cat("BAR", "EARN", 5),
            Err(DomainError::Internal(
                "ledger_entries.account: unknown value \"BAR\"".into()
            ))
        );
    }
}
