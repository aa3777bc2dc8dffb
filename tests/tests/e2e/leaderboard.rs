//! Leaderboards: points earned per period in the program's timezone, deterministic ties, the
//! caller's place, rebuilds that give the same ranking, and Redis faults.

use std::sync::Arc;

use loyalty_domain::program::Program;
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;
use crate::redis_faults::{free_port, redis_answers, start_redis, wait_until};

const BOARD: &str = "query($p: LeaderboardPeriod!, $f: Int!) { leaderboard(period: $p, first: $f) { period bucketStart entries { rank points member { id displayName } } me { rank points } around { rank points member { id } } } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal!, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { pointsReversed balance } }";
const TZ: &str = "Asia/Ho_Chi_Minh";

async fn board(app: &TestApp, token: &str, period: &str, first: i64) -> Value {
    let r = app
        .gql(Some(token), BOARD, j!({"p": period, "f": first}))
        .await;
    r.data()["leaderboard"].clone()
}

/// (member id, points) of the entries, in order.
pub(crate) fn ranking(board: &Value) -> Vec<(String, String)> {
    board["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["member"]["id"].as_str().unwrap().to_owned(),
                e["points"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn ids(ranked: &[(String, String)]) -> Vec<&str> {
    ranked.iter().map(|(id, _)| id.as_str()).collect()
}

/// A purchase of `amount` by member `sub`: the demo pays 5% × 10 = amount ÷ 2 points.
pub(crate) async fn buy(app: &TestApp, sub: &str, order: &str, amount: &str) -> Value {
    let r = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": sub, "orderId": order, "amount": amount, "idempotencyKey": order}}),
        )
        .await;
    r.data()["recordPurchase"].clone()
}

async fn refund(app: &TestApp, order: &str, amount: &str) -> Value {
    let r = app
        .gql(
            Some(&app.service()),
            REFUND,
            j!({"o": order, "a": amount, "k": format!("refund-{order}-{amount}")}),
        )
        .await;
    r.data()["refundPurchase"].clone()
}

/// Every period's board as the admin sees it.
async fn all_boards(app: &TestApp) -> Vec<Value> {
    let admin = app.admin();
    let mut boards = Vec::new();
    for period in ["DAY", "WEEK", "MONTH", "ALL_TIME"] {
        boards.push(board(app, &admin, period, 100).await);
    }
    boards
}

e2e!(
    ranks_members_with_deterministic_ties_me_and_around,
    |app: TestApp| async move {
        app.demo().await;
        // Registration pays 70 to everyone: six members tied.
        let mut members = Vec::new();
        for n in 1..=6 {
            members.push(app.register(&format!("m{n}")).await);
        }
        let id = |n: usize| members[n - 1].1.clone();
        buy(&app, "m3", "o3", "100.00").await; // +50 → 120
        buy(&app, "m5", "o5", "40.00").await; // +20 → 90
                                              // Spending and admin adjustments are not "earned".
        let adjust = "mutation($m: ID!) { adjustPoints(memberId: $m, amount: \"1000\", reason: \"gift\", idempotencyKey: \"adj\") { balance } }";
        app.gql(Some(&app.admin()), adjust, j!({"m": id(6)}))
            .await
            .data();
        let spend =
            "mutation { redeemDiscount(points: \"60\", idempotencyKey: \"d1\") { balance } }";
        let spent = app.gql(Some(&members[0].0), spend, j!({})).await;
        assert!(spent.body.get("errors").is_none(), "{}", spent.body);

        let me4 = board(&app, &members[3].0, "ALL_TIME", 10).await;
        let expected = vec![
            (id(3), "120.00".to_owned()),
            (id(5), "90.00".to_owned()),
            (id(1), "70.00".to_owned()),
            (id(2), "70.00".to_owned()),
            (id(4), "70.00".to_owned()),
            (id(6), "70.00".to_owned()),
        ];
        assert_eq!(ranking(&me4), expected);
        let ranks: Vec<i64> = me4["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["rank"].as_i64().unwrap())
            .collect();
        assert_eq!(ranks, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(me4["entries"][0]["member"]["displayName"], "Test");
        assert_eq!(me4["period"], "ALL_TIME");
        assert_eq!(me4["bucketStart"], Value::Null);
        assert_eq!(me4["me"], j!({"rank": 5, "points": "70.00"}));
        let around: Vec<(i64, &str)> = me4["around"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["rank"].as_i64().unwrap(),
                    e["member"]["id"].as_str().unwrap(),
                )
            })
            .collect();
        let (i1, i2, i4, i6) = (id(1), id(2), id(4), id(6));
        assert_eq!(
            around,
            vec![
                (3, i1.as_str()),
                (4, i2.as_str()),
                (5, i4.as_str()),
                (6, i6.as_str())
            ]
        );
        // `first` cuts the list; the leader sees themself at the top.
        let top = board(&app, &members[2].0, "ALL_TIME", 2).await;
        assert_eq!(ids(&ranking(&top)), vec![id(3), id(5)]);
        assert_eq!(top["me"], j!({"rank": 1, "points": "120.00"}));
        assert_eq!(top["around"].as_array().unwrap().len(), 3);
        // A token whose member never joined: no rank, nothing around. Admins: no `me`.
        let ghost = board(&app, &app.member("ghost"), "ALL_TIME", 10).await;
        assert_eq!(ghost["me"], j!({"rank": null, "points": "0.00"}));
        assert_eq!(ghost["around"], j!([]));
        let admin = board(&app, &app.admin(), "ALL_TIME", 10).await;
        assert_eq!(admin["me"], Value::Null);
        assert_eq!(ranking(&admin), expected);

        // `first` out of 1..=100 and a service token are refused.
        for first in [0, 101, -1] {
            let r = app
                .gql(Some(&members[0].0), BOARD, j!({"p": "DAY", "f": first}))
                .await;
            assert_eq!(r.code(), "VALIDATION", "first = {first}");
        }
        let r = app
            .gql(Some(&app.service()), BOARD, j!({"p": "DAY", "f": 10}))
            .await;
        assert_eq!(r.code(), "FORBIDDEN");
        // Defaults: ALL_TIME, 10 entries.
        let r = app
            .gql(
                Some(&members[0].0),
                "{ leaderboard { period entries { rank } } }",
                j!({}),
            )
            .await;
        assert_eq!(r.data()["leaderboard"]["period"], "ALL_TIME");
        assert_eq!(
            r.data()["leaderboard"]["entries"].as_array().unwrap().len(),
            6
        );

        // A member of another program, with more points than anyone here, never appears.
        app.loyalty
            .create_program(loyalty_domain::program::NewProgram {
                external_id: "other".into(),
                name: "Other".into(),
                timezone: "UTC".into(),
                currency: "EUR".into(),
                points_per_currency: rust_decimal::Decimal::ONE,
                validity_days: None,
            })
            .await
            .unwrap();
        let other_admin = app.token("other", "admin", "boss");
        let rule = j!({"i": {"name": "Quiz", "action": "quiz_done", "rewardKind": "FIXED", "points": "500"}});
        app.gql(
            Some(&other_admin),
            "mutation($i: RuleInput!) { createRule(input: $i) { id } }",
            rule,
        )
        .await
        .data();
        app.gql(
            Some(&other_admin),
            "mutation { publishRules { version } }",
            j!({}),
        )
        .await
        .data();
        let stranger = app.token("other", "member", "s1");
        app.gql(Some(&stranger), "mutation { register { created } }", j!({}))
            .await
            .data();
        let act = "mutation { recordAction(input: {action: \"quiz_done\", idempotencyKey: \"q\"}) { points } }";
        assert_eq!(
            app.gql(Some(&stranger), act, j!({})).await.data()["recordAction"]["points"],
            "500.00"
        );
        assert_eq!(
            ranking(&board(&app, &app.admin(), "ALL_TIME", 100).await),
            expected
        );
        let theirs = board(&app, &stranger, "ALL_TIME", 100).await;
        assert_eq!(ranking(&theirs).len(), 1);
        assert_eq!(theirs["me"], j!({"rank": 1, "points": "500.00"}));
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    periods_roll_over_at_the_program_midnight,
    |app: TestApp| async move {
        // Sunday 2026-05-31 23:59 in Ho Chi Minh City: the last minute of a day, an ISO week
        // and a month at once.
        app.clock.set(local(TZ, "2026-05-31 23:59:00"));
        app.demo().await;
        let (t1, m1) = app.register("m1").await; // 70 at 23:59
        let (t2, m2) = app.register("m2").await; // 70 at 23:59
        buy(&app, "m2", "late", "20.00").await; // +10 at 23:59 → 80
        let day = board(&app, &t1, "DAY", 10).await;
        assert_eq!(
            ranking(&day),
            vec![(m2.clone(), "80.00".into()), (m1.clone(), "70.00".into())]
        );
        assert_eq!(day["bucketStart"], "2026-05-30T17:00:00+00:00");
        assert_eq!(day["me"], j!({"rank": 2, "points": "70.00"}));

        app.clock.advance(chrono::Duration::seconds(120)); // 00:01 Monday 2026-06-01
        buy(&app, "m1", "early", "10.00").await; // +5 at 00:01
        for period in ["DAY", "WEEK", "MONTH"] {
            let b = board(&app, &t2, period, 10).await;
            assert_eq!(ranking(&b), vec![(m1.clone(), "5.00".into())], "{period}");
            assert_eq!(b["me"], j!({"rank": null, "points": "0.00"}), "{period}");
            assert_eq!(b["around"], j!([]), "{period}");
        }
        let day = board(&app, &t1, "DAY", 10).await;
        assert_eq!(day["bucketStart"], "2026-05-31T17:00:00+00:00");
        let week = board(&app, &t1, "WEEK", 10).await;
        assert_eq!(week["bucketStart"], "2026-05-31T17:00:00+00:00");
        let all = board(&app, &t1, "ALL_TIME", 10).await;
        assert_eq!(
            ranking(&all),
            vec![(m2.clone(), "80.00".into()), (m1.clone(), "75.00".into())]
        );

        // A refund after midnight reverses yesterday's earn: ALL_TIME drops, today's boards
        // do not go negative. A same-day refund nets out of today's boards.
        assert_eq!(
            refund(&app, "late", "20.00").await["pointsReversed"],
            "10.00"
        );
        assert_eq!(
            refund(&app, "early", "5.00").await["pointsReversed"],
            "2.50"
        );
        let all = board(&app, &t1, "ALL_TIME", 10).await;
        assert_eq!(
            ranking(&all),
            vec![(m1.clone(), "72.50".into()), (m2.clone(), "70.00".into())]
        );
        for period in ["DAY", "WEEK", "MONTH"] {
            let b = board(&app, &t1, period, 10).await;
            assert_eq!(ranking(&b), vec![(m1.clone(), "2.50".into())], "{period}");
        }

        // A week later (same month): a new DAY and WEEK, the MONTH keeps June's points.
        app.clock.set(local(TZ, "2026-06-08 09:00:00"));
        buy(&app, "m2", "next-week", "2.00").await; // +1
        assert_eq!(
            ranking(&board(&app, &t1, "WEEK", 10).await),
            vec![(m2.clone(), "1.00".into())]
        );
        assert_eq!(
            ranking(&board(&app, &t1, "MONTH", 10).await),
            vec![(m1.clone(), "2.50".into()), (m2.clone(), "1.00".into())]
        );
        // The stores agree with a rebuild from the ledger.
        let before = all_boards(&app).await;
        let program = app.loyalty.program("demo").await.unwrap();
        app.loyalty.clear_leaderboards(&program).await.unwrap();
        assert_eq!(all_boards(&app).await, before);
        app.assert_ledger_invariants().await;
    }
);

const POPULATED_AT: &str = "2026-11-24 08:00:00";

/// Members with a mix of ties, earns today and earlier, and a reversal; returns their ids.
async fn populate(app: &TestApp) -> (Arc<Program>, Vec<String>) {
    app.clock.set(local(TZ, "2026-11-23 10:00:00"));
    let program = app.demo().await;
    let mut ids = Vec::new();
    for n in 1..=8 {
        ids.push(app.register(&format!("m{n}")).await.1);
    }
    buy(app, "m2", "a", "30.00").await;
    buy(app, "m7", "b", "30.00").await;
    buy(app, "m4", "c", "64.00").await;
    app.clock.set(local(TZ, POPULATED_AT));
    buy(app, "m5", "d", "8.00").await;
    buy(app, "m2", "e", "2.00").await;
    refund(app, "c", "32.00").await; // reverses 16 of m4's 32, earned yesterday
    (program, ids)
}

fn pairs(ids: &[String], expected: &[(usize, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, points)| (ids[n - 1].clone(), (*points).to_owned()))
        .collect()
}

e2e!(
    rebuild_after_a_flush_gives_the_same_ranking,
    |app: TestApp| async move {
        let (program, ids) = populate(&app).await;
        let before = all_boards(&app).await;
        assert_eq!(
            ranking(&before[0]),
            pairs(&ids, &[(5, "4.00"), (2, "1.00")])
        );
        let week = pairs(
            &ids,
            &[
                (2, "86.00"),
                (4, "86.00"),
                (7, "85.00"),
                (5, "74.00"),
                (1, "70.00"),
                (3, "70.00"),
                (6, "70.00"),
                (8, "70.00"),
            ],
        );
        for b in &before[1..] {
            assert_eq!(ranking(b), week);
        }
        // Redis flushed (the test's keys), or the in-process boards dropped: the next read
        // rebuilds from the ledger.
        app.flush_redis().await;
        app.loyalty.clear_leaderboards(&program).await.unwrap();
        assert_eq!(all_boards(&app).await, before);

        // Flushed, then a posting before anyone reads: it lands exactly once.
        app.loyalty.clear_leaderboards(&program).await.unwrap();
        buy(&app, "m8", "f", "20.00").await; // +10 today
        let after = all_boards(&app).await;
        assert_eq!(
            ranking(&after[0]),
            pairs(&ids, &[(8, "10.00"), (5, "4.00"), (2, "1.00")])
        );
        assert_eq!(ranking(&after[3])[3], pairs(&ids, &[(8, "80.00")])[0]);

        // Two rebuilds at once (as two instances starting together) agree, and change nothing.
        let (a, b) = tokio::join!(
            app.loyalty.rebuild_leaderboards(&program),
            app.loyalty.rebuild_leaderboards(&program)
        );
        assert_eq!(a.unwrap(), 8);
        assert_eq!(b.unwrap(), 8);
        assert_eq!(all_boards(&app).await, after);

        // The operator's command.
        let rebuilt = loyalty_server::cli::rebuild_leaderboards(app.config(), Some("demo"))
            .await
            .unwrap();
        assert_eq!(rebuilt, vec![("demo".to_owned(), 8)]);
        assert!(
            loyalty_server::cli::rebuild_leaderboards(app.config(), Some("nope"))
                .await
                .is_err()
        );
        assert_eq!(all_boards(&app).await, after);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_rebuilding_at_once_after_flushdb_agree() {
    let a = spawn_app(Backend::Postgres).await;
    populate(&a).await;
    let before = all_boards(&a).await;
    let b = spawn_app_at(Backend::Postgres, Some(&a), Some(local(TZ, POPULATED_AT))).await;
    a.flush_redis().await;
    // Both instances find the boards missing and rebuild them at the same moment.
    let (from_a, from_b) = tokio::join!(all_boards(&a), all_boards(&b));
    assert_eq!(from_a, before);
    assert_eq!(from_b, before);
    // A posting on B shows on A, once B's update task has applied it (B answered right after
    // the commit; its own reads would wait for that by themselves).
    buy(&b, "m1", "g", "200.00").await;
    assert!(
        b.loyalty
            .settle_leaderboard_updates(std::time::Duration::from_secs(10))
            .await
    );
    let top = &all_boards(&a).await[3]["entries"][0];
    assert_eq!(top["points"], "170.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_reads_the_database_and_boards_are_right_when_it_returns() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis = start_redis(port);
    wait_until(async || redis_answers(&url).await).await;
    let app = spawn_app_with_redis(url.clone()).await;
    let (program, _) = populate(&app).await;
    let (token, _) = app.register("m9").await;
    let before = all_boards(&app).await;

    redis.kill().unwrap();
    redis.wait().unwrap();
    // Postings go on; the boards are computed from the database, so they are current.
    let bought = buy(&app, "m9", "while-down", "300.00").await;
    assert_eq!(bought["balance"], "220.00");
    assert_eq!(app.balance(&token).await, "220.00");
    let down = all_boards(&app).await;
    assert_ne!(down, before);
    assert_eq!(down[3]["entries"][0]["points"], "220.00");
    assert_eq!(down[0]["entries"][0]["points"], "220.00");
    let mine = board(&app, &token, "ALL_TIME", 1).await;
    assert_eq!(mine["me"], j!({"rank": 1, "points": "220.00"}));

    // Redis comes back (empty: it kept nothing). The boards are rebuilt and match the ledger.
    let mut redis = start_redis(port);
    let readyz = format!("{}/readyz", app.url);
    wait_until(async || {
        matches!(app.client.get(&readyz).send().await, Ok(r) if r.status().as_u16() == 200)
    })
    .await;
    assert_eq!(all_boards(&app).await, down);
    // And Redis itself holds the right board again.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!(
        "{}lb:{}:ALL_TIME",
        app.redis_namespace().unwrap(),
        program.id
    );
    let stored: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, -22000.0);
    app.assert_ledger_invariants().await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_then_back_with_its_data_repairs_missed_updates() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("lb-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_string_lossy().to_string();
    // A Redis that keeps its data across the restart (so the old board is still there).
    let start = || {
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &dir_arg, "--save", "", "--appendonly", "yes"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut redis = start();
    wait_until(async || redis_answers(&url).await).await;
    let app = spawn_app_with_redis(url.clone()).await;
    populate(&app).await;
    let before = all_boards(&app).await;
    redis.kill().unwrap();
    redis.wait().unwrap();
    buy(&app, "m3", "while-down", "300.00").await; // +150: the Redis update is lost
    let mut redis = start();
    wait_until(async || redis_answers(&url).await).await;
    let readyz = format!("{}/readyz", app.url);
    wait_until(async || {
        matches!(app.client.get(&readyz).send().await, Ok(r) if r.status().as_u16() == 200)
    })
    .await;
    let after = all_boards(&app).await;
    assert_ne!(after, before);
    assert_eq!(after[3]["entries"][0]["points"], "220.00");
    assert_eq!(after[0]["entries"][0]["points"], "150.00");
    redis.kill().unwrap();
    redis.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
