//! Issue 13: with Redis stopped, or worse hanging (its open connections stop answering, or what
//! listens on its port accepts connections and never answers), a posting never waits for it: the
//! first failure opens the store's circuit breaker and from then on every Redis call is answered
//! at once without being sent; the leaderboard update is not on the request path at all. When
//! Redis returns, the boards catch up by themselves. Uses a private `redis-server` it can stop
//! or freeze (SIGSTOP), and a private listener on the same port that never answers.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::leaderboard::{buy, ranking};
use crate::redis_faults::{free_port, redis_answers, start_redis, wait_until};

const BOARD: &str = "{ leaderboard(period: ALL_TIME, first: 10) { entries { points member { id } } me { rank points } } }";
/// Postings timed while the breaker is open.
const POSTINGS: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// The process is gone: connections are refused.
    Stopped,
    /// The process is frozen (SIGSTOP): the open connections stay up and nothing answers, so
    /// every call runs into its timeout until the breaker opens. Back with SIGCONT, its data kept.
    Frozen,
    /// The process is gone and something else holds the port, accepts and never answers: every
    /// reconnection runs into its timeout.
    Hanging,
}

/// The private `redis-server`, killed when the test ends, even by a failed assertion (a frozen
/// one would otherwise stay behind).
struct Private(std::process::Child);

impl Private {
    fn start(port: u16) -> Private {
        Private(start_redis(port))
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(redis: &Private, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &redis.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Accepts connections on `port` and never answers; aborting the task closes them all.
async fn hang_on(port: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    })
}

async fn postings_never_wait_for_redis_and_boards_catch_up(outage: Outage) {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = Private::start(port);
    wait_until(async || redis_answers(&url).await).await;
    let app = spawn_app_with_redis(url.clone()).await;
    let program = app.demo().await;
    let (t1, m1) = app.register("m1").await; // 70
    let (_, m2) = app.register("m2").await; // 70
    assert_eq!(buy(&app, "m1", "o0", "10.00").await["balance"], "75.00");
    let breaker = app.loyalty.store().redis().unwrap().breaker;
    assert!(!breaker.is_open());

    let mut hanging = None;
    if outage == Outage::Frozen {
        signal(&redis, "-STOP");
    } else {
        redis.stop();
        if outage == Outage::Hanging {
            hanging = Some(hang_on(port).await);
        }
    }
    // The first posting after the outage meets it: a dropped or refused connection opens the
    // breaker at once; a frozen Redis opens it when a call runs out of its 500 ms (the
    // leaderboard update and the bus, off the request path), the request itself waiting at most
    // the fast path's 50 ms hint budget.
    let started = Instant::now();
    assert_eq!(buy(&app, "m2", "o1", "10.00").await["balance"], "75.00");
    let first = started.elapsed();
    if outage == Outage::Frozen {
        // Awaiting the leaderboard update (the bug) costs this posting the whole 500 ms
        // response timeout; without it the posting takes its usual tens of milliseconds plus at
        // most 50 ms for the fast path, so a ceiling of 500 ms cannot be met by the bug and
        // leaves several times the expected figure on a loaded machine.
        assert!(
            first < Duration::from_millis(500),
            "the first posting on a frozen Redis took {first:?}"
        );
    }
    wait_until(async || breaker.is_open()).await;

    let before = breaker.stats();
    let started = Instant::now();
    for n in 2..2 + POSTINGS {
        let (sub, amount) = if n % 2 == 0 {
            ("m1", "10.00")
        } else {
            ("m2", "30.00")
        };
        buy(&app, sub, &format!("o{n}"), amount).await;
    }
    let elapsed = started.elapsed();
    let after = breaker.stats();
    // The structural proof: while the postings ran, not one Redis call was sent (so none could
    // wait), and each posting's request-path call (the idempotency fast path) was answered by
    // the open breaker instead.
    assert!(after.open, "{after:?}");
    assert_eq!(after.opened, before.opened, "{before:?} → {after:?}");
    assert_eq!(
        after.sent, before.sent,
        "calls reached Redis while its breaker was open: {before:?} → {after:?}"
    );
    assert!(
        after.skipped >= before.skipped + u64::from(POSTINGS),
        "{before:?} → {after:?}"
    );
    // The same on /metrics (process-wide: other tests' servers add to the counters, never
    // take away).
    assert!(app.metric("loyalty_redis_breaker_open").await >= 1.0);
    assert!(app.metric("loyalty_redis_calls_skipped_total").await >= after.skipped as f64);
    // And in time, as the issue states it. Waiting for Redis costs a posting its 500 ms
    // response timeout, so the 10 postings would take at least 5 s; here they may take 4 s,
    // 400 ms each, many times what a posting costs even on a busy two-core machine. The
    // assertions above are the exact ones; this one only fails if a wait came back some other
    // way.
    assert!(
        elapsed < Duration::from_millis(4_000),
        "{POSTINGS} postings took {elapsed:?} with Redis {outage:?}"
    );

    // Balances and boards answer from the database meanwhile: m1 75 + 5 × 5, m2 75 + 5 × 15.
    assert_eq!(app.balance(&t1).await, "100.00");
    let t1_id = m1.clone();
    let expected = vec![(m2.clone(), "150.00".to_owned()), (m1, "100.00".to_owned())];
    let down = app.gql(Some(&t1), BOARD, j!({})).await;
    assert_eq!(ranking(&down.data()["leaderboard"]), expected);
    assert_eq!(
        down.data()["leaderboard"]["me"],
        j!({"rank": 2, "points": "100.00"})
    );

    // Redis returns (empty, or thawed with the boards it had). Nobody reads, nobody posts,
    // nobody asks /readyz: the breaker's probe finds it and the boards this instance could not
    // update are rebuilt by themselves.
    if let Some(hanging) = hanging {
        hanging.abort();
        let _ = hanging.await;
    }
    if outage == Outage::Frozen {
        signal(&redis, "-CONT");
    } else {
        redis = Private::start(port);
    }
    wait_until(async || redis_answers(&url).await).await;
    let key = format!(
        "{}lb:{}:ALL_TIME",
        app.redis_namespace().unwrap(),
        program.id
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let field = |id: &str| format!("{:019}", id.parse::<i64>().unwrap());
    let caught_up = vec![(field(&m2), -15_000.0), (field(&t1_id), -10_000.0)];
    wait_until(async || {
        let stored: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        stored == caught_up
    })
    .await;
    assert!(!breaker.is_open());
    let up = app.gql(Some(&t1), BOARD, j!({})).await;
    assert_eq!(ranking(&up.data()["leaderboard"]), expected);
    // Postings move the boards in Redis again.
    assert_eq!(
        buy(&app, "m1", "o-back", "100.00").await["balance"],
        "150.00"
    );
    let up = app.gql(Some(&t1), BOARD, j!({})).await;
    assert_eq!(
        up.data()["leaderboard"]["me"],
        j!({"rank": 1, "points": "150.00"})
    );
    let stored: Option<f64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg(field(&t1_id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, Some(-15_000.0));
    app.assert_ledger_invariants().await;
    redis.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_postings_do_not_wait_and_boards_catch_up() {
    postings_never_wait_for_redis_and_boards_catch_up(Outage::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_frozen_postings_do_not_wait_and_boards_catch_up() {
    postings_never_wait_for_redis_and_boards_catch_up(Outage::Frozen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_hanging_postings_do_not_wait_and_boards_catch_up() {
    postings_never_wait_for_redis_and_boards_catch_up(Outage::Hanging).await;
}
