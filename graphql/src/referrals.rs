//! Public referral click tracking for landing pages (no token; rate-limited per IP by the
//! server and per code here).

use async_graphql::{Context, Object, SimpleObject};
use loyalty_domain::Loyalty;

use crate::error::IntoGql;

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
