//! Public referral click tracking for landing pages (no token; rate-limited per IP by the
//! server and per code here).

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Object, SimpleObject};
use loyalty_domain::{AdminActor, DomainError, Loyalty};

use crate::error::{scope, to_gql, IntoGql};

#[derive(SimpleObject)]
pub struct ReferralClick {
    /// False when this visitor was already counted for this code today.
    pub counted: bool,
}

#[derive(Default)]
pub struct ReferralMutation;

#[Object]
impl ReferralMutation {
    /// Records a visit through a referral link: a visitor counts once per code per program day.
    /// `NOT_FOUND` for an unknown code, `RATE_LIMITED` when a code is flooded.
    async fn track_referral_click(
        &self,
        ctx: &Context<'_>,
        code: String,
        visitor_id: String,
    ) -> async_graphql::Result<ReferralClick> {
        let loyalty = ctx.data::<Loyalty>()?;
        let counted = loyalty
            .track_referral_click(&code, &visitor_id)
            .await
            .gql(ctx)?;
        Ok(ReferralClick { counted })
    }
}

#[derive(SimpleObject)]
pub struct ReportMember {
    pub id: async_graphql::ID,
    pub display_name: Option<String>,
}

#[derive(SimpleObject)]
pub struct ReferralReportRow {
    pub member: ReportMember,
    /// Referrals made in the period that were rewarded.
    pub total_referrals: u64,
    /// Referrals made in the period still waiting for the friend to qualify.
    pub pending_referrals: u64,
    /// Visitors counted through the member's link in the period.
    pub clicks: u64,
}

#[derive(SimpleObject)]
pub struct ReferralFunnel {
    pub clicks: u64,
    pub registrations: u64,
    pub rewarded: u64,
}

#[derive(SimpleObject)]
pub struct ReferralReportFields {
    /// Clicks → registrations with a referral → rewarded pairs, for the whole period.
    pub funnel: ReferralFunnel,
}

#[derive(Default)]
pub struct ReferralQuery;

#[Object]
impl ReferralQuery {
    /// Admin: members by successful referrals in `[from, to)` (ties by member id), with the
    /// period's funnel. An empty period is an empty list and a zero funnel.
    #[graphql(complexity = "crate::members::page_complexity(first, child_complexity)")]
    async fn referral_report(
        &self,
        ctx: &Context<'_>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<
        Connection<String, ReferralReportRow, ReferralReportFields, EmptyFields>,
    > {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let first = crate::members::page_size(first, ctx)?;
        let offset = match after {
            Some(cursor) => cursor
                .parse::<u64>()
                .map_err(|_| to_gql(DomainError::validation("bad cursor"), ctx))?
                .saturating_add(1),
            None => 0,
        };
        let (rows, funnel) = loyalty.referral_report(&program, from, to).await.gql(ctx)?;
        let total = rows.len() as u64;
        let mut connection = Connection::with_additional_fields(
            offset > 0,
            offset.saturating_add(first) < total,
            ReferralReportFields {
                funnel: ReferralFunnel {
                    clicks: funnel.clicks,
                    registrations: funnel.registrations,
                    rewarded: funnel.rewarded,
                },
            },
        );
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(first).unwrap_or(100);
        connection
            .edges
            .extend(
                rows.into_iter()
                    .enumerate()
                    .skip(skip)
                    .take(take)
                    .map(|(i, r)| {
                        Edge::new(
                            i.to_string(),
                            ReferralReportRow {
                                member: ReportMember {
                                    id: async_graphql::ID(r.member_id.to_string()),
                                    display_name: r.display_name,
                                },
                                total_referrals: r.total_referrals,
                                pending_referrals: r.pending_referrals,
                                clicks: r.clicks,
                            },
                        )
                    }),
            );
        Ok(connection)
    }
}
