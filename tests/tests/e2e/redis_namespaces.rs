//! A Redis that served another database is only a cold cache: two databases share one Redis and
//! one `REDIS_PREFIX`, and neither ever answers from, or ranks with, the other's keys.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::helpers::*;

const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance } }";
const BOARD: &str =
    "{ leaderboard(period: ALL_TIME, first: 100) { entries { points member { id } } } }";

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.loyalty.db();
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Ledger rows of the member with this external id.
async fn rows_of(app: &TestApp, external_id: &str) -> i64 {
    scalar(
        app,
        &format!(
            "SELECT COUNT(*) AS n FROM ledger_entries e JOIN members m ON m.id = e.member_id \
             WHERE m.external_id = '{external_id}'"
        ),
    )
    .await
}

async fn purchase(app: &TestApp, amount: &str) -> Value {
    let r = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": "walk-in", "orderId": "order-1", "amount": amount, "idempotencyKey": "order-1"}}),
        )
        .await;
    r.data()["recordPurchase"].clone()
}

/// Every ledger row of the app's database.
async fn ledger_rows(app: &TestApp) -> i64 {
    let db = app.loyalty.db();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM ledger_entries",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The ALL_TIME board as the admin reads it, and as the ledger says it must be.
async fn board_and_ledger(app: &TestApp) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let r = app.gql(Some(&app.admin()), BOARD, j!({})).await;
    let board = r.data()["leaderboard"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["member"]["id"].as_str().unwrap().to_owned(),
                e["points"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let db = app.loyalty.db();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT member_id, CAST(SUM(amount_minor) AS BIGINT) AS points FROM ledger_entries \
             WHERE account = 'POINTS' AND kind IN ('EARN', 'REVERSAL') GROUP BY member_id \
             HAVING SUM(amount_minor) > 0 ORDER BY points DESC, member_id LIMIT 100",
        ))
        .await
        .unwrap();
    let ledger = rows
        .iter()
        .map(|r| {
            let member: i64 = r.try_get("", "member_id").unwrap();
            let points: i64 = r.try_get("", "points").unwrap();
            (
                member.to_string(),
                format!("{}.{:02}", points / 100, points % 100),
            )
        })
        .collect();
    (board, ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_databases_sharing_one_redis_and_prefix_never_read_each_others_keys() {
    let prefix = format!("shared:{}:", uuid::Uuid::new_v4().simple());
    let a = spawn_fresh_with_prefix(&prefix).await;
    let b = spawn_fresh_with_prefix(&prefix).await;
    assert_ne!(a.redis_namespace(), b.redis_namespace());
    assert!(a.redis_namespace().unwrap().starts_with(&prefix));

    // `demo` on A, then on B: the same idempotency keys, the same program and member ids. B's
    // operations must run against B (today B reads A's stored answers and fails on
    // "redemption 1 not found").
    for app in [&a, &b] {
        let program = app.demo().await;
        let activity = app.loyalty.seed_demo_activity(&program).await.unwrap();
        assert!(activity.created);
        app.assert_ledger_invariants().await;
    }
    let redemptions = "SELECT COUNT(*) AS n FROM redemptions";
    assert!(scalar(&b, redemptions).await > 0);

    // One request with one key on both: each database posts its own result.
    let on_a = purchase(&a, "100.00").await;
    let on_b = purchase(&b, "100.00").await;
    assert_eq!(on_b["pointsAwarded"], "50.00");
    assert_eq!(on_b, on_a);
    let rows_a = rows_of(&a, "walk-in").await;
    let rows_b = rows_of(&b, "walk-in").await;
    assert!(rows_b > 0, "B answered without posting");
    assert_eq!(rows_b, rows_a);
    let balance_b = scalar(
        &b,
        "SELECT b.balance_minor AS n FROM balances b JOIN members m ON m.id = b.member_id \
         WHERE m.external_id = 'walk-in' AND b.account = 'POINTS'",
    )
    .await;
    assert_eq!(
        format!("{}.{:02}", balance_b / 100, balance_b % 100),
        on_b["balance"]
    );

    // A later request with the same key and other arguments on B only: refused on B (its own
    // record), while A's answer stays A's.
    let r = b
        .gql(
            Some(&b.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": "walk-in", "orderId": "order-1", "amount": "999.00", "idempotencyKey": "order-1"}}),
        )
        .await;
    assert_eq!(r.code(), "IDEMPOTENCY_KEY_REUSED");

    // Retries answer from each database's own record and post nothing.
    assert_eq!(purchase(&a, "100.00").await, on_a);
    assert_eq!(purchase(&b, "100.00").await, on_b);
    assert_eq!(rows_of(&a, "walk-in").await, rows_a);
    assert_eq!(rows_of(&b, "walk-in").await, rows_b);

    // A big earner on A only: A's board shows them, B's does not; each equals its ledger.
    a.gql(
        Some(&a.service()),
        PURCHASE,
        j!({"i": {"memberExternalId": "whale", "orderId": "whale-1", "amount": "100000.00", "idempotencyKey": "whale-1"}}),
    )
    .await
    .data();
    let (board_a, ledger_a) = board_and_ledger(&a).await;
    let (board_b, ledger_b) = board_and_ledger(&b).await;
    assert_eq!(board_a, ledger_a);
    assert_eq!(board_b, ledger_b);
    let whale = scalar(
        &a,
        "SELECT id AS n FROM members WHERE external_id = 'whale'",
    )
    .await;
    assert_eq!(board_a[0].0, whale.to_string());
    assert_eq!(rows_of(&b, "whale").await, 0);
    a.assert_ledger_invariants().await;
    b.assert_ledger_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_saw_more_of_this_database_than_it_has_starts_a_new_namespace() {
    let a = spawn_app(Backend::Postgres).await;
    a.demo().await;
    purchase(&a, "100.00").await;
    let pass = a.loyalty.catch_up_leaderboards().await.unwrap();
    let old = a.redis_namespace().unwrap();
    // The Redis of a copy of this database that went further (this database is a backup
    // restored from before): its boards have caught up past our newest ledger row.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ahead = pass.watermark.unwrap() + 1_000;
    let _: () = redis::cmd("SET")
        .arg(format!("{old}lb:applied"))
        .arg(ahead)
        .query_async(&mut conn)
        .await
        .unwrap();
    let rows = ledger_rows(&a).await;
    a.stop();

    let b = spawn_app_at(Backend::Postgres, Some(&a), None).await;
    let new = b.redis_namespace().unwrap();
    assert_ne!(new, old);
    let id = loyalty_domain::deployment::deployment_id(b.loyalty.db())
        .await
        .unwrap();
    assert_eq!(new, format!("{}{id}:", a.redis_prefix.as_deref().unwrap()));
    // A cold cache: the boards are rebuilt from this database, the key answers from it (the
    // stored result, not a second posting).
    assert_eq!(purchase(&b, "100.00").await["pointsAwarded"], "50.00");
    assert_eq!(ledger_rows(&b).await, rows, "the retried key posted again");
    let (board, ledger) = board_and_ledger(&b).await;
    assert_eq!(board, ledger);
    b.assert_ledger_invariants().await;
}
