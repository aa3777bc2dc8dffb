//! Turning sums into the report's figures: issued by source, used by purpose, shares that add up
//! to exactly one, the redemption rate, revenue. Pure.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use super::tally::{Cat, Cell};
use super::{MemberStats, Part, PointsFigure};
use crate::money::{Money, Points};

/// The eight mini-app sources, then the other built-in ones, in the order the report lists them.
pub const SOURCES: [(&str, &str); 11] = [
    ("daily_login", "Daily login"),
    ("first_product_view", "First product view"),
    ("first_news_read", "First news read"),
    ("first_product_share", "First product share"),
    ("new_account_registration", "New account registration"),
    ("new_member_reward", "New member reward"),
    ("new_user_referral", "New user referral"),
    ("referrer_reward", "Referrer reward"),
    ("purchase", "Purchase"),
    ("lucky_wheel_prize", "Lucky wheel prize"),
    ("admin_adjustment", "Admin adjustment"),
];

pub const PURPOSES: [(&str, &str); 4] = [
    ("lucky_wheel", "Lucky wheel"),
    ("gift_redemption", "Gift redemption"),
    ("discount", "Discount"),
    ("admin_adjustment", "Admin adjustment"),
];

/// Share digits: 4 fraction digits, i.e. units of 1/10000.
const SHARE_UNITS: i128 = 10_000;

/// "my_custom_action" → "My custom action"; an empty key (a row without a source) → "Other".
pub fn humanize(key: &str) -> String {
    let words = key.replace('_', " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Other".to_owned(),
    }
}

/// Shares of `parts` in `total`, 4 fraction digits, by the largest-remainder method: each share
/// is first rounded down (to 1/10000), then the units still missing to make exactly 1.0000 go
/// one each to the parts with the largest remainders (ties: the earlier part). All zeros when
/// the total is not positive.
pub fn shares(parts: &[i64]) -> Vec<Decimal> {
    let total: i128 = parts.iter().map(|p| i128::from(*p)).sum();
    if total <= 0 {
        return vec![Decimal::new(0, 4); parts.len()];
    }
    let mut units: Vec<i128> = Vec::with_capacity(parts.len());
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let scaled = i128::from(*part) * SHARE_UNITS;
        units.push(scaled.div_euclid(total));
        remainders.push((scaled.rem_euclid(total), i));
    }
    let missing = SHARE_UNITS - units.iter().sum::<i128>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders
        .into_iter()
        .take(usize::try_from(missing).unwrap_or(0))
    {
        if let Some(u) = units.get_mut(i) {
            *u += 1;
        }
    }
    units
        .into_iter()
        .map(|u| Decimal::from_i128_with_scale(u, 4))
        .collect()
}

/// `used ÷ issued` to 4 fraction digits, half to even; 0 when nothing (or less) was issued.
pub fn redemption_rate(used: Points, issued: Points) -> Decimal {
    if issued.minor() <= 0 {
        return Decimal::new(0, 4);
    }
    let mut rate = (Decimal::from(used.minor()) / Decimal::from(issued.minor()))
        .round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven);
    rate.rescale(4);
    rate
}

/// The figures of one period, from its cells and the cumulative sums up to its last day.
pub struct PeriodSums<'a> {
    pub cells: Vec<(&'a (NaiveDate, Cat, String), &'a Cell)>,
    /// Sums of every day up to the period's end, by category.
    pub cumulative: BTreeMap<Cat, Cell>,
    pub active: u64,
}

pub struct Computed {
    pub issued: PointsFigure,
    pub used: PointsFigure,
    pub expired: Points,
    pub outstanding: Points,
    pub redemption_rate: Decimal,
    pub members: MemberStats,
    pub revenue: Money,
    pub average_order_value: Money,
}

fn figure(known: &[(&str, &str)], sums: BTreeMap<String, Cell>) -> PointsFigure {
    let mut rows: Vec<(String, String, Cell)> = known
        .iter()
        .map(|(key, label)| {
            (
                (*key).to_owned(),
                (*label).to_owned(),
                sums.get(*key).copied().unwrap_or_default(),
            )
        })
        .collect();
    // Custom keys after the built-in ones, by key (the map is ordered).
    for (key, cell) in sums {
        if known.iter().all(|(k, _)| *k != key) && cell != Cell::default() {
            rows.push((key.clone(), humanize(&key), cell));
        }
    }
    let amounts: Vec<i64> = rows.iter().map(|(_, _, c)| c.amount_minor).collect();
    let shares = shares(&amounts);
    PointsFigure {
        total: Points::from_minor(amounts.iter().sum()),
        count: rows.iter().map(|(_, _, c)| c.count).sum(),
        parts: rows
            .into_iter()
            .zip(shares)
            .map(|((key, label, cell), share)| Part {
                key,
                label,
                points: Points::from_minor(cell.amount_minor),
                count: cell.count,
                share,
            })
            .collect(),
    }
}

pub fn compute(sums: PeriodSums<'_>) -> Computed {
    let mut by_source: BTreeMap<String, Cell> = BTreeMap::new();
    let mut by_purpose: BTreeMap<String, Cell> = BTreeMap::new();
    let mut expired = 0i64;
    let mut new_members = 0i64;
    let mut purchases = Cell::default();
    let mut refunded = 0i64;
    for ((_, cat, key), cell) in sums.cells {
        match cat {
            // Issued: earns and positive adjustments count; reversals only take points back.
            Cat::Earn | Cat::AdjustIn => by_source.entry(key.clone()).or_default().add(*cell),
            Cat::Reversal => by_source.entry(key.clone()).or_default().add(Cell {
                amount_minor: cell.amount_minor,
                count: 0,
            }),
            // Used: ledger amounts are negative; the report shows them positive.
            Cat::Spend | Cat::AdjustOut => by_purpose.entry(key.clone()).or_default().add(Cell {
                amount_minor: -cell.amount_minor,
                count: cell.count,
            }),
            Cat::Refund => by_purpose.entry(key.clone()).or_default().add(Cell {
                amount_minor: -cell.amount_minor,
                count: 0,
            }),
            Cat::Expire => expired -= cell.amount_minor,
            Cat::Joined => new_members += cell.count,
            Cat::Purchase => purchases.add(*cell),
            Cat::PurchaseRefund => refunded += cell.amount_minor,
            // The sections' own (see `sections`).
            Cat::FirstPurchase
            | Cat::CohortPurchase
            | Cat::CohortRefund
            | Cat::GuestOrder
            | Cat::GuestRefund
            | Cat::VoucherUse
            | Cat::RuleEarn => {}
        }
    }
    let issued = figure(&SOURCES, by_source);
    let used = figure(&PURPOSES, by_purpose);
    let outstanding: i64 = sums
        .cumulative
        .iter()
        .filter(|(cat, _)| cat.is_points())
        .map(|(_, cell)| cell.amount_minor)
        .sum();
    let total_members = sums
        .cumulative
        .get(&Cat::Joined)
        .map(|c| c.count)
        .unwrap_or_default();
    let revenue = purchases.amount_minor - refunded;
    let average = if purchases.count > 0 {
        (Decimal::from(revenue) / Decimal::from(purchases.count))
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
            .try_into()
            .unwrap_or(0i64)
    } else {
        0
    };
    Computed {
        redemption_rate: redemption_rate(used.total, issued.total),
        issued,
        used,
        expired: Points::from_minor(expired),
        outstanding: Points::from_minor(outstanding),
        members: MemberStats {
            total: u64::try_from(total_members).unwrap_or(0),
            new: u64::try_from(new_members).unwrap_or(0),
            active: sums.active,
        },
        revenue: Money::from_minor(revenue),
        average_order_value: Money::from_minor(average),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn shares_use_the_largest_remainder() {
        // 1/3 each: 0.3333 × 3 = 0.9999, the missing unit goes to the first (ties by order).
        assert_eq!(
            shares(&[1, 1, 1]),
            vec![d("0.3334"), d("0.3333"), d("0.3333")]
        );
        // 2/3 = 0.6666…(remainder .67) gets the unit over 1/3 (.33).
        assert_eq!(shares(&[1, 2]), vec![d("0.3333"), d("0.6667")]);
        assert_eq!(shares(&[0, 5, 0]), vec![d("0"), d("1"), d("0")]);
        assert_eq!(shares(&[0, 0]), vec![Decimal::ZERO, Decimal::ZERO]);
        assert!(shares(&[]).is_empty());
    }

    #[test]
    fn rate_rounds_half_to_even() {
        // 1/8 = 0.125 exactly → 0.1250; 0.00005 ties: 1/20000 → 0.0000 (even), 3/20000 → 0.0002.
        assert_eq!(
            redemption_rate(Points::from_minor(1), Points::from_minor(8)),
            d("0.1250")
        );
        assert_eq!(
            redemption_rate(Points::from_minor(1), Points::from_minor(20_000)),
            d("0.0000")
        );
        assert_eq!(
            redemption_rate(Points::from_minor(3), Points::from_minor(20_000)),
            d("0.0002")
        );
        assert_eq!(
            redemption_rate(Points::from_minor(5), Points::ZERO),
            d("0.0000")
        );
    }

    #[test]
    fn labels() {
        assert_eq!(humanize("spin_to_win"), "Spin to win");
        assert_eq!(humanize(""), "Other");
    }

    proptest! {
        #[test]
        fn shares_sum_to_one(parts in proptest::collection::vec(0i64..1_000_000_000, 1..20)) {
            let s = shares(&parts);
            let sum: Decimal = s.iter().copied().sum();
            if parts.iter().sum::<i64>() > 0 {
                prop_assert_eq!(sum, Decimal::ONE);
                for (share, part) in s.iter().zip(&parts) {
                    // Never more than one unit away from the exact share.
                    let exact = Decimal::from(*part) / Decimal::from(parts.iter().sum::<i64>());
                    prop_assert!((*share - exact).abs() < d("0.0001"));
                }
            } else {
                prop_assert_eq!(sum, Decimal::ZERO);
            }
        }
    }
}
