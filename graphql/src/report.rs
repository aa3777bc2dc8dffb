//! The Customer Loyalty Report (admin): thin resolver over `loyalty_domain::report`.

use async_graphql::{
    Context, Enum, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject,
    Value, ID,
};
use chrono::{DateTime, NaiveDate, Utc};
use loyalty_domain::report::{self, Figures, Part, ReportRequest};
use loyalty_domain::AdminActor;
use rust_decimal::Decimal;

use crate::error::{scope, IntoGql};

/// A calendar date, `YYYY-MM-DD` (in the program's timezone where it bounds a period).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{s}` is not a YYYY-MM-DD date"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Granularity {
    /// One bucket per local calendar day.
    #[default]
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    /// Calendar months.
    Month,
}

impl From<Granularity> for report::Granularity {
    fn from(g: Granularity) -> Self {
        match g {
            Granularity::Day => report::Granularity::Day,
            Granularity::Week => report::Granularity::Week,
            Granularity::Month => report::Granularity::Month,
        }
    }
}

impl From<report::Granularity> for Granularity {
    fn from(g: report::Granularity) -> Self {
        match g {
            report::Granularity::Day => Granularity::Day,
            report::Granularity::Week => Granularity::Week,
            report::Granularity::Month => Granularity::Month,
        }
    }
}

#[derive(SimpleObject)]
pub struct SourceShare {
    pub source: String,
    pub label: String,
    pub points: Decimal,
    pub count: i64,
    /// Of the total, 4 fraction digits; the shares of a list sum to exactly 1.0000.
    pub share: Decimal,
}

#[derive(SimpleObject)]
pub struct PurposeShare {
    pub purpose: String,
    pub label: String,
    pub points: Decimal,
    pub count: i64,
    pub share: Decimal,
}

/// Earned points net of their reversals, plus positive adjustments.
#[derive(SimpleObject)]
pub struct PointsIssued {
    pub total: Decimal,
    /// Earn and positive-adjustment postings (a reversal takes points back, not a posting).
    pub count: i64,
    pub by_source: Vec<SourceShare>,
}

/// Spent points net of refunds, plus negative adjustments.
#[derive(SimpleObject)]
pub struct PointsUsed {
    pub total: Decimal,
    /// Spend and negative-adjustment postings.
    pub count: i64,
    pub by_purpose: Vec<PurposeShare>,
}

#[derive(SimpleObject)]
pub struct MemberStats {
    /// Joined by the end of the period.
    pub total: u64,
    /// Joined within the period.
    pub new: u64,
    /// With at least one posting within the period.
    pub active: u64,
}

#[derive(SimpleObject)]
pub struct ReportTier {
    pub id: ID,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct TierCount {
    /// Null: members without a tier.
    pub tier: Option<ReportTier>,
    pub count: u64,
}

#[derive(SimpleObject)]
pub struct ReportBucket {
    /// The bucket's calendar start (the day, the ISO week's Monday, the month's first day).
    pub bucket_start: Date,
    pub issued: Decimal,
    pub used: Decimal,
    pub expired: Decimal,
    pub new_members: u64,
    /// Of `newMembers`, those with an order by the period's end.
    pub new_members_with_purchase: u64,
    pub member_orders: i64,
    /// Members' orders less the amounts refunded in the bucket.
    pub member_revenue: Decimal,
    pub non_member_orders: i64,
    pub non_member_revenue: Decimal,
    /// Vouchers consumed in the bucket, at their money value.
    pub discount: Decimal,
}

/// New members of the period, split by whether they had ordered by the period's end (Altcraft's
/// "Acquisition").
#[derive(SimpleObject)]
pub struct Acquisition {
    pub new_members: u64,
    pub with_purchase: u64,
    pub without_purchase: u64,
}

/// Members' share of all orders and of all revenue (Maestra's "coverage"). Non-members' orders
/// are those `recordPurchase` took without a member.
#[derive(SimpleObject)]
pub struct Coverage {
    pub member_orders: i64,
    pub non_member_orders: i64,
    /// Members' orders ÷ all orders, 4 fraction digits, half to even.
    pub order_share: Decimal,
    pub member_revenue: Decimal,
    pub non_member_revenue: Decimal,
    /// Members' revenue ÷ all revenue, 4 fraction digits, half to even.
    pub revenue_share: Decimal,
}

/// Discounts granted in the period: vouchers consumed at checkout, at their money value.
#[derive(SimpleObject)]
pub struct AverageDiscount {
    pub total: Decimal,
    /// Vouchers bought with points: the points redeemed, at their money value.
    pub from_points: Decimal,
    /// Vouchers won on the lucky wheel.
    pub from_prizes: Decimal,
    pub vouchers: i64,
    /// `total` ÷ members' revenue, 4 fraction digits, half to even.
    pub rate: Decimal,
}

/// Average order value (revenue ÷ orders, half to even) of three groups.
#[derive(SimpleObject)]
pub struct AverageOrderValues {
    pub members: Decimal,
    pub non_members: Decimal,
    pub everyone: Decimal,
}

/// One calendar month of the period (Altcraft's "Member activity").
#[derive(SimpleObject)]
pub struct MonthActivity {
    /// The month's first day (the period's first day for its first month).
    pub month: Date,
    pub member_orders: i64,
    /// Members' revenue in the month (within the period).
    pub revenue: Decimal,
    /// Members whose last order by the period's end was in this month.
    pub last_purchase_members: u64,
}

/// Members by how long they have been in the program at the period's end, in whole calendar
/// months from the month they joined (Altcraft's "Membership duration").
#[derive(SimpleObject)]
pub struct DurationBucket {
    pub label: String,
    pub min_months: u32,
    /// Null: no upper bound.
    pub max_months: Option<u32>,
    pub members: u64,
    /// Their orders in the period.
    pub orders: i64,
    pub revenue: Decimal,
    /// Revenue ÷ orders.
    pub average_purchase: Decimal,
    /// Revenue ÷ members.
    pub revenue_per_member: Decimal,
}

/// A campaign (rule): what it issued and whom it reached in the period, and its budget now.
#[derive(SimpleObject)]
pub struct CampaignFigure {
    pub rule_id: ID,
    pub name: String,
    pub source: String,
    /// POINTS its earns issued in the period, less refund reversals of them.
    pub points_issued: Decimal,
    /// Its earn postings in the period.
    pub awards: i64,
    /// Members it paid (points or free spins) in the period.
    pub members_reached: u64,
    /// Null: no total budget.
    pub budget_total: Option<Decimal>,
    pub budget_spent: Decimal,
    pub budget_remaining: Option<Decimal>,
    /// Deleted since (listed when it issued or reached anyone in the period).
    pub deleted: bool,
}

/// The report's sections beside the Customer Loyalty Report's own (issue 12).
#[derive(SimpleObject)]
pub struct ReportSections {
    pub acquisition: Acquisition,
    pub coverage: Coverage,
    pub average_discount: AverageDiscount,
    pub average_order_values: AverageOrderValues,
    /// Members with an order in the period.
    pub purchasers: u64,
    /// `purchasers` ÷ members at the period's end, 4 fraction digits, half to even.
    pub purchase_rate: Decimal,
    pub activity_by_month: Vec<MonthActivity>,
    pub membership_duration: Vec<DurationBucket>,
    pub campaigns: Vec<CampaignFigure>,
}

/// The figures of one period (the comparison period's, next to the main report's).
#[derive(SimpleObject)]
pub struct LoyaltyReportFigures {
    pub from: Date,
    pub to: Date,
    pub points_issued: PointsIssued,
    pub points_used: PointsUsed,
    pub points_expired: Decimal,
    pub outstanding_balance: Decimal,
    pub redemption_rate: Decimal,
    pub members: MemberStats,
    pub revenue: Decimal,
    pub average_order_value: Decimal,
    #[graphql(flatten)]
    pub sections: ReportSections,
}

#[derive(SimpleObject)]
pub struct LoyaltyReport {
    /// When the answer was computed; it is exact as of then.
    pub as_of: DateTime<Utc>,
    pub from: Date,
    pub to: Date,
    pub granularity: Granularity,
    pub timezone: String,
    pub currency: String,
    pub points_issued: PointsIssued,
    pub points_used: PointsUsed,
    pub points_expired: Decimal,
    /// Sum of all POINTS balances at the end of `to`.
    pub outstanding_balance: Decimal,
    /// Used ÷ issued, 4 fraction digits, half to even; 0 when nothing was issued.
    pub redemption_rate: Decimal,
    pub members: MemberStats,
    /// Members per tier now, plus a row with `tier: null` for members without one.
    pub tier_distribution: Vec<TierCount>,
    /// Purchases in the period minus the amounts refunded in it.
    pub revenue: Decimal,
    pub average_order_value: Decimal,
    #[graphql(flatten)]
    pub sections: ReportSections,
    /// Every bucket of the period, zeros included.
    pub series: Vec<ReportBucket>,
    /// The same figures for `compareFrom..compareTo`; null when not asked.
    pub comparison: Option<LoyaltyReportFigures>,
}

fn issued(figure: &report::PointsFigure) -> PointsIssued {
    PointsIssued {
        total: figure.total.decimal(),
        count: figure.count,
        by_source: figure
            .parts
            .iter()
            .map(|p: &Part| SourceShare {
                source: p.key.clone(),
                label: p.label.clone(),
                points: p.points.decimal(),
                count: p.count,
                share: p.share,
            })
            .collect(),
    }
}

fn used(figure: &report::PointsFigure) -> PointsUsed {
    PointsUsed {
        total: figure.total.decimal(),
        count: figure.count,
        by_purpose: figure
            .parts
            .iter()
            .map(|p| PurposeShare {
                purpose: p.key.clone(),
                label: p.label.clone(),
                points: p.points.decimal(),
                count: p.count,
                share: p.share,
            })
            .collect(),
    }
}

fn members(m: report::MemberStats) -> MemberStats {
    MemberStats {
        total: m.total,
        new: m.new,
        active: m.active,
    }
}

fn figures(f: &Figures) -> LoyaltyReportFigures {
    LoyaltyReportFigures {
        from: Date(f.from),
        to: Date(f.to),
        points_issued: issued(&f.issued),
        points_used: used(&f.used),
        points_expired: f.expired.decimal(),
        outstanding_balance: f.outstanding.decimal(),
        redemption_rate: f.redemption_rate,
        members: members(f.members),
        revenue: f.revenue.decimal(),
        average_order_value: f.average_order_value.decimal(),
        sections: sections(f),
    }
}

fn sections(f: &Figures) -> ReportSections {
    let (a, c, d, v) = (
        f.acquisition,
        f.coverage,
        f.average_discount,
        f.order_values,
    );
    ReportSections {
        acquisition: Acquisition {
            new_members: a.new_members,
            with_purchase: a.with_purchase,
            without_purchase: a.without_purchase,
        },
        coverage: Coverage {
            member_orders: c.member_orders,
            non_member_orders: c.non_member_orders,
            order_share: c.order_share,
            member_revenue: c.member_revenue.decimal(),
            non_member_revenue: c.non_member_revenue.decimal(),
            revenue_share: c.revenue_share,
        },
        average_discount: AverageDiscount {
            total: d.total.decimal(),
            from_points: d.from_points.decimal(),
            from_prizes: d.from_prizes.decimal(),
            vouchers: d.vouchers,
            rate: d.rate,
        },
        average_order_values: AverageOrderValues {
            members: v.members.decimal(),
            non_members: v.non_members.decimal(),
            everyone: v.everyone.decimal(),
        },
        purchasers: f.purchasers,
        purchase_rate: f.purchase_rate,
        activity_by_month: f
            .activity_by_month
            .iter()
            .map(|m| MonthActivity {
                month: Date(m.start),
                member_orders: m.orders,
                revenue: m.revenue.decimal(),
                last_purchase_members: m.last_purchase_members,
            })
            .collect(),
        membership_duration: f
            .membership_duration
            .iter()
            .map(|b| DurationBucket {
                label: b.label.clone(),
                min_months: b.min_months,
                max_months: b.max_months,
                members: b.members,
                orders: b.orders,
                revenue: b.revenue.decimal(),
                average_purchase: b.average_purchase.decimal(),
                revenue_per_member: b.revenue_per_member.decimal(),
            })
            .collect(),
        campaigns: f
            .campaigns
            .iter()
            .map(|c| CampaignFigure {
                rule_id: ID(c.rule_id.to_string()),
                name: c.name.clone(),
                source: c.source.clone(),
                points_issued: c.points_issued.decimal(),
                awards: c.awards,
                members_reached: c.members_reached,
                budget_total: c.budget_total.map(|p| p.decimal()),
                budget_spent: c.budget_spent.decimal(),
                budget_remaining: c.budget_remaining.map(|p| p.decimal()),
                deleted: c.deleted,
            })
            .collect(),
    }
}

/// What one report costs beyond its fields: it reads every bucket of up to 366 days (and a
/// comparison), so it is priced like hundreds of rows. Two fit the default complexity limit with
/// the dashboard's full selection; a third aliased report does not.
const REPORT_COMPLEXITY: usize = 800;

#[derive(Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// Admin: the Customer Loyalty Report of the token's program for the local dates
    /// `from..=to` (at most 366 days), optionally with a comparison period.
    #[graphql(complexity = "REPORT_COMPLEXITY + child_complexity")]
    async fn loyalty_report(
        &self,
        ctx: &Context<'_>,
        from: Date,
        to: Date,
        #[graphql(default_with = "Some(Granularity::Day)")] granularity: Option<Granularity>,
        compare_from: Option<Date>,
        compare_to: Option<Date>,
    ) -> async_graphql::Result<LoyaltyReport> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let compare = match (compare_from, compare_to) {
            (Some(a), Some(b)) => Some((a.0, b.0)),
            (None, None) => None,
            _ => {
                return Err(crate::error::to_gql(
                    loyalty_domain::DomainError::validation(
                        "compareFrom and compareTo go together",
                    ),
                    ctx,
                ))
            }
        };
        let report = loyalty
            .loyalty_report(
                &program,
                ReportRequest {
                    from: from.0,
                    to: to.0,
                    granularity: granularity.unwrap_or_default().into(),
                    compare,
                },
            )
            .await
            .gql(ctx)?;
        let main = figures(&report.figures);
        Ok(LoyaltyReport {
            as_of: report.as_of,
            from,
            to,
            granularity: report.granularity.into(),
            timezone: report.timezone,
            currency: report.currency,
            points_issued: main.points_issued,
            points_used: main.points_used,
            points_expired: main.points_expired,
            outstanding_balance: main.outstanding_balance,
            redemption_rate: main.redemption_rate,
            members: main.members,
            tier_distribution: report
                .tiers
                .into_iter()
                .map(|t| TierCount {
                    tier: t.tier.map(|(id, name)| ReportTier {
                        id: ID(id.to_string()),
                        name,
                    }),
                    count: t.count,
                })
                .collect(),
            revenue: main.revenue,
            average_order_value: main.average_order_value,
            sections: main.sections,
            series: report
                .series
                .into_iter()
                .map(|b| ReportBucket {
                    bucket_start: Date(b.start),
                    issued: b.issued.decimal(),
                    used: b.used.decimal(),
                    expired: b.expired.decimal(),
                    new_members: b.new_members,
                    new_members_with_purchase: b.new_members_with_purchase,
                    member_orders: b.member_orders,
                    member_revenue: b.member_revenue.decimal(),
                    non_member_orders: b.non_member_orders,
                    non_member_revenue: b.non_member_revenue.decimal(),
                    discount: b.discount.decimal(),
                })
                .collect(),
            comparison: report.comparison.as_ref().map(figures),
        })
    }
}
