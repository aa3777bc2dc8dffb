//! The lucky wheel: admin configuration, the odds members see, and provably fair spins. Paying
//! the cost, drawing, storing the spin and paying the prize are one transaction (an
//! [`Operation`] under the member's lock); segment stock is taken with a conditional update, so
//! two members can never win the same last prize.

pub mod draw;

use chrono::{DateTime, Utc};
use loyalty_entities::{gifts, spins, wheel_seeds, wheel_segments, wheels};
use rand::rngs::OsRng;
use rand::TryRngCore;
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, JoinType, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::actor::{MemberActor, Viewer};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::{run_detached, MemberRef, TxError, TxResult};
use crate::ledger::ops::{IdempotencyKey, Operation};
use crate::ledger::{spins_of, Account, Entry, Kind, Posting, Tx, ONE_SPIN};
use crate::money::Points;
use crate::periods::Windows;
use crate::program::Program;
use crate::service::Loyalty;
use crate::spending::gifts::{grant_gift, prize_in_stock, Redemption};
use crate::spending::vouchers::{grant_voucher, Voucher};
use crate::stored::{stored_enum, Stored};

pub const MAX_SEGMENTS: usize = 24;
pub const MAX_WEIGHT: u64 = 1_000_000;
pub const MAX_DAILY_SPINS: u32 = 1_000;

/// What a segment pays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Prize {
    Points { points: Points },
    Gift { gift_id: i64 },
    Voucher { points: Points },
    Nothing,
}

/// The kind of a prize, as stored in `wheel_segments.prize_kind` and `spins.prize_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrizeKind {
    Points,
    Gift,
    Voucher,
    Nothing,
}

stored_enum!(PrizeKind {
    Points => "POINTS",
    Gift => "GIFT",
    Voucher => "VOUCHER",
    Nothing => "NOTHING",
});

impl Prize {
    fn kind(&self) -> PrizeKind {
        match self {
            Prize::Points { .. } => PrizeKind::Points,
            Prize::Gift { .. } => PrizeKind::Gift,
            Prize::Voucher { .. } => PrizeKind::Voucher,
            Prize::Nothing => PrizeKind::Nothing,
        }
    }

    fn from_row(row: &wheel_segments::Model) -> DomainResult<Prize> {
        let points = Points::from_minor(row.prize_points_minor.unwrap_or_default());
        Ok(
            match PrizeKind::read("wheel_segments.prize_kind", &row.prize_kind)? {
                PrizeKind::Points => Prize::Points { points },
                PrizeKind::Gift => Prize::Gift {
                    gift_id: row.prize_gift_id.ok_or_else(|| {
                        DomainError::internal(format!(
                            "wheel_segments.prize_gift_id: missing on the GIFT segment {}",
                            row.id
                        ))
                    })?,
                },
                PrizeKind::Voucher => Prize::Voucher { points },
                PrizeKind::Nothing => Prize::Nothing,
            },
        )
    }
}

#[derive(Clone, Debug)]
pub struct SegmentInput {
    pub label: String,
    pub weight: u64,
    pub prize: Prize,
    /// How many of this prize the wheel may pay (`None` = unlimited).
    pub stock: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct WheelInput {
    pub name: String,
    pub spin_cost: Decimal,
    pub daily_spin_limit: u32,
    pub segments: Vec<SegmentInput>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    pub id: i64,
    pub position: i32,
    pub label: String,
    pub weight: u64,
    pub prize: Prize,
    pub stock: Option<i64>,
    /// Whether the segment is in the draw (its prize can still be paid).
    pub available: bool,
    /// weight ÷ total weight of the available segments (0 when unavailable).
    pub probability: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelView {
    pub id: i64,
    pub name: String,
    pub spin_cost: Points,
    pub daily_spin_limit: u32,
    pub segments: Vec<SegmentView>,
    /// Total weight of the available segments.
    pub total_weight: u64,
    /// For members: spins left today and the commitment of their next spin.
    pub spins_left_today: Option<u32>,
    pub commitment: Option<String>,
}

/// What paid for a spin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaidWith {
    /// The wheel's `spinCost` in points (nothing when it costs nothing).
    #[default]
    Points,
    /// One free spin (SPINS account), instead of points.
    FreeSpin,
}

/// What a spin revealed and paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpinOutcome {
    pub spin_id: i64,
    pub wheel_id: i64,
    pub segment: SegmentView,
    pub server_seed: String,
    pub server_seed_hash: String,
    pub client_seed: String,
    pub nonce: i64,
    /// `[segment id, weight]` of the draw, in position order: what to recompute against.
    pub draw: Vec<(i64, u64)>,
    /// Points paid (zero when a free spin paid).
    pub cost: Points,
    #[serde(default)]
    pub paid_with: PaidWith,
    pub redemption: Option<Redemption>,
    pub voucher: Option<Voucher>,
    pub balance: Points,
    /// Free spins left after this spin.
    #[serde(default)]
    pub free_spins: u32,
    pub next_commitment: String,
    pub transactions: Vec<Posting>,
    pub created_at: DateTime<Utc>,
}

fn new_seed() -> TxResult<String> {
    let mut seed = [0u8; draw::SEED_BYTES];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|err| DomainError::internal(format!("OS random source: {err}")))?;
    Ok(hex::encode(seed))
}

fn seed_bytes(hex_seed: &str) -> TxResult<Vec<u8>> {
    hex::decode(hex_seed).map_err(|err| TxError::Domain(DomainError::internal(err)))
}

/// The wheel's segments and whether each is in the draw, with their prize gifts' stock read in
/// the same statement (a join, not a read per gift segment).
async fn segments<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    wheel_id: i64,
) -> DomainResult<Vec<(wheel_segments::Model, bool)>> {
    let prize_gift = wheel_segments::Entity::belongs_to(gifts::Entity)
        .from(wheel_segments::Column::PrizeGiftId)
        .to(gifts::Column::Id)
        .into();
    let rows = wheel_segments::Entity::find()
        .join(JoinType::LeftJoin, prize_gift)
        .filter(wheel_segments::Column::WheelId.eq(wheel_id))
        .filter(wheel_segments::Column::ArchivedAt.is_null())
        .order_by_asc(wheel_segments::Column::Position)
        .select_also(gifts::Entity)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(row, gift)| {
            let in_stock = row.prize_stock.is_none_or(|s| s > 0);
            let available = match row.prize_gift_id {
                Some(_) => in_stock && prize_in_stock(gift.as_ref(), program_id),
                None => in_stock,
            };
            (row, available)
        })
        .collect())
}

fn views(rows: &[(wheel_segments::Model, bool)]) -> DomainResult<(Vec<SegmentView>, u64)> {
    let weights: Vec<u64> = rows
        .iter()
        .map(|(row, available)| {
            if *available {
                u64::try_from(row.weight).unwrap_or(0)
            } else {
                0
            }
        })
        .collect();
    let odds = draw::probabilities(&weights);
    let views = rows
        .iter()
        .zip(odds)
        .map(|((row, available), probability)| {
            Ok(SegmentView {
                id: row.id,
                position: row.position,
                label: row.label.clone(),
                weight: u64::try_from(row.weight).unwrap_or(0),
                prize: Prize::from_row(row)?,
                stock: row.prize_stock,
                available: *available,
                probability,
            })
        })
        .collect::<DomainResult<_>>()?;
    Ok((views, weights.iter().sum()))
}

async fn find_wheel<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    id: i64,
) -> DomainResult<wheels::Model> {
    wheels::Entity::find_by_id(id)
        .filter(wheels::Column::ProgramId.eq(program_id))
        .filter(wheels::Column::ArchivedAt.is_null())
        .one(conn)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("wheel {id} not found")))
}

async fn spins_today<C: ConnectionTrait>(
    conn: &C,
    program: &Program,
    member_id: i64,
    wheel_id: i64,
    now: DateTime<Utc>,
) -> Result<u64, sea_orm::DbErr> {
    spins::Entity::find()
        .filter(spins::Column::MemberId.eq(member_id))
        .filter(spins::Column::WheelId.eq(wheel_id))
        .filter(spins::Column::CreatedAt.gte(Windows::at(program.tz, now).day_start))
        .count(conn)
        .await
}

/// The member's current seed for a wheel, created on first use (read first: after the first
/// spin or view it exists, and one statement does).
async fn seed<C: ConnectionTrait>(
    conn: &C,
    member_id: i64,
    wheel_id: i64,
) -> TxResult<wheel_seeds::Model> {
    let current = || {
        wheel_seeds::Entity::find()
            .filter(wheel_seeds::Column::MemberId.eq(member_id))
            .filter(wheel_seeds::Column::WheelId.eq(wheel_id))
            .one(conn)
    };
    if let Some(seed) = current().await? {
        return Ok(seed);
    }
    // A view (outside the member's lock) may create it at the same moment: insert-or-keep.
    wheel_seeds::Entity::insert(wheel_seeds::ActiveModel {
        member_id: Set(member_id),
        wheel_id: Set(wheel_id),
        server_seed: Set(new_seed()?),
        nonce: Set(0),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([wheel_seeds::Column::MemberId, wheel_seeds::Column::WheelId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    current()
        .await?
        .ok_or_else(|| TxError::Domain(DomainError::internal("wheel seed vanished")))
}

impl WheelInput {
    fn validate(&self) -> DomainResult<Points> {
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(DomainError::validation("name must be 1–200 characters"));
        }
        let cost = Points::parse(self.spin_cost, "spinCost")?;
        if cost.minor() < 0 {
            return Err(DomainError::validation("spinCost must not be negative"));
        }
        if self.daily_spin_limit == 0 || self.daily_spin_limit > MAX_DAILY_SPINS {
            return Err(DomainError::validation(format!(
                "dailySpinLimit must be between 1 and {MAX_DAILY_SPINS}"
            )));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return Err(DomainError::validation(format!(
                "a wheel needs 1–{MAX_SEGMENTS} segments"
            )));
        }
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.label.trim().is_empty() || segment.label.chars().count() > 100 {
                return Err(DomainError::validation(format!(
                    "segment {i}: label must be 1–100 characters"
                )));
            }
            if segment.weight == 0 || segment.weight > MAX_WEIGHT {
                return Err(DomainError::validation(format!(
                    "segment {i}: weight must be a positive integer up to {MAX_WEIGHT}"
                )));
            }
            if segment.stock.is_some_and(|s| s < 0) {
                return Err(DomainError::validation(format!(
                    "segment {i}: stock must not be negative"
                )));
            }
            match &segment.prize {
                Prize::Points { points } | Prize::Voucher { points } if !points.is_positive() => {
                    return Err(DomainError::validation(format!(
                        "segment {i}: prize points must be positive"
                    )))
                }
                Prize::Points { .. }
                | Prize::Voucher { .. }
                | Prize::Gift { .. }
                | Prize::Nothing => {}
            }
        }
        Ok(cost)
    }
}

#[derive(Clone, Serialize)]
struct SpinOp {
    member: MemberRef,
    wheel_id: i64,
    client_seed: String,
    #[serde(skip)]
    key: IdempotencyKey,
}

#[async_trait::async_trait]
impl Operation for SpinOp {
    type Output = SpinOutcome;
    const NAME: &'static str = "spinWheel";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(&self.key)
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<SpinOutcome> {
        let wheel = find_wheel(tx.txn, tx.program.id, self.wheel_id).await?;
        check_daily_limit(tx, &wheel).await?;
        let drawn = draw_segment(tx, &wheel, &self.client_seed).await?;
        let winner = &drawn.winner;
        let price = Points::from_minor(wheel.spin_cost_minor);
        // A free spin pays instead of points when the member holds one; a wheel that costs
        // nothing never takes one.
        let paid_with = if price.is_positive() && tx.balance(Account::Spins).await? >= ONE_SPIN {
            PaidWith::FreeSpin
        } else {
            PaidWith::Points
        };
        let cost = match paid_with {
            PaidWith::FreeSpin => Points::ZERO,
            PaidWith::Points => price,
        };
        let prize = Prize::from_row(winner)?;
        let spin = record_spin(tx, wheel.id, &drawn, &self.client_seed, cost, &prize).await?;
        let payment = match paid_with {
            PaidWith::FreeSpin => Some(Entry::new(Account::Spins, Kind::Spend, ONE_SPIN)),
            PaidWith::Points if cost.is_positive() => {
                Some(Entry::new(Account::Points, Kind::Spend, cost))
            }
            PaidWith::Points => None,
        };
        if let Some(entry) = payment {
            let entry = entry
                .label("lucky_wheel")
                .reference("spin", spin.id.to_string());
            tx.debit(entry, false, &[]).await?;
        }
        take_prize_stock(tx, winner).await?;
        let (mut redemption, mut voucher) = (None, None);
        match &prize {
            Prize::Points { points } => {
                let entry = Entry::new(Account::Points, Kind::Earn, *points)
                    .label("lucky_wheel_prize")
                    .reference("spin", spin.id.to_string());
                tx.credit(entry).await?;
            }
            Prize::Gift { gift_id } => redemption = Some(grant_gift(tx, *gift_id).await?),
            Prize::Voucher { points } => voucher = Some(grant_voucher(tx, *points).await?),
            Prize::Nothing => {}
        }
        link_prize(tx, spin.id, redemption.as_ref(), voucher.as_ref()).await?;
        let next_seed = rotate_seed(tx, drawn.seed.id).await?;
        let (segment_views, _) = views(&drawn.rows)?;
        let segment = segment_views
            .into_iter()
            .find(|s| s.id == winner.id)
            .ok_or_else(|| DomainError::internal("winning segment missing"))?;
        Ok(SpinOutcome {
            spin_id: spin.id,
            wheel_id: wheel.id,
            segment,
            server_seed: drawn.seed.server_seed,
            server_seed_hash: spin.server_seed_hash,
            client_seed: self.client_seed.clone(),
            nonce: drawn.seed.nonce,
            draw: drawn.draw,
            cost,
            paid_with,
            redemption,
            voucher,
            balance: tx.balance(Account::Points).await?,
            free_spins: spins_of(tx.balance(Account::Spins).await?),
            next_commitment: draw::commitment(&seed_bytes(&next_seed)?),
            transactions: tx.posted.clone(),
            created_at: tx.now,
        })
    }
}

/// `LIMIT_REACHED` once the member has used today's spins on this wheel.
async fn check_daily_limit(tx: &Tx<'_>, wheel: &wheels::Model) -> TxResult<()> {
    let used = spins_today(tx.txn, tx.program, tx.member.id, wheel.id, tx.now).await?;
    if used >= u64::try_from(wheel.daily_spin_limit).unwrap_or(0) {
        return Err(TxError::Domain(DomainError::LimitReached(format!(
            "{} spins a day on this wheel; come back tomorrow",
            wheel.daily_spin_limit
        ))));
    }
    Ok(())
}

/// A draw among the segments still in stock, with what it used.
struct Drawn {
    /// Every segment of the wheel and whether it was in the draw.
    rows: Vec<(wheel_segments::Model, bool)>,
    winner: wheel_segments::Model,
    /// `(segment id, weight)` of each segment in the draw, in draw order.
    draw: Vec<(i64, u64)>,
    /// The member's seed row as it was before this spin.
    seed: wheel_seeds::Model,
    server_seed: Vec<u8>,
}

/// Draws a segment from the member's committed seed and `client_seed` (`OUT_OF_STOCK` when no
/// segment is left).
async fn draw_segment(tx: &Tx<'_>, wheel: &wheels::Model, client_seed: &str) -> TxResult<Drawn> {
    let rows = segments(tx.txn, tx.program.id, wheel.id).await?;
    let in_draw: Vec<&wheel_segments::Model> = rows
        .iter()
        .filter(|(_, available)| *available)
        .map(|(row, _)| row)
        .collect();
    if in_draw.is_empty() {
        return Err(TxError::Domain(DomainError::OutOfStock(
            "every prize on this wheel is gone".into(),
        )));
    }
    let weights: Vec<u64> = in_draw
        .iter()
        .map(|row| u64::try_from(row.weight).unwrap_or(0))
        .collect();
    let seed_row = seed(tx.txn, tx.member.id, wheel.id).await?;
    let server_seed = seed_bytes(&seed_row.server_seed)?;
    let nonce = u64::try_from(seed_row.nonce).unwrap_or(0);
    let index = draw::pick(&weights, &server_seed, client_seed, nonce)
        .ok_or_else(|| DomainError::internal("the draw found no segment"))?;
    let winner = in_draw[index].clone();
    let draw: Vec<(i64, u64)> = in_draw
        .iter()
        .zip(&weights)
        .map(|(row, w)| (row.id, *w))
        .collect();
    Ok(Drawn {
        rows,
        winner,
        draw,
        seed: seed_row,
        server_seed,
    })
}

async fn record_spin(
    tx: &Tx<'_>,
    wheel_id: i64,
    drawn: &Drawn,
    client_seed: &str,
    cost: Points,
    prize: &Prize,
) -> TxResult<spins::Model> {
    Ok(spins::Entity::insert(spins::ActiveModel {
        program_id: Set(tx.program.id),
        member_id: Set(tx.member.id),
        wheel_id: Set(wheel_id),
        segment_id: Set(drawn.winner.id),
        client_seed: Set(client_seed.to_owned()),
        nonce: Set(drawn.seed.nonce),
        server_seed: Set(drawn.seed.server_seed.clone()),
        server_seed_hash: Set(draw::commitment(&drawn.server_seed)),
        draw: Set(serde_json::to_string(&drawn.draw).map_err(DomainError::internal)?),
        cost_minor: Set(cost.minor()),
        prize_kind: Set(prize.kind().as_str().to_owned()),
        prize_points_minor: Set(drawn.winner.prize_points_minor),
        redemption_id: Set(None),
        voucher_id: Set(None),
        created_at: Set(tx.now),
        ..Default::default()
    })
    .exec_with_returning(tx.txn)
    .await?)
}

/// Takes one of a limited prize; `OUT_OF_STOCK` (nothing charged) when another member won the
/// last one a moment ago.
async fn take_prize_stock(tx: &Tx<'_>, winner: &wheel_segments::Model) -> TxResult<()> {
    if winner.prize_stock.is_none() {
        return Ok(());
    }
    let taken = wheel_segments::Entity::update_many()
        .col_expr(
            wheel_segments::Column::PrizeStock,
            Expr::col(wheel_segments::Column::PrizeStock).sub(1),
        )
        .filter(wheel_segments::Column::Id.eq(winner.id))
        .filter(wheel_segments::Column::PrizeStock.gt(0))
        .exec(tx.txn)
        .await?;
    if taken.rows_affected == 0 {
        return Err(TxError::Domain(DomainError::OutOfStock(format!(
            "the prize `{}` just ran out; spin again",
            winner.label
        ))));
    }
    Ok(())
}

/// Points the spin row at the gift or voucher it paid, if any.
async fn link_prize(
    tx: &Tx<'_>,
    spin_id: i64,
    redemption: Option<&Redemption>,
    voucher: Option<&Voucher>,
) -> TxResult<()> {
    if redemption.is_none() && voucher.is_none() {
        return Ok(());
    }
    spins::Entity::update_many()
        .col_expr(
            spins::Column::RedemptionId,
            Expr::value(redemption.map(|r| r.id)),
        )
        .col_expr(spins::Column::VoucherId, Expr::value(voucher.map(|v| v.id)))
        .filter(spins::Column::Id.eq(spin_id))
        .exec(tx.txn)
        .await?;
    Ok(())
}

/// Replaces the member's server seed (the revealed one is never used again) and returns the new
/// one.
async fn rotate_seed(tx: &Tx<'_>, seed_id: i64) -> TxResult<String> {
    let next_seed = new_seed()?;
    wheel_seeds::Entity::update_many()
        .col_expr(
            wheel_seeds::Column::ServerSeed,
            Expr::value(next_seed.clone()),
        )
        .col_expr(
            wheel_seeds::Column::Nonce,
            Expr::col(wheel_seeds::Column::Nonce).add(1),
        )
        .filter(wheel_seeds::Column::Id.eq(seed_id))
        .exec(tx.txn)
        .await?;
    Ok(next_seed)
}

impl Loyalty {
    /// Creates (`id` None) or reconfigures a wheel. Old segments are archived, not deleted, so
    /// past spins keep pointing at what they won.
    pub async fn upsert_wheel(
        &self,
        program: &Program,
        id: Option<i64>,
        input: WheelInput,
    ) -> DomainResult<WheelView> {
        let (loyalty, program) = (self.clone(), program.clone());
        run_detached(async move { loyalty.upsert_wheel_attached(&program, id, input).await }).await
    }

    async fn upsert_wheel_attached(
        &self,
        program: &Program,
        id: Option<i64>,
        input: WheelInput,
    ) -> DomainResult<WheelView> {
        let cost = input.validate()?;
        for (i, segment) in input.segments.iter().enumerate() {
            if let Prize::Gift { gift_id } = segment.prize {
                if crate::spending::gifts::find_gift(self.db(), program.id, gift_id)
                    .await?
                    .is_none()
                {
                    return Err(DomainError::validation(format!(
                        "segment {i}: unknown gift {gift_id}"
                    )));
                }
            }
        }
        let now = self.now();
        let txn = self.db().begin().await?;
        let wheel = match id {
            None => {
                wheels::Entity::insert(wheels::ActiveModel {
                    program_id: Set(program.id),
                    name: Set(input.name.trim().to_owned()),
                    spin_cost_minor: Set(cost.minor()),
                    daily_spin_limit: Set(i32::try_from(input.daily_spin_limit).unwrap_or(1)),
                    archived_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                })
                .exec_with_returning(&txn)
                .await?
            }
            Some(id) => {
                let existing = find_wheel(&txn, program.id, id).await?;
                let mut model: wheels::ActiveModel = existing.into();
                model.name = Set(input.name.trim().to_owned());
                model.spin_cost_minor = Set(cost.minor());
                model.daily_spin_limit = Set(i32::try_from(input.daily_spin_limit).unwrap_or(1));
                model.updated_at = Set(now);
                let wheel = wheels::Entity::update(model).exec(&txn).await?;
                wheel_segments::Entity::update_many()
                    .col_expr(wheel_segments::Column::ArchivedAt, Expr::value(Some(now)))
                    .filter(wheel_segments::Column::WheelId.eq(id))
                    .filter(wheel_segments::Column::ArchivedAt.is_null())
                    .exec(&txn)
                    .await?;
                wheel
            }
        };
        let models = input.segments.iter().enumerate().map(|(i, s)| {
            let (points, gift) = match &s.prize {
                Prize::Points { points } | Prize::Voucher { points } => {
                    (Some(points.minor()), None)
                }
                Prize::Gift { gift_id } => (None, Some(*gift_id)),
                Prize::Nothing => (None, None),
            };
            wheel_segments::ActiveModel {
                wheel_id: Set(wheel.id),
                position: Set(i32::try_from(i).unwrap_or(0)),
                label: Set(s.label.trim().to_owned()),
                weight: Set(i64::try_from(s.weight).unwrap_or(1)),
                prize_kind: Set(s.prize.kind().as_str().to_owned()),
                prize_points_minor: Set(points),
                prize_gift_id: Set(gift),
                prize_stock: Set(s.stock),
                archived_at: Set(None),
                ..Default::default()
            }
        });
        wheel_segments::Entity::insert_many(models)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        self.wheel_view(program, wheel.id, None).await
    }

    /// One wheel with its odds; with a member, their spins left today and next commitment.
    pub async fn wheel_view(
        &self,
        program: &Program,
        wheel_id: i64,
        member_id: Option<i64>,
    ) -> DomainResult<WheelView> {
        let wheel = find_wheel(self.db(), program.id, wheel_id).await?;
        let rows = segments(self.db(), program.id, wheel.id).await?;
        let (segments, total_weight) = views(&rows)?;
        let (spins_left_today, commitment) = match member_id {
            Some(member_id) => {
                let used = spins_today(self.db(), program, member_id, wheel.id, self.now()).await?;
                let limit = u64::try_from(wheel.daily_spin_limit).unwrap_or(0);
                let seed_row = seed(self.db(), member_id, wheel.id).await?;
                let bytes = hex::decode(&seed_row.server_seed).map_err(DomainError::internal)?;
                (
                    Some(u32::try_from(limit.saturating_sub(used)).unwrap_or(0)),
                    Some(draw::commitment(&bytes)),
                )
            }
            None => (None, None),
        };
        Ok(WheelView {
            id: wheel.id,
            name: wheel.name,
            spin_cost: Points::from_minor(wheel.spin_cost_minor),
            daily_spin_limit: u32::try_from(wheel.daily_spin_limit).unwrap_or(0),
            segments,
            total_weight,
            spins_left_today,
            commitment,
        })
    }

    /// The program's wheels (for a member token: with their spins left and commitments).
    pub async fn wheels(&self, actor: &Viewer) -> DomainResult<Vec<WheelView>> {
        let program = self.program(&actor.program).await?;
        let member_id = match actor {
            Viewer::Member(member) => Some(
                self.find_member(&program, &member.subject)
                    .await?
                    .ok_or_else(|| {
                        DomainError::not_found("member is not registered: call register first")
                    })?
                    .id,
            ),
            Viewer::Admin(_) => None,
        };
        let ids: Vec<i64> = wheels::Entity::find()
            .filter(wheels::Column::ProgramId.eq(program.id))
            .filter(wheels::Column::ArchivedAt.is_null())
            .order_by_asc(wheels::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(|w| w.id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.wheel_view(&program, id, member_id).await?);
        }
        Ok(out)
    }

    /// Spins for the calling member: pays with a free spin if they hold one (else the cost in
    /// points), draws, pays the prize, reveals the seed.
    pub async fn spin_wheel(
        &self,
        actor: &MemberActor,
        wheel_id: i64,
        client_seed: &str,
        idempotency_key: &str,
    ) -> DomainResult<SpinOutcome> {
        let client_seed = client_seed.trim();
        if client_seed.is_empty()
            || client_seed.len() > 64
            || client_seed.chars().any(|c| c.is_control() || c == ':')
        {
            return Err(DomainError::validation(
                "clientSeed must be 1–64 printable characters without `:`",
            ));
        }
        let key = IdempotencyKey::new(actor, idempotency_key)?;
        let program = self.program(&actor.program).await?;
        let op = SpinOp {
            member: MemberRef::External(actor.subject.clone()),
            wheel_id,
            client_seed: client_seed.to_owned(),
            key,
        };
        self.execute(&program, &op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, gift: Option<i64>) -> wheel_segments::Model {
        wheel_segments::Model {
            id: 7,
            wheel_id: 1,
            position: 0,
            label: "x".into(),
            weight: 1,
            prize_kind: kind.into(),
            prize_points_minor: Some(1_000),
            prize_gift_id: gift,
            prize_stock: None,
            archived_at: None,
        }
    }

    #[test]
    fn a_segment_row_reads_as_its_prize_or_an_internal_error() {
        let points = Points::from_minor(1_000);
        assert_eq!(
            Prize::from_row(&row("POINTS", None)),
            Ok(Prize::Points { points })
        );
        assert_eq!(
            Prize::from_row(&row("GIFT", Some(3))),
            Ok(Prize::Gift { gift_id: 3 })
        );
        assert_eq!(
            Prize::from_row(&row("VOUCHER", None)),
            Ok(Prize::Voucher { points })
        );
        assert_eq!(Prize::from_row(&row("NOTHING", None)), Ok(Prize::Nothing));
        for prize in [
            Prize::Points { points },
            Prize::Gift { gift_id: 3 },
            Prize::Voucher { points },
            Prize::Nothing,
        ] {
            let stored = row(prize.kind().as_str(), Some(3));
            assert_eq!(Prize::from_row(&stored), Ok(prize));
        }
        // Neither an unknown kind nor a gift prize without its gift becomes NOTHING.
        assert_eq!(
            Prize::from_row(&row("JACKPOT", None)),
            Err(DomainError::Internal(
                "wheel_segments.prize_kind: unknown value \"JACKPOT\"".into()
            ))
        );
        assert_eq!(
            Prize::from_row(&row("GIFT", None)),
            Err(DomainError::Internal(
                "wheel_segments.prize_gift_id: missing on the GIFT segment 7".into()
            ))
        );
    }
}
