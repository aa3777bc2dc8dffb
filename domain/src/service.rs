//! [`Loyalty`]: the one service object the transport layers call. Cheap to clone.

mod posting;
mod upkeep;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::earning::rules::Ruleset;
use crate::ledger::batch::{BatchOptions, Batcher};
use crate::program::Program;
use crate::store::{BusMessage, FastStore};

/// How long a client idempotency key answers from the fast path. Database records are kept at
/// least [`IDEMPOTENCY_RETENTION`]; natural keys of one-off rewards live in the ledger forever.
pub const IDEMPOTENCY_FAST_TTL: Duration = Duration::from_secs(24 * 3600);
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest an instance keeps using program settings after another instance changed them, should
/// the change message be lost.
pub const PROGRAM_CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Loyalty {
    inner: Arc<Inner>,
}

/// The service as its own background tasks hold it: without keeping it alive, so they end
/// when it goes.
#[derive(Clone)]
pub(crate) struct WeakLoyalty(std::sync::Weak<Inner>);

impl WeakLoyalty {
    pub(crate) fn upgrade(&self) -> Option<Loyalty> {
        self.0.upgrade().map(|inner| Loyalty { inner })
    }
}

struct Inner {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    store: Arc<dyn FastStore>,
    /// Program settings by external id, with when they were read: the bus drops an entry when
    /// an admin changes the program, and [`PROGRAM_CACHE_TTL`] bounds staleness if a message is
    /// lost (Redis away).
    programs: RwLock<HashMap<String, (Arc<Program>, std::time::Instant)>>,
    rulesets: RwLock<HashMap<(i64, i64), Arc<Ruleset>>>,
    /// Published challenge sets by (program, version); immutable like rulesets.
    challenge_sets: RwLock<HashMap<(i64, i64), Arc<crate::challenges::ChallengeSet>>>,
    /// Tier ladders by program id, dropped with the program's settings.
    tiers: crate::program::tiers::TierCache,
    click_limiter: crate::referrals::CodeLimiter,
    events: crate::live::events::EventHub,
    publisher: crate::live::events::Publisher,
    leaderboards: crate::live::leaderboard::Leaderboards,
    /// Group commit of postings (`ledger/batch.rs`).
    batcher: Batcher,
    /// Outbound webhooks: options, the endpoints cache, the worker's wake-up.
    webhooks: crate::webhooks::Webhooks,
    /// Cross-member work: the runner's wake-up, or running it inline (`work.rs`).
    work: crate::work::Work,
    /// The report marks this instance's folder has stored (`report/fold.rs`).
    folded: crate::report::fold::FoldedMarks,
}

impl Loyalty {
    /// Wires the service with the default batching ([`BatchOptions::default`]).
    pub fn new(
        db: DatabaseConnection,
        store: Arc<dyn FastStore>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        Loyalty::with_batching(db, store, clock, shutdown, BatchOptions::default())
    }

    /// Wires the service, starts its posting lanes and listens to the bus for cache
    /// invalidations.
    pub fn with_batching(
        db: DatabaseConnection,
        store: Arc<dyn FastStore>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        batching: BatchOptions,
    ) -> Self {
        let batcher = Batcher::start(&db, batching, shutdown.clone());
        let loyalty = Loyalty {
            inner: Arc::new(Inner {
                db,
                clock: clock.clone(),
                store: store.clone(),
                programs: RwLock::new(HashMap::new()),
                rulesets: RwLock::new(HashMap::new()),
                challenge_sets: RwLock::new(HashMap::new()),
                tiers: Default::default(),
                click_limiter: crate::referrals::code_limiter(clock.clone()),
                events: crate::live::events::EventHub::default(),
                publisher: crate::live::events::Publisher::start(store.clone(), shutdown.clone()),
                leaderboards: crate::live::leaderboard::Leaderboards::for_store(store.as_ref()),
                batcher,
                webhooks: Default::default(),
                work: Default::default(),
                folded: Default::default(),
            }),
        };
        loyalty.start_leaderboard_updates(shutdown.clone());
        tokio::spawn(listen(loyalty.clone(), shutdown.clone()));
        let purger = loyalty.clone();
        // Safe on several instances at once (a plain range delete).
        crate::jobs::every(
            "idempotency purge",
            Duration::from_secs(3600),
            shutdown,
            move || {
                let loyalty = purger.clone();
                async move { loyalty.purge_idempotency(IDEMPOTENCY_RETENTION).await }
            },
            |deleted: &u64| {
                if *deleted > 0 {
                    tracing::info!(deleted, "purged old idempotency records");
                }
            },
        );
        loyalty
    }

    /// The same service (database, store) seen through another clock, with its own caches and
    /// no background jobs (only its own queues' tasks, which end with it). `demo` runs real
    /// operations "as of" past instants through it, so a backdated posting is written by
    /// exactly the code that writes a live one.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Loyalty {
        let past = Loyalty {
            inner: Arc::new(Inner {
                db: self.inner.db.clone(),
                clock: clock.clone(),
                store: self.inner.store.clone(),
                programs: RwLock::new(HashMap::new()),
                rulesets: RwLock::new(HashMap::new()),
                challenge_sets: RwLock::new(HashMap::new()),
                tiers: Default::default(),
                click_limiter: crate::referrals::code_limiter(clock),
                events: crate::live::events::EventHub::default(),
                // Its task ends when this service is dropped (the queue closes).
                publisher: crate::live::events::Publisher::start(
                    self.inner.store.clone(),
                    CancellationToken::new(),
                ),
                leaderboards: crate::live::leaderboard::Leaderboards::for_store(
                    self.inner.store.as_ref(),
                ),
                // No lanes: its postings (backdated demo history) each run their own
                // transaction.
                batcher: Batcher::start(
                    &self.inner.db,
                    BatchOptions::off(),
                    CancellationToken::new(),
                ),
                // No worker: the instance it was made from delivers.
                webhooks: Default::default(),
                // Its work runs right after its commits, on its clock (`work.rs`).
                work: crate::work::Work::inline(),
                folded: Default::default(),
            }),
        };
        // Its task ends when this service is dropped.
        past.start_leaderboard_updates(CancellationToken::new());
        past
    }

    pub(crate) fn downgrade(&self) -> WeakLoyalty {
        WeakLoyalty(Arc::downgrade(&self.inner))
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The posting lanes (their counters: [`Batcher::stats`]).
    pub fn batcher(&self) -> &Batcher {
        &self.inner.batcher
    }

    pub(crate) fn folded_marks(&self) -> &crate::report::fold::FoldedMarks {
        &self.inner.folded
    }

    pub fn store(&self) -> &Arc<dyn FastStore> {
        &self.inner.store
    }

    /// Live postings on this instance, by member and by program.
    pub fn events(&self) -> &crate::live::events::EventHub {
        &self.inner.events
    }

    pub(crate) fn publisher(&self) -> &crate::live::events::Publisher {
        &self.inner.publisher
    }

    pub(crate) fn leaderboards(&self) -> &crate::live::leaderboard::Leaderboards {
        &self.inner.leaderboards
    }

    pub(crate) fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    pub(crate) fn work(&self) -> &crate::work::Work {
        &self.inner.work
    }

    pub(crate) fn click_limiter(&self) -> &crate::referrals::CodeLimiter {
        &self.inner.click_limiter
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn cached_program(&self, external_id: &str) -> Option<Arc<Program>> {
        let programs = self.inner.programs.read().ok()?;
        let (program, read_at) = programs.get(external_id)?;
        (read_at.elapsed() < PROGRAM_CACHE_TTL).then(|| program.clone())
    }

    pub(crate) fn cache_program(&self, program: Arc<Program>) {
        if let Ok(mut programs) = self.inner.programs.write() {
            programs.insert(
                program.external_id.clone(),
                (program, std::time::Instant::now()),
            );
        }
    }

    /// Published rulesets never change, so a cache keyed by version is always right.
    pub(crate) fn cached_ruleset(&self, program_id: i64, version: i64) -> Option<Arc<Ruleset>> {
        self.inner
            .rulesets
            .read()
            .ok()?
            .get(&(program_id, version))
            .cloned()
    }

    /// The newest ruleset of `program_id` this instance holds, whatever its version.
    pub(crate) fn newest_cached_ruleset(&self, program_id: i64) -> Option<Arc<Ruleset>> {
        let rulesets = self.inner.rulesets.read().ok()?;
        rulesets
            .iter()
            .filter(|((p, _), _)| *p == program_id)
            .max_by_key(|((_, v), _)| *v)
            .map(|(_, ruleset)| ruleset.clone())
    }

    pub(crate) fn cache_ruleset(&self, program_id: i64, ruleset: Arc<Ruleset>) {
        if let Ok(mut rulesets) = self.inner.rulesets.write() {
            rulesets.retain(|(p, v), _| *p != program_id || *v >= ruleset.version);
            rulesets.insert((program_id, ruleset.version), ruleset);
        }
    }

    /// Published challenge sets never change either: cached by version like rulesets.
    pub(crate) fn cached_challenge_set(
        &self,
        program_id: i64,
        version: i64,
    ) -> Option<Arc<crate::challenges::ChallengeSet>> {
        self.inner
            .challenge_sets
            .read()
            .ok()?
            .get(&(program_id, version))
            .cloned()
    }

    pub(crate) fn cache_challenge_set(
        &self,
        program_id: i64,
        set: Arc<crate::challenges::ChallengeSet>,
    ) {
        if let Ok(mut sets) = self.inner.challenge_sets.write() {
            sets.retain(|(p, v), _| *p != program_id || *v >= set.version);
            sets.insert((program_id, set.version), set);
        }
    }

    pub(crate) fn tier_cache(&self) -> &crate::program::tiers::TierCache {
        &self.inner.tiers
    }

    pub(crate) fn forget_program(&self, program_id: i64) {
        if let Ok(mut programs) = self.inner.programs.write() {
            programs.retain(|_, (p, _)| p.id != program_id);
        }
        self.inner.tiers.forget(program_id);
    }

    /// Tells every instance (through the bus) that a program's settings or rules changed.
    pub(crate) async fn announce(&self, topic: &str, payload: String) {
        self.store()
            .publish(BusMessage {
                topic: topic.to_owned(),
                payload,
            })
            .await;
    }
}

async fn listen(loyalty: Loyalty, shutdown: CancellationToken) {
    let mut messages = loyalty.store().subscribe();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = messages.recv() => message,
        };
        match message {
            Ok(BusMessage { topic, payload }) if topic == crate::live::events::TOPIC => {
                loyalty.on_postings(&payload);
            }
            Ok(BusMessage { topic, payload }) if topic == crate::live::events::CHALLENGE_TOPIC => {
                loyalty.on_challenges(&payload);
            }
            Ok(BusMessage { topic, payload }) if topic == "program.changed" => {
                if let Ok(program_id) = payload.parse() {
                    loyalty.forget_program(program_id);
                }
            }
            Ok(BusMessage { topic, payload }) if topic == crate::webhooks::TOPIC => {
                if let Ok(program_id) = payload.parse() {
                    loyalty.webhooks().forget(program_id);
                }
            }
            Ok(BusMessage { topic, payload }) if topic == "ruleset.published" => {
                // Pre-load the new version so the first posting does not pay for it.
                if let Some((program_id, version)) = payload
                    .split_once(':')
                    .and_then(|(p, v)| Some((p.parse().ok()?, v.parse().ok()?)))
                {
                    if let Err(err) = loyalty.ruleset(loyalty.db(), program_id, version).await {
                        tracing::warn!(error = %err, program_id, version, "ruleset preload failed");
                    }
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Missed invalidations: forget everything that can change.
                if let Ok(mut programs) = loyalty.inner.programs.write() {
                    programs.clear();
                }
                loyalty.inner.tiers.clear();
                loyalty.inner.webhooks.forget_all();
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
