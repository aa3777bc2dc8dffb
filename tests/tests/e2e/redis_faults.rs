//! Redis is a hint, never the truth: with it gone, balances stay correct and retries still post
//! once; when it returns, the server uses it again. Uses a private `redis-server` it can stop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn start_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

pub(crate) async fn wait_until(mut ready: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if ready().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 10 s");
}

pub(crate) async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance transaction { id } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balances_stay_correct_while_redis_is_down_and_it_comes_back() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = start_redis(port);
    wait_until(async || redis_answers(&url).await).await;
    let app = spawn_app_with_redis(url.clone()).await;
    app.demo().await;
    let (token, _) = app.register("m1").await;
    let service = app.service();
    let order = |n: u32| j!({"i": {"memberExternalId": "m1", "orderId": format!("o{n}"), "amount": "10.00", "idempotencyKey": format!("k{n}")}});
    let first = app.gql(Some(&service), PURCHASE, order(1)).await;

    redis.kill().unwrap();
    redis.wait().unwrap();
    // Redis is gone: a retry is still answered from the database, new work still posts.
    let retry = app.gql(Some(&service), PURCHASE, order(1)).await;
    assert_eq!(first.data(), retry.data());
    let second = app.gql(Some(&service), PURCHASE, order(2)).await;
    assert_eq!(
        second.data()["recordPurchase"]["balance"],
        "80.00",
        "{:?} {:?}",
        first.body,
        second.body
    );
    let again = app.gql(Some(&service), PURCHASE, order(2)).await;
    assert_eq!(second.data(), again.data());
    assert_eq!(
        app.daily_login(&token, "d1").await.data()["recordAction"]["awarded"],
        true
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    let mut redis = start_redis(port);
    let readyz = format!("{}/readyz", app.url);
    wait_until(async || {
        matches!(app.client.get(&readyz).send().await, Ok(r) if r.status().as_u16() == 200)
    })
    .await;
    let third = app.gql(Some(&service), PURCHASE, order(3)).await;
    assert_eq!(third.data()["recordPurchase"]["balance"], "90.00");
    assert_eq!(app.balance(&token).await, "90.00");
    app.assert_ledger_invariants().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}

const SUBSCRIBE: &str = "subscription { balanceChanged { version balance account } }";

/// Two instances on one Redis: while Redis is down, a socket on B misses A's postings; when it
/// returns, events flow again, the client sees the gap in versions, and re-reading `me` matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_resume_when_redis_returns_and_show_the_gap() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = start_redis(port);
    wait_until(async || redis_answers(&url).await).await;
    let a = spawn_app_with_redis(url.clone()).await;
    let b = spawn_second_with_redis(&a, url.clone()).await;
    a.demo().await;
    let (alice, _) = a.register("alice").await;
    let mut ws = crate::live::Ws::ready(&b, &alice).await;
    ws.subscribe("1", SUBSCRIBE).await;
    let start = ws.next("1").await["balanceChanged"]["version"]
        .as_i64()
        .unwrap();
    a.daily_login(&alice, "d1").await.data();
    let through_redis = ws.next("1").await;
    assert_eq!(through_redis["balanceChanged"]["version"], start + 1);

    redis.kill().unwrap();
    redis.wait().unwrap();
    let service = a.service();
    let order = |n: u32| j!({"i": {"memberExternalId": "alice", "orderId": format!("o{n}"), "amount": "10.00", "idempotencyKey": format!("k{n}")}});
    // Balances stay right without Redis (5% of 10 USD at 10 points per USD = 5 points).
    let down = a.gql(Some(&service), PURCHASE, order(0)).await;
    assert_eq!(down.data()["recordPurchase"]["balance"], "80.00");

    let mut redis = start_redis(port);
    wait_until(async || redis_answers(&url).await).await;
    // Post until B's bus has resubscribed and an event arrives.
    let mut event = None;
    for n in 1..=60 {
        a.gql(Some(&service), PURCHASE, order(n)).await.data();
        if let Some(data) = ws.next_within("1", Duration::from_millis(500)).await {
            event = Some(data["balanceChanged"].clone());
            break;
        }
    }
    let event = event.expect("events flow again once Redis is back");
    let version = event["version"].as_i64().unwrap();
    // The two postings of the purchase made while Redis was down were missed: a gap.
    assert!(
        version > start + 3,
        "version {version} should show a gap after {}",
        start + 1
    );
    // The client's answer to a gap: re-read `me`, which matches the database.
    let me = b
        .gql(Some(&alice), "{ me { version balance } }", j!({}))
        .await;
    assert!(me.data()["me"]["version"].as_i64().unwrap() >= version);
    let purchases = a.gql(Some(&alice), "{ me { balance } }", j!({})).await;
    assert_eq!(
        me.data()["me"]["balance"],
        purchases.data()["me"]["balance"]
    );
    a.assert_ledger_invariants().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}
