//! Leaderboards: points earned per member, per program and period (`DAY`, `WEEK`, `MONTH` in
//! the program's timezone, and `ALL_TIME`).
//!
//! **Points earned** = POINTS-account `EARN` postings net of their `REVERSAL`s (a purchase
//! refund). A reversal counts in the period of the earn it reverses, and only while that period
//! is still the one the reversal falls in; spends, refunds of spends, expiry and admin `ADJUST`
//! never count. Ties: equal points → lower member id first; ranks are positions 1, 2, 3, ….
//!
//! Boards live in Redis sorted sets (several instances) or in process (embedded default); both
//! hold only rebuildable state. Every member's figures carry the member's posting counter
//! (`member_version`), so updates, per-member refreshes and whole rebuilds merge by version and
//! commute: whatever order they arrive in, a board ends up showing the newest ledger state, and
//! two instances rebuilding at once write the same thing.

mod catch_up;
mod ledger;
mod memory;
mod queue;
mod redis;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use loyalty_entities::{members, programs};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::actor::Viewer;
use crate::error::{DomainError, DomainResult};
use crate::ledger::{Account, Kind, Posting};
use crate::money::Points;
use crate::periods::{local_date, month_start, start_of_day, week_start};
use crate::program::Program;
use crate::service::Loyalty;
use crate::store::{Breaker, FastStore};

pub use catch_up::CatchUp;
pub use ledger::Totals;
pub use queue::READ_WAIT;

/// Largest `first` a caller may ask for.
pub const MAX_FIRST: i64 = 100;
/// Entries shown on each side of the caller in `around`.
pub const AROUND: usize = 2;
/// A period's board outlives its period by this much, then Redis drops it by itself.
pub const GRACE: chrono::Duration = chrono::Duration::days(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Period {
    Day,
    Week,
    Month,
    AllTime,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Day, Period::Week, Period::Month, Period::AllTime];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "DAY",
            Period::Week => "WEEK",
            Period::Month => "MONTH",
            Period::AllTime => "ALL_TIME",
        }
    }
}

/// One board: a period and, for calendar periods, the local date its bucket starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    pub period: Period,
    pub start: Option<NaiveDate>,
}

impl Bucket {
    /// The bucket of `period` that contains the instant `at` in timezone `tz`.
    pub fn at(period: Period, tz: Tz, at: DateTime<Utc>) -> Bucket {
        let date = local_date(tz, at);
        let start = match period {
            Period::Day => Some(date),
            Period::Week => Some(week_start(date)),
            Period::Month => Some(month_start(date)),
            Period::AllTime => None,
        };
        Bucket { period, start }
    }

    /// `DAY:2026-11-23`, `WEEK:2026-11-16` (its Monday), `MONTH:2026-11-01`, `ALL_TIME`.
    pub fn name(&self) -> String {
        match self.start {
            Some(start) => format!("{}:{start}", self.period.as_str()),
            None => self.period.as_str().to_owned(),
        }
    }

    pub fn starts_at(&self, tz: Tz) -> Option<DateTime<Utc>> {
        self.start.map(|date| start_of_day(tz, date))
    }

    /// The first instant of the next bucket (`None` for all time).
    pub fn ends_at(&self, tz: Tz) -> Option<DateTime<Utc>> {
        let start = self.start?;
        let next = match self.period {
            Period::Day => start.checked_add_days(Days::new(1)),
            Period::Week => start.checked_add_days(Days::new(7)),
            Period::Month => start.checked_add_months(Months::new(1)),
            Period::AllTime => None,
        }?;
        Some(start_of_day(tz, next))
    }

    /// When the stored board may go (unix seconds); `None` = keep.
    fn expires_at(&self, tz: Tz) -> Option<i64> {
        self.ends_at(tz).map(|end| (end + GRACE).timestamp())
    }

    fn cell(&self, tz: Tz) -> Cell {
        Cell {
            name: self.name(),
            expires_at: self.expires_at(tz),
        }
    }
}

/// A board as the backends see it: its name and when it may be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub name: String,
    pub expires_at: Option<i64>,
}

/// One committed transaction's effect on one member: the member's posting counter went from
/// `from` to `to`, and each listed board moves by its delta (hundredths of a point).
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub member_id: i64,
    pub from: i64,
    pub to: i64,
    pub deltas: Vec<(Cell, i64)>,
    pub now: i64,
}

/// A member's absolute figures for `cells` as of posting counter `version`.
#[derive(Clone, Debug)]
pub(crate) struct Figures {
    pub member_id: i64,
    pub version: i64,
    pub points: Vec<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    Done,
    /// The board already holds this version or a newer one.
    AlreadyIncluded,
    /// The board does not hold exactly the version before this change (changes that arrived
    /// out of order, or a lost one): the member's figures must be read from the ledger.
    OutOfOrder,
    /// The program's boards are not built (first use, or Redis flushed).
    NotBuilt,
}

/// A read of one board.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// (member id, points in hundredths), best first.
    pub top: Vec<(i64, i64)>,
    /// The member's 1-based rank and points, when they are on the board.
    pub me: Option<(u64, i64)>,
    /// (rank, member id, points) around the member, the member included.
    pub around: Vec<(u64, i64, i64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("leaderboard store: {0}")]
pub(crate) struct BoardError(pub String);

pub(crate) type BoardResult<T> = Result<T, BoardError>;

/// What a leaderboard backend must do. Redis and the in-process one implement exactly these
/// semantics (tested against each other).
#[async_trait]
pub(crate) trait Boards: Send + Sync {
    /// Applies `change` if the member's stored version is exactly `change.from` and the
    /// program's boards are built.
    async fn apply(&self, program_id: i64, change: &Change) -> BoardResult<Applied>;
    /// Writes each member's figures where the stored version is older (or absent).
    async fn merge(
        &self,
        program_id: i64,
        cells: &[Cell],
        figures: &[Figures],
        now: i64,
    ) -> BoardResult<()>;
    /// Records that the program's boards are complete.
    async fn mark_built(&self, program_id: i64) -> BoardResult<()>;
    /// Forgets the program's boards (tests and operators).
    async fn clear(&self, program_id: i64) -> BoardResult<()>;
    /// The stored posting counter of each of `members` (`None`: not on the boards); `None`
    /// when the program's boards are not built.
    async fn versions(
        &self,
        program_id: i64,
        members: &[i64],
    ) -> BoardResult<Option<Vec<Option<i64>>>>;
    /// The catch-up watermark: every ledger row up to it is on the boards (`None`: unknown).
    async fn watermark(&self) -> BoardResult<Option<i64>>;
    /// Moves the watermark up to `to` (never down: concurrent passes on several instances
    /// each cover their own range, so the largest is right).
    async fn advance_watermark(&self, to: i64) -> BoardResult<()>;
    /// Reads a board; `None` when the program's boards are not built.
    async fn read(
        &self,
        program_id: i64,
        cell: &Cell,
        first: usize,
        member_id: Option<i64>,
    ) -> BoardResult<Option<Snapshot>>;
    /// `false` while every call would fail at once (Redis's breaker is open).
    fn available(&self) -> bool {
        true
    }
    fn backend(&self) -> &'static str;
}

/// The service's leaderboards: a backend, the queue of updates waiting for it, and the programs
/// this instance owes a rebuild.
pub struct Leaderboards {
    boards: Box<dyn Boards>,
    /// Redis's breaker (`None` in process): its recoveries start the owed rebuilds.
    breaker: Option<Breaker>,
    updates: queue::Updates,
    /// Programs whose update failed here (Redis away): rebuilt at the next chance.
    dirty: Mutex<HashSet<i64>>,
    /// Background rebuilds in flight on this instance, so one trigger starts one rebuild.
    rebuilding: Arc<Mutex<HashSet<i64>>>,
    /// Fault injection for tests: skip the after-commit update, as a crash right after the
    /// commit would.
    lose_updates: AtomicBool,
}

impl Leaderboards {
    /// Redis sorted sets when the store is Redis, else in process.
    pub fn for_store(store: &dyn FastStore) -> Leaderboards {
        let (boards, breaker): (Box<dyn Boards>, _) = match store.redis() {
            Some(handle) => {
                let breaker = handle.breaker.clone();
                (Box::new(redis::RedisBoards::new(handle)), Some(breaker))
            }
            None => (Box::new(memory::MemoryBoards::default()), None),
        };
        Leaderboards {
            boards,
            breaker,
            updates: queue::Updates::new(),
            dirty: Mutex::new(HashSet::new()),
            rebuilding: Arc::new(Mutex::new(HashSet::new())),
            lose_updates: AtomicBool::new(false),
        }
    }

    pub fn backend(&self) -> &'static str {
        self.boards.backend()
    }

    /// Whether `store`'s boards have caught up past every ledger row of `db`: then they describe
    /// a copy of this database that has more rows (a restored backup, a copy run beside the
    /// original: the deployment id is the same), not this one. `false` when unknown.
    pub async fn ahead_of_ledger<C: sea_orm::ConnectionTrait>(
        db: &C,
        store: &dyn FastStore,
    ) -> DomainResult<bool> {
        let boards = Leaderboards::for_store(store);
        let Some(mark) = boards
            .boards
            .watermark()
            .await
            .map_err(DomainError::internal)?
        else {
            return Ok(false);
        };
        // The watermark only ever takes settled ids, which are committed rows: this database's
        // committed max(id) can only have grown since, no need to wait for writers.
        let row = db
            .query_one(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS max_id FROM ledger_entries",
            ))
            .await?;
        let max_id = match row {
            Some(row) => row.try_get::<i64>("", "max_id")?,
            None => 0,
        };
        Ok(mark > max_id)
    }

    fn recoveries(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.breaker.as_ref().map(Breaker::recoveries)
    }

    fn losing_updates(&self) -> bool {
        self.lose_updates.load(Ordering::Relaxed)
    }

    fn dirty_programs(&self) -> Vec<i64> {
        self.dirty
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }

    fn mark_dirty(&self, program_id: i64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(program_id);
        }
    }

    fn is_dirty(&self, program_id: i64) -> bool {
        self.dirty
            .lock()
            .map(|d| d.contains(&program_id))
            .unwrap_or(false)
    }

    fn clean(&self, program_id: i64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.remove(&program_id);
        }
    }
}

/// One ranked line of a board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RankedMember {
    pub rank: u64,
    pub points: Points,
    pub member_id: i64,
    pub display_name: Option<String>,
}

/// The caller's own place: `rank` is `None` while they have earned nothing in the period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MyRank {
    pub rank: Option<u64>,
    pub points: Points,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaderboardView {
    pub period: Period,
    /// First instant of the period (`None` for all time).
    pub bucket_start: Option<DateTime<Utc>>,
    pub entries: Vec<RankedMember>,
    /// `None` for admins.
    pub me: Option<MyRank>,
    /// Up to [`AROUND`] entries above the member, the member, and up to [`AROUND`] below.
    pub around: Vec<RankedMember>,
}

/// Whether a posting counts as "earned", and the instant that decides its period.
fn counts(posting: &Posting) -> bool {
    posting.account == Account::Points && matches!(posting.kind, Kind::Earn | Kind::Reversal)
}

/// The current bucket of every period at `now`.
fn current_buckets(tz: Tz, now: DateTime<Utc>) -> Vec<Bucket> {
    Period::ALL
        .iter()
        .map(|&period| Bucket::at(period, tz, now))
        .collect()
}

impl Loyalty {
    /// Applies one committed transaction's postings (from the update queue, in queue order):
    /// moves the boards of every member it touched. A board that could not be updated is
    /// rebuilt later.
    async fn apply_leaderboard_update(&self, program: &Program, posted: &[Posting]) {
        if !self.leaderboards().boards.available() {
            // Redis failed a moment ago: rebuilt when it answers again (`queue.rs`).
            metrics::counter!("loyalty_leaderboard_update_failures_total").increment(1);
            self.leaderboards().mark_dirty(program.id);
            return;
        }
        let mut by_member: BTreeMap<i64, Vec<&Posting>> = BTreeMap::new();
        for posting in posted {
            by_member
                .entry(posting.member_id)
                .or_default()
                .push(posting);
        }
        for (member_id, postings) in by_member {
            let change = match self.change_of(program, member_id, &postings).await {
                Ok(change) => change,
                Err(err) => {
                    tracing::warn!(error = %err, program = program.id, "leaderboard change unreadable");
                    self.leaderboards().mark_dirty(program.id);
                    continue;
                }
            };
            let boards = &self.leaderboards().boards;
            match boards.apply(program.id, &change).await {
                Ok(Applied::Done | Applied::AlreadyIncluded) => {}
                Ok(outcome @ (Applied::OutOfOrder | Applied::NotBuilt)) => {
                    // The refresh merges by version, so it is right even while a rebuild runs.
                    if let Err(err) = self.refresh_member(program, member_id).await {
                        tracing::warn!(error = %err, member_id, "leaderboard refresh failed");
                        self.leaderboards().mark_dirty(program.id);
                    }
                    if outcome == Applied::NotBuilt {
                        self.spawn_rebuild(program);
                    }
                }
                Err(err) => {
                    metrics::counter!("loyalty_leaderboard_update_failures_total").increment(1);
                    tracing::warn!(error = %err, program = program.id, "leaderboard update failed; will rebuild");
                    self.leaderboards().mark_dirty(program.id);
                    continue;
                }
            }
            if self.leaderboards().is_dirty(program.id) {
                self.spawn_rebuild(program);
            }
        }
    }

    async fn change_of(
        &self,
        program: &Program,
        member_id: i64,
        postings: &[&Posting],
    ) -> DomainResult<Change> {
        let tz = program.tz;
        let from = postings
            .iter()
            .map(|p| p.member_version)
            .min()
            .unwrap_or_default()
            - 1;
        let to = postings
            .iter()
            .map(|p| p.member_version)
            .max()
            .unwrap_or_default();
        let mut deltas: BTreeMap<Bucket, i64> = BTreeMap::new();
        for posting in postings.iter().filter(|p| counts(p)) {
            let earned_at = match posting.kind {
                Kind::Reversal => ledger::reversed_at(self.db(), posting.id)
                    .await?
                    .unwrap_or(posting.created_at),
                Kind::Earn | Kind::Spend | Kind::Expire | Kind::Refund | Kind::Adjust => {
                    posting.created_at
                }
            };
            for period in Period::ALL {
                let bucket = Bucket::at(period, tz, posting.created_at);
                if Bucket::at(period, tz, earned_at) != bucket {
                    // The earn's period is over: its board is closed.
                    continue;
                }
                *deltas.entry(bucket).or_default() += posting.amount.minor();
            }
        }
        Ok(Change {
            member_id,
            from,
            to,
            deltas: deltas
                .into_iter()
                .filter(|(_, delta)| *delta != 0)
                .map(|(bucket, delta)| (bucket.cell(tz), delta))
                .collect(),
            now: self.now().timestamp(),
        })
    }

    /// Reads one member's figures from the ledger and merges them into the boards.
    async fn refresh_member(&self, program: &Program, member_id: i64) -> DomainResult<()> {
        let now = self.now();
        let totals = ledger::totals(self.db(), program, now, Some(&[member_id])).await?;
        self.merge_totals(program, now, &totals).await
    }

    async fn merge_totals(
        &self,
        program: &Program,
        now: DateTime<Utc>,
        totals: &[Totals],
    ) -> DomainResult<()> {
        let buckets = current_buckets(program.tz, now);
        let cells: Vec<Cell> = buckets.iter().map(|b| b.cell(program.tz)).collect();
        for chunk in totals.chunks(500) {
            let figures: Vec<Figures> = chunk
                .iter()
                .map(|t| Figures {
                    member_id: t.member_id,
                    version: t.version,
                    points: buckets.iter().map(|b| t.points(b.period)).collect(),
                })
                .collect();
            self.leaderboards()
                .boards
                .merge(program.id, &cells, &figures, now.timestamp())
                .await
                .map_err(DomainError::internal)?;
        }
        Ok(())
    }

    /// Recomputes a program's boards from the ledger (current periods) and marks them built.
    /// Safe to run anywhere, any number of times at once: it merges by member version.
    /// Returns the number of members with ledger rows.
    pub async fn rebuild_leaderboards(&self, program: &Program) -> DomainResult<usize> {
        let now = self.now();
        let totals = ledger::totals(self.db(), program, now, None).await?;
        self.merge_totals(program, now, &totals).await?;
        self.leaderboards()
            .boards
            .mark_built(program.id)
            .await
            .map_err(DomainError::internal)?;
        self.leaderboards().clean(program.id);
        metrics::counter!("loyalty_leaderboard_rebuilds_total").increment(1);
        tracing::info!(
            program = %program.external_id,
            members = totals.len(),
            "leaderboards rebuilt"
        );
        Ok(totals.len())
    }

    /// Rebuilds the boards of one program (by external id) or of all; returns (program, members).
    pub async fn rebuild_all_leaderboards(
        &self,
        only: Option<&str>,
    ) -> DomainResult<Vec<(String, usize)>> {
        let mut query = programs::Entity::find();
        if let Some(external_id) = only {
            query = query.filter(programs::Column::ExternalId.eq(external_id));
        }
        let models = query.all(self.db()).await?;
        if let (Some(external_id), true) = (only, models.is_empty()) {
            return Err(DomainError::not_found(format!(
                "program `{external_id}` not found"
            )));
        }
        let mut done = Vec::with_capacity(models.len());
        for model in models {
            let program = self.program(&model.external_id).await?;
            let members = self.rebuild_leaderboards(&program).await?;
            done.push((program.external_id.clone(), members));
        }
        Ok(done)
    }

    /// Drops a program's boards (as a Redis `FLUSHDB` would); the next read rebuilds them.
    pub async fn clear_leaderboards(&self, program: &Program) -> DomainResult<()> {
        self.leaderboards()
            .boards
            .clear(program.id)
            .await
            .map_err(DomainError::internal)
    }

    /// Fault injection for tests: while on, committed postings skip the board update, exactly
    /// as if the server died between the commit and that update.
    #[doc(hidden)]
    pub fn lose_leaderboard_updates(&self, on: bool) {
        self.leaderboards()
            .lose_updates
            .store(on, Ordering::Relaxed);
    }

    pub fn leaderboard_backend(&self) -> &'static str {
        self.leaderboards().backend()
    }

    /// Starts one background rebuild of `program` on this instance (none if one is running).
    fn spawn_rebuild(&self, program: &Program) {
        if !self.leaderboards().boards.available() {
            // It would read the whole ledger only to fail at once; Redis's recovery starts it.
            self.leaderboards().mark_dirty(program.id);
            return;
        }
        let rebuilding = self.leaderboards().rebuilding.clone();
        match rebuilding.lock() {
            Ok(mut running) => {
                if !running.insert(program.id) {
                    return;
                }
            }
            Err(_) => return,
        }
        let loyalty = self.clone();
        let program = program.clone();
        tokio::spawn(async move {
            if let Err(err) = loyalty.rebuild_leaderboards(&program).await {
                tracing::warn!(error = %err, program = %program.external_id, "leaderboard rebuild failed");
                loyalty.leaderboards().mark_dirty(program.id);
            }
            if let Ok(mut running) = rebuilding.lock() {
                running.remove(&program.id);
            }
        });
    }

    /// The `period` board of the caller's program: the top `first`, and for a member their own
    /// rank and the entries around them. Admins read it too (`me` is then `None`).
    pub async fn leaderboard(
        &self,
        actor: &Viewer,
        period: Period,
        first: i64,
    ) -> DomainResult<LeaderboardView> {
        let program = self.program(&actor.program).await?;
        let program = &*program;
        if !(1..=MAX_FIRST).contains(&first) {
            return Err(DomainError::validation(format!(
                "first must be between 1 and {MAX_FIRST}"
            )));
        }
        let first = usize::try_from(first).unwrap_or(1);
        // This instance's own earlier postings first (the caller's purchase a moment ago).
        self.settle_leaderboard_updates(READ_WAIT).await;
        let member_id = match actor {
            Viewer::Member(member) => self
                .find_member(program, &member.subject)
                .await?
                .map(|m| m.id),
            Viewer::Admin(_) => None,
        };
        let now = self.now();
        let bucket = Bucket::at(period, program.tz, now);
        let snapshot = self
            .read_board(program, now, &bucket, first, member_id)
            .await?;
        let ids: Vec<i64> = snapshot
            .top
            .iter()
            .map(|(id, _)| *id)
            .chain(snapshot.around.iter().map(|(_, id, _)| *id))
            .collect();
        let names = self.display_names(program, &ids).await?;
        let ranked = |rank: u64, id: i64, points: i64| RankedMember {
            rank,
            points: Points::from_minor(points),
            member_id: id,
            display_name: names.get(&id).cloned().flatten(),
        };
        Ok(LeaderboardView {
            period,
            bucket_start: bucket.starts_at(program.tz),
            entries: snapshot
                .top
                .iter()
                .zip(1u64..)
                .map(|((id, points), rank)| ranked(rank, *id, *points))
                .collect(),
            me: actor.member().is_some().then(|| match snapshot.me {
                Some((rank, points)) => MyRank {
                    rank: Some(rank),
                    points: Points::from_minor(points),
                },
                None => MyRank {
                    rank: None,
                    points: Points::ZERO,
                },
            }),
            around: snapshot
                .around
                .iter()
                .map(|(rank, id, points)| ranked(*rank, *id, *points))
                .collect(),
        })
    }

    /// The store's board; rebuilt first when missing or owed; computed from the database when
    /// the store does not answer.
    async fn read_board(
        &self,
        program: &Program,
        now: DateTime<Utc>,
        bucket: &Bucket,
        first: usize,
        member_id: Option<i64>,
    ) -> DomainResult<Snapshot> {
        let boards = &self.leaderboards().boards;
        let cell = bucket.cell(program.tz);
        if !boards.available() {
            // Redis failed a moment ago: a repair would only fail at once, after reading the
            // whole ledger for nothing.
            metrics::counter!("loyalty_leaderboard_fallback_reads_total").increment(1);
            return self
                .board_from_ledger(program, now, bucket, first, member_id)
                .await;
        }
        if self.leaderboards().is_dirty(program.id) {
            if let Err(err) = self.rebuild_leaderboards(program).await {
                tracing::warn!(error = %err, "leaderboard repair failed; reading the database");
                return self
                    .board_from_ledger(program, now, bucket, first, member_id)
                    .await;
            }
        }
        for _ in 0..2 {
            match boards.read(program.id, &cell, first, member_id).await {
                Ok(Some(snapshot)) => return Ok(snapshot),
                Ok(None) => {
                    if let Err(err) = self.rebuild_leaderboards(program).await {
                        tracing::warn!(error = %err, "leaderboard rebuild failed; reading the database");
                        break;
                    }
                }
                Err(err) => {
                    metrics::counter!("loyalty_leaderboard_fallback_reads_total").increment(1);
                    tracing::warn!(error = %err, "leaderboard store unreachable; reading the database");
                    self.leaderboards().mark_dirty(program.id);
                    break;
                }
            }
        }
        self.board_from_ledger(program, now, bucket, first, member_id)
            .await
    }

    /// The board computed straight from the ledger (same figures and order as the stores).
    async fn board_from_ledger(
        &self,
        program: &Program,
        now: DateTime<Utc>,
        bucket: &Bucket,
        first: usize,
        member_id: Option<i64>,
    ) -> DomainResult<Snapshot> {
        let totals = ledger::totals(self.db(), program, now, None).await?;
        let points = totals
            .iter()
            .map(|t| (t.member_id, t.points(bucket.period)));
        Ok(memory::Board::from_points(points).snapshot(first, member_id))
    }

    async fn display_names(
        &self,
        program: &Program,
        ids: &[i64],
    ) -> DomainResult<std::collections::HashMap<i64, Option<String>>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        Ok(members::Entity::find()
            .filter(members::Column::ProgramId.eq(program.id))
            .filter(members::Column::Id.is_in(ids.iter().copied()))
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| (m.id, m.display_name))
            .collect())
    }
}

#[cfg(test)]
mod tests;
