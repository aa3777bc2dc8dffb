//! The lucky wheel: admin `upsertWheel`, member `wheels` and `spinWheel`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use loyalty_domain::spending::wheel::{
    PaidWith, Prize as DPrize, SegmentInput as DSegmentInput, SegmentView, SpinOutcome,
    WheelInput as DWheelInput, WheelView,
};
use loyalty_domain::{AdminActor, DomainError, Loyalty, MemberActor, Points, Viewer};
use rust_decimal::Decimal;

use crate::error::{authorize, parse_id, scope, to_gql, IntoGql};
use crate::types::{transactions, Transaction};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PrizeKind {
    Points,
    Gift,
    Voucher,
    Nothing,
}

#[derive(SimpleObject)]
pub struct Prize {
    pub kind: PrizeKind,
    /// Points credited (POINTS) or the voucher's worth in points (VOUCHER).
    pub points: Option<Decimal>,
    pub gift_id: Option<ID>,
}

impl From<&DPrize> for Prize {
    fn from(p: &DPrize) -> Self {
        match p {
            DPrize::Points { points } => Prize {
                kind: PrizeKind::Points,
                points: Some(points.decimal()),
                gift_id: None,
            },
            DPrize::Gift { gift_id } => Prize {
                kind: PrizeKind::Gift,
                points: None,
                gift_id: Some(ID(gift_id.to_string())),
            },
            DPrize::Voucher { points } => Prize {
                kind: PrizeKind::Voucher,
                points: Some(points.decimal()),
                gift_id: None,
            },
            DPrize::Nothing => Prize {
                kind: PrizeKind::Nothing,
                points: None,
                gift_id: None,
            },
        }
    }
}

#[derive(SimpleObject)]
pub struct WheelSegment {
    pub id: ID,
    pub position: i32,
    pub label: String,
    pub weight: u64,
    pub prize: Prize,
    /// Prizes of this segment left (null = unlimited).
    pub stock: Option<i64>,
    /// In the draw: its prize can still be paid.
    pub available: bool,
    /// weight ÷ total weight of the available segments, to 10 fraction digits, summing to 1.
    pub probability: Decimal,
}

impl From<SegmentView> for WheelSegment {
    fn from(s: SegmentView) -> Self {
        WheelSegment {
            id: ID(s.id.to_string()),
            position: s.position,
            label: s.label,
            weight: s.weight,
            prize: Prize::from(&s.prize),
            stock: s.stock,
            available: s.available,
            probability: s.probability,
        }
    }
}

#[derive(SimpleObject)]
pub struct Wheel {
    pub id: ID,
    pub name: String,
    pub spin_cost: Decimal,
    pub daily_spin_limit: u32,
    /// Sum of the available segments' weights (the exact odds are weight ÷ this).
    pub total_weight: u64,
    pub segments: Vec<WheelSegment>,
    /// Members only.
    pub spins_left_today: Option<u32>,
    /// sha256 (hex) of the server seed of the member's next spin; revealed after it.
    pub commitment: Option<String>,
}

impl From<WheelView> for Wheel {
    fn from(w: WheelView) -> Self {
        Wheel {
            id: ID(w.id.to_string()),
            name: w.name,
            spin_cost: w.spin_cost.decimal(),
            daily_spin_limit: w.daily_spin_limit,
            total_weight: w.total_weight,
            segments: w.segments.into_iter().map(WheelSegment::from).collect(),
            spins_left_today: w.spins_left_today,
            commitment: w.commitment,
        }
    }
}

#[derive(InputObject)]
pub struct SegmentInput {
    pub label: String,
    /// Positive integer.
    pub weight: u64,
    pub prize: PrizeKind,
    /// POINTS: points credited; VOUCHER: the voucher's worth in points.
    pub points: Option<Decimal>,
    /// GIFT: the gift won.
    pub gift_id: Option<ID>,
    /// How many times this prize may be won (null = unlimited).
    pub stock: Option<i64>,
}

#[derive(InputObject)]
pub struct WheelInput {
    /// Omit to create a wheel.
    pub id: Option<ID>,
    pub name: String,
    pub spin_cost: Decimal,
    pub daily_spin_limit: u32,
    pub segments: Vec<SegmentInput>,
}

#[derive(SimpleObject)]
pub struct SpinProof {
    /// Revealed now; sha256 of it equals the commitment shown before the spin.
    pub server_seed: String,
    pub server_seed_hash: String,
    pub client_seed: String,
    pub nonce: i64,
    /// Segment ids and weights in the draw, in position order.
    pub draw_segment_ids: Vec<ID>,
    pub draw_weights: Vec<u64>,
}

/// What paid for a spin.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SpinPayment {
    /// The wheel's `spinCost` in points (`cost`; 0 on a wheel that costs nothing).
    Points,
    /// One of the member's free spins (`cost` is then 0).
    FreeSpin,
}

#[derive(SimpleObject)]
pub struct SpinResult {
    pub spin_id: ID,
    pub segment: WheelSegment,
    pub proof: SpinProof,
    /// Points paid for this spin (0 when a free spin paid).
    pub cost: Decimal,
    pub paid_with: SpinPayment,
    /// Free spins left after this spin.
    pub free_spins: u32,
    pub balance: Decimal,
    /// Gift prize: the redemption id (see myRedemptions).
    pub redemption_id: Option<ID>,
    /// Voucher prize: its code.
    pub voucher_code: Option<String>,
    /// The commitment of the member's next spin.
    pub next_commitment: String,
    pub transactions: Vec<Transaction>,
    pub created_at: DateTime<Utc>,
}

impl From<SpinOutcome> for SpinResult {
    fn from(o: SpinOutcome) -> Self {
        SpinResult {
            spin_id: ID(o.spin_id.to_string()),
            segment: WheelSegment::from(o.segment),
            proof: SpinProof {
                server_seed: o.server_seed,
                server_seed_hash: o.server_seed_hash,
                client_seed: o.client_seed,
                nonce: o.nonce,
                draw_segment_ids: o.draw.iter().map(|(id, _)| ID(id.to_string())).collect(),
                draw_weights: o.draw.iter().map(|(_, w)| *w).collect(),
            },
            cost: o.cost.decimal(),
            paid_with: match o.paid_with {
                PaidWith::Points => SpinPayment::Points,
                PaidWith::FreeSpin => SpinPayment::FreeSpin,
            },
            free_spins: o.free_spins,
            balance: o.balance.decimal(),
            redemption_id: o.redemption.map(|r| ID(r.id.to_string())),
            voucher_code: o.voucher.map(|v| v.code),
            next_commitment: o.next_commitment,
            transactions: transactions(o.transactions),
            created_at: o.created_at,
        }
    }
}

fn segment(input: SegmentInput, ctx: &Context<'_>) -> async_graphql::Result<DSegmentInput> {
    let points = |field: &str| -> async_graphql::Result<Points> {
        let value = input.points.ok_or_else(|| {
            to_gql(
                DomainError::validation(format!("{field} needs `points`")),
                ctx,
            )
        })?;
        Points::parse(value, "points").map_err(|e| to_gql(e, ctx))
    };
    let prize = match input.prize {
        PrizeKind::Points => DPrize::Points {
            points: points("a POINTS prize")?,
        },
        PrizeKind::Voucher => DPrize::Voucher {
            points: points("a VOUCHER prize")?,
        },
        PrizeKind::Gift => {
            let id = input.gift_id.as_ref().ok_or_else(|| {
                to_gql(DomainError::validation("a GIFT prize needs `giftId`"), ctx)
            })?;
            let gift_id = id.parse::<i64>().map_err(|_| {
                to_gql(
                    DomainError::validation(format!("unknown gift `{}`", id.as_str())),
                    ctx,
                )
            })?;
            DPrize::Gift { gift_id }
        }
        PrizeKind::Nothing => DPrize::Nothing,
    };
    Ok(DSegmentInput {
        label: input.label,
        weight: input.weight,
        prize,
        stock: input.stock,
    })
}

#[derive(Default)]
pub struct WheelQuery;

#[Object]
impl WheelQuery {
    /// The program's wheels with their exact odds; members also get spins left today and the
    /// commitment of their next spin.
    async fn wheels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Wheel>> {
        let actor = &authorize::<Viewer>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        Ok(loyalty
            .wheels(actor)
            .await
            .gql(ctx)?
            .into_iter()
            .map(Wheel::from)
            .collect())
    }
}

#[derive(Default)]
pub struct WheelMutation;

#[Object]
impl WheelMutation {
    /// Creates or reconfigures a wheel (segments are replaced; past spins keep theirs).
    async fn upsert_wheel(
        &self,
        ctx: &Context<'_>,
        input: WheelInput,
    ) -> async_graphql::Result<Wheel> {
        let (_, loyalty, program) = scope::<AdminActor>(ctx).await?;
        let id = input.id.as_ref().map(|id| parse_id(id, ctx)).transpose()?;
        let segments = input
            .segments
            .into_iter()
            .map(|s| segment(s, ctx))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let wheel = DWheelInput {
            name: input.name,
            spin_cost: input.spin_cost,
            daily_spin_limit: input.daily_spin_limit,
            segments,
        };
        loyalty
            .upsert_wheel(&program, id, wheel)
            .await
            .gql(ctx)
            .map(Wheel::from)
    }

    /// Spins: pays with one of the member's free spins when they hold one, else `spinCost`
    /// points (purpose lucky_wheel); draws provably fairly, pays the prize and reveals the
    /// server seed. `clientSeed` is any string you choose (no `:`).
    async fn spin_wheel(
        &self,
        ctx: &Context<'_>,
        wheel_id: ID,
        client_seed: String,
        idempotency_key: String,
    ) -> async_graphql::Result<SpinResult> {
        let actor = &authorize::<MemberActor>(ctx)?;
        let loyalty = ctx.data::<Loyalty>()?;
        let wheel_id = parse_id(&wheel_id, ctx)?;
        loyalty
            .spin_wheel(actor, wheel_id, &client_seed, &idempotency_key)
            .await
            .gql(ctx)
            .map(SpinResult::from)
    }
}
