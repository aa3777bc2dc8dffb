//! A circuit breaker in front of Redis. A Redis that is away (refused, dropped) or hangs (no
//! answer within [`CALL_TIMEOUT`]) opens it; while it is open every call fails at once without
//! touching Redis, and the callers fall back as they always did (the database answers, the boards
//! are marked for a rebuild, events stay local). One background probe per outage pings Redis
//! with growing pauses and closes the breaker when it answers; `/readyz`'s ping closes it too.
//! Each close bumps [`Breaker::recoveries`], so what missed updates (the leaderboards) can
//! catch up at once instead of at its next read.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The most a call may wait for Redis (also the connection manager's connection and response
/// timeouts). Running out of it opens the breaker.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// First pause before probing a Redis that failed; it doubles up to [`PROBE_MAX_PAUSE`].
const PROBE_FIRST_PAUSE: Duration = Duration::from_millis(100);
const PROBE_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Why a call through the breaker gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("redis skipped: it failed recently and has not answered a probe since")]
    Open,
    #[error("redis gave no answer within {0:?}")]
    TimedOut(Duration),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
}

/// What this instance's breaker has done since it started (also on `/metrics`, process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerStats {
    pub open: bool,
    /// Times it opened.
    pub opened: u64,
    /// Calls sent to Redis (probes and `/readyz` pings not counted).
    pub sent: u64,
    /// Calls answered at once with [`CallError::Open`], never sent.
    pub skipped: u64,
    /// Calls sent that failed or ran out of time.
    pub failed: u64,
}

/// Cheap to clone; every clone is the same breaker.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    open: AtomicBool,
    /// A probe task is running (one per outage).
    probing: AtomicBool,
    opened: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    recovered: watch::Sender<u64>,
    shutdown: CancellationToken,
}

/// Whether `err` says Redis itself is unreachable or broken (a refused, dropped or timed-out
/// connection), as opposed to a refusal of one command.
fn breaks(err: &RedisError) -> bool {
    err.is_io_error() || err.is_unrecoverable_error() || err.kind() == ErrorKind::BusyLoadingError
}

impl Breaker {
    pub(crate) fn new(conn: ConnectionManager, shutdown: CancellationToken) -> Breaker {
        // Shown as 0 from the start, not only once it first opened.
        metrics::gauge!("loyalty_redis_breaker_open").increment(0.0);
        Breaker {
            inner: Arc::new(Inner {
                conn,
                open: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                opened: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                recovered: watch::Sender::new(0),
                shutdown,
            }),
        }
    }

    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> BreakerStats {
        let count = |n: &AtomicU64| n.load(Ordering::SeqCst);
        BreakerStats {
            open: self.is_open(),
            opened: count(&self.inner.opened),
            sent: count(&self.inner.sent),
            skipped: count(&self.inner.skipped),
            failed: count(&self.inner.failed),
        }
    }

    /// Changes each time Redis answers again after the breaker opened.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.inner.recovered.subscribe()
    }

    /// Runs one Redis call, waiting at most `budget`, unless the breaker is open. A broken
    /// connection opens the breaker, and so does a call that used up the whole
    /// [`CALL_TIMEOUT`]; a shorter `budget` running out (a hint not worth waiting for) only says
    /// Redis was slow this once.
    pub async fn call<T>(
        &self,
        budget: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CallError> {
        if self.is_open() {
            self.inner.skipped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("loyalty_redis_calls_skipped_total").increment(1);
            return Err(CallError::Open);
        }
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = match tokio::time::timeout(budget, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => {
                if breaks(&err) {
                    self.trip(&err.to_string());
                }
                CallError::Redis(err)
            }
            Err(_) => {
                if budget >= CALL_TIMEOUT {
                    self.trip("no answer in time");
                } else {
                    metrics::counter!("loyalty_redis_slow_hints_total").increment(1);
                }
                CallError::TimedOut(budget)
            }
        };
        self.inner.failed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("loyalty_redis_call_failures_total").increment(1);
        Err(outcome)
    }

    /// `PING`, whatever the breaker's state (for `/readyz`); its answer opens or closes it.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.inner.conn.clone();
        match redis::cmd("PING").query_async::<String>(&mut conn).await {
            Ok(_) => {
                self.close();
                Ok(())
            }
            Err(err) => {
                if breaks(&err) {
                    self.trip(&err.to_string());
                }
                Err(err.to_string())
            }
        }
    }

    /// Opens the breaker (if closed) and starts the probe (if none runs).
    fn trip(&self, reason: &str) {
        if !self.inner.open.swap(true, Ordering::SeqCst) {
            self.inner.opened.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("loyalty_redis_breaker_opened_total").increment(1);
            metrics::gauge!("loyalty_redis_breaker_open").increment(1.0);
            tracing::warn!(
                reason,
                "redis unavailable: its calls fail at once until it answers a probe"
            );
        }
        if !self.inner.probing.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().probe());
        }
    }

    fn close(&self) {
        if self.inner.open.swap(false, Ordering::SeqCst) {
            metrics::gauge!("loyalty_redis_breaker_open").decrement(1.0);
            tracing::info!("redis answers again");
            self.inner.recovered.send_modify(|n| *n += 1);
        }
    }

    async fn probe(self) {
        let mut pause = PROBE_FIRST_PAUSE;
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => {
                    self.inner.probing.store(false, Ordering::SeqCst);
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
            if self.is_open() {
                let mut conn = self.inner.conn.clone();
                let ping = redis::cmd("PING");
                let ping = ping.query_async::<String>(&mut conn);
                if let Ok(Ok(_)) = tokio::time::timeout(CALL_TIMEOUT * 2, ping).await {
                    self.close();
                }
            }
            if !self.is_open() {
                self.inner.probing.store(false, Ordering::SeqCst);
                // A trip between the close and the line above saw this probe still running
                // and started none: carry on as its probe.
                if !self.is_open() || self.inner.probing.swap(true, Ordering::SeqCst) {
                    return;
                }
                pause = PROBE_FIRST_PAUSE;
                continue;
            }
            pause = (pause * 2).min(PROBE_MAX_PAUSE);
        }
    }
}
