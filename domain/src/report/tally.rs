//! The unit both the folder and the report work in: signed sums and counts per (local day,
//! category, key), and who did what on which day. Pure: no database here.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::spans::Mark;

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
    /// A member's first order, on the member's join day; key: the order's local day.
    FirstPurchase,
    /// Members' orders by the month the member joined (key `YYYY-MM`).
    CohortPurchase,
    /// Members' refunds by the month the member joined (key `YYYY-MM`).
    CohortRefund,
    /// Orders of customers who are not members.
    GuestOrder,
    GuestRefund,
    /// Vouchers consumed at checkout, money; key: the voucher's origin (`discount`, `wheel`).
    VoucherUse,
    /// POINTS a campaign issued (its earns, less refund reversals of them); key: the rule id.
    RuleEarn,
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
    FirstPurchase => "FIRST_PURCHASE",
    CohortPurchase => "COHORT_PURCHASE",
    CohortRefund => "COHORT_REFUND",
    GuestOrder => "GUEST_ORDER",
    GuestRefund => "GUEST_REFUND",
    VoucherUse => "VOUCHER_USE",
    RuleEarn => "RULE_EARN",
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
            Cat::Joined
            | Cat::Purchase
            | Cat::PurchaseRefund
            | Cat::FirstPurchase
            | Cat::CohortPurchase
            | Cat::CohortRefund
            | Cat::GuestOrder
            | Cat::GuestRefund
            | Cat::VoucherUse
            | Cat::RuleEarn => false,
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

/// Sums per (day, category, key) and who did what on which day.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub cells: HashMap<(NaiveDate, Cat, String), Cell>,
    pub marks: HashSet<(Mark, NaiveDate, i64)>,
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
    /// The campaign that paid it: its own for an earn, the reversed earn's for a reversal.
    pub rule_id: Option<i64>,
}

impl LedgerRow {
    /// The columns [`LedgerRow`] reads from `ledger_entries l`, joined to the row it reverses
    /// (`LEFT JOIN ledger_entries r ON r.id = l.reverses_id`).
    pub const SELECT: &'static str = "SELECT l.id, l.program_id, l.member_id, l.account, l.kind, \
        l.amount_minor, l.source, l.purpose, l.created_at, COALESCE(l.rule_id, r.rule_id) AS \
        rule_id FROM ledger_entries l LEFT JOIN ledger_entries r ON r.id = l.reverses_id";
}

/// The tables besides the ledger that the report folds, each read as [`EventRow`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTable {
    Members,
    Purchases,
    Refunds,
    GuestOrders,
    GuestRefunds,
    VoucherUses,
}

impl EventTable {
    pub const ALL: [EventTable; 6] = [
        EventTable::Members,
        EventTable::Purchases,
        EventTable::Refunds,
        EventTable::GuestOrders,
        EventTable::GuestRefunds,
        EventTable::VoucherUses,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventTable::Members => "members",
            EventTable::Purchases => "purchases",
            EventTable::Refunds => "refunds",
            EventTable::GuestOrders => "guest_orders",
            EventTable::GuestRefunds => "guest_refunds",
            EventTable::VoucherUses => "voucher_uses",
        }
    }

    /// `SELECT … FROM <table> t …` giving [`EventRow`]'s columns; the caller adds the `WHERE`
    /// on `t.id` (and `t.program_id`).
    pub fn select(self) -> &'static str {
        match self {
            EventTable::Members => {
                "SELECT t.id, t.program_id, t.id AS member_id, CAST(0 AS BIGINT) AS amount_minor, \
                 t.joined_at AS created_at, t.joined_at AS joined_at, \
                 CAST(NULL AS VARCHAR(64)) AS tag, CAST(NULL AS BIGINT) AS first FROM members t"
            }
            // `first`: the member had no earlier order (ids of one member's orders are in commit
            // order: each is written under the member's lock).
            EventTable::Purchases => {
                "SELECT t.id, t.program_id, t.member_id, t.amount_minor, t.created_at, m.joined_at, \
                 CAST(NULL AS VARCHAR(64)) AS tag, CAST(CASE WHEN EXISTS (SELECT 1 FROM purchases q \
                 WHERE q.member_id = t.member_id AND q.id < t.id) THEN 0 ELSE 1 END AS BIGINT) \
                 AS first \
                 FROM purchases t JOIN members m ON m.id = t.member_id"
            }
            EventTable::Refunds => {
                "SELECT t.id, t.program_id, p.member_id, t.amount_minor, t.created_at, m.joined_at, \
                 CAST(NULL AS VARCHAR(64)) AS tag, CAST(NULL AS BIGINT) AS first FROM refunds t \
                 JOIN purchases p ON p.id = t.purchase_id JOIN members m ON m.id = p.member_id"
            }
            EventTable::GuestOrders => {
                "SELECT t.id, t.program_id, CAST(NULL AS BIGINT) AS member_id, t.amount_minor, \
                 t.created_at, CAST(NULL AS TIMESTAMPTZ) AS joined_at, CAST(NULL AS VARCHAR(64)) \
                 AS tag, CAST(NULL AS BIGINT) AS first FROM guest_orders t"
            }
            EventTable::GuestRefunds => {
                "SELECT t.id, t.program_id, CAST(NULL AS BIGINT) AS member_id, t.amount_minor, \
                 t.created_at, CAST(NULL AS TIMESTAMPTZ) AS joined_at, CAST(NULL AS VARCHAR(64)) \
                 AS tag, CAST(NULL AS BIGINT) AS first FROM guest_refunds t"
            }
            EventTable::VoucherUses => {
                "SELECT t.id, t.program_id, t.member_id, t.value_minor AS amount_minor, \
                 t.created_at, CAST(NULL AS TIMESTAMPTZ) AS joined_at, t.origin AS tag, \
                 CAST(NULL AS BIGINT) AS first FROM voucher_uses t"
            }
        }
    }
}

/// A row of one of the [`EventTable`]s: when, how much (money; 0 for members), and what the
/// report needs beside (whose, when they joined, the voucher's origin, a first order).
#[derive(Clone, Debug, sea_orm::FromQueryResult)]
pub struct EventRow {
    pub id: i64,
    pub program_id: i64,
    pub member_id: Option<i64>,
    pub amount_minor: i64,
    pub created_at: DateTime<Utc>,
    pub joined_at: Option<DateTime<Utc>>,
    pub tag: Option<String>,
    pub first: Option<i64>,
}

impl Tally {
    pub fn add(&mut self, day: NaiveDate, cat: Cat, key: String, cell: Cell) {
        self.cells.entry((day, cat, key)).or_default().add(cell);
    }

    pub fn ledger(&mut self, tz: Tz, row: &LedgerRow) -> DomainResult<()> {
        let day = local_date(tz, row.created_at);
        self.marks.insert((Mark::Active, day, row.member_id));
        let kind = Kind::read("ledger_entries.kind", &row.kind)?;
        if let (Some(rule), Kind::Earn) = (row.rule_id, kind) {
            // Points or free spins: either way the campaign reached the member.
            self.marks.insert((Mark::Rule(rule), day, row.member_id));
        }
        if let Some((cat, key)) = Cat::of_ledger(
            &row.account,
            &row.kind,
            row.amount_minor,
            row.source.as_deref(),
            row.purpose.as_deref(),
        )? {
            let cell = Cell {
                amount_minor: row.amount_minor,
                count: 1,
            };
            if let (Some(rule), Cat::Earn | Cat::Reversal) = (row.rule_id, cat) {
                let count = i64::from(cat == Cat::Earn);
                self.add(day, Cat::RuleEarn, rule.to_string(), Cell { count, ..cell });
            }
            self.add(day, cat, key, cell);
        }
        Ok(())
    }

    pub fn event(&mut self, tz: Tz, table: EventTable, row: &EventRow) {
        let day = local_date(tz, row.created_at);
        let cell = Cell {
            amount_minor: row.amount_minor,
            count: 1,
        };
        let joined = row.joined_at.map(|at| local_date(tz, at));
        let cohort = || joined.map(|d| d.format("%Y-%m").to_string());
        match table {
            EventTable::Members => self.add(day, Cat::Joined, String::new(), cell),
            EventTable::Purchases => {
                self.add(day, Cat::Purchase, String::new(), cell);
                if let Some(cohort) = cohort() {
                    self.add(day, Cat::CohortPurchase, cohort, cell);
                }
                if let (Some(joined), Some(1)) = (joined, row.first) {
                    let count = Cell {
                        amount_minor: 0,
                        count: 1,
                    };
                    self.add(joined, Cat::FirstPurchase, day.to_string(), count);
                }
                if let Some(member) = row.member_id {
                    self.marks.insert((Mark::Purchase, day, member));
                }
            }
            EventTable::Refunds => {
                self.add(day, Cat::PurchaseRefund, String::new(), cell);
                if let Some(cohort) = cohort() {
                    self.add(day, Cat::CohortRefund, cohort, cell);
                }
            }
            EventTable::GuestOrders => self.add(day, Cat::GuestOrder, String::new(), cell),
            EventTable::GuestRefunds => self.add(day, Cat::GuestRefund, String::new(), cell),
            EventTable::VoucherUses => self.add(
                day,
                Cat::VoucherUse,
                row.tag.clone().unwrap_or_default(),
                cell,
            ),
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for ((day, cat, key), cell) in other.cells {
            self.add(day, cat, key, cell);
        }
        self.marks.extend(other.marks);
    }

    /// The cells of the days in `[from, to]`.
    pub fn within(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Iterator<Item = (&(NaiveDate, Cat, String), &Cell)> + Clone {
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
