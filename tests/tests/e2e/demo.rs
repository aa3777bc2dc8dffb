//! `demo` activity: four weeks of members, every kind of posting, backdated through the real
//! operations (ledger invariants hold), and a second run adds nothing.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Statement};

use crate::e2e;
use crate::helpers::*;

/// (kind, source or purpose) → number of POINTS rows of the demo program.
async fn postings(app: &TestApp) -> BTreeMap<(String, String), i64> {
    let db = app.loyalty.db();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT kind, COALESCE(source, purpose, '') AS what, COUNT(*) AS n \
             FROM ledger_entries WHERE account = 'POINTS' GROUP BY kind, COALESCE(source, purpose, '')",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                (
                    r.try_get::<String>("", "kind").unwrap(),
                    r.try_get::<String>("", "what").unwrap(),
                ),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.loyalty.db();
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Points issued and used over the whole ledger, recomputed from the rows.
async fn issued_and_used(app: &TestApp) -> (String, String) {
    let issued = scalar(
        app,
        "SELECT CAST(COALESCE(SUM(CASE WHEN kind IN ('EARN', 'REVERSAL') \
         OR (kind = 'ADJUST' AND amount_minor > 0) THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS n \
         FROM ledger_entries WHERE account = 'POINTS'",
    )
    .await;
    let used = scalar(
        app,
        "SELECT CAST(COALESCE(-SUM(CASE WHEN kind IN ('SPEND', 'REFUND') \
         OR (kind = 'ADJUST' AND amount_minor < 0) THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS n \
         FROM ledger_entries WHERE account = 'POINTS'",
    )
    .await;
    let money = |minor: i64| format!("{}.{:02}", minor / 100, minor % 100);
    (money(issued), money(used))
}

/// The report's totals for the demo's four weeks.
async fn report_totals(app: &TestApp) -> (String, String) {
    let r = app
        .gql(
            Some(&app.admin()),
            "{ loyaltyReport(from: \"2026-02-15\", to: \"2026-03-14\") { pointsIssued { total } pointsUsed { total } } }",
            j!({}),
        )
        .await;
    let r = &r.data()["loyaltyReport"];
    (
        r["pointsIssued"]["total"].as_str().unwrap().to_owned(),
        r["pointsUsed"]["total"].as_str().unwrap().to_owned(),
    )
}

e2e!(
    demo_activity_is_backdated_complete_and_idempotent,
    |app: TestApp| async move {
        let now = local("Asia/Ho_Chi_Minh", "2026-03-15 10:00:00");
        app.clock.set(now);
        let program = app.demo().await;
        // The report's sums are folded before the backdated rows arrive: they must still count.
        app.loyalty.fold_reports().await.unwrap();

        let summary = app.loyalty.seed_demo_activity(&program).await.unwrap();
        assert!(summary.created);
        assert_eq!(summary.members, 80);
        assert_eq!(summary.first_day.to_string(), "2026-02-15");
        assert_eq!(summary.last_day.to_string(), "2026-03-14");

        // Every kind of activity the report shows is there.
        let counts = postings(&app).await;
        for (kind, what) in [
            ("EARN", "daily_login"),
            ("EARN", "first_product_view"),
            ("EARN", "first_news_read"),
            ("EARN", "first_product_share"),
            ("EARN", "new_account_registration"),
            ("EARN", "new_member_reward"),
            ("EARN", "new_user_referral"),
            ("EARN", "referrer_reward"),
            ("EARN", "purchase"),
            ("REVERSAL", "purchase"),
            ("SPEND", "lucky_wheel"),
            ("SPEND", "gift_redemption"),
            ("SPEND", "discount"),
            ("REFUND", "gift_redemption"),
            ("ADJUST", "admin_adjustment"),
        ] {
            assert!(
                counts.get(&(kind.to_owned(), what.to_owned())).copied() > Some(0),
                "no {kind} {what} in {counts:?}"
            );
        }
        assert_eq!(counts[&("EARN".into(), "new_member_reward".into())], 80);
        assert_eq!(
            counts[&("EARN".into(), "new_user_referral".into())],
            counts[&("EARN".into(), "referrer_reward".into())]
        );
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM members").await, 80);

        // All of it happened in the 28 program days before today, none of it in the future.
        let first = local("Asia/Ho_Chi_Minh", "2026-02-15 00:00:00");
        let today = local("Asia/Ho_Chi_Minh", "2026-03-15 00:00:00");
        let db = app.loyalty.db();
        let outside = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            match app.backend {
                Backend::Postgres => {
                    "SELECT COUNT(*) AS n FROM ledger_entries WHERE created_at < $1 OR created_at >= $2"
                }
                Backend::Sqlite => {
                    "SELECT COUNT(*) AS n FROM ledger_entries WHERE created_at < ? OR created_at >= ?"
                }
            },
            [first.into(), today.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
        assert_eq!(outside, 0);
        // Members joined on different days, not all at once.
        let join_days = scalar(
            &app,
            "SELECT COUNT(DISTINCT substr(CAST(joined_at AS TEXT), 1, 10)) AS n FROM members",
        )
        .await;
        assert!(join_days >= 15, "members joined on only {join_days} days");
        app.assert_ledger_invariants().await;

        // Walk-in customers who are not members ordered (anonymous, and with customer ids the
        // program does not know: they did not join, members are still 80), one of their orders
        // was partly refunded, and members used vouchers at checkout, bought with points and
        // (as the wheel's draws allow) won on it. The report's sections see them.
        let anonymous = "SELECT COUNT(*) AS n FROM guest_orders WHERE customer_id IS NULL";
        let known = "SELECT COUNT(*) AS n FROM guest_orders WHERE customer_id IS NOT NULL";
        let (anonymous, known) = (scalar(&app, anonymous).await, scalar(&app, known).await);
        assert!(
            anonymous > 0 && known > 0,
            "{anonymous} + {known} walk-in orders"
        );
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM guest_refunds").await,
            1
        );
        let bought =
            "SELECT COUNT(*) AS n FROM vouchers WHERE status = 'USED' AND origin = 'discount'";
        assert!(scalar(&app, bought).await > 0);
        let used = scalar(
            &app,
            "SELECT COUNT(*) AS n FROM vouchers WHERE status = 'USED'",
        )
        .await;
        let sections = app
            .gql(
                Some(&app.admin()),
                "{ loyaltyReport(from: \"2026-02-15\", to: \"2026-03-14\") { coverage { nonMemberOrders } averageDiscount { vouchers } } }",
                j!({}),
            )
            .await;
        let sections = &sections.data()["loyaltyReport"];
        assert_eq!(sections["coverage"]["nonMemberOrders"], anonymous + known);
        assert_eq!(sections["averageDiscount"]["vouchers"], used);

        // The Customer Loyalty Report sees all of it, from the unfolded tail and once folded.
        let expected = issued_and_used(&app).await;
        assert_eq!(report_totals(&app).await, expected);
        app.loyalty.fold_reports().await.unwrap();
        assert_eq!(report_totals(&app).await, expected);

        // The admin's referral report for the period lists the inviters.
        let report = app
        .gql(
            Some(&app.admin()),
            "query($f: DateTime!, $t: DateTime!) { referralReport(from: $f, to: $t, first: 100) { edges { node { totalReferrals } } funnel { registrations rewarded } } }",
            j!({ "f": first, "t": today }),
        )
        .await;
        let report = &report.data()["referralReport"];
        let rewarded = report["funnel"]["rewarded"].as_u64().unwrap();
        assert_eq!(
            rewarded as i64,
            counts[&("EARN".into(), "referrer_reward".into())]
        );
        let listed: u64 = report["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["totalReferrals"].as_u64().unwrap())
            .sum();
        assert_eq!(listed, rewarded);

        // A second run (another day, even) adds nothing.
        let rows = scalar(&app, "SELECT COUNT(*) AS n FROM ledger_entries").await;
        let walk_ins = scalar(&app, "SELECT COUNT(*) AS n FROM guest_orders").await;
        app.clock.set(now + chrono::Duration::days(3));
        let again = app.loyalty.seed_demo_activity(&program).await.unwrap();
        assert!(!again.created);
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM ledger_entries").await,
            rows
        );
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM members").await, 80);
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM guest_orders").await,
            walk_ins
        );
    }
);
