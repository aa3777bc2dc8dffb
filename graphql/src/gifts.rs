//! Gifts: the catalogue (admins edit, members browse), `redeemGift`, redemptions and their
//! fulfilment or cancellation.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::spending::gifts::{
    CancelOutcome, Gift as DGift, GiftInput as DGiftInput, RedeemOutcome,
    Redemption as DRedemption, RedemptionOrigin as DOrigin, RedemptionStatus as DStatus,
};
use loyalty_domain::{AdminActor, DomainError, Loyalty, MemberActor, Viewer};
use rust_decimal::Decimal;

use crate::error::{authorize, parse_id, scope, to_gql, IntoGql};
use crate::members::page_size;
use crate::types::Transaction;

/// An opaque cursor (the id of the last row seen) back to an id.
pub(crate) fn cursor(
    after: Option<String>,
    ctx: &Context<'_>,
) -> async_graphql::Result<Option<i64>> {
    after
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| to_gql(DomainError::validation("bad cursor"), ctx))
        })
        .transpose()
}

#[derive(InputObject)]
pub struct GiftInput {
    pub name: String,
    pub description: Option<String>,
    /// An http(s) URL.
    pub image_url: Option<String>,
    /// Points, two fraction digits at most.
    pub cost: Decimal,
    /// What is left to redeem; leave it out for unlimited.
    pub stock: Option<i32>,
    /// Most non-cancelled redemptions per member; leave it out for no limit.
    pub per_member_limit: Option<i32>,
}

impl From<GiftInput> for DGiftInput {
    fn from(i: GiftInput) -> Self {
        DGiftInput {
            name: i.name,
            description: i.description,
            image_url: i.image_url,
            cost: i.cost,
            stock: i.stock,
            per_member_limit: i.per_member_limit,
        }
    }
}

/// A gift of the catalogue.
#[derive(SimpleObject)]
pub struct Gift {
    pub id: ID,
    pub name: String,
    pub description: Option<String>,
    pub image_url: Option<String>,
    /// Points.
    pub cost: Decimal,
    /// What is left; null = unlimited.
    pub stock: Option<i32>,
    pub per_member_limit: Option<i32>,
    /// Not archived, and stock unlimited or left.
    pub in_stock: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DGift> for Gift {
    fn from(g: DGift) -> Self {
        Gift {
            id: ID(g.id.to_string()),
            in_stock: g.in_stock(),
            name: g.name,
            description: g.description,
            image_url: g.image_url,
            cost: g.cost.decimal(),
            stock: g.stock,
            per_member_limit: g.per_member_limit,
            archived_at: g.archived_at,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RedemptionStatus {
    Pending,
    Fulfilled,
    Cancelled,
}

impl From<DStatus> for RedemptionStatus {
    fn from(s: DStatus) -> Self {
        match s {
            DStatus::Pending => RedemptionStatus::Pending,
            DStatus::Fulfilled => RedemptionStatus::Fulfilled,
            DStatus::Cancelled => RedemptionStatus::Cancelled,
        }
    }
}

impl From<RedemptionStatus> for DStatus {
    fn from(s: RedemptionStatus) -> Self {
        match s {
            RedemptionStatus::Pending => DStatus::Pending,
            RedemptionStatus::Fulfilled => DStatus::Fulfilled,
            RedemptionStatus::Cancelled => DStatus::Cancelled,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RedemptionOrigin {
    /// Bought with points.
    Redeem,
    /// Won on the lucky wheel.
    Wheel,
    /// A challenge's completion reward.
    Challenge,
}

/// The gift a redemption is for.
#[derive(SimpleObject)]
pub struct RedeemedGift {
    pub id: ID,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct Redemption {
    pub id: ID,
    pub member_id: ID,
    pub gift: RedeemedGift,
    /// Points paid (0 for wheel prizes); a cancellation refunds exactly this.
    pub cost: Decimal,
    pub status: RedemptionStatus,
    pub origin: RedemptionOrigin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DRedemption> for Redemption {
    fn from(r: DRedemption) -> Self {
        Redemption {
            id: ID(r.id.to_string()),
            member_id: ID(r.member_id.to_string()),
            gift: RedeemedGift {
                id: ID(r.gift_id.to_string()),
                name: r.gift_name,
            },
            cost: r.cost.decimal(),
            status: r.status.into(),
            origin: match r.origin {
                DOrigin::Redeem => RedemptionOrigin::Redeem,
                DOrigin::Wheel => RedemptionOrigin::Wheel,
                DOrigin::Challenge => RedemptionOrigin::Challenge,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct RedeemGiftResult {
    pub redemption: Redemption,
    /// Spendable balance after the redemption.
    pub balance: Decimal,
    /// The SPEND posting (purpose `gift_redemption`).
    pub transaction: Transaction,
}

impl From<RedeemOutcome> for RedeemGiftResult {
    fn from(o: RedeemOutcome) -> Self {
        RedeemGiftResult {
            redemption: o.redemption.into(),
            balance: o.balance.decimal(),
            transaction: o.transaction.into(),
        }
    }
}

#[derive(SimpleObject)]
pub struct CancelRedemptionResult {
    pub redemption: Redemption,
    /// The member's balance after the refund.
    pub balance: Decimal,
    /// The REFUND posting; null for a wheel prize (it cost nothing).
    pub transaction: Option<Transaction>,
}

impl From<CancelOutcome> for CancelRedemptionResult {
    fn from(o: CancelOutcome) -> Self {
        CancelRedemptionResult {
            redemption: o.redemption.into(),
            balance: o.balance.decimal(),
            transaction: o.transaction.map(Transaction::from),
        }
    }
}

type Redemptions = Connection<String, Redemption, EmptyFields, EmptyFields>;

fn connection(rows: Vec<DRedemption>, has_previous: bool, has_next: bool) -> Redemptions {
    let mut connection = Connection::new(has_previous, has_next);
    connection.edges.extend(
        rows.into_iter()
            .map(|r| Edge::new(r.id.to_string(), Redemption::from(r))),
    );
    connection
}

#[derive(Default)]
pub struct GiftQuery;

#[Object]
impl GiftQuery {
    /// The catalogue, oldest first. `includeArchived` (admins only) adds archived gifts.
    async fn gifts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] include_archived: bool,
    ) -> async_graphql::Result<Vec<Gift>> {
        if include_archived {
            authorize::<AdminActor>(ctx)?;
        }
        let (_, loyalty, program) = scope::<Viewer>(ctx).await?;
        let gifts = loyalty.gifts(&program, include_archived).await.gql(ctx)?;
        Ok(gifts.into_iter().map(Gift::from).collect())
    }

    /// The calling member's redemptions, newest first.
    #[graphql(complexity = "crate::members::page_complexity(first, child_complexity)")]
    async fn my_redemptions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Redemptions> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let first = page_size(first, ctx)?;
        let before = cursor(after, ctx)?;
        let (rows, has_next) = loyalty
            .my_redemptions(actor, first, before)
            .await
            .gql(ctx)?;
        Ok(connection(rows, before.is_some(), has_next))
    }

    /// Admin: the program's redemptions, newest first, optionally of one status.
    #[graphql(complexity = "crate::members::page_complexity(first, child_complexity)")]
    async fn redemptions(
        &self,
        ctx: &Context<'_>,
        status: Option<RedemptionStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Redemptions> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let first = page_size(first, ctx)?;
        let before = cursor(after, ctx)?;
        let (rows, has_next) = loyalty
            .redemptions(&program, status.map(DStatus::from), first, before)
            .await
            .gql(ctx)?;
        Ok(connection(rows, before.is_some(), has_next))
    }
}

#[derive(Default)]
pub struct GiftMutation;

#[Object]
impl GiftMutation {
    async fn create_gift(
        &self,
        ctx: &Context<'_>,
        input: GiftInput,
    ) -> async_graphql::Result<Gift> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        loyalty
            .create_gift(&program, input.into())
            .await
            .gql(ctx)
            .map(Gift::from)
    }

    /// Replaces every field; `stock` sets what is left from now on.
    async fn update_gift(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: GiftInput,
    ) -> async_graphql::Result<Gift> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .update_gift(&program, id, input.into())
            .await
            .gql(ctx)
            .map(Gift::from)
    }

    /// Takes a gift out of the catalogue; pending redemptions stay valid.
    async fn archive_gift(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Gift> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .archive_gift(&program, id)
            .await
            .gql(ctx)
            .map(Gift::from)
    }

    /// Buys a gift with points: stock, limit, debit and redemption in one transaction.
    async fn redeem_gift(
        &self,
        ctx: &Context<'_>,
        gift_id: ID,
        idempotency_key: String,
    ) -> async_graphql::Result<RedeemGiftResult> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let gift_id = parse_id(&gift_id, ctx)?;
        loyalty
            .redeem_gift(actor, gift_id, &idempotency_key)
            .await
            .gql(ctx)
            .map(RedeemGiftResult::from)
    }

    /// Admin: marks a PENDING redemption handed over.
    async fn fulfill_redemption(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Redemption> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .fulfill_redemption(&program, id)
            .await
            .gql(ctx)
            .map(Redemption::from)
    }

    /// Admin: cancels a PENDING redemption, refunds its points and returns the gift to stock.
    async fn cancel_redemption(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<CancelRedemptionResult> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = parse_id(&id, ctx)?;
        loyalty
            .cancel_redemption(&program, id)
            .await
            .gql(ctx)
            .map(CancelRedemptionResult::from)
    }
}
