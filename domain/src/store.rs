//! Shared, rebuildable state: the idempotency fast path and the cross-instance message bus.
//! With `REDIS_URL` both live in Redis; without it, in process. Nothing in here decides
//! correctness: a lost or flushed entry only costs a trip to the database.
//!
//! Every Redis call goes through one [`Breaker`] per instance, so a Redis that is away or hangs
//! costs a request no waiting once it has failed once: see [`breaker`].

mod breaker;

pub use breaker::{Breaker, BreakerStats, CallError, CALL_TIMEOUT};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A message every instance receives (ruleset published, and later balance events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    pub topic: String,
    pub payload: String,
}

#[async_trait]
pub trait FastStore: Send + Sync + 'static {
    /// A stored value, or `None` when absent or when the store is unreachable.
    async fn get(&self, key: &str) -> Option<String>;
    /// Best effort: failures are logged, never returned.
    async fn set(&self, key: &str, value: &str, ttl: Duration);
    /// Sends a message to every instance, this one included.
    async fn publish(&self, message: BusMessage);
    /// Messages from every instance.
    fn subscribe(&self) -> broadcast::Receiver<BusMessage>;
    /// Whether the backing service answers (`/readyz`).
    async fn ping(&self) -> Result<(), String>;
    fn backend(&self) -> &'static str;
    /// The Redis connection, key prefix and breaker, for features keeping their own Redis
    /// structures (leaderboards); `None` in process.
    fn redis(&self) -> Option<RedisHandle> {
        None
    }
}

/// What a feature needs to keep its own structures in the store's Redis.
#[derive(Clone)]
pub struct RedisHandle {
    pub conn: ConnectionManager,
    /// `{REDIS_PREFIX}{deployment}:`, already bound to the database.
    pub prefix: String,
    /// The store's breaker: every call goes through it ([`Breaker::call`]).
    pub breaker: Breaker,
}

/// How long the idempotency fast path waits for a `GET`. It is only a hint (the database's
/// record answers without it), so a Redis slower than this is not worth waiting for; unlike a
/// full [`CALL_TIMEOUT`], running out of it does not open the breaker.
pub const FAST_PATH_TIMEOUT: Duration = Duration::from_millis(50);

/// The in-process implementation (embedded default, single instance).
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
    bus: broadcast::Sender<BusMessage>,
}

impl MemoryStore {
    const MAX_ENTRIES: usize = 100_000;

    pub fn new() -> Self {
        let (bus, _) = broadcast::channel(4096);
        MemoryStore {
            entries: Mutex::new(HashMap::new()),
            bus,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl FastStore for MemoryStore {
    async fn get(&self, key: &str) -> Option<String> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(value, _)| value.clone())
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                let now = Instant::now();
                entries.retain(|_, (_, expires)| *expires > now);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
        }
    }

    async fn publish(&self, message: BusMessage) {
        let _ = self.bus.send(message);
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.bus.subscribe()
    }

    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// Redis: every key and the bus channel live under `{REDIS_PREFIX}{deployment id}:`, one pub/sub
/// connection per instance relaying into a local broadcast channel. The prefix separates what an
/// operator chose to separate (tenants, tests); the deployment id (stored in the database, see
/// [`crate::deployment`]) binds every key to the database it describes, so a Redis that served
/// another database, or an earlier one under the same prefix, is only a cold cache here.
pub struct RedisStore {
    conn: ConnectionManager,
    breaker: Breaker,
    /// `{REDIS_PREFIX}{deployment}:`
    prefix: String,
    bus: broadcast::Sender<BusMessage>,
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        prefix: &str,
        deployment: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        // Bounded waits: a Redis that is away must cost a request milliseconds, not seconds.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let (bus, _) = broadcast::channel(4096);
        let store = Arc::new(RedisStore {
            breaker: Breaker::new(conn.clone(), shutdown.clone()),
            conn,
            prefix: namespace(prefix, deployment),
            bus: bus.clone(),
        });
        let channel = store.channel();
        tokio::spawn(relay(client, channel, bus, shutdown));
        Ok(store)
    }

    fn channel(&self) -> String {
        format!("{}bus", self.prefix)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

/// The key prefix of one database's state in Redis.
pub fn namespace(prefix: &str, deployment: &str) -> String {
    format!("{prefix}{deployment}:")
}

/// Keeps one subscription to the bus channel, reconnecting with backoff while Redis is away.
async fn relay(
    client: redis::Client,
    channel: String,
    bus: broadcast::Sender<BusMessage>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            backoff = Duration::from_millis(100);
            let _ = bus.send(BusMessage {
                topic: "bus:reconnected".into(),
                payload: String::new(),
            });
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let raw: String = msg.get_payload()?;
                if let Some((topic, payload)) = raw.split_once('\n') {
                    let _ = bus.send(BusMessage {
                        topic: topic.to_owned(),
                        payload: payload.to_owned(),
                    });
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = attempt => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "redis pub/sub connection lost; reconnecting");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl FastStore for RedisStore {
    async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        match self
            .breaker
            .call(FAST_PATH_TIMEOUT, conn.get::<_, Option<String>>(key))
            .await
        {
            Ok(value) => value,
            Err(CallError::Open) => None,
            Err(err) => {
                tracing::warn!(error = %err, "redis GET failed; falling back to the database");
                None
            }
        }
    }

    /// Off the request path: the answer is already in the database, this only lets a retry
    /// skip it.
    async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let (mut conn, breaker) = (self.conn.clone(), self.breaker.clone());
        let (key, value) = (self.key(key), value.to_owned());
        tokio::spawn(async move {
            let set = conn.set_ex::<_, _, ()>(key, value, ttl.as_secs().max(1));
            match breaker.call(CALL_TIMEOUT, set).await {
                Ok(()) | Err(CallError::Open) => {}
                Err(err) => tracing::warn!(error = %err, "redis SET failed"),
            }
        });
    }

    async fn publish(&self, message: BusMessage) {
        let mut conn = self.conn.clone();
        let raw = format!("{}\n{}", message.topic, message.payload);
        let publish = conn.publish::<_, _, i64>(self.channel(), raw);
        if let Err(err) = self.breaker.call(CALL_TIMEOUT, publish).await {
            if !matches!(err, CallError::Open) {
                tracing::warn!(error = %err, "redis PUBLISH failed; delivering locally only");
            }
            let _ = self.bus.send(message);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.bus.subscribe()
    }

    async fn ping(&self) -> Result<(), String> {
        self.breaker.ping().await
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn redis(&self) -> Option<RedisHandle> {
        Some(RedisHandle {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            breaker: self.breaker.clone(),
        })
    }
}
