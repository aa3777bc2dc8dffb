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
pub mod gaps;
mod read;
pub mod sections;
pub mod spans;
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
use sections::{
    Acquisition, Campaign, Coverage, Discount, DurationBucket, MonthActivity, OrderValues, Orders,
};
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
    /// Of `new_members`, those with an order by the period's end.
    pub new_members_with_purchase: u64,
    pub member_orders: i64,
    pub member_revenue: Money,
    pub non_member_orders: i64,
    pub non_member_revenue: Money,
    /// Vouchers consumed, at their money value.
    pub discount: Money,
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
    pub acquisition: Acquisition,
    pub coverage: Coverage,
    pub average_discount: Discount,
    pub order_values: OrderValues,
    /// Members with an order in the period.
    pub purchasers: u64,
    /// `purchasers` ÷ members at the period's end, 4 fraction digits.
    pub purchase_rate: Decimal,
    pub activity_by_month: Vec<MonthActivity>,
    pub membership_duration: Vec<DurationBucket>,
    pub campaigns: Vec<Campaign>,
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
/// its end, and the distinct member counts.
pub(crate) struct PeriodData {
    pub tally: Tally,
    pub cumulative: BTreeMap<Cat, tally::Cell>,
    pub active: u64,
    /// Members with an order in the period.
    pub purchasers: u64,
    /// For the start of each month of the period (the first clamped to `from`): members with an
    /// order from that day to the period's end.
    pub bought_since: Vec<(NaiveDate, u64)>,
    /// Members joined by the period's end, by the month they joined (`YYYY-MM`).
    pub joined_by_month: BTreeMap<String, i64>,
    /// Members each campaign (rule id) paid in the period.
    pub reached: BTreeMap<i64, u64>,
}

fn figures(
    from: NaiveDate,
    to: NaiveDate,
    data: &PeriodData,
    rules: &[sections::CampaignRule],
) -> Figures {
    let orders = Orders::of(data.tally.within(from, to));
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
        acquisition: sections::acquisition(data.tally.within(from, to)),
        coverage: orders.coverage(),
        average_discount: sections::discount(data.tally.within(from, to), orders.member_revenue()),
        order_values: orders.order_values(),
        purchasers: data.purchasers,
        purchase_rate: sections::ratio(
            i64::try_from(data.purchasers).unwrap_or(i64::MAX),
            i64::try_from(computed.members.total).unwrap_or(i64::MAX),
        ),
        activity_by_month: sections::activity_by_month(
            data.tally.within(from, to),
            &data.bought_since,
        ),
        membership_duration: sections::membership_duration(
            data.tally.within(from, to),
            &data.joined_by_month,
            to,
        ),
        campaigns: sections::campaigns(data.tally.within(from, to), &data.reached, rules),
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
                new_members_with_purchase: 0,
                member_orders: 0,
                member_revenue: Money::from_minor(0),
                non_member_orders: 0,
                non_member_revenue: Money::from_minor(0),
                discount: Money::from_minor(0),
            },
        );
        start = granularity.next(day);
    }
    for ((day, cat, _), cell) in tally.within(from, to) {
        let Some(bucket) = buckets.get_mut(&granularity.bucket_start(*day)) else {
            continue;
        };
        let add = |p: Points, minor: i64| Points::from_minor(p.minor() + minor);
        let money = |m: Money, minor: i64| Money::from_minor(m.minor() + minor);
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
            Cat::FirstPurchase => {
                bucket.new_members_with_purchase += u64::try_from(cell.count).unwrap_or(0);
            }
            Cat::Purchase => {
                bucket.member_orders += cell.count;
                bucket.member_revenue = money(bucket.member_revenue, cell.amount_minor);
            }
            Cat::PurchaseRefund => {
                bucket.member_revenue = money(bucket.member_revenue, -cell.amount_minor);
            }
            Cat::GuestOrder => {
                bucket.non_member_orders += cell.count;
                bucket.non_member_revenue = money(bucket.non_member_revenue, cell.amount_minor);
            }
            Cat::GuestRefund => {
                bucket.non_member_revenue = money(bucket.non_member_revenue, -cell.amount_minor);
            }
            Cat::VoucherUse => bucket.discount = money(bucket.discount, cell.amount_minor),
            Cat::CohortPurchase | Cat::CohortRefund | Cat::RuleEarn => {}
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
        let gathered = {
            let (db, program) = (self.db().clone(), program.clone());
            run_detached(async move { read::gather(&db, &program, &ranges).await }).await?
        };
        let rules = gathered.campaigns;
        let tiers = gathered.tiers;
        let mut periods = gathered.periods.into_iter();
        let main = periods
            .next()
            .ok_or_else(|| DomainError::internal("report period missing"))?;
        let comparison = match (request.compare, periods.next()) {
            (Some((from, to)), Some(data)) => Some(figures(from, to, &data, &rules)),
            _ => None,
        };
        Ok(LoyaltyReport {
            as_of,
            timezone: program.tz.name().to_owned(),
            currency: program.currency.clone(),
            granularity: request.granularity,
            figures: figures(request.from, request.to, &main, &rules),
            series: series(request.from, request.to, request.granularity, &main.tally),
            tiers,
            comparison,
        })
    }
}
