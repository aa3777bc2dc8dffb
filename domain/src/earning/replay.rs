//! Replay before publish (issue 11, item 7): runs a ruleset (the draft, or the live one) over a
//! past period's recorded earn events (`earn_events`, paid or not) and says, per rule, how many
//! events it would have paid, how many members it would have reached and what it would have
//! issued, beside what the live rules actually issued in that period (the ledger).
//!
//! The replay is pure engine calls ([`evaluate`]) over events read in time order, one page at a
//! time, with the member facts kept in memory ([`Fold`]). What it simplifies, on purpose:
//!
//! - limits, per-object claims, per-member caps, login streaks and `actionCountAtLeast` counts
//!   start from zero at the start of the replayed period (what happened before it is not
//!   replayed);
//! - total budgets start from zero (nothing spent);
//! - the member's tier is the one recorded on the event (its current earn multiplier and name);
//! - the purchase ordinal (`firstPurchase`, `nthPurchase`) counts the member's purchases before
//!   the period from the purchases table, then the replayed ones;
//! - member attributes, the join date and the points-per-currency ratio are today's;
//! - the clock of each evaluation is the event's own time (active windows, local days and times).
//!
//! Bounded: at most [`MAX_REPLAY_DAYS`] days and [`MAX_REPLAY_EVENTS`] events (counted before
//! anything is replayed), read [`PAGE`] at a time by keyset on `(created_at, id)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use loyalty_entities::{earn_events, ledger_entries, members, purchases, tiers};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Alias, Condition as Where, Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};

use crate::earning::rules::conditions::{ActionCounts, Condition, Line, TierFact};
use crate::earning::rules::{
    evaluate, ActionRequest, EvalContext, MemberFacts, Rule, RuleFacts, Ruleset,
};
use crate::earning::RulesTarget;
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::sum_of;
use crate::ledger::{Account, Kind};
use crate::money::{Money, Points};
use crate::periods::Windows;
use crate::program::Program;
use crate::service::Loyalty;

/// The longest period one replay covers.
pub const MAX_REPLAY_DAYS: i64 = 93;
/// The most recorded events one replay reads.
pub const MAX_REPLAY_EVENTS: u64 = 500_000;
/// Events read per query.
const PAGE: u64 = 2_000;
/// Members per `IN (…)` lookup.
const MEMBER_BATCH: usize = 500;
/// Replays running at once in this process (one document may alias `replayRules` many times):
/// the rest wait their turn, so replays never take more than this many cores' worth of time.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// One recorded event, as replay feeds it to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub member_id: i64,
    pub action: String,
    pub object_id: Option<String>,
    pub amount: Option<Money>,
    /// Points the caller chose (caller-chosen rules).
    pub chosen: Option<Points>,
    /// The member's tier when the event was recorded.
    pub tier_id: Option<i64>,
    pub at: DateTime<Utc>,
    /// A purchase's lines (empty: none known).
    pub lines: Vec<Line>,
}

/// What replay takes from today's member row (and the purchases before the period).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberSeed {
    pub joined_at: Option<DateTime<Utc>>,
    pub attributes: HashMap<String, String>,
    /// Purchases the member made before the replayed period.
    pub purchases_before: u32,
}

/// A tier as replay applies it: its name (for `tierIn` explanations) and earn multiplier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierSeed {
    pub name: String,
    pub multiplier: Decimal,
}

/// What one rule did over the replayed events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleReplay {
    pub rule_id: i64,
    pub name: String,
    /// `false` for a rule only the live rules had (it issued points but is not in the ruleset
    /// replayed).
    pub in_ruleset: bool,
    /// Events the rule paid for (points or spins).
    pub events_matched: u64,
    /// Distinct members it paid.
    pub members_reached: u64,
    pub points_issued: Points,
    pub spins: u64,
    /// What the live rules actually issued under this rule in the period (EARN rows on POINTS).
    pub actually_issued: Points,
}

/// The whole replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The ruleset replayed (0 = the draft).
    pub ruleset_version: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Recorded events replayed.
    pub events: u64,
    /// Events at least one rule paid for.
    pub events_matched: u64,
    /// Distinct members at least one rule paid.
    pub members_reached: u64,
    pub points_issued: Points,
    pub spins: u64,
    pub actually_issued: Points,
    /// The ruleset's rules in its order, then the rules only the live rules paid under.
    pub rules: Vec<RuleReplay>,
}

/// One member's state as the replay goes.
#[derive(Default)]
struct MemberState {
    seed: MemberSeed,
    purchases: u32,
    login_streak: u32,
    last_login: Option<NaiveDate>,
    /// Per rule: the instants it paid (ascending), the points, the objects claimed.
    paid: HashMap<i64, Paid>,
    /// Per action: the instants of the member's events (ascending), paid or not.
    actions: HashMap<String, Vec<DateTime<Utc>>>,
}

#[derive(Default)]
struct Paid {
    at: Vec<DateTime<Utc>>,
    minor: i64,
    objects: HashSet<String>,
}

#[derive(Default)]
struct Tally {
    events: u64,
    members: HashSet<i64>,
    minor: i64,
    spins: u64,
}

/// Instants in `sorted` at or after `start`.
fn since(sorted: &[DateTime<Utc>], start: DateTime<Utc>) -> u32 {
    let n = sorted.len() - sorted.partition_point(|at| *at < start);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The replay's state: events go in one at a time, in time order ([`Fold::apply`]); the
/// per-rule figures come out ([`Fold::finish`]). Pure: no database, no clock.
pub struct Fold<'a> {
    ruleset: &'a Ruleset,
    tz: Tz,
    points_per_currency: Decimal,
    tiers: HashMap<i64, TierSeed>,
    counts_actions: bool,
    members: HashMap<i64, MemberState>,
    /// Points issued so far per rule with a total budget.
    spent: HashMap<i64, i64>,
    tallies: HashMap<i64, Tally>,
    events: u64,
    events_matched: u64,
    reached: HashSet<i64>,
}

impl<'a> Fold<'a> {
    pub fn new(
        ruleset: &'a Ruleset,
        tz: Tz,
        points_per_currency: Decimal,
        tiers: HashMap<i64, TierSeed>,
    ) -> Self {
        let counts_actions = ruleset.rules.iter().any(|rule| {
            rule.conditions
                .iter()
                .any(|c| matches!(c, Condition::ActionCountAtLeast { .. }))
        });
        Fold {
            ruleset,
            tz,
            points_per_currency,
            tiers,
            counts_actions,
            members: HashMap::new(),
            spent: HashMap::new(),
            tallies: HashMap::new(),
            events: 0,
            events_matched: 0,
            reached: HashSet::new(),
        }
    }

    /// Whether a member's seed is still to be given (before their first event).
    pub fn knows(&self, member_id: i64) -> bool {
        self.members.contains_key(&member_id)
    }

    /// Gives what replay needs from a member's row before their first event.
    pub fn seed(&mut self, member_id: i64, seed: MemberSeed) {
        self.members.entry(member_id).or_default().seed = seed;
    }

    /// Replays one event (events must come in time order).
    pub fn apply(&mut self, event: &RecordedEvent) {
        self.events += 1;
        let windows = Windows::at(self.tz, event.at);
        let member = self.members.entry(event.member_id).or_default();
        if event.action == "purchase" {
            member.purchases = member.purchases.saturating_add(1);
        }
        let action_counts = if self.counts_actions {
            let seen = member.actions.entry(event.action.clone()).or_default();
            seen.push(event.at);
            Some(ActionCounts {
                action: event.action.clone(),
                day: since(seen, windows.day_start),
                week: since(seen, windows.week_start),
                month: since(seen, windows.month_start),
                lifetime: u32::try_from(seen.len()).unwrap_or(u32::MAX),
            })
        } else {
            None
        };
        let tier = event.tier_id.map(|id| TierFact {
            id,
            name: self
                .tiers
                .get(&id)
                .map(|t| t.name.clone())
                .unwrap_or_default(),
        });
        let multiplier = event
            .tier_id
            .and_then(|id| self.tiers.get(&id))
            .map_or(Decimal::ONE, |t| t.multiplier);
        let rules: HashMap<i64, RuleFacts> = self
            .ruleset
            .rules_for(&event.action)
            .map(|rule| (rule.id, rule_facts(member, rule, event, &windows)))
            .collect();
        let mut facts = MemberFacts {
            member_id: event.member_id,
            login_streak: member.login_streak,
            last_login_date: member.last_login,
            rules,
            tier,
            joined_at: member.seed.joined_at,
            purchase_ordinal: (event.action == "purchase").then(|| {
                member
                    .seed
                    .purchases_before
                    .saturating_add(member.purchases)
            }),
            attributes: member.seed.attributes.clone(),
            exhausted: HashSet::new(),
            action_counts,
            // When each badge was granted is not replayed: `hasBadge` conditions never hold
            // in a replay (its figures are a lower bound for such rules).
            badges: Default::default(),
        };
        let request = ActionRequest {
            action: event.action.clone(),
            object_id: event.object_id.clone(),
            amount: event.amount,
            lines: event.lines.clone(),
            points: event.chosen,
        };
        let ctx = EvalContext {
            tz: self.tz,
            now: event.at,
            points_per_currency: self.points_per_currency,
            multiplier,
        };
        let evaluation = loop {
            // An event the live path refused as invalid (no object id, no amount) pays nothing.
            let Ok(evaluation) = evaluate(self.ruleset, &facts, &request, &ctx) else {
                return;
            };
            let over = evaluation.earns.iter().find(|earn| {
                earn.points.is_positive()
                    && earn.budget_total.is_some_and(|total| {
                        let spent = self.spent.get(&earn.rule_id).copied().unwrap_or_default();
                        spent.saturating_add(earn.points.minor()) > total.minor()
                    })
            });
            match over {
                Some(earn) => {
                    facts.exhausted.insert(earn.rule_id);
                }
                None => break evaluation,
            }
        };
        if evaluation.earns.is_empty() {
            return;
        }
        self.events_matched += 1;
        self.reached.insert(event.member_id);
        for earn in &evaluation.earns {
            let minor = earn.points.minor();
            if earn.budget_total.is_some() {
                let spent = self.spent.entry(earn.rule_id).or_default();
                *spent = spent.saturating_add(minor);
            }
            let paid = member.paid.entry(earn.rule_id).or_default();
            paid.at.push(event.at);
            paid.minor = paid.minor.saturating_add(minor);
            if let Some(object) = &earn.object_id {
                paid.objects.insert(object.clone());
            }
            let tally = self.tallies.entry(earn.rule_id).or_default();
            tally.events += 1;
            tally.members.insert(event.member_id);
            tally.minor = tally.minor.saturating_add(minor);
            tally.spins = tally.spins.saturating_add(u64::from(earn.spins));
        }
        if let Some((date, streak)) = evaluation.streak {
            member.last_login = Some(date);
            member.login_streak = streak;
        }
    }

    /// The figures per rule (the ruleset's rules in order, then `live_only` rules that issued
    /// points), with what the live rules actually issued per rule id.
    pub fn finish(
        self,
        actually: &HashMap<i64, i64>,
        live_names: &HashMap<i64, String>,
    ) -> ReplayReport {
        let mut rules = Vec::with_capacity(self.ruleset.rules.len());
        let mut seen = HashSet::new();
        let mut tallies = self.tallies;
        for rule in &self.ruleset.rules {
            seen.insert(rule.id);
            let tally = tallies.remove(&rule.id).unwrap_or_default();
            rules.push(RuleReplay {
                rule_id: rule.id,
                name: rule.name.clone(),
                in_ruleset: true,
                events_matched: tally.events,
                members_reached: tally.members.len() as u64,
                points_issued: Points::from_minor(tally.minor),
                spins: tally.spins,
                actually_issued: Points::from_minor(
                    actually.get(&rule.id).copied().unwrap_or_default(),
                ),
            });
        }
        let live_only: BTreeMap<i64, i64> = actually
            .iter()
            .filter(|(id, _)| !seen.contains(id))
            .map(|(id, minor)| (*id, *minor))
            .collect();
        for (rule_id, minor) in live_only {
            rules.push(RuleReplay {
                rule_id,
                name: live_names
                    .get(&rule_id)
                    .cloned()
                    .unwrap_or_else(|| format!("rule {rule_id}")),
                in_ruleset: false,
                actually_issued: Points::from_minor(minor),
                ..RuleReplay::default()
            });
        }
        let sum = |f: fn(&RuleReplay) -> i64| {
            rules
                .iter()
                .fold(0_i64, |total, rule| total.saturating_add(f(rule)))
        };
        ReplayReport {
            ruleset_version: self.ruleset.version,
            events: self.events,
            events_matched: self.events_matched,
            members_reached: self.reached.len() as u64,
            points_issued: Points::from_minor(sum(|r| r.points_issued.minor())),
            spins: rules.iter().map(|r| r.spins).sum(),
            actually_issued: Points::from_minor(sum(|r| r.actually_issued.minor())),
            rules,
            ..ReplayReport::default()
        }
    }
}

/// How often `rule` already paid the member, counted from the start of the replay.
fn rule_facts(
    member: &MemberState,
    rule: &Rule,
    event: &RecordedEvent,
    windows: &Windows,
) -> RuleFacts {
    let Some(paid) = member.paid.get(&rule.id) else {
        return RuleFacts::default();
    };
    RuleFacts {
        lifetime: u32::try_from(paid.at.len()).unwrap_or(u32::MAX),
        in_day: since(&paid.at, windows.day_start),
        in_week: since(&paid.at, windows.week_start),
        in_month: since(&paid.at, windows.month_start),
        object_claimed: event
            .object_id
            .as_ref()
            .is_some_and(|object| paid.objects.contains(object)),
        lifetime_points: Points::from_minor(paid.minor),
    }
}

/// The lines of the period's purchases by order id (in line order); orders sent without lines
/// have none. One query for the page's purchases, one for their lines.
async fn purchase_lines<C: ConnectionTrait>(
    conn: &C,
    program_id: i64,
    order_ids: &[String],
) -> DomainResult<HashMap<String, Vec<Line>>> {
    use loyalty_entities::{purchase_lines as pl, purchases};
    if order_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let orders: HashMap<i64, String> = purchases::Entity::find()
        .filter(purchases::Column::ProgramId.eq(program_id))
        .filter(purchases::Column::OrderId.is_in(order_ids.iter().cloned()))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| (p.id, p.order_id))
        .collect();
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = pl::Entity::find()
        .filter(pl::Column::PurchaseId.is_in(orders.keys().copied()))
        .order_by_asc(pl::Column::PurchaseId)
        .order_by_asc(pl::Column::LineNumber)
        .all(conn)
        .await?;
    let mut lines: HashMap<String, Vec<Line>> = HashMap::new();
    for row in rows {
        let Some(order) = orders.get(&row.purchase_id) else {
            continue;
        };
        lines.entry(order.clone()).or_default().push(Line {
            sku: row.sku,
            category: row.category,
            quantity: u32::try_from(row.quantity).unwrap_or(u32::MAX),
            unit_price: crate::money::Money::from_minor(row.unit_price_minor),
        });
    }
    Ok(lines)
}

/// Members' current attributes (`setMemberAttributes`): replay compares conditions against
/// today's values, not those of the event's day.
async fn member_attributes<C: ConnectionTrait>(
    conn: &C,
    member_ids: &[i64],
) -> DomainResult<HashMap<i64, HashMap<String, String>>> {
    use loyalty_entities::members;
    if member_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = members::Entity::find()
        .filter(members::Column::Id.is_in(member_ids.iter().copied()))
        .all(conn)
        .await?;
    let mut attributes = HashMap::new();
    for row in rows {
        let stored = crate::members::attributes::stored(&row.attributes)?;
        if !stored.is_empty() {
            attributes.insert(row.id, stored.into_iter().collect());
        }
    }
    Ok(attributes)
}

#[derive(FromQueryResult)]
struct IssuedRow {
    rule_id: Option<i64>,
    minor: Option<i64>,
}

#[derive(FromQueryResult)]
struct PurchasesRow {
    member_id: i64,
    n: i64,
}

impl Loyalty {
    /// Replays the draft or the live rules over `[from, to)`'s recorded events (module doc).
    /// Reads only; an admin's call.
    pub async fn replay_rules(
        &self,
        program: &Program,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        target: RulesTarget,
    ) -> DomainResult<ReplayReport> {
        if from >= to {
            return Err(DomainError::validation("from must be before to"));
        }
        if to - from > Duration::days(MAX_REPLAY_DAYS) {
            return Err(DomainError::validation(format!(
                "the period may be at most {MAX_REPLAY_DAYS} days"
            )));
        }
        let _turn = RUNNING
            .acquire()
            .await
            .map_err(|_| DomainError::internal("the replay semaphore is closed"))?;
        let db = self.db();
        // `[start, to)` of the program's events: the range the `(program_id, created_at)`
        // index scans. Each page starts the range at the last instant read, so a page never
        // walks the rows before it again.
        let in_period_from = |start: DateTime<Utc>| {
            earn_events::Entity::find()
                .filter(earn_events::Column::ProgramId.eq(program.id))
                .filter(earn_events::Column::CreatedAt.gte(start))
                .filter(earn_events::Column::CreatedAt.lt(to))
        };
        let in_period = || in_period_from(from);
        // Counted up to one past the bound only (`PaginatorTrait::count` drops a `LIMIT`).
        let capped = in_period()
            .select_only()
            .column(earn_events::Column::Id)
            .limit(MAX_REPLAY_EVENTS + 1)
            .into_query();
        let count = Query::select()
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
            .from_subquery(capped, Alias::new("capped"))
            .to_owned();
        let backend = db.get_database_backend();
        let events = match db.query_one(backend.build(&count)).await? {
            Some(row) => row.try_get::<i64>("", "n")?,
            None => 0,
        };
        if u64::try_from(events).unwrap_or(u64::MAX) > MAX_REPLAY_EVENTS {
            return Err(DomainError::LimitReached(format!(
                "the period holds more than {MAX_REPLAY_EVENTS} recorded events: replay a \
                 shorter period"
            )));
        }
        let live = self.live_ruleset(program).await?;
        let ruleset = match target {
            RulesTarget::Draft => std::sync::Arc::new(self.draft_ruleset(program).await?),
            RulesTarget::Live => live.clone(),
        };
        let tiers = tiers::Entity::find()
            .filter(tiers::Column::ProgramId.eq(program.id))
            .all(db)
            .await?
            .into_iter()
            .map(|tier| {
                let seed = TierSeed {
                    name: tier.name,
                    multiplier: Decimal::new(tier.multiplier_minor, 2),
                };
                (tier.id, seed)
            })
            .collect();
        let counts_purchases = ruleset.rules.iter().any(|rule| {
            rule.conditions
                .iter()
                .any(|c| matches!(c, Condition::FirstPurchase | Condition::NthPurchase { .. }))
        });
        let mut fold = Fold::new(&ruleset, program.tz, program.points_per_currency, tiers);
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        loop {
            let mut page = in_period();
            if let Some((at, id)) = after {
                page = in_period_from(at).filter(
                    Where::any().add(earn_events::Column::CreatedAt.gt(at)).add(
                        Where::all()
                            .add(earn_events::Column::CreatedAt.eq(at))
                            .add(earn_events::Column::Id.gt(id)),
                    ),
                );
            }
            let rows = page
                .order_by_asc(earn_events::Column::CreatedAt)
                .order_by_asc(earn_events::Column::Id)
                .limit(PAGE)
                .all(db)
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.created_at, last.id));
            let new_members: Vec<i64> = rows
                .iter()
                .map(|row| row.member_id)
                .filter(|id| !fold.knows(*id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for batch in new_members.chunks(MEMBER_BATCH) {
                for (id, seed) in self
                    .member_seeds(program, batch, from, counts_purchases)
                    .await?
                {
                    fold.seed(id, seed);
                }
            }
            let orders: Vec<String> = rows.iter().filter_map(|r| r.order_id.clone()).collect();
            let mut lines = if orders.is_empty() {
                HashMap::new()
            } else {
                purchase_lines(db, program.id, &orders).await?
            };
            let full = rows.len() as u64 == PAGE;
            for row in rows {
                fold.apply(&RecordedEvent {
                    lines: row
                        .order_id
                        .as_ref()
                        .and_then(|order| lines.remove(order))
                        .unwrap_or_default(),
                    member_id: row.member_id,
                    action: row.action,
                    object_id: row.object_id,
                    amount: row.amount_minor.map(Money::from_minor),
                    chosen: row.chosen_minor.map(Points::from_minor),
                    tier_id: row.tier_id,
                    at: row.created_at,
                });
            }
            if !full {
                break;
            }
            // A page's evaluation is CPU work: let the runtime's other tasks in between pages.
            tokio::task::yield_now().await;
        }
        let actually = self.issued_by_rule(program, from, to).await?;
        let live_names = live
            .rules
            .iter()
            .map(|rule| (rule.id, rule.name.clone()))
            .collect();
        let mut report = fold.finish(&actually, &live_names);
        report.from = from;
        report.to = to;
        Ok(report)
    }

    /// Join dates (and, when a rule counts purchases, purchases before `from`) of a batch of
    /// members, with their current attributes.
    async fn member_seeds(
        &self,
        program: &Program,
        ids: &[i64],
        from: DateTime<Utc>,
        counts_purchases: bool,
    ) -> DomainResult<HashMap<i64, MemberSeed>> {
        let db = self.db();
        let mut seeds: HashMap<i64, MemberSeed> = members::Entity::find()
            .filter(members::Column::ProgramId.eq(program.id))
            .filter(members::Column::Id.is_in(ids.iter().copied()))
            .all(db)
            .await?
            .into_iter()
            .map(|m| {
                let seed = MemberSeed {
                    joined_at: Some(m.joined_at),
                    ..MemberSeed::default()
                };
                (m.id, seed)
            })
            .collect();
        if counts_purchases {
            let rows = purchases::Entity::find()
                .select_only()
                .column(purchases::Column::MemberId)
                .column_as(Expr::col(purchases::Column::Id).count(), "n")
                .filter(purchases::Column::ProgramId.eq(program.id))
                .filter(purchases::Column::MemberId.is_in(ids.iter().copied()))
                .filter(purchases::Column::CreatedAt.lt(from))
                .group_by(purchases::Column::MemberId)
                .into_model::<PurchasesRow>()
                .all(db)
                .await?;
            for row in rows {
                if let Some(seed) = seeds.get_mut(&row.member_id) {
                    seed.purchases_before = u32::try_from(row.n).unwrap_or(u32::MAX);
                }
            }
        }
        for (id, attributes) in member_attributes(db, ids).await? {
            if let Some(seed) = seeds.get_mut(&id) {
                seed.attributes = attributes;
            }
        }
        Ok(seeds)
    }

    /// Σ of the EARN rows on POINTS per rule id in `[from, to)`: what the live rules issued.
    async fn issued_by_rule(
        &self,
        program: &Program,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> DomainResult<HashMap<i64, i64>> {
        let rows = ledger_entries::Entity::find()
            .select_only()
            .column(ledger_entries::Column::RuleId)
            .column_as(
                sum_of(Expr::col(ledger_entries::Column::AmountMinor)),
                "minor",
            )
            .filter(ledger_entries::Column::ProgramId.eq(program.id))
            .filter(ledger_entries::Column::Kind.eq(Kind::Earn.as_str()))
            .filter(ledger_entries::Column::Account.eq(Account::Points.as_str()))
            .filter(ledger_entries::Column::RuleId.is_not_null())
            .filter(ledger_entries::Column::CreatedAt.gte(from))
            .filter(ledger_entries::Column::CreatedAt.lt(to))
            .group_by(ledger_entries::Column::RuleId)
            .into_model::<IssuedRow>()
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((row.rule_id?, row.minor.unwrap_or_default())))
            .collect())
    }
}

#[cfg(test)]
mod tests;
