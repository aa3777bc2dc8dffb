//! The sections merchants from Altcraft and Maestra look for: acquisition, activity by the month
//! of the last purchase, membership duration, coverage, average discount, the three average
//! order values, the purchase rate and points by campaign. Pure: sums in, figures out.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::tally::{Cat, Cell};
use crate::money::{Money, Points};

/// New members of the period, split by whether they had ordered by the period's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Acquisition {
    pub new_members: u64,
    pub with_purchase: u64,
    pub without_purchase: u64,
}

/// Orders and revenue of members and of everyone else (Maestra's "coverage").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub member_orders: i64,
    pub non_member_orders: i64,
    /// Members' orders ÷ all orders, 4 fraction digits.
    pub order_share: Decimal,
    pub member_revenue: Money,
    pub non_member_revenue: Money,
    /// Members' revenue ÷ all revenue, 4 fraction digits.
    pub revenue_share: Decimal,
}

/// Discounts granted: vouchers consumed at checkout, at their money value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Discount {
    pub total: Money,
    /// Vouchers bought with points (`redeemDiscount`): points redeemed at their money value.
    pub from_points: Money,
    /// Vouchers won on the wheel.
    pub from_prizes: Money,
    pub vouchers: i64,
    /// `total` ÷ members' revenue, 4 fraction digits.
    pub rate: Decimal,
}

/// Average order value of members, of everyone else, and of everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OrderValues {
    pub members: Money,
    pub non_members: Money,
    pub everyone: Money,
}

/// One month of the period: members' purchases in it, and the members whose last purchase (by
/// the period's end) fell in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MonthActivity {
    /// The month's first day (or the period's first day for the first month).
    pub start: NaiveDate,
    pub orders: i64,
    pub revenue: Money,
    pub last_purchase_members: u64,
}

/// Membership duration buckets, in whole calendar months from the month a member joined to the
/// month of the period's end: `[min, max]` months.
pub const DURATION_BUCKETS: [(u32, Option<u32>, &str); 6] = [
    (0, Some(0), "Under 1 month"),
    (1, Some(2), "1–2 months"),
    (3, Some(5), "3–5 months"),
    (6, Some(11), "6–11 months"),
    (12, Some(23), "12–23 months"),
    (24, None, "24 months or more"),
];

/// Members by how long they have been in the program, with their purchases in the period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DurationBucket {
    pub label: String,
    pub min_months: u32,
    pub max_months: Option<u32>,
    /// Members in the bucket at the period's end.
    pub members: u64,
    pub orders: i64,
    pub revenue: Money,
    /// Revenue ÷ orders.
    pub average_purchase: Money,
    /// Revenue ÷ members.
    pub revenue_per_member: Money,
}

/// A campaign (rule): what it issued in the period and whom it reached, and its budget now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Campaign {
    pub rule_id: i64,
    pub name: String,
    pub source: String,
    /// POINTS its earns issued in the period, less the refund reversals of them posted in it.
    pub points_issued: Points,
    /// Its earn postings in the period.
    pub awards: i64,
    /// Members it paid (points or free spins) in the period.
    pub members_reached: u64,
    pub budget_total: Option<Points>,
    /// Of the budget, spent since the campaign began.
    pub budget_spent: Points,
    pub budget_remaining: Option<Points>,
    /// Deleted since (still listed when it issued points in the period).
    pub deleted: bool,
}

/// A campaign (rule) as the program has it now.
#[derive(Clone, Debug)]
pub struct CampaignRule {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub budget_total_minor: Option<i64>,
    pub spent_minor: i64,
    pub deleted: bool,
}

/// `numerator ÷ denominator` to 4 fraction digits, half to even; 0 when the denominator is not
/// positive.
pub fn ratio(numerator: i64, denominator: i64) -> Decimal {
    if denominator <= 0 {
        return Decimal::new(0, 4);
    }
    let mut rate = (Decimal::from(numerator) / Decimal::from(denominator))
        .round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven);
    rate.rescale(4);
    rate
}

/// `amount ÷ count` in minor units, half to even; 0 without a count.
pub fn average(amount_minor: i64, count: i64) -> Money {
    if count <= 0 {
        return Money::from_minor(0);
    }
    Money::from_minor(
        (Decimal::from(amount_minor) / Decimal::from(count))
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
            .try_into()
            .unwrap_or(0i64),
    )
}

/// Sums of one category over cells, by key.
fn by_key<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)>,
    cat: Cat,
) -> BTreeMap<String, Cell> {
    let mut sums: BTreeMap<String, Cell> = BTreeMap::new();
    for ((_, c, key), cell) in cells {
        if *c == cat {
            sums.entry(key.clone()).or_default().add(*cell);
        }
    }
    sums
}

fn total(sums: &BTreeMap<String, Cell>) -> Cell {
    let mut all = Cell::default();
    for cell in sums.values() {
        all.add(*cell);
    }
    all
}

/// Money sums of a period's cells.
#[derive(Clone, Copy, Debug, Default)]
pub struct Orders {
    pub member: Cell,
    pub member_refunded: i64,
    pub guest: Cell,
    pub guest_refunded: i64,
}

impl Orders {
    pub fn of<'a>(cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)>) -> Self {
        let mut orders = Orders::default();
        for ((_, cat, _), cell) in cells {
            match cat {
                Cat::Purchase => orders.member.add(*cell),
                Cat::PurchaseRefund => orders.member_refunded += cell.amount_minor,
                Cat::GuestOrder => orders.guest.add(*cell),
                Cat::GuestRefund => orders.guest_refunded += cell.amount_minor,
                _ => {}
            }
        }
        orders
    }

    pub fn member_revenue(&self) -> i64 {
        self.member.amount_minor - self.member_refunded
    }

    pub fn guest_revenue(&self) -> i64 {
        self.guest.amount_minor - self.guest_refunded
    }

    pub fn coverage(&self) -> Coverage {
        let (member, guest) = (self.member_revenue(), self.guest_revenue());
        Coverage {
            member_orders: self.member.count,
            non_member_orders: self.guest.count,
            order_share: ratio(self.member.count, self.member.count + self.guest.count),
            member_revenue: Money::from_minor(member),
            non_member_revenue: Money::from_minor(guest),
            revenue_share: ratio(member, member + guest),
        }
    }

    pub fn order_values(&self) -> OrderValues {
        OrderValues {
            members: average(self.member_revenue(), self.member.count),
            non_members: average(self.guest_revenue(), self.guest.count),
            everyone: average(
                self.member_revenue() + self.guest_revenue(),
                self.member.count + self.guest.count,
            ),
        }
    }
}

pub fn discount<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)>,
    member_revenue: i64,
) -> Discount {
    let uses = by_key(cells, Cat::VoucherUse);
    let all = total(&uses);
    let from_points = uses.get("discount").copied().unwrap_or_default();
    Discount {
        total: Money::from_minor(all.amount_minor),
        from_points: Money::from_minor(from_points.amount_minor),
        from_prizes: Money::from_minor(all.amount_minor - from_points.amount_minor),
        vouchers: all.count,
        rate: ratio(all.amount_minor, member_revenue),
    }
}

/// New members (`JOINED` cells) and those of them with a first order by the end
/// (`FIRST_PURCHASE` cells, already limited to orders by the period's end).
pub fn acquisition<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)>,
) -> Acquisition {
    let (mut new_members, mut with_purchase) = (0i64, 0i64);
    for ((_, cat, _), cell) in cells {
        match cat {
            Cat::Joined => new_members += cell.count,
            Cat::FirstPurchase => with_purchase += cell.count,
            _ => {}
        }
    }
    let new_members = u64::try_from(new_members).unwrap_or(0);
    let with_purchase = u64::try_from(with_purchase).unwrap_or(0);
    Acquisition {
        new_members,
        with_purchase,
        without_purchase: new_members.saturating_sub(with_purchase),
    }
}

/// Per month of the period: members' orders and revenue in it, and the members whose last order
/// by the end fell in it. `bought_since[i]` = members with an order from the i-th month's start
/// to the period's end, so the month's count is the difference with the next month's.
pub fn activity_by_month<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)> + Clone,
    bought_since: &[(NaiveDate, u64)],
) -> Vec<MonthActivity> {
    bought_since
        .iter()
        .enumerate()
        .map(|(i, (start, since))| {
            let next = bought_since.get(i + 1);
            let in_month = |day: &NaiveDate| {
                *day >= *start && next.is_none_or(|(next_start, _)| *day < *next_start)
            };
            let orders = Orders::of(cells.clone().filter(|((day, _, _), _)| in_month(day)));
            MonthActivity {
                start: *start,
                orders: orders.member.count,
                revenue: Money::from_minor(orders.member_revenue()),
                last_purchase_members: since.saturating_sub(next.map_or(0, |(_, n)| *n)),
            }
        })
        .collect()
}

/// Whole calendar months from `joined` (a `YYYY-MM` key) to the month of `end`.
fn months_between(joined: &str, end: NaiveDate) -> Option<u32> {
    let (year, month) = joined.split_once('-')?;
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    let months = (end.year() - year) * 12 + (i32::try_from(end.month()).ok()? - month);
    u32::try_from(months).ok()
}

pub fn membership_duration<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)> + Clone,
    joined_by_month: &BTreeMap<String, i64>,
    end: NaiveDate,
) -> Vec<DurationBucket> {
    let bucket_of = |cohort: &str| {
        let months = months_between(cohort, end)?;
        DURATION_BUCKETS
            .iter()
            .position(|(min, max, _)| months >= *min && max.is_none_or(|max| months <= max))
    };
    let mut members = [0i64; DURATION_BUCKETS.len()];
    let mut orders = [Cell::default(); DURATION_BUCKETS.len()];
    let mut refunded = [0i64; DURATION_BUCKETS.len()];
    for (cohort, n) in joined_by_month {
        if let Some(i) = bucket_of(cohort) {
            members[i] += n;
        }
    }
    for (cohort, cell) in by_key(cells.clone(), Cat::CohortPurchase) {
        if let Some(i) = bucket_of(&cohort) {
            orders[i].add(cell);
        }
    }
    for (cohort, cell) in by_key(cells, Cat::CohortRefund) {
        if let Some(i) = bucket_of(&cohort) {
            refunded[i] += cell.amount_minor;
        }
    }
    DURATION_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, (min, max, label))| {
            let revenue = orders[i].amount_minor - refunded[i];
            DurationBucket {
                label: (*label).to_owned(),
                min_months: *min,
                max_months: *max,
                members: u64::try_from(members[i]).unwrap_or(0),
                orders: orders[i].count,
                revenue: Money::from_minor(revenue),
                average_purchase: average(revenue, orders[i].count),
                revenue_per_member: average(revenue, members[i]),
            }
        })
        .collect()
}

/// Every campaign not deleted, and deleted ones that issued or reached anyone in the period,
/// by rule id; a rule id the ledger names but the program no longer has is listed as
/// "Rule #id".
pub fn campaigns<'a>(
    cells: impl Iterator<Item = (&'a (NaiveDate, Cat, String), &'a Cell)>,
    reached: &BTreeMap<i64, u64>,
    rules: &[CampaignRule],
) -> Vec<Campaign> {
    let issued: BTreeMap<i64, Cell> = by_key(cells, Cat::RuleEarn)
        .into_iter()
        .filter_map(|(key, cell)| Some((key.parse().ok()?, cell)))
        .collect();
    let mut ids: Vec<i64> = rules
        .iter()
        .filter(|r| !r.deleted)
        .map(|r| r.id)
        .chain(issued.keys().copied())
        .chain(reached.keys().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let rule = rules.iter().find(|r| r.id == id);
            let cell = issued.get(&id).copied().unwrap_or_default();
            let total = rule.and_then(|r| r.budget_total_minor);
            let spent = rule.map_or(0, |r| r.spent_minor);
            Campaign {
                rule_id: id,
                name: rule.map_or_else(|| format!("Rule #{id}"), |r| r.name.clone()),
                source: rule.map(|r| r.source.clone()).unwrap_or_default(),
                points_issued: Points::from_minor(cell.amount_minor),
                awards: cell.count,
                members_reached: reached.get(&id).copied().unwrap_or(0),
                budget_total: total.map(Points::from_minor),
                budget_spent: Points::from_minor(spent),
                budget_remaining: total.map(|t| Points::from_minor((t - spent).max(0))),
                deleted: rule.is_none_or(|r| r.deleted),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn cell(amount_minor: i64, count: i64) -> Cell {
        Cell {
            amount_minor,
            count,
        }
    }

    #[test]
    fn duration_is_counted_in_calendar_months_to_the_periods_end() {
        assert_eq!(months_between("2026-03", d("2026-03-31")), Some(0));
        assert_eq!(months_between("2025-12", d("2026-01-01")), Some(1));
        assert_eq!(months_between("2024-01", d("2026-01-15")), Some(24));
        // A member cannot have joined after the end; such a key has no bucket.
        assert_eq!(months_between("2026-04", d("2026-03-31")), None);
        let joined = BTreeMap::from([
            ("2026-03".to_owned(), 2),
            ("2026-01".to_owned(), 1),
            ("2023-05".to_owned(), 4),
        ]);
        let cells = [
            (
                (d("2026-03-02"), Cat::CohortPurchase, "2026-03".to_owned()),
                cell(1000, 2),
            ),
            (
                (d("2026-03-03"), Cat::CohortRefund, "2026-03".to_owned()),
                cell(100, 1),
            ),
            (
                (d("2026-03-04"), Cat::CohortPurchase, "2023-05".to_owned()),
                cell(4000, 1),
            ),
        ];
        let buckets =
            membership_duration(cells.iter().map(|(k, v)| (k, v)), &joined, d("2026-03-31"));
        assert_eq!(buckets[0].members, 2);
        assert_eq!(buckets[0].revenue, Money::from_minor(900));
        assert_eq!(buckets[0].average_purchase, Money::from_minor(450));
        assert_eq!(buckets[0].revenue_per_member, Money::from_minor(450));
        assert_eq!(buckets[1].members, 1);
        assert_eq!(buckets[1].orders, 0);
        assert_eq!(buckets[5].members, 4);
        assert_eq!(buckets[5].revenue_per_member, Money::from_minor(1000));
    }

    #[test]
    fn months_take_the_difference_of_members_who_bought_since_their_start() {
        let bought = [
            (d("2026-01-20"), 10),
            (d("2026-02-01"), 7),
            (d("2026-03-01"), 3),
        ];
        let cells = [
            (
                (d("2026-01-25"), Cat::Purchase, String::new()),
                cell(500, 1),
            ),
            (
                (d("2026-03-02"), Cat::Purchase, String::new()),
                cell(700, 2),
            ),
            (
                (d("2026-03-05"), Cat::PurchaseRefund, String::new()),
                cell(200, 1),
            ),
        ];
        let months = activity_by_month(cells.iter().map(|(k, v)| (k, v)), &bought);
        let counts: Vec<u64> = months.iter().map(|m| m.last_purchase_members).collect();
        assert_eq!(counts, vec![3, 4, 3]);
        assert_eq!(months[0].revenue, Money::from_minor(500));
        assert_eq!(months[2].revenue, Money::from_minor(500));
        assert_eq!(months[2].orders, 2);
    }

    #[test]
    fn coverage_and_averages_split_members_from_everyone_else() {
        let orders = Orders {
            member: cell(3000, 3),
            member_refunded: 0,
            guest: cell(1000, 1),
            guest_refunded: 500,
        };
        let coverage = orders.coverage();
        assert_eq!(coverage.order_share, "0.7500".parse::<Decimal>().unwrap());
        assert_eq!(coverage.revenue_share, "0.8571".parse::<Decimal>().unwrap());
        let values = orders.order_values();
        assert_eq!(values.members, Money::from_minor(1000));
        assert_eq!(values.non_members, Money::from_minor(500));
        assert_eq!(values.everyone, Money::from_minor(875));
        assert_eq!(ratio(1, 0), Decimal::new(0, 4));
    }
}
