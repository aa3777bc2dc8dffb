//! `leaderboard(period, first)`: ranked points earned for members (with their own place) and
//! admins.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::live::leaderboard::{Period, RankedMember};
use loyalty_domain::{Loyalty, Viewer};
use rust_decimal::Decimal;

use crate::error::{authorize, IntoGql};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum LeaderboardPeriod {
    /// The program-local calendar day.
    Day,
    /// The ISO week (Monday to Sunday), program-local.
    Week,
    /// The program-local calendar month.
    Month,
    AllTime,
}

impl From<LeaderboardPeriod> for Period {
    fn from(period: LeaderboardPeriod) -> Self {
        match period {
            LeaderboardPeriod::Day => Period::Day,
            LeaderboardPeriod::Week => Period::Week,
            LeaderboardPeriod::Month => Period::Month,
            LeaderboardPeriod::AllTime => Period::AllTime,
        }
    }
}

#[derive(SimpleObject)]
pub struct LeaderboardMember {
    pub id: ID,
    pub display_name: Option<String>,
}

#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    /// 1-based position; equal points are ordered by lower member id first.
    pub rank: u64,
    pub points: Decimal,
    pub member: LeaderboardMember,
}

impl From<RankedMember> for LeaderboardEntry {
    fn from(r: RankedMember) -> Self {
        LeaderboardEntry {
            rank: r.rank,
            points: r.points.decimal(),
            member: LeaderboardMember {
                id: ID(r.member_id.to_string()),
                display_name: r.display_name,
            },
        }
    }
}

#[derive(SimpleObject)]
pub struct LeaderboardRank {
    /// Null while the member has earned nothing in the period.
    pub rank: Option<u64>,
    pub points: Decimal,
}

#[derive(SimpleObject)]
pub struct Leaderboard {
    pub period: LeaderboardPeriod,
    /// First instant of the period (null for ALL_TIME).
    pub bucket_start: Option<DateTime<Utc>>,
    pub entries: Vec<LeaderboardEntry>,
    /// The calling member's place (null for admins).
    pub me: Option<LeaderboardRank>,
    /// Up to two entries above the member, the member, and up to two below (empty when unranked).
    pub around: Vec<LeaderboardEntry>,
}

#[derive(Default)]
pub struct LeaderboardQuery;

#[Object]
impl LeaderboardQuery {
    /// Points earned in the period (EARN net of their reversals), best first. `first` is 1–100.
    #[graphql(complexity = "crate::members::page_complexity(Some(first), child_complexity)")]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "LeaderboardPeriod::AllTime")] period: LeaderboardPeriod,
        #[graphql(default = 10)] first: i32,
    ) -> async_graphql::Result<Leaderboard> {
        let actor = &authorize::<Viewer>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let view = loyalty
            .leaderboard(actor, period.into(), i64::from(first))
            .await
            .gql(ctx)?;
        Ok(Leaderboard {
            period,
            bucket_start: view.bucket_start,
            entries: view.entries.into_iter().map(Into::into).collect(),
            me: view.me.map(|me| LeaderboardRank {
                rank: me.rank,
                points: me.points.decimal(),
            }),
            around: view.around.into_iter().map(Into::into).collect(),
        })
    }
}
