//! Four weeks of a small shop's life for the demo program, so the dashboard and the report have
//! something to show on first run. The plan (who joins when, who logs in, views, reads, shares,
//! buys, spins, redeems) comes from a fixed seed; every step then runs through the real
//! operations with a clock set to the step's past instant ([`Loyalty::with_clock`]), so the
//! ledger is exactly what the live system would have written and its invariants hold. Wheel
//! draws and voucher codes still come from the OS random source, as they always do.
//!
//! Beside the members, walk-in customers who are not members buy too (a few orders a day, one
//! partly refunded; their plan has a seed of its own, so the members' plan is what it was), and a
//! member who holds an unused voucher hands the oldest over at their next purchase: the
//! report's coverage, non-member order value and average discount have something to show.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone as _, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rust_decimal::Decimal;

use crate::actor::{ActionCaller, Actor, Role, ServiceActor};
use crate::clock::ManualClock;
use crate::earning::purchases::Buyer;
use crate::error::{DomainError, DomainResult};
use crate::money::Points;
use crate::program::Program;
use crate::service::Loyalty;
use crate::spending::vouchers::VoucherStatus;

/// Days of history, ending with yesterday (program time).
pub const DEMO_DAYS: u32 = 28;
/// Members who join during those days.
pub const DEMO_MEMBERS: usize = 80;
/// Members already there on the first day.
const FOUNDERS: usize = 24;
const SEED: u64 = 0x6c6f_7961_6c74_7921;
/// The walk-in customers' own stream, apart from the members' plan.
const WALK_IN_SEED: u64 = SEED.wrapping_add(2);
/// The member index of a walk-in customer's step (sorted after members' steps of the instant).
const WALK_IN: usize = usize::MAX;
/// Walk-in customers with a customer id the program does not know (the others are anonymous).
const WALK_IN_CUSTOMERS: u32 = 40;
const PRODUCTS: u32 = 60;
const NEWS: u32 = 20;
const FIRST_NAMES: &[&str] = &[
    "An", "Binh", "Chi", "Dung", "Giang", "Hanh", "Hoa", "Hung", "Khanh", "Lan", "Linh", "Mai",
    "Minh", "Nam", "Ngoc", "Phuong", "Quang", "Son", "Thao", "Trang", "Tuan", "Vy", "Yen", "Bao",
    "Duc", "Ha", "Kim", "Long", "Nhi", "Tam",
];
const LAST_NAMES: &[&str] = &[
    "Nguyen", "Tran", "Le", "Pham", "Hoang", "Vo", "Dang", "Bui", "Do", "Ngo",
];

/// What [`Loyalty::seed_demo_activity`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivitySummary {
    /// False when the activity was already there (nothing was posted).
    pub created: bool,
    pub members: usize,
    /// Operations run (refused ones included, e.g. a daily login already claimed).
    pub operations: usize,
    /// The simulated days, program-local, inclusive.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

/// One simulated member.
struct Sim {
    actor: Actor,
    name: String,
    join_day: u32,
    /// Chance of showing up on a given day.
    engagement: f64,
    /// Index of the member whose code they register with.
    inviter: Option<usize>,
    id: Option<i64>,
    code: Option<String>,
    /// Spendable points in hundredths, from the operations' answers.
    balance_minor: i64,
}

enum Step {
    Click {
        visitor: String,
    },
    Register,
    Login,
    View(u32),
    Read(u32),
    Share(u32),
    Purchase {
        order: String,
        cents: i64,
    },
    /// A non-member's order: anonymous, or with a customer id that does not join the program.
    WalkIn {
        order: String,
        customer: Option<String>,
        cents: i64,
    },
    Spin,
    Gift(usize),
    Discount(i64),
}

impl Loyalty {
    /// Generates [`DEMO_DAYS`] days of activity for [`DEMO_MEMBERS`] members of the demo
    /// program, ending yesterday. Idempotent: when the first simulated member exists, nothing
    /// is done.
    pub async fn seed_demo_activity(&self, program: &Program) -> DomainResult<ActivitySummary> {
        let today = self.now().with_timezone(&program.tz).date_naive();
        let first_day = today - Duration::days(i64::from(DEMO_DAYS));
        let last_day = today - Duration::days(1);
        let mut sims = plan_members(program);
        let done = self
            .find_member(program, &sims[0].actor.subject)
            .await?
            .is_some();
        let mut summary = ActivitySummary {
            created: !done,
            members: sims.len(),
            operations: 0,
            first_day,
            last_day,
        };
        if done {
            return Ok(summary);
        }
        let clock = ManualClock::new(self.now());
        let past = self.with_clock(Arc::new(clock.clone()));
        let gifts = past.gifts(program, false).await?;
        let admin = actor(program, Role::Admin, "demo-admin");
        let service = actor(program, Role::Service, "demo-pos").as_service()?;
        let wheel = past
            .wheels(&admin.authorize()?)
            .await?
            .first()
            .map(|w| w.id);
        let admin = admin.as_admin()?;
        let mut rng = StdRng::seed_from_u64(SEED.wrapping_add(1));
        let mut walk_in_rng = StdRng::seed_from_u64(WALK_IN_SEED);
        let mut orders: Vec<(String, i64)> = Vec::new();
        let mut walk_in_orders: Vec<(String, i64)> = Vec::new();
        let mut redemptions: Vec<i64> = Vec::new();
        let mut cancelled = false;

        for day in 0..DEMO_DAYS {
            let date = first_day + Duration::days(i64::from(day));
            let mut steps = plan_day(&mut rng, &sims, day, date, program, &mut orders)?;
            steps.append(&mut plan_walk_ins(
                &mut walk_in_rng,
                date,
                program,
                &mut walk_in_orders,
            )?);
            steps.sort_by_key(|(at, member, _)| (*at, *member));
            for (at, member, step) in steps {
                clock.set(at);
                summary.operations += 1;
                let outcome = past
                    .run_step(program, &service, &mut sims, member, &step, &gifts, wheel)
                    .await;
                match outcome {
                    Ok(Some(redemption)) => redemptions.push(redemption),
                    Ok(None) => {}
                    // Refusals are part of real life: a spin or a gift the balance no longer
                    // covers (the plan only estimates balances), a gift out of stock.
                    Err(
                        DomainError::InsufficientPoints(_)
                        | DomainError::OutOfStock(_)
                        | DomainError::LimitReached(_)
                        | DomainError::AlreadyClaimed(_),
                    ) => {}
                    Err(err) => return Err(err),
                }
            }
            // The back office at the end of the day: hand over yesterday's gifts, now and then
            // a correction, a refund or a cancelled redemption.
            clock.set(local(program, date, 23 * 3600)?);
            if day == 9 {
                if let Some(id) = sims[2].id {
                    past.adjust_points(&admin, id, Decimal::new(25, 0), "Late delivery", "d-adj-1")
                        .await?;
                    summary.operations += 1;
                }
            }
            if day == 17 && sims[4].balance_minor >= 1_000 {
                if let Some(id) = sims[4].id {
                    past.adjust_points(
                        &admin,
                        id,
                        Decimal::new(-10, 0),
                        "Duplicate bonus",
                        "d-adj-2",
                    )
                    .await?;
                    summary.operations += 1;
                }
            }
            if day == 20 {
                if let Some((order, cents)) = orders.first() {
                    let half = Decimal::new(cents / 2, 2);
                    past.refund_purchase(&service, order, half, Some("demo-refund-1"))
                        .await?;
                    summary.operations += 1;
                }
            }
            if day == 22 {
                if let Some((order, cents)) = walk_in_orders.first() {
                    let half = Decimal::new(cents / 2, 2);
                    past.refund_purchase(&service, order, half, Some("demo-refund-2"))
                        .await?;
                    summary.operations += 1;
                }
            }
            if day >= 15 && !cancelled {
                if let Some(id) = redemptions.pop() {
                    past.cancel_redemption(program, id).await?;
                    summary.operations += 1;
                    cancelled = true;
                }
            }
            for id in redemptions.drain(..) {
                past.fulfill_redemption(program, id).await?;
                summary.operations += 1;
            }
        }
        // `past` applies its board updates on its own task, which ends with it: let it finish,
        // so the boards show the history as soon as this returns.
        past.settle_leaderboard_updates(std::time::Duration::from_secs(60))
            .await;
        Ok(summary)
    }

    /// Runs one planned step; answers the redemption id when a gift was redeemed.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        program: &Program,
        service: &ServiceActor,
        sims: &mut [Sim],
        member: usize,
        step: &Step,
        gifts: &[crate::spending::gifts::Gift],
        wheel: Option<i64>,
    ) -> DomainResult<Option<i64>> {
        if let Step::WalkIn {
            order,
            customer,
            cents,
        } = step
        {
            let buyer = match customer {
                Some(customer) => Buyer::Customer(customer),
                None => Buyer::Anonymous,
            };
            let amount = Decimal::new(*cents, 2);
            self.record_order(service, buyer, order, amount, None, order)
                .await?;
            return Ok(None);
        }
        let key = |kind: &str| format!("demo-{kind}-{member}-{}", self.now().timestamp());
        let actor = sims[member].actor.as_member()?;
        let caller = ActionCaller::Member(actor.clone());
        let inviter = sims[member].inviter;
        let inviter_code = inviter.and_then(|i| sims[i].code.clone());
        let balance = match step {
            Step::Click { visitor } => {
                if let Some(code) = inviter_code {
                    self.track_referral_click(&code, visitor).await?;
                }
                return Ok(None);
            }
            Step::Register => {
                let name = sims[member].name.clone();
                let registration = self
                    .register(&actor, Some(&name), inviter_code.as_deref())
                    .await?;
                let view = self.member(program, registration.member_id).await?;
                if let Some(inviter) = inviter.and_then(|i| sims[i].id) {
                    let inviter_view = self.member(program, inviter).await?;
                    if let Some(sim) = sims.iter_mut().find(|s| s.id == Some(inviter)) {
                        sim.balance_minor = inviter_view.balance.minor();
                    }
                }
                let sim = &mut sims[member];
                sim.id = Some(view.id);
                sim.code = Some(view.referral_code);
                view.balance
            }
            Step::Login => {
                self.record_action(&caller, "daily_login", None, None, None, None)
                    .await?
                    .balance
            }
            Step::View(id) => {
                self.object_action(&caller, "product_view", "sku", *id)
                    .await?
            }
            Step::Read(id) => {
                self.object_action(&caller, "news_read", "news", *id)
                    .await?
            }
            Step::Share(id) => {
                self.object_action(&caller, "product_share", "sku", *id)
                    .await?
            }
            Step::Purchase { order, cents } => {
                let amount = Decimal::new(*cents, 2);
                let balance = self
                    .record_purchase(service, &actor.subject, order, amount, order)
                    .await?
                    .balance;
                // At checkout the member hands over their oldest unused voucher, if any.
                let (vouchers, _) = self.my_vouchers(&actor, 20, None).await?;
                let oldest = vouchers
                    .iter()
                    .rev()
                    .find(|v| v.status == VoucherStatus::Active);
                if let Some(voucher) = oldest {
                    self.consume_voucher(service, &voucher.code, order).await?;
                }
                balance
            }
            Step::WalkIn { .. } => return Ok(None),
            Step::Spin => {
                let Some(wheel) = wheel else { return Ok(None) };
                let seed = format!("seed{}", self.now().timestamp());
                self.spin_wheel(&actor, wheel, &seed, &key("spin"))
                    .await?
                    .balance
            }
            Step::Gift(index) => {
                let Some(gift) = gifts.get(*index) else {
                    return Ok(None);
                };
                let redeemed = self.redeem_gift(&actor, gift.id, &key("gift")).await?;
                sims[member].balance_minor = redeemed.balance.minor();
                return Ok(Some(redeemed.redemption.id));
            }
            Step::Discount(points) => {
                let points = Decimal::from(*points);
                self.redeem_discount(&actor, points, &key("discount"))
                    .await?
                    .balance
            }
        };
        sims[member].balance_minor = balance.minor();
        Ok(None)
    }

    async fn object_action(
        &self,
        actor: &ActionCaller,
        action: &str,
        prefix: &str,
        id: u32,
    ) -> DomainResult<Points> {
        let object = format!("{prefix}-{id:03}");
        let outcome = self
            .record_action(actor, action, Some(&object), None, None, None)
            .await?;
        Ok(outcome.balance)
    }
}

fn actor(program: &Program, role: Role, subject: &str) -> Actor {
    Actor {
        program: program.external_id.clone(),
        role,
        subject: subject.to_owned(),
    }
}

/// The members: who they are, when they join, how keen they are, who invited them.
fn plan_members(program: &Program) -> Vec<Sim> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut sims: Vec<Sim> = Vec::with_capacity(DEMO_MEMBERS);
    for n in 0..DEMO_MEMBERS {
        let join_day = if n < FOUNDERS {
            0
        } else {
            rng.random_range(1..DEMO_DAYS)
        };
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let earlier: Vec<usize> = (0..n).filter(|&i| sims[i].join_day < join_day).collect();
        let inviter = (!earlier.is_empty() && rng.random_bool(0.35))
            .then(|| earlier[rng.random_range(0..earlier.len())]);
        sims.push(Sim {
            actor: actor(program, Role::Member, &format!("demo-shopper-{:03}", n + 1)),
            name: format!("{last} {first}"),
            join_day,
            engagement: rng.random_range(0.15..0.85),
            inviter,
            id: None,
            code: None,
            balance_minor: 0,
        });
    }
    sims
}

/// One day's steps, each at its instant. A member's steps of the day follow one another a
/// minute or so apart, from a random start between 08:00 and 21:00.
fn plan_day(
    rng: &mut StdRng,
    sims: &[Sim],
    day: u32,
    date: NaiveDate,
    program: &Program,
    orders: &mut Vec<(String, i64)>,
) -> DomainResult<Vec<(DateTime<Utc>, usize, Step)>> {
    let mut steps = Vec::new();
    for (member, sim) in sims.iter().enumerate() {
        if sim.join_day > day {
            continue;
        }
        let joins_today = sim.join_day == day;
        if !joins_today && !rng.random_bool(sim.engagement) {
            continue;
        }
        let start = local(program, date, rng.random_range(8 * 3600..21 * 3600))?;
        let mut at = start;
        let mut next = |rng: &mut StdRng| {
            at += Duration::seconds(rng.random_range(20..240));
            at
        };
        let mut planned: Vec<(DateTime<Utc>, usize, Step)> = Vec::new();
        if joins_today {
            if sim.inviter.is_some() {
                // The friend came through the inviter's link (and a couple of others looked).
                for visitor in 0..rng.random_range(1..4) {
                    let click = start - Duration::minutes(10 + i64::from(visitor));
                    let visitor = format!("visitor-{member}-{visitor}");
                    planned.push((click, member, Step::Click { visitor }));
                }
            }
            planned.push((start, member, Step::Register));
        }
        planned.push((next(rng), member, Step::Login));
        for _ in 0..rng.random_range(0..3) {
            let product = rng.random_range(1..=PRODUCTS);
            planned.push((next(rng), member, Step::View(product)));
        }
        if rng.random_bool(0.35) {
            let news = rng.random_range(1..=NEWS);
            planned.push((next(rng), member, Step::Read(news)));
        }
        if rng.random_bool(0.12) {
            let product = rng.random_range(1..=PRODUCTS);
            planned.push((next(rng), member, Step::Share(product)));
        }
        if rng.random_bool(0.12) {
            let cents = rng.random_range(800..15_000);
            let order = format!("demo-order-{:04}", orders.len() + 1);
            orders.push((order.clone(), cents));
            planned.push((next(rng), member, Step::Purchase { order, cents }));
        }
        // The rolls are drawn whatever the balance, so the plan's random stream does not
        // depend on wheel outcomes (which come from the OS random source).
        let (spin, coffee, tote, discount) = (
            rng.random_bool(0.15),
            rng.random_bool(0.05),
            rng.random_bool(0.04),
            rng.random_bool(0.04),
        );
        let (spin_at, spend_at) = (next(rng), next(rng));
        let balance = sim.balance_minor;
        if spin && balance >= 1_000 {
            planned.push((spin_at, member, Step::Spin));
        }
        if coffee && balance >= 5_000 {
            planned.push((spend_at, member, Step::Gift(0)));
        } else if tote && balance >= 20_000 {
            planned.push((spend_at, member, Step::Gift(1)));
        } else if discount && balance >= 10_000 {
            let points = if balance >= 15_000 { 100 } else { 50 };
            planned.push((spend_at, member, Step::Discount(points)));
        }
        steps.append(&mut planned);
    }
    Ok(steps)
}

/// One day's orders of customers who are not members: none to three, between 08:00 and 21:00,
/// half of them with a customer id the program does not know.
fn plan_walk_ins(
    rng: &mut StdRng,
    date: NaiveDate,
    program: &Program,
    orders: &mut Vec<(String, i64)>,
) -> DomainResult<Vec<(DateTime<Utc>, usize, Step)>> {
    let mut steps = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let at = local(program, date, rng.random_range(8 * 3600..21 * 3600))?;
        let cents = rng.random_range(500..12_000);
        let customer = rng.random_bool(0.5).then(|| {
            let n = rng.random_range(1..=WALK_IN_CUSTOMERS);
            format!("walk-in-{n:03}")
        });
        let order = format!("demo-walk-in-{:04}", orders.len() + 1);
        orders.push((order.clone(), cents));
        steps.push((
            at,
            WALK_IN,
            Step::WalkIn {
                order,
                customer,
                cents,
            },
        ));
    }
    Ok(steps)
}

/// `seconds` after local midnight of `date`, as an instant.
fn local(program: &Program, date: NaiveDate, seconds: u32) -> DomainResult<DateTime<Utc>> {
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| DomainError::internal("bad demo date"))?;
    let naive = midnight + Duration::seconds(i64::from(seconds));
    program
        .tz
        .from_local_datetime(&naive)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| DomainError::internal("demo instant does not exist locally"))
}
