//! Live postings: after a transaction commits, its postings go on the bus (Redis pub/sub with
//! `REDIS_URL`, so every instance hears them; in process without it), and each instance hands
//! them to the subscriptions that asked for that member or that program.
//!
//! Events are hints, never the truth: one lost on the way (Redis away, a slow consumer) shows as
//! a gap in the member's `version`, and the client re-reads `me`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ledger::Posting;
use crate::program::Program;
use crate::service::Loyalty;

/// The bus topic of committed postings.
pub(crate) const TOPIC: &str = "postings";
/// The bus topic of committed challenge progress.
pub(crate) const CHALLENGE_TOPIC: &str = "challenges";

/// How many events one slow subscription may fall behind before it skips (and sees a gap).
const PER_KEY_BUFFER: usize = 256;

/// One committed posting of a program's member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingEvent {
    pub program_id: i64,
    pub posting: Posting,
}

/// A committed event moved one of a member's challenges (a hint: the client re-reads
/// `me { challenges }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeEvent {
    pub program_id: i64,
    pub member_id: i64,
    pub challenge_id: i64,
    pub window_key: String,
    /// The goals (positions) it moved.
    pub goals: Vec<usize>,
    /// It completed the challenge (the reward was paid in the same transaction).
    pub completed: bool,
}

type Senders<T> = Mutex<HashMap<i64, broadcast::Sender<Arc<T>>>>;

/// Routes events to subscribers by member and by program, so an event wakes only the
/// subscriptions that want it (10,000 sockets on one instance must not all wake per posting).
#[derive(Default)]
pub struct EventHub {
    members: Senders<PostingEvent>,
    programs: Senders<PostingEvent>,
    challenges: Senders<ChallengeEvent>,
}

/// A subscription's receiving end.
pub type EventReceiver = broadcast::Receiver<Arc<PostingEvent>>;

impl EventHub {
    /// Events of one member.
    pub fn member(&self, member_id: i64) -> EventReceiver {
        subscribe(&self.members, member_id)
    }

    /// Events of every member of one program.
    pub fn program(&self, program_id: i64) -> EventReceiver {
        subscribe(&self.programs, program_id)
    }

    /// Challenge progress of one member.
    pub fn member_challenges(&self, member_id: i64) -> broadcast::Receiver<Arc<ChallengeEvent>> {
        subscribe(&self.challenges, member_id)
    }

    pub(crate) fn dispatch_challenges(&self, events: Vec<ChallengeEvent>) {
        for event in events {
            let member = event.member_id;
            deliver(&self.challenges, member, &Arc::new(event));
        }
    }

    /// Delivers events to whoever listens on this instance.
    pub(crate) fn dispatch(&self, events: Vec<PostingEvent>) {
        for event in events {
            let event = Arc::new(event);
            deliver(&self.members, event.posting.member_id, &event);
            deliver(&self.programs, event.program_id, &event);
        }
    }

    /// Open subscriptions (for metrics and tests).
    pub fn listeners(&self) -> usize {
        fn count<T>(map: &Senders<T>) -> usize {
            map.lock()
                .map(|m| m.values().map(broadcast::Sender::receiver_count).sum())
                .unwrap_or(0)
        }
        count(&self.members) + count(&self.programs) + count(&self.challenges)
    }
}

fn subscribe<T>(map: &Senders<T>, key: i64) -> broadcast::Receiver<Arc<T>> {
    let mut map = match map.lock() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key)
        .or_insert_with(|| broadcast::channel(PER_KEY_BUFFER).0)
        .subscribe()
}

fn deliver<T>(map: &Senders<T>, key: i64, event: &Arc<T>) {
    let mut map = match map.lock() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(sender) = map.get(&key) {
        if sender.send(event.clone()).is_err() {
            // Every receiver is gone: forget the key so the map does not grow for ever.
            map.remove(&key);
        }
    }
}

/// Postings waiting for the bus; beyond this (Redis slow or away) new ones are dropped for
/// other instances (their clients see a gap) but are still delivered on this one.
const OUTBOX: usize = 10_000;

/// Hands committed postings to the bus in commit order, off the request path: a slow or absent
/// Redis never delays an answer.
pub(crate) struct Publisher {
    instance: u64,
    queue: tokio::sync::mpsc::Sender<(&'static str, String)>,
}

impl Publisher {
    /// Starts the publishing task of an instance.
    pub(crate) fn start(
        store: std::sync::Arc<dyn crate::store::FastStore>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Publisher {
        let (queue, mut pending) = tokio::sync::mpsc::channel::<(&'static str, String)>(OUTBOX);
        tokio::spawn(async move {
            loop {
                let payload = tokio::select! {
                    () = shutdown.cancelled() => return,
                    payload = pending.recv() => payload,
                };
                let Some((topic, payload)) = payload else {
                    return;
                };
                store
                    .publish(crate::store::BusMessage {
                        topic: topic.to_owned(),
                        payload,
                    })
                    .await;
            }
        });
        Publisher {
            instance: rand::random(),
            queue,
        }
    }
}

impl Loyalty {
    /// Delivers a committed transaction's postings to this instance's subscribers at once, and
    /// queues them for every other instance.
    pub(crate) fn publish_postings(&self, program: &Program, posted: &[Posting]) {
        let events: Vec<PostingEvent> = posted
            .iter()
            .map(|posting| PostingEvent {
                program_id: program.id,
                posting: posting.clone(),
            })
            .collect();
        let publisher = self.publisher();
        match serde_json::to_string(&events) {
            Ok(json) => {
                let payload = format!("{}\n{json}", publisher.instance);
                if publisher.queue.try_send((TOPIC, payload)).is_err() {
                    metrics::counter!("loyalty_events_dropped_total").increment(1);
                    tracing::warn!("posting events queue full; other instances will see a gap");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not encode posting events"),
        }
        self.events().dispatch(events);
    }

    /// Delivers committed challenge progress (the notes `challenges::advance` left on the
    /// transaction) here at once, and queues it for every other instance.
    pub(crate) fn publish_challenge_notes(&self, notes: &[crate::ledger::Note]) {
        let events: Vec<ChallengeEvent> = crate::ledger::notes_of::<ChallengeEvent>(notes)
            .cloned()
            .collect();
        if events.is_empty() {
            return;
        }
        let publisher = self.publisher();
        match serde_json::to_string(&events) {
            Ok(json) => {
                let payload = format!("{}\n{json}", publisher.instance);
                if publisher
                    .queue
                    .try_send((CHALLENGE_TOPIC, payload))
                    .is_err()
                {
                    metrics::counter!("loyalty_events_dropped_total").increment(1);
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not encode challenge events"),
        }
        self.events().dispatch_challenges(events);
    }

    /// Called by the bus listener for every `challenges` message from another instance.
    pub(crate) fn on_challenges(&self, payload: &str) {
        let Some((origin, json)) = payload.split_once('\n') else {
            return;
        };
        if origin.parse::<u64>().ok() == Some(self.publisher().instance) {
            return;
        }
        match serde_json::from_str::<Vec<ChallengeEvent>>(json) {
            Ok(events) => self.events().dispatch_challenges(events),
            Err(err) => tracing::warn!(error = %err, "undecodable challenge events on the bus"),
        }
    }

    /// Called by the bus listener for every `postings` message; this instance's own were
    /// delivered when they committed.
    pub(crate) fn on_postings(&self, payload: &str) {
        let Some((origin, json)) = payload.split_once('\n') else {
            return;
        };
        if origin.parse::<u64>().ok() == Some(self.publisher().instance) {
            return;
        }
        match serde_json::from_str::<Vec<PostingEvent>>(json) {
            Ok(events) => self.events().dispatch(events),
            Err(err) => tracing::warn!(error = %err, "undecodable posting events on the bus"),
        }
    }
}
