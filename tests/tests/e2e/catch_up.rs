//! Derived data catches up after a crash: postings whose after-commit board update never ran (the
//! server died between commit and update) are on every board of the next instance shortly after
//! it starts, with no manual rebuild.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

const BOARD: &str = "query($p: LeaderboardPeriod!) { leaderboard(period: $p, first: 100) { entries { points member { id } } } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal!, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { pointsReversed } }";
const TZ: &str = "Asia/Ho_Chi_Minh";

/// A purchase: the demo pays amount ÷ 2 points.
async fn buy(app: &TestApp, sub: &str, order: &str, amount: &str) {
    app.gql(
        Some(&app.service()),
        PURCHASE,
        j!({"i": {"memberExternalId": sub, "orderId": order, "amount": amount, "idempotencyKey": order}}),
    )
    .await
    .data();
}

/// (member id, points) of every period's board, DAY, WEEK, MONTH, ALL_TIME.
async fn boards(app: &TestApp) -> Vec<Vec<(String, String)>> {
    let admin = app.admin();
    let mut all = Vec::new();
    for period in ["DAY", "WEEK", "MONTH", "ALL_TIME"] {
        let r = app.gql(Some(&admin), BOARD, j!({"p": period})).await;
        let entries: &Vec<Value> = r.data()["leaderboard"]["entries"].as_array().unwrap();
        all.push(
            entries
                .iter()
                .map(|e| {
                    (
                        e["member"]["id"].as_str().unwrap().to_owned(),
                        e["points"].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
        );
    }
    all
}

/// The boards recomputed from the ledger. Every posting of this test falls on one program day,
/// so each period's board is the members' points earned net of reversals, best first, ties by
/// lower id.
async fn from_ledger(app: &TestApp) -> Vec<Vec<(String, String)>> {
    let db = app.loyalty.db();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT member_id, CAST(SUM(amount_minor) AS BIGINT) AS points FROM ledger_entries \
             WHERE account = 'POINTS' AND kind IN ('EARN', 'REVERSAL') GROUP BY member_id \
             HAVING SUM(amount_minor) > 0 ORDER BY points DESC, member_id",
        ))
        .await
        .unwrap();
    let board: Vec<(String, String)> = rows
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
    vec![board; 4]
}

e2e!(
    boards_catch_up_after_a_crash_between_commit_and_update,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-11-25 10:00:00"));
        app.demo().await;
        buy(&app, "m1", "o1", "100.00").await;
        buy(&app, "m2", "o2", "200.00").await;
        buy(&app, "m3", "o3", "300.00").await;
        assert_eq!(boards(&app).await, from_ledger(&app).await);

        // The server dies right after each of these commits, before the boards move.
        app.loyalty.lose_leaderboard_updates(true);
        buy(&app, "m1", "o4", "900.00").await; // m1 goes from last to first
        buy(&app, "m4", "o5", "50.00").await; // a member the boards never saw
        let r = app
            .gql(
                Some(&app.service()),
                REFUND,
                j!({"o": "o3", "a": "300.00", "k": "refund-o3"}),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "150.00");
        let expected = from_ledger(&app).await;
        assert_ne!(boards(&app).await, expected, "the lost updates are lost");
        app.stop();

        // A new instance on the same database (and Redis): no one posts, no one rebuilds.
        let options = Options {
            start: Some(app.loyalty.now()),
            configure: Some(Box::new(|config| {
                config.leaderboard_catch_up_interval_secs = 1;
            })),
            ..Options::default()
        };
        let next = spawn_with(app.backend, Some(&app), options).await;
        let mut caught_up = false;
        for _ in 0..100 {
            if boards(&next).await == expected {
                caught_up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            caught_up,
            "boards still behind the ledger: {:?}",
            boards(&next).await
        );
        assert_eq!(from_ledger(&next).await, expected);
        next.assert_ledger_invariants().await;
    }
);

e2e!(
    a_pass_refreshes_exactly_the_members_behind_the_ledger,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-11-25 10:00:00"));
        app.demo().await;
        buy(&app, "m1", "o1", "100.00").await;
        buy(&app, "m2", "o2", "200.00").await;
        // The first pass has no watermark: it rebuilds and sets one.
        let first = app.loyalty.catch_up_leaderboards().await.unwrap();
        assert_eq!(first.rebuilt, 1);
        assert!(first.watermark.is_some());

        app.loyalty.lose_leaderboard_updates(true);
        buy(&app, "m1", "o3", "900.00").await;
        buy(&app, "m3", "o4", "50.00").await;
        app.loyalty.lose_leaderboard_updates(false);
        buy(&app, "m2", "o5", "10.00").await; // applied as usual
        assert_ne!(boards(&app).await, from_ledger(&app).await);

        let second = app.loyalty.catch_up_leaderboards().await.unwrap();
        assert_eq!((second.rebuilt, second.refreshed), (0, 2), "m1 and m3 only");
        assert!(second.watermark > first.watermark);
        assert_eq!(boards(&app).await, from_ledger(&app).await);
        let third = app.loyalty.catch_up_leaderboards().await.unwrap();
        assert_eq!((third.rebuilt, third.refreshed), (0, 0));
        assert_eq!(third.watermark, second.watermark);
    }
);

e2e!(
    passes_racing_concurrent_postings_skip_no_late_commit,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-11-25 10:00:00"));
        app.demo().await;
        // Every board update of this instance is lost; only the other instance's passes, running
        // all the time, can bring its boards up to the ledger. PostgreSQL commits these
        // postings out of id order, so a watermark moved past a row still in flight would skip
        // it for ever.
        app.loyalty.lose_leaderboard_updates(true);
        let options = Options {
            start: Some(app.loyalty.now()),
            ..Options::default()
        };
        let other = spawn_with(app.backend, Some(&app), options).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let passes = tokio::spawn({
            let loyalty = other.loyalty.clone();
            let stop = stop.clone();
            async move {
                let mut runs = 0;
                while !stop.is_cancelled() {
                    loyalty.catch_up_leaderboards().await.unwrap();
                    runs += 1;
                }
                runs
            }
        });
        let mut posts = Vec::new();
        // One posting per member: a skipped row would be its member's only one, so nothing
        // later could repair it by accident.
        for n in 0..64 {
            let app = &app;
            posts.push(async move {
                let amount = format!("{}.00", 10 + n * 7 % 50);
                buy(app, &format!("m{n}"), &format!("race-{n}"), &amount).await;
            });
        }
        futures::future::join_all(posts).await;
        stop.cancel();
        assert!(passes.await.unwrap() > 0);
        // One last pass after the postings: it only looks past the watermark.
        other.loyalty.catch_up_leaderboards().await.unwrap();
        assert_eq!(boards(&other).await, from_ledger(&other).await);
        other.assert_ledger_invariants().await;
    }
);
