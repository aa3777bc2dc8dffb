//! The Customer Loyalty Report (SPEC §8): points issued by source, used by purpose, expired,
//! the outstanding balance, members, tiers, revenue and a series, in the program's timezone.
//!
//! Cost does not grow with the ledger: a background folder ([`fold`]) keeps sums per (program,
//! local day, category, key) and moves a watermark; a report reads those sums for its days plus
//! the rows past the watermark (the "tail"), all in one snapshot ([`read`]), so every answer is
//! exact as of the moment it was computed, however far the folder lags.

pub mod export;
pub mod figures;
pub mod fold;
mod read;
pub mod tally;

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::run_detached;
use crate::money::{Money, Points};
use crate::periods::{month_start, week_start};
use crate::program::Program;
use crate::service::Loyalty;
use tally::{Cat, Tally};

/// The longest period a report (or its comparison) may cover, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    /// The first day of the bucket `day` falls in (ISO week: Monday; calendar month).
    pub fn bucket_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => day,
            Granularity::Week => week_start(day),
            Granularity::Month => month_start(day),
        }
    }

    fn next(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Granularity::Day => start.checked_add_days(Days::new(1)),
            Granularity::Week => start.checked_add_days(Days::new(7)),
            Granularity::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// One line of a breakdown: a source of issued points or a purpose of used ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    pub key: String,
    pub label: String,
    pub points: Points,
    pub count: i64,
    /// Of the figure's total, 4 fraction digits; the parts sum to exactly 1 (largest remainder).
    pub share: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointsFigure {
    pub total: Points,
    pub count: i64,
    pub parts: Vec<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStats {
    /// Joined by the end of the period.
    pub total: u64,
    /// Joined within the period.
    pub new: u64,
    /// With at least one ledger posting (any account) within the period.
    pub active: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierCount {
    /// `(id, name)`; `None` for members without a tier.
    pub tier: Option<(i64, String)>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start: NaiveDate,
    pub issued: Points,
    pub used: Points,
    pub expired: Points,
    pub new_members: u64,
}

/// The figures of one period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub issued: PointsFigure,
    pub used: PointsFigure,
    pub expired: Points,
    /// Sum of all POINTS balances at the end of `to`.
    pub outstanding: Points,
    pub redemption_rate: Decimal,
    pub members: MemberStats,
    pub revenue: Money,
    pub average_order_value: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoyaltyReport {
    pub as_of: DateTime<Utc>,
    pub timezone: String,
    pub currency: String,
    pub granularity: Granularity,
    pub figures: Figures,
    pub series: Vec<Bucket>,
    pub tiers: Vec<TierCount>,
    pub comparison: Option<Figures>,
}

/// What a report is asked for.
#[derive(Clone, Copy, Debug)]
pub struct ReportRequest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    pub compare: Option<(NaiveDate, NaiveDate)>,
}

/// Checks a period: `to` not before `from`, at most [`MAX_RANGE_DAYS`] days.
pub fn check_range(from: NaiveDate, to: NaiveDate, what: &str) -> DomainResult<()> {
    if to < from {
        return Err(DomainError::validation(format!(
            "{what}: `to` ({to}) is before `from` ({from})"
        )));
    }
    if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
        return Err(DomainError::validation(format!(
            "{what}: a report covers at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok(())
}

/// Sums of one period as read from the database: its days' cells, the cumulative sums up to
/// its end, and the number of active members.
pub(crate) struct PeriodData {
    pub tally: Tally,
    pub cumulative: BTreeMap<Cat, tally::Cell>,
    pub active: u64,
}

fn figures(from: NaiveDate, to: NaiveDate, data: &PeriodData) -> Figures {
    let computed = figures::compute(figures::PeriodSums {
        cells: data.tally.within(from, to).collect(),
        cumulative: data.cumulative.clone(),
        active: data.active,
    });
    Figures {
        from,
        to,
        issued: computed.issued,
        used: computed.used,
        expired: computed.expired,
        outstanding: computed.outstanding,
        redemption_rate: computed.redemption_rate,
        members: computed.members,
        revenue: computed.revenue,
        average_order_value: computed.average_order_value,
    }
}

/// Every bucket of `[from, to]`, zeros included, labelled by its calendar start.
pub fn series(
    from: NaiveDate,
    to: NaiveDate,
    granularity: Granularity,
    tally: &Tally,
) -> Vec<Bucket> {
    let mut buckets: BTreeMap<NaiveDate, Bucket> = BTreeMap::new();
    let mut start = Some(granularity.bucket_start(from));
    while let Some(day) = start.filter(|d| *d <= to) {
        buckets.insert(
            day,
            Bucket {
                start: day,
                issued: Points::ZERO,
                used: Points::ZERO,
                expired: Points::ZERO,
                new_members: 0,
            },
        );
        start = granularity.next(day);
    }
    for ((day, cat, _), cell) in tally.within(from, to) {
        let Some(bucket) = buckets.get_mut(&granularity.bucket_start(*day)) else {
            continue;
        };
        let add = |p: Points, minor: i64| Points::from_minor(p.minor() + minor);
        match cat {
            Cat::Earn | Cat::Reversal | Cat::AdjustIn => {
                bucket.issued = add(bucket.issued, cell.amount_minor)
            }
            Cat::Spend | Cat::Refund | Cat::AdjustOut => {
                bucket.used = add(bucket.used, -cell.amount_minor)
            }
            Cat::Expire => bucket.expired = add(bucket.expired, -cell.amount_minor),
            Cat::Joined => {
                bucket.new_members += u64::try_from(cell.count).unwrap_or(0);
            }
            Cat::Purchase | Cat::PurchaseRefund => {}
        }
    }
    buckets.into_values().collect()
}

impl Loyalty {
    /// The Customer Loyalty Report of the admin's program. Exact as of `as_of`.
    pub async fn loyalty_report(
        &self,
        program: &Program,
        request: ReportRequest,
    ) -> DomainResult<LoyaltyReport> {
        check_range(request.from, request.to, "period")?;
        if let Some((from, to)) = request.compare {
            check_range(from, to, "comparison period")?;
        }
        let as_of = self.now();
        let mut ranges = vec![(request.from, request.to)];
        ranges.extend(request.compare);
        let (periods, tiers) = {
            let (db, program) = (self.db().clone(), program.clone());
            run_detached(async move { read::gather(&db, &program, &ranges).await }).await?
        };
        let mut periods = periods.into_iter();
        let main = periods
            .next()
            .ok_or_else(|| DomainError::internal("report period missing"))?;
        let comparison = match (request.compare, periods.next()) {
            (Some((from, to)), Some(data)) => Some(figures(from, to, &data)),
            _ => None,
        };
        Ok(LoyaltyReport {
            as_of,
            timezone: program.tz.name().to_owned(),
            currency: program.currency.clone(),
            granularity: request.granularity,
            figures: figures(request.from, request.to, &main),
            series: series(request.from, request.to, request.granularity, &main.tally),
            tiers,
            comparison,
        })
    }
}

/// The 64-day block of a local day and the day's bit in it (days counted from 1970-01-01).
pub(crate) fn block_of(day: chrono::NaiveDate) -> (i64, i64) {
    let index = (day - chrono::NaiveDate::default()).num_days();
    (index.div_euclid(64), 1i64 << index.rem_euclid(64))
}

/// For a window `from..=to` of at most 65 days: the block to read and the masks of the
/// window's days in its `lo` and `hi` bits; `None` for longer windows.
pub(crate) fn block_window(
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Option<(i64, i64, i64)> {
    let (first, _) = block_of(from);
    let (last, _) = block_of(to);
    if to < from || last > first + 1 {
        return None;
    }
    let (mut lo, mut hi) = (0i64, 0i64);
    let mut day = from;
    while day <= to {
        let (block, bit) = block_of(day);
        if block == first {
            lo |= bit;
        } else {
            hi |= bit;
        }
        day = day.succ_opt()?;
    }
    Some((first, lo, hi))
}

#[cfg(test)]
mod block_tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(index: i64) -> NaiveDate {
        NaiveDate::default() + chrono::Duration::days(index)
    }

    #[test]
    fn days_map_to_blocks_and_bits() {
        assert_eq!(block_of(day(0)), (0, 1));
        assert_eq!(block_of(day(63)), (0, i64::MIN));
        assert_eq!(block_of(day(64)), (1, 1));
        assert_eq!(block_of(day(-1)), (-1, i64::MIN));
    }

    #[test]
    fn windows_of_up_to_65_days_read_one_block() {
        // Inside one block.
        assert_eq!(block_window(day(64), day(66)), Some((1, 0b111, 0)));
        // Across a boundary: the last two days of block 1 and the first three of block 2.
        assert_eq!(
            block_window(day(126), day(130)),
            Some((1, (1 << 62) | i64::MIN, 0b111))
        );
        // 65 days from the last day of a block still fits; one more does not.
        assert!(block_window(day(127), day(191)).is_some());
        assert_eq!(block_window(day(127), day(192)), None);
        assert_eq!(block_window(day(5), day(4)), None);
        // Every day of a window sets exactly one bit.
        let (_, lo, hi) = block_window(day(100), day(160)).unwrap();
        assert_eq!(lo.count_ones() + hi.count_ones(), 61);
    }
}
