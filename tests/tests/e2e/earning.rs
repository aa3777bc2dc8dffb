//! Earning through recordAction: daily logins, first views/reads/shares, streaks.

use futures::future::join_all;

use crate::e2e;
use crate::helpers::*;

e2e!(
    fifty_parallel_daily_logins_pay_once,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let before = app.ledger_rows(&id).await;
        let results = join_all((0..50).map(|i| {
            let (app, token) = (&app, token.clone());
            async move { app.daily_login(&token, &format!("login-{i}")).await }
        }))
        .await;
        let awarded = results
            .iter()
            .filter(|r| r.data()["recordAction"]["awarded"] == true)
            .count();
        assert_eq!(awarded, 1);
        let paid = results
            .iter()
            .find(|r| r.data()["recordAction"]["awarded"] == true)
            .unwrap();
        assert_eq!(paid.data()["recordAction"]["balance"], "75.00");
        assert_eq!(paid.data()["recordAction"]["transaction"]["amount"], "5.00");
        for r in results
            .iter()
            .filter(|r| r.data()["recordAction"]["awarded"] == false)
        {
            assert_eq!(r.data()["recordAction"]["reason"], "ALREADY_CLAIMED");
        }
        assert_eq!(app.ledger_rows(&id).await, before + 1);
        // 20 join + 50 registration + 5 daily login
        assert_eq!(app.balance(&token).await, "75.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    on_postgres_the_rule_facts_come_with_the_members_lock,
    |app: TestApp| async move {
        // Each test is a process of its own under nextest, so nothing else moves these counters.
        const WITH_LOCK: &str = r#"loyalty_rule_facts_reads_total{read="with_lock"}"#;
        const QUERY: &str = r#"loyalty_rule_facts_reads_total{read="query"}"#;
        app.demo().await;
        let (token, _) = app.register("m1").await; // 70: a new member's facts are a query
        let reads = async || (app.metric(WITH_LOCK).await, app.metric(QUERY).await);
        let before = reads().await;
        let paid = app.daily_login(&token, "a").await;
        assert_eq!(paid.data()["recordAction"]["awarded"], true);
        // The facts read with the lock must say the login already paid today.
        let again = app.daily_login(&token, "b").await;
        assert_eq!(again.data()["recordAction"]["reason"], "ALREADY_CLAIMED");
        let first_view = |key: &'static str| {
            app.gql(
                Some(&token),
                "mutation($k: String) { recordAction(input: {action: \"product_view\", objectId: \"p1\", idempotencyKey: $k}) { awarded reason } }",
                j!({"k": key}),
            )
        };
        assert_eq!(
            first_view("c").await.data()["recordAction"]["awarded"],
            true
        );
        let seen = first_view("d").await;
        assert_eq!(seen.data()["recordAction"]["reason"], "ALREADY_CLAIMED");
        let after = reads().await;
        let (with_lock, query) = (after.0 - before.0, after.1 - before.1);
        match app.backend {
            Backend::Postgres => assert_eq!((with_lock, query), (4.0, 0.0)),
            Backend::Sqlite => assert_eq!((with_lock, query), (0.0, 4.0)),
        }
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    logins_either_side_of_program_midnight_pay_twice,
    |app: TestApp| async move {
        app.demo().await; // Asia/Ho_Chi_Minh
        let (token, _) = app.register("m1").await;
        app.clock
            .set(local("Asia/Ho_Chi_Minh", "2026-11-23 23:59:59"));
        let first = app.daily_login(&token, "a").await;
        assert_eq!(first.data()["recordAction"]["awarded"], true);
        app.clock
            .set(local("Asia/Ho_Chi_Minh", "2026-11-24 00:00:00"));
        let second = app.daily_login(&token, "b").await;
        assert_eq!(second.data()["recordAction"]["awarded"], true);
        // Day 2 of the streak pays base 5 + step 1.
        assert_eq!(second.data()["recordAction"]["points"], "6.00");
        let third = app.daily_login(&token, "c").await;
        assert_eq!(third.data()["recordAction"]["awarded"], false);
        let me = app
            .gql(Some(&token), "{ me { loginStreak balance } }", j!({}))
            .await;
        assert_eq!(me.data()["me"]["loginStreak"], 2);
        assert_eq!(me.data()["me"]["balance"], "81.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(a_dst_change_day_is_one_day, |app: TestApp| async move {
    let program = app.demo().await;
    // Move the demo program to Berlin: 2026-03-29 has 23 hours there.
    use sea_orm::ConnectionTrait;
    app.loyalty
        .db()
        .execute_unprepared(&format!(
            "UPDATE programs SET timezone = 'Europe/Berlin' WHERE id = {}",
            program.id
        ))
        .await
        .unwrap();
    let restarted = spawn_app_at(
        app.backend,
        Some(&app),
        Some(local("Europe/Berlin", "2026-03-29 00:30:00")),
    )
    .await;
    let (token, _) = restarted.register("m1").await;
    assert_eq!(
        restarted.daily_login(&token, "a").await.data()["recordAction"]["awarded"],
        true
    );
    restarted
        .clock
        .set(local("Europe/Berlin", "2026-03-29 23:30:00"));
    assert_eq!(
        restarted.daily_login(&token, "b").await.data()["recordAction"]["awarded"],
        false
    );
    restarted
        .clock
        .set(local("Europe/Berlin", "2026-03-30 00:10:00"));
    assert_eq!(
        restarted.daily_login(&token, "c").await.data()["recordAction"]["awarded"],
        true
    );
    restarted.assert_ledger_invariants().await;
});

const VIEW: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded points reason transaction { source } } }";

e2e!(
    first_view_read_share_pay_once_even_in_parallel,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        for (action, source, points) in [
            ("product_view", "first_product_view", "2.00"),
            ("news_read", "first_news_read", "3.00"),
            ("product_share", "first_product_share", "5.00"),
        ] {
            let results = join_all((0..20).map(|i| {
                let (app, token) = (&app, token.clone());
                async move {
                    app.gql(
                        Some(&token),
                        VIEW,
                        j!({"a": action, "o": "obj-1", "k": format!("{action}-{i}")}),
                    )
                    .await
                }
            }))
            .await;
            let paid: Vec<_> = results
                .iter()
                .filter(|r| r.data()["recordAction"]["awarded"] == true)
                .collect();
            assert_eq!(paid.len(), 1, "{action}");
            assert_eq!(paid[0].data()["recordAction"]["points"], points);
            assert_eq!(
                paid[0].data()["recordAction"]["transaction"]["source"],
                source
            );
            // Repeated later: still nothing.
            let again = app
                .gql(Some(&token), VIEW, j!({"a": action, "o": "obj-1"}))
                .await;
            assert_eq!(again.data()["recordAction"]["reason"], "ALREADY_CLAIMED");
            // Another object pays again.
            let other = app
                .gql(Some(&token), VIEW, j!({"a": action, "o": "obj-2"}))
                .await;
            assert_eq!(other.data()["recordAction"]["awarded"], true);
        }
        // join 20 + registration 50 + 2×(2+3+5)
        assert_eq!(app.balance(&token).await, "90.00");
        assert_eq!(app.ledger_rows(&id).await, 2 + 6);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    action_refusals_have_exact_codes,
    |app: TestApp| async move {
        app.demo().await;
        let unregistered = app.member("ghost");
        let r = app
            .gql(Some(&unregistered), VIEW, j!({"a": "daily_login"}))
            .await;
        assert_eq!(r.code(), "NOT_FOUND");
        let (token, _) = app.register("m1").await;
        let r = app.gql(Some(&token), VIEW, j!({"a": "product_view"})).await;
        assert_eq!(r.code(), "VALIDATION"); // per-object rule needs an objectId
        let r = app.gql(Some(&token), VIEW, j!({"a": "registration"})).await;
        assert_eq!(r.code(), "VALIDATION"); // reserved action
        let r = app.gql(Some(&token), VIEW, j!({"a": "Bad Action!"})).await;
        assert_eq!(r.code(), "VALIDATION");
        let r = app
            .gql(Some(&token), VIEW, j!({"a": "unknown_custom"}))
            .await;
        assert_eq!(r.data()["recordAction"]["reason"], "NO_RULE");
        let r = app
            .gql(
                Some(&token),
                VIEW,
                j!({"a": "daily_login", "k": "x".repeat(201)}),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(app.balance(&token).await, "70.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    register_is_idempotent_and_pays_join_and_registration,
    |app: TestApp| async move {
        app.demo().await;
        let token = app.member("m1");
        let q = "mutation { register(input: {displayName: \"Ann\"}) { created member { displayName balance } transactions { source amount } } }";
        let results = join_all((0..10).map(|_| app.gql(Some(&token), q, j!({})))).await;
        let created = results
            .iter()
            .filter(|r| r.data()["register"]["created"] == true)
            .count();
        assert_eq!(created, 1);
        let first = results
            .iter()
            .find(|r| r.data()["register"]["created"] == true)
            .unwrap();
        let sources: Vec<_> = first.data()["register"]["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["source"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sources, ["new_member_reward", "new_account_registration"]);
        assert_eq!(app.balance(&token).await, "70.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    me_shows_transactions_newest_first_with_cursor,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        app.daily_login(&token, "a").await;
        let q = "query($after: String) { me { transactions(first: 2, after: $after) { pageInfo { hasNextPage endCursor } edges { node { amount kind source purpose createdAt } } } } }";
        let page1 = app.gql(Some(&token), q, j!({})).await;
        let conn = &page1.data()["me"]["transactions"];
        assert_eq!(conn["edges"][0]["node"]["source"], "daily_login");
        assert_eq!(conn["edges"][0]["node"]["kind"], "EARN");
        assert_eq!(conn["pageInfo"]["hasNextPage"], true);
        let page2 = app
            .gql(
                Some(&token),
                q,
                j!({"after": conn["pageInfo"]["endCursor"]}),
            )
            .await;
        let conn2 = &page2.data()["me"]["transactions"];
        assert_eq!(conn2["edges"].as_array().unwrap().len(), 1);
        assert_eq!(conn2["edges"][0]["node"]["source"], "new_member_reward");
        assert_eq!(conn2["pageInfo"]["hasNextPage"], false);
    }
);

e2e!(
    earn_opportunities_show_what_is_left,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        app.daily_login(&token, "a").await;
        let r = app
            .gql(
                Some(&token),
                "{ earnOpportunities { action source points percent remaining claimed } }",
                j!({}),
            )
            .await;
        let list = r.data()["earnOpportunities"].as_array().unwrap().clone();
        let login = list.iter().find(|o| o["action"] == "daily_login").unwrap();
        assert_eq!(login["remaining"], 0);
        assert_eq!(login["claimed"], true);
        let purchase = list.iter().find(|o| o["action"] == "purchase").unwrap();
        assert_eq!(purchase["percent"], "5.00");
        let registration = list
            .iter()
            .find(|o| o["source"] == "new_account_registration")
            .unwrap();
        assert_eq!(registration["claimed"], true);
    }
);

e2e!(
    a_daily_cap_holds_under_a_race_and_versions_stay_consecutive,
    |app: TestApp| async move {
        app.demo().await; // product_view: once per product, at most 10 a day
        let (token, _) = app.register("m1").await;
        let results = join_all((0..25).map(|i| {
            let (app, token) = (&app, token.clone());
            async move {
                app.gql(
                    Some(&token),
                    VIEW,
                    j!({"a": "product_view", "o": format!("p{i}")}),
                )
                .await
            }
        }))
        .await;
        let paid = results
            .iter()
            .filter(|r| r.data()["recordAction"]["awarded"] == true)
            .count();
        assert_eq!(paid, 10);
        for r in results
            .iter()
            .filter(|r| r.data()["recordAction"]["awarded"] == false)
        {
            assert_eq!(r.data()["recordAction"]["reason"], "LIMIT_REACHED");
        }
        let me = app.gql(Some(&token), "{ me { balance version transactions(first: 100) { edges { node { version } } } } }", j!({})).await;
        assert_eq!(me.data()["me"]["balance"], "90.00");
        assert_eq!(me.data()["me"]["version"], 12);
        let mut versions: Vec<i64> = me.data()["me"]["transactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["version"].as_i64().unwrap())
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=12).collect::<Vec<_>>());
        app.assert_ledger_invariants().await;
    }
);
