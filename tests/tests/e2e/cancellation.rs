//! Clients that hang up at random moments never cut a transaction in half: 1,000 balance-changing
//! requests are each abandoned after a random 0–20 ms, then every key is retried to its answer.
//! Afterwards each key has posted exactly once (or not at all, for a refusal), the ledger
//! invariants hold, and no PostgreSQL connection was ever handed on in the middle of a
//! transaction: PostgreSQL warns "there is already a transaction in progress" when a `BEGIN` runs
//! inside a stranger's transaction and "there is no transaction in progress" when a `ROLLBACK`
//! follows a `COMMIT` the client stopped waiting for. sqlx reports those warnings as `tracing`
//! events (target `sqlx::postgres::notice`); the test runs on a runtime of its own whose threads
//! all report to a collector, so parallel tests cannot blur the count.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Statement};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::helpers::*;

const REQUESTS: usize = 1_000;
const IN_FLIGHT: usize = 16;
const MEMBERS: usize = 10;
const ABORT_AFTER_MICROS: u64 = 20_000;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"cancel test\", idempotencyKey: $k) { transaction { id amount account } } }";
const ACTION: &str = "mutation($o: String!, $k: String!) { recordAction(input: {action: \"product_view\", objectId: $o, idempotencyKey: $k}) { transactions { id amount account } } }";
const DISCOUNT: &str = "mutation($k: String!) { redeemDiscount(points: \"10\", idempotencyKey: $k) { transaction { id amount account } } }";

/// The PostgreSQL warnings that mean a connection changed hands inside a transaction.
const TRANSACTION_STATE_NOTICES: [&str; 2] = [
    "there is already a transaction in progress",
    "there is no transaction in progress",
];

#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::postgres::notice" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

impl Notices {
    fn transaction_state(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| TRANSACTION_STATE_NOTICES.iter().any(|n| m.contains(n)))
            .cloned()
            .collect()
    }
}

/// Runs the scenario on a runtime whose every thread reports `tracing` events to `notices`.
/// (PostgreSQL only: SQLite's worker threads live outside the runtime and send no notices.)
fn run_collecting_notices() -> Notices {
    let notices = Notices::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(notices.clone()).with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new("warn")),
        ),
    );
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .on_thread_start(move || {
            // The guard would restore the previous default when dropped: these threads keep
            // this one for as long as they live.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        runtime.block_on(async move {
            let app = spawn_app(Backend::Postgres).await;
            abandoned_requests(&app).await;
        })
    });
    notices
}

#[test]
fn postgres() {
    let notices = run_collecting_notices();
    let seen = notices.transaction_state();
    assert!(
        seen.is_empty(),
        "{} transaction-state warnings from PostgreSQL, e.g. {:?}",
        seen.len(),
        seen.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    abandoned_requests(&spawn_app(Backend::Sqlite).await).await;
}

#[derive(Clone, Debug)]
enum Op {
    Adjust { member: String, amount: Decimal },
    Action { token: String, object: String },
    Discount { token: String },
}

struct Request {
    key: String,
    member: String,
    op: Op,
}

impl Request {
    async fn send(&self, app: &TestApp, admin: &str) -> Gql {
        match &self.op {
            Op::Adjust { member, amount } => {
                app.gql(
                    Some(admin),
                    ADJUST,
                    j!({"m": member, "a": amount.to_string(), "k": self.key}),
                )
                .await
            }
            Op::Action { token, object } => {
                app.gql(Some(token), ACTION, j!({"o": object, "k": self.key}))
                    .await
            }
            Op::Discount { token } => app.gql(Some(token), DISCOUNT, j!({"k": self.key})).await,
        }
    }

    /// The POINTS postings (id, amount) of a final answer; none for a refusal.
    fn postings(&self, answer: &Gql) -> Vec<(i64, Decimal)> {
        if answer.body.get("errors").is_some() {
            let code = answer.code();
            assert!(
                ["INSUFFICIENT_POINTS", "LIMIT_REACHED"].contains(&code.as_str()),
                "{:?} answered {}",
                self.op,
                answer.body
            );
            return Vec::new();
        }
        let data = answer.data();
        let transactions = match &self.op {
            Op::Adjust { .. } => vec![data["adjustPoints"]["transaction"].clone()],
            Op::Action { .. } => data["recordAction"]["transactions"]
                .as_array()
                .unwrap()
                .clone(),
            Op::Discount { .. } => vec![data["redeemDiscount"]["transaction"].clone()],
        };
        transactions
            .iter()
            .filter(|t| t["account"] == "POINTS")
            .map(|t| {
                (
                    t["id"].as_str().unwrap().parse().unwrap(),
                    t["amount"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

async fn points_rows(app: &TestApp, member: &str, after: i64) -> BTreeSet<i64> {
    let db = app.loyalty.db();
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT id FROM ledger_entries WHERE member_id = {member} AND account = 'POINTS' \
             AND id > {after}"
        ),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<i64>("", "id").unwrap())
    .collect()
}

async fn last_ledger_id(app: &TestApp) -> i64 {
    let db = app.loyalty.db();
    db.query_one(Statement::from_string(
        db.get_database_backend(),
        "SELECT COALESCE(MAX(id), 0) AS n FROM ledger_entries",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

async fn abandoned_requests(app: &TestApp) {
    let seed: u64 = std::env::var("CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("cancellation seed: {seed} (replay with CANCEL_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    app.demo().await;
    let admin = app.admin();
    let mut members = Vec::new();
    for n in 0..MEMBERS {
        let (token, id) = app.register(&format!("cancel-{n}")).await;
        let balance: Decimal = app.balance(&token).await.parse().unwrap();
        members.push((token, id, balance));
    }
    let before = last_ledger_id(app).await;

    let requests: Vec<Request> = (0..REQUESTS)
        .map(|n| {
            let (token, member, _) = members[rng.random_range(0..MEMBERS)].clone();
            let op = match rng.random_range(0..100) {
                0..40 => Op::Adjust {
                    member: member.clone(),
                    amount: Decimal::from(rng.random_range(1..50)),
                },
                40..60 => Op::Adjust {
                    member: member.clone(),
                    amount: -Decimal::from(rng.random_range(1..30)),
                },
                60..85 => Op::Action {
                    token,
                    object: format!("p{n}"),
                },
                _ => Op::Discount { token },
            };
            Request {
                key: format!("cancel-{n}"),
                member,
                op,
            }
        })
        .collect();
    let aborts: Vec<Duration> = (0..REQUESTS)
        .map(|_| Duration::from_micros(rng.random_range(0..ABORT_AFTER_MICROS)))
        .collect();

    // Act: every request is given up after its random moment (the future is dropped).
    let finished = futures::stream::iter(requests.iter().zip(&aborts))
        .map(|(request, abort)| async {
            tokio::time::timeout(*abort, request.send(app, &admin))
                .await
                .is_ok()
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|done| std::future::ready(*done))
        .count()
        .await;
    println!("{finished} of {REQUESTS} requests answered before their client gave up");
    // The hang-ups must have happened inside the server: requests abandoned by their client
    // still ran to their commit (on PostgreSQL typically none is answered within 20 ms).
    assert!(finished < REQUESTS, "no request was abandoned");
    assert!(
        last_ledger_id(app).await > before,
        "no abandoned request reached the server's commit"
    );

    // Every key retried to its answer (a CONFLICT means the first attempt is still running).
    let mut answers = Vec::with_capacity(REQUESTS);
    for request in &requests {
        let mut answer = request.send(app, &admin).await;
        for _ in 0..200 {
            if answer.body.get("errors").is_none() || answer.code() != "CONFLICT" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = request.send(app, &admin).await;
        }
        answers.push(request.postings(&answer));
    }

    // Assert: the ledger holds exactly the postings the answers name, once each.
    let mut expected: HashMap<&str, (BTreeSet<i64>, Decimal)> = HashMap::new();
    for (request, postings) in requests.iter().zip(&answers) {
        let entry = expected.entry(request.member.as_str()).or_default();
        for (id, amount) in postings {
            assert!(entry.0.insert(*id), "posting {id} answered for two keys");
            entry.1 += amount;
        }
    }
    for (token, member, start) in &members {
        let (ids, sum) = expected.remove(member.as_str()).unwrap_or_default();
        assert_eq!(
            points_rows(app, member, before).await,
            ids,
            "member {member}: ledger rows other than the answered postings"
        );
        let balance: Decimal = app.balance(token).await.parse().unwrap();
        assert_eq!(balance, start + sum, "member {member}");
    }
    app.assert_ledger_invariants().await;
}
