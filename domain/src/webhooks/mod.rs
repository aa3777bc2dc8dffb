//! Outbound webhooks (issue 16): every change worth telling a merchant's systems about is
//! written to `webhook_outbox` in the transaction that made it, then delivered, signed the
//! Standard Webhooks way, by a worker on every instance.
//!
//! - `events.rs`: the event types and their payloads, derived from the postings (pure).
//! - `outbox.rs`: the rows written before commit ([`crate::ledger::ops::Host::before_commit`]),
//!   only for programs with an enabled endpoint (a cached list, so other programs pay nothing).
//! - `endpoints.rs`: the admin side: endpoints, secrets and their rotation, attempts, resends.
//! - `address.rs`: which URLs may be called (no loopback, private or link-local addresses
//!   unless the deployment allows them), checked when an endpoint is saved and at every connect.
//! - `deliver.rs`: the worker: claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, one
//!   `UPDATE` under SQLite's single writer), one member's events in order, retries with
//!   exponential backoff and jitter for three days, disables an endpoint that keeps failing.

mod address;
mod deliver;
mod endpoints;
mod events;
mod outbox;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use address::is_public;
pub use endpoints::{Attempt, Endpoint, EndpointInput, EndpointPatch, OutboxEvent, WithSecret};
pub use events::{DeliveryStatus, EventType};

/// The bus topic that tells every instance a program's endpoints changed.
pub(crate) const TOPIC: &str = "webhooks.changed";

/// How a deployment delivers webhooks (`WEBHOOK_*` settings).
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Whether endpoints may point at loopback, private, link-local or other non-public
    /// addresses (development, tests, a receiver on the same network).
    pub allow_private_urls: bool,
    /// The most one attempt may take, connecting and reading the answer included.
    pub timeout: Duration,
    /// How often an idle worker looks for due events (a commit on this instance wakes it at
    /// once); `None`: this instance delivers nothing.
    pub poll_interval: Option<Duration>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            allow_private_urls: false,
            timeout: Duration::from_secs(10),
            poll_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// One enabled endpoint and what it subscribed to, as the posting path needs it.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub endpoint_id: i64,
    pub types: Vec<EventType>,
}

/// A program's enabled endpoints and when they were read.
type Cached = (Arc<Vec<Subscription>>, Instant);

/// The per-instance webhook state the service holds.
#[derive(Default)]
pub(crate) struct Webhooks {
    options: RwLock<WebhookOptions>,
    /// Enabled endpoints by program, with when they were read: dropped on the bus's
    /// [`TOPIC`], and after [`crate::service::PROGRAM_CACHE_TTL`] should a message be lost.
    subscriptions: RwLock<HashMap<i64, Cached>>,
    /// Wakes this instance's worker after a commit that wrote outbox rows.
    wake: Arc<tokio::sync::Notify>,
}

impl Webhooks {
    pub(crate) fn options(&self) -> WebhookOptions {
        match self.options.read() {
            Ok(options) => options.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set_options(&self, options: WebhookOptions) {
        if let Ok(mut current) = self.options.write() {
            *current = options;
        }
    }

    fn cached(&self, program_id: i64) -> Option<Arc<Vec<Subscription>>> {
        let map = self.subscriptions.read().ok()?;
        let (subs, read_at) = map.get(&program_id)?;
        (read_at.elapsed() < crate::service::PROGRAM_CACHE_TTL).then(|| subs.clone())
    }

    fn cache(&self, program_id: i64, subs: Arc<Vec<Subscription>>) {
        if let Ok(mut map) = self.subscriptions.write() {
            map.insert(program_id, (subs, Instant::now()));
        }
    }

    /// Forgets a program's endpoints (they changed here or on another instance).
    pub(crate) fn forget(&self, program_id: i64) {
        if let Ok(mut map) = self.subscriptions.write() {
            map.remove(&program_id);
        }
    }

    pub(crate) fn forget_all(&self) {
        if let Ok(mut map) = self.subscriptions.write() {
            map.clear();
        }
    }

    /// Whether the program is known (from the cache, reading nothing) to have an enabled
    /// endpoint: then a commit wakes the worker.
    pub(crate) fn may_have_events(&self, program_id: i64) -> bool {
        self.cached(program_id).is_some_and(|subs| !subs.is_empty())
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}
