//! A randomized, seeded "bank" run (Jepsen style): workers earn and spend on a few members,
//! repeat requests with the same idempotency key, while another task keeps killing the server's
//! database connections. Every acknowledged operation must appear exactly once, every refusal
//! not at all, and the ledger invariants must hold. `BANK_SEED=n` replays a run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::*;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $r: String!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: $r, idempotencyKey: $k) { transaction { id } } }";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The transaction id the client was given.
    Posted(String),
    /// The refusal code.
    Refused(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_run_with_connections_killed() {
    let seed: u64 = std::env::var("BANK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("bank run seed: {seed} (replay with BANK_SEED={seed})");
    let app = Arc::new(spawn_app(Backend::Postgres).await);
    app.demo().await;
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(app.register(&format!("bank-{n}")).await.1);
    }
    let database: String = app
        .loyalty
        .db()
        .query_one(Statement::from_string(
            app.loyalty.db().get_database_backend(),
            "SELECT current_database() AS d",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "d")
        .unwrap();

    let killing = Arc::new(AtomicBool::new(true));
    let killer = tokio::spawn({
        let killing = killing.clone();
        async move {
            let admin = Database::connect(
                std::env::var("TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            )
            .await
            .unwrap();
            let mut kills = 0u32;
            while killing.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let killed = admin
                    .query_all(Statement::from_string(
                        admin.get_database_backend(),
                        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"),
                    ))
                    .await
                    .map(|rows| rows.len())
                    .unwrap_or_default();
                kills += u32::try_from(killed).unwrap_or_default();
            }
            kills
        }
    });

    let workers: Vec<_> = (0..6u64)
        .map(|w| {
            let app = app.clone();
            let members = members.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w * 0x9E37_79B9));
                let admin = app.admin();
                let mut answers = Vec::new();
                for op in 0..30 {
                    let member = members[rng.random_range(0..members.len())].clone();
                    let cents: i64 = rng.random_range(1..5_000);
                    let amount =
                        Decimal::new(if rng.random_bool(0.45) { -cents } else { cents }, 2);
                    let id = format!("w{w}-op{op}");
                    let vars = j!({"m": member, "a": amount.to_string(), "r": id, "k": id});
                    // Retry until an answer that is not a transport or internal failure; some
                    // operations are also repeated on purpose after they were answered.
                    let mut answer = None;
                    let repeats = if rng.random_bool(0.3) { 2 } else { 1 };
                    for _ in 0..repeats {
                        // A liveness bound, not a correctness one: with every connection
                        // killed each 40 ms, a loaded 2-core machine may need many tries, so
                        // they back off (up to 100 ms) rather than give up after a second.
                        for attempt in 0..300u64 {
                            let r = app.gql(Some(&admin), ADJUST, vars.clone()).await;
                            let code = r.body["errors"][0]["extensions"]["code"]
                                .as_str()
                                .map(str::to_owned);
                            let current = match code.as_deref() {
                                None if r.status == 200 => Answer::Posted(
                                    r.body["data"]["adjustPoints"]["transaction"]["id"]
                                        .as_str()
                                        .unwrap()
                                        .to_owned(),
                                ),
                                Some(code @ "INSUFFICIENT_POINTS") => {
                                    Answer::Refused(code.to_owned())
                                }
                                _ => {
                                    let pause = (10 * (attempt + 1)).min(100);
                                    tokio::time::sleep(Duration::from_millis(pause)).await;
                                    continue;
                                }
                            };
                            if let Some(previous) = &answer {
                                assert_eq!(
                                    previous, &current,
                                    "{id}: a repeat must get the first answer"
                                );
                            }
                            answer = Some(current);
                            break;
                        }
                    }
                    answers.push((
                        id,
                        member,
                        amount,
                        answer.expect("an answer within 300 attempts"),
                    ));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    killing.store(false, Ordering::SeqCst);
    let kills = killer.await.unwrap();
    println!("connections killed: {kills}");

    let db = app.loyalty.db();
    let mut expected: HashMap<String, Decimal> = members
        .iter()
        .map(|m| (m.clone(), Decimal::new(7000, 2)))
        .collect();
    for (id, member, amount, answer) in &answers {
        let posted: Vec<String> = db
            .query_all(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT id FROM ledger_entries WHERE note = $1",
                [id.clone().into()],
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<i64>("", "id").unwrap().to_string())
            .collect();
        match answer {
            Answer::Posted(transaction) => {
                assert_eq!(
                    posted,
                    std::slice::from_ref(transaction),
                    "{id} was acknowledged and must be posted exactly once, as told"
                );
                *expected.get_mut(member).unwrap() += amount;
            }
            Answer::Refused(code) => {
                assert!(
                    posted.is_empty(),
                    "{id} was refused ({code}) and must post nothing"
                )
            }
        }
    }
    for (member, balance) in expected {
        let view = app
            .loyalty
            .member(
                &app.loyalty.program("demo").await.unwrap(),
                member.parse().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            view.balance.decimal(),
            balance,
            "member {member} (seed {seed})"
        );
        assert!(balance >= Decimal::ZERO);
    }
    app.assert_ledger_invariants().await;
}
