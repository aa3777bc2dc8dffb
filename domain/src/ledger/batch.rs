//! Group commit: postings that arrive together share one database transaction, each in a
//! savepoint of its own, so a thousand postings a second cost a fraction of a thousand commits.
//!
//! A posting goes to one of a few *lanes*, chosen by its member, and each lane runs one batch at
//! a time on one connection. A lane that is idle starts a posting at once (a batch of one, no
//! savepoint: under no load nobody waits for anyone); while a batch runs, the postings that
//! arrive meanwhile queue, and the next batch takes all of them (up to [`BatchOptions::max`],
//! optionally waiting [`BatchOptions::window`] for more). So batches grow with the load, by
//! themselves.
//!
//! Inside a batch the postings run in the order of their member key, so the member rows of a
//! batch are locked in one global order, and a member's postings always meet in the same lane:
//! two batches never wait for each other's members. What a posting may lock besides its member
//! (a campaign's budget row, a gift's stock, the place of a referral among its inviter's) is not known before it runs;
//! a batch of several postings therefore waits at most [`LOCK_TIMEOUT`] for any lock, and a
//! posting whose wait runs out is rolled back to its savepoint and run again on its own, outside
//! any batch (the caller's retry). A cycle between batches thus breaks in milliseconds instead
//! of at PostgreSQL's one-second deadlock check, and nobody is ever refused for it.
//!
//! Each posting's answer is handed back only once its batch committed. One posting's refusal or
//! error rolls back only its own savepoint; so does one that swallowed a failed statement and
//! answered as if nothing happened (its savepoint is found aborted when released: on PostgreSQL
//! a COMMIT would otherwise roll the whole batch back in silence). A connection lost before the commit gives every
//! posting of the batch back to its caller to run again on its own (nothing of it committed); a
//! failed commit is an error for every posting that was part of it, as it is for a transaction
//! of one (whether it committed is unknown; the idempotency key answers a retry).
//!
//! A batch holds at most [`MAX_BATCH`] postings: past 64 subtransactions PostgreSQL's
//! per-backend cache of subtransaction ids overflows and every other session's snapshots get
//! slower.
//!
//! SQLite's one lane runs on a thread of its own, with a connection of its own, and both are
//! kept on one CPU ([`LaneCpu`]): sqlx runs every SQLite connection on a thread of its own, so
//! each statement is handed from the lane to that thread and back, and when the two sit on
//! different CPUs each hand-over wakes a sleeping CPU (on a two-CPU virtual machine that cost
//! more than the statements: see BENCHMARKS.md, session 29).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    TransactionTrait,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::DomainError;
use crate::ledger::affinity;
use crate::ledger::db::{self, classify, DbErrorKind, MemberRef};

/// The most postings one batch holds (PostgreSQL caches 64 subtransaction ids per backend).
pub const MAX_BATCH: usize = 64;

/// How long a posting inside a batch of several waits for a lock before it is run again on its
/// own. Longer than any batch takes to commit, far shorter than the deadlock check.
pub const LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// Postings waiting for a lane; beyond this callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

const SAVEPOINT: &str = "posting";

/// How postings are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Lanes (each one connection while it runs a batch); `None` is the backend's default:
    /// four on PostgreSQL, one on SQLite (one writer: it never gets more). `Some(0)` turns
    /// batching off: every posting runs its own transaction.
    pub lanes: Option<usize>,
    /// The most postings in one batch (1 to [`MAX_BATCH`]).
    pub max: usize,
    /// How long a lane waits for more postings after the first one of a batch arrived. Zero
    /// (the default) takes only what is already queued.
    pub window: Duration,
    /// Where SQLite's lane runs (PostgreSQL's lanes are tasks of the caller's runtime).
    pub cpu: LaneCpu,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            lanes: None,
            max: 32,
            window: Duration::ZERO,
            cpu: LaneCpu::Auto,
        }
    }
}

/// Where SQLite's posting lane runs. With a thread of its own it also gets a connection of its
/// own (an SQLite file in WAL mode only: a second connection to an in-memory database would be
/// another database), whose sqlx thread is kept on the lane's CPU with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LaneCpu {
    /// On a thread of its own, kept on the last CPU this process may use.
    #[default]
    Auto,
    /// On a thread of its own, kept on this CPU (a CPU the process may not use: not kept).
    Cpu(usize),
    /// A task of the caller's runtime using the shared pool, on whichever CPU.
    Off,
}

impl BatchOptions {
    /// No lanes: every posting runs its own transaction.
    pub fn off() -> Self {
        BatchOptions {
            lanes: Some(0),
            ..BatchOptions::default()
        }
    }
}

/// What one posting's work did inside its batch.
pub(crate) enum Step {
    /// Keep what it wrote.
    Keep,
    /// Roll back what it wrote; with `again`, then run it once more in its place (a refusal
    /// that must be stored under its idempotency key).
    Undo { again: bool },
}

/// How a posting's batch ended, for the posting.
pub(crate) enum End {
    /// The batch committed (or the posting wrote nothing that a commit could lose): its answer
    /// stands.
    Done,
    /// Nothing of it committed and it may simply run again, on its own.
    Retry,
    /// The commit failed; whether it happened is unknown.
    Failed(DomainError),
}

/// One posting as a lane sees it. `run` may be called twice (see [`Step::Undo`]); `finish`
/// exactly once.
pub(crate) trait Job: Send + 'static {
    fn member(&self) -> &MemberRef;
    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, Result<Step, DbErr>>;
    fn finish(self: Box<Self>, end: End);
}

/// Counters of one batcher (tests and the operator's metrics).
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    postings: AtomicU64,
    largest: AtomicU64,
}

/// A reading of [`BatchStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Transactions committed or attempted by the lanes.
    pub batches: u64,
    /// Postings that ran in them.
    pub postings: u64,
    /// The largest batch so far.
    pub largest: u64,
    /// Postings waiting for a lane right now.
    pub queued: u64,
}

impl BatchStats {
    fn read(&self) -> BatchCounts {
        BatchCounts {
            batches: self.batches.load(Ordering::Relaxed),
            postings: self.postings.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            queued: 0,
        }
    }

    fn record(&self, size: usize) {
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.postings.fetch_add(size, Ordering::Relaxed);
        self.largest.fetch_max(size, Ordering::Relaxed);
        metrics::histogram!("loyalty_posting_batch_size").record(size as f64);
    }
}

/// The lanes of one service instance.
pub struct Batcher {
    lanes: Vec<mpsc::Sender<Box<dyn Job>>>,
    stats: Arc<BatchStats>,
    gate: WriterGate,
}

/// On SQLite, the instance's turn at the one write lock, taken by the lane around each batch
/// and by background writers that hold the lock for long (the report folder): they queue for
/// it in order and are woken the moment it is free, instead of polling SQLite's busy handler,
/// whose retries come 1, 2, 5 … 100 ms apart and left the lane waiting up to a second behind
/// the folder. `None` on PostgreSQL (row locks) and with batching off.
#[derive(Clone, Default)]
pub struct WriterGate(Option<Arc<tokio::sync::Mutex<()>>>);

impl WriterGate {
    /// Waits for the turn; held until the guard is dropped.
    pub async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }
}

impl Batcher {
    /// Starts the lanes' tasks; they end with `shutdown` (or when the batcher is dropped).
    pub fn start(
        db: &DatabaseConnection,
        options: BatchOptions,
        shutdown: CancellationToken,
    ) -> Batcher {
        let stats = Arc::new(BatchStats::default());
        let lanes = match db.get_database_backend() {
            DatabaseBackend::Sqlite => options.lanes.unwrap_or(1).min(1),
            DatabaseBackend::Postgres | DatabaseBackend::MySql => options.lanes.unwrap_or(4),
        };
        let own_thread =
            db.get_database_backend() == DatabaseBackend::Sqlite && options.cpu != LaneCpu::Off;
        let options = BatchOptions {
            lanes: Some(lanes),
            max: options.max.clamp(1, MAX_BATCH),
            ..options
        };
        let gate = match db.get_database_backend() {
            DatabaseBackend::Sqlite if lanes > 0 => {
                WriterGate(Some(Arc::new(tokio::sync::Mutex::new(()))))
            }
            DatabaseBackend::Sqlite | DatabaseBackend::Postgres | DatabaseBackend::MySql => {
                WriterGate::default()
            }
        };
        let lanes = (0..lanes)
            .map(|_| {
                let (queue, pending) = mpsc::channel(QUEUE);
                let lane = Lane {
                    db: db.clone(),
                    options,
                    pending,
                    stats: stats.clone(),
                    gate: gate.clone(),
                    shutdown: shutdown.clone(),
                };
                if own_thread {
                    lane.spawn_thread();
                } else {
                    tokio::spawn(lane.run());
                }
                queue
            })
            .collect();
        Batcher { lanes, stats, gate }
    }

    /// The instance's turn at SQLite's write lock (see [`WriterGate`]).
    pub fn writer_gate(&self) -> &WriterGate {
        &self.gate
    }

    /// Whether postings go through lanes at all.
    pub fn enabled(&self) -> bool {
        !self.lanes.is_empty()
    }

    pub fn stats(&self) -> BatchCounts {
        let queued = self
            .lanes
            .iter()
            .map(|lane| lane.max_capacity() - lane.capacity())
            .sum::<usize>();
        BatchCounts {
            queued: queued as u64,
            ..self.stats.read()
        }
    }

    /// Queues a posting on its member's lane; a posting that cannot be queued (batching off, or
    /// the lane gone at shutdown) is told to run on its own.
    pub(crate) async fn submit(&self, job: Box<dyn Job>) {
        if self.lanes.is_empty() {
            job.finish(End::Retry);
            return;
        }
        let lane = (member_key(job.member()) % self.lanes.len() as u64) as usize;
        if let Err(mpsc::error::SendError(job)) = self.lanes[lane].send(job).await {
            job.finish(End::Retry);
        }
    }
}

/// The lock-order key of a member reference: the same on every instance and every run.
fn member_key(member: &MemberRef) -> u64 {
    // `DefaultHasher::new` has fixed keys, so the order is the same everywhere.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match member {
        MemberRef::Id(id) => id.hash(&mut hasher),
        MemberRef::External(external_id) => external_id.hash(&mut hasher),
        MemberRef::New(new) => new.external_id.hash(&mut hasher),
    }
    hasher.finish()
}

/// One lane: its queue, and what it runs batches with.
struct Lane {
    db: DatabaseConnection,
    options: BatchOptions,
    pending: mpsc::Receiver<Box<dyn Job>>,
    stats: Arc<BatchStats>,
    gate: WriterGate,
    shutdown: CancellationToken,
}

/// Numbers the lanes that run on threads of their own, for their threads' names.
static LANE_THREADS: AtomicU64 = AtomicU64::new(0);

impl Lane {
    /// Runs the lane on a thread of its own (see [`LaneCpu`]). Should the thread not start, the
    /// queue goes with it and every posting runs on its own.
    fn spawn_thread(self) {
        let n = LANE_THREADS.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name(format!("lane-{n}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(self.run_pinned(format!("lane-db-{n}"))),
                    Err(err) => tracing::error!(error = %err, "posting lane has no runtime"),
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "posting lane thread did not start; postings run alone");
        }
    }

    /// On the lane's own thread: opens the lane's own connection (its thread named
    /// `connection_thread`), keeps both threads on the lane's CPU, and runs. Without a
    /// connection of its own (in memory) nothing is pinned.
    async fn run_pinned(mut self, connection_thread: String) {
        let cpu = match self.options.cpu {
            LaneCpu::Cpu(cpu) => Some(cpu),
            LaneCpu::Auto | LaneCpu::Off => affinity::default_cpu(),
        };
        match db::lane_connection(&self.db, connection_thread, cpu).await {
            Ok(Some(own)) => {
                self.db = own;
                let pinned = cpu.filter(|cpu| affinity::pin_current_thread(*cpu));
                tracing::info!(
                    cpu = pinned,
                    "posting lane on its own thread and connection"
                );
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "posting lane shares the pool"),
        }
        self.run().await;
    }

    /// The lane's loop.
    async fn run(self) {
        let Lane {
            db,
            options,
            mut pending,
            stats,
            gate,
            shutdown,
        } = self;
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                job = pending.recv() => job,
            };
            let Some(first) = first else { return };
            let mut jobs = vec![first];
            let deadline = tokio::time::Instant::now() + options.window;
            while jobs.len() < options.max {
                match pending.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) if options.window.is_zero() => break,
                    Err(_) => match tokio::time::timeout_at(deadline, pending.recv()).await {
                        Ok(Some(job)) => jobs.push(job),
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            stats.record(jobs.len());
            let turn = gate.turn().await;
            run_batch(&db, jobs).await;
            drop(turn);
        }
        // Shutting down: whatever still queues runs on its own (the callers' own transactions).
        pending.close();
        while let Some(job) = pending.recv().await {
            job.finish(End::Retry);
        }
    }
}

/// Runs `jobs` in one transaction (one savepoint each when there are several) and finishes
/// every one of them.
pub(crate) async fn run_batch(db: &DatabaseConnection, mut jobs: Vec<Box<dyn Job>>) {
    // A stable sort: one member's postings keep their arrival order.
    jobs.sort_by_key(|job| member_key(job.member()));
    let txn = match db.begin().await {
        Ok(txn) => txn,
        Err(err) => {
            tracing::debug!(error = %err, "batch could not begin; postings run on their own");
            return jobs.into_iter().for_each(|job| job.finish(End::Retry));
        }
    };
    if jobs.len() == 1 {
        if let Some(job) = jobs.pop() {
            return run_alone(db, txn, job).await;
        }
    }
    let opening = match txn.get_database_backend() {
        DatabaseBackend::Postgres | DatabaseBackend::MySql => format!(
            "SET LOCAL lock_timeout = '{}ms'; SAVEPOINT {SAVEPOINT}",
            LOCK_TIMEOUT.as_millis()
        ),
        DatabaseBackend::Sqlite => format!("SAVEPOINT {SAVEPOINT}"),
    };
    if let Err(err) = txn.execute_unprepared(&opening).await {
        tracing::debug!(error = %err, "batch could not open; postings run on their own");
        return jobs.into_iter().for_each(|job| job.finish(End::Retry));
    }
    // Postings whose work stays in the transaction, and postings already answered.
    let mut kept: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    let mut answered: Vec<(Box<dyn Job>, End)> = Vec::new();
    // Whether the savepoint holds kept work (then the next posting releases it and opens its
    // own) or is clean (rolled back to: the next posting reuses it).
    let mut dirty = false;
    let mut jobs = jobs.into_iter();
    while let Some(mut job) = jobs.next() {
        if dirty {
            match settle(&txn, true).await {
                Ok(true) => {}
                Ok(false) => answered.extend(kept.pop().map(|last| (last, aborted()))),
                Err(err) => return broken(err, kept, answered, Some(job), jobs.collect()),
            }
            dirty = false;
        }
        let outcome = match job.run(&txn).await {
            Ok(Step::Undo { again: true }) => match undo(&txn).await {
                Ok(()) => job.run(&txn).await,
                Err(err) => return broken(err, kept, answered, Some(job), jobs.collect()),
            },
            other => other,
        };
        match outcome {
            Ok(Step::Keep) => {
                kept.push(job);
                dirty = true;
            }
            Ok(Step::Undo { .. }) => {
                if let Err(err) = undo(&txn).await {
                    return broken(err, kept, answered, Some(job), jobs.collect());
                }
                answered.push((job, End::Done));
            }
            Err(err) => {
                if let Err(lost) = undo(&txn).await {
                    return broken(lost, kept, answered, Some(job), jobs.collect());
                }
                answered.push((job, failure(err)));
            }
        }
    }
    // PostgreSQL answers COMMIT in an aborted transaction with a silent rollback: the last
    // savepoint is released first, so a posting that swallowed a failed statement is caught.
    if dirty {
        match settle(&txn, false).await {
            Ok(true) => {}
            Ok(false) => answered.extend(kept.pop().map(|last| (last, aborted()))),
            Err(err) => return broken(err, kept, answered, None, Vec::new()),
        }
    }
    match txn.commit().await {
        Ok(()) => {
            kept.into_iter().for_each(|job| job.finish(End::Done));
            answered.into_iter().for_each(|(job, end)| job.finish(end));
        }
        Err(err) => {
            let err = DomainError::internal(format!("commit of a batch failed: {err}"));
            kept.into_iter()
                .for_each(|job| job.finish(End::Failed(err.clone())));
            answered
                .into_iter()
                .for_each(|(job, end)| job.finish(uncommitted(end)));
        }
    }
}

/// Releases the savepoint of the last kept posting (and, with `reopen`, opens the next one, in
/// the same round trip). `Ok(false)` when that posting left its savepoint aborted (a failed
/// statement it swallowed and answered as if nothing happened): its work is rolled back, and
/// the savepoint is clean for the next posting.
async fn settle(txn: &DatabaseTransaction, reopen: bool) -> Result<bool, DbErr> {
    let sql = if reopen {
        format!("RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}")
    } else {
        format!("RELEASE SAVEPOINT {SAVEPOINT}")
    };
    match txn.execute_unprepared(&sql).await {
        Ok(_) => Ok(true),
        Err(err) => {
            tracing::warn!(error = %err, "a posting left its savepoint aborted; rolled back");
            undo(txn).await?;
            Ok(false)
        }
    }
}

/// The end of a posting whose savepoint was found aborted (what its own transaction's commit
/// would have failed with).
fn aborted() -> End {
    End::Failed(DomainError::internal(
        "a statement of this posting failed; nothing of it was committed",
    ))
}

/// An answer given inside a batch that did not commit: it may rest on what another posting of
/// the batch wrote (a replay of a key claimed earlier in it), so only failures stand.
fn uncommitted(end: End) -> End {
    match end {
        End::Done | End::Retry => End::Retry,
        End::Failed(err) => End::Failed(err),
    }
}

/// A batch of one is a plain transaction: no savepoint, no lock timeout.
async fn run_alone(db: &DatabaseConnection, txn: DatabaseTransaction, mut job: Box<dyn Job>) {
    let end = match job.run(&txn).await {
        Ok(Step::Keep) => match txn.commit().await {
            Ok(()) => End::Done,
            Err(err) => End::Failed(DomainError::internal(format!("commit failed: {err}"))),
        },
        Ok(Step::Undo { again }) => match txn.rollback().await {
            Err(err) => failure(err),
            Ok(()) if !again => End::Done,
            // The refusal to store runs in a transaction of its own.
            Ok(()) => match db.begin().await {
                Err(err) => failure(err),
                Ok(txn) => match job.run(&txn).await {
                    Ok(Step::Keep) => match txn.commit().await {
                        Ok(()) => End::Done,
                        Err(err) => failure(err),
                    },
                    Ok(Step::Undo { .. }) => End::Done,
                    Err(err) => failure(err),
                },
            },
        },
        Err(err) => failure(err),
    };
    job.finish(end);
}

/// What a database error inside a posting means for it: run again, or fail.
fn failure(err: DbErr) -> End {
    match classify(&err) {
        DbErrorKind::Retryable => {
            metrics::counter!("loyalty_posting_batch_retries_total").increment(1);
            End::Retry
        }
        DbErrorKind::UniqueViolation | DbErrorKind::CheckViolation | DbErrorKind::Other => {
            End::Failed(DomainError::internal(err.to_string()))
        }
    }
}

async fn undo(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    txn.execute_unprepared(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
        .await
        .map(|_| ())
}

/// The transaction is unusable (its connection is gone): nothing of it committed, so every
/// posting not yet answered runs again on its own.
fn broken(
    err: DbErr,
    kept: Vec<Box<dyn Job>>,
    answered: Vec<(Box<dyn Job>, End)>,
    current: Option<Box<dyn Job>>,
    rest: Vec<Box<dyn Job>>,
) {
    tracing::warn!(error = %err, "batch transaction lost; its postings run on their own");
    metrics::counter!("loyalty_posting_batches_lost_total").increment(1);
    kept.into_iter()
        .chain(current)
        .chain(rest)
        .for_each(|job| job.finish(End::Retry));
    answered
        .into_iter()
        .for_each(|(job, end)| job.finish(uncommitted(end)));
}
