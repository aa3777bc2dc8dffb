//! Referral attribution at registration and the reward pair, once per friend.

use futures::future::join_all;
use sea_orm::ConnectionTrait;

use crate::e2e;
use crate::helpers::*;

const REGISTER: &str = "mutation($c: String) { register(input: {displayName: \"Friend\", referralCode: $c}) { created referral { status reason } member { balance } } }";
const POLICY: &str =
    "mutation($i: ProgramInput!) { updateProgram(input: $i) { referralQualifyOn } }";

async fn code_of(app: &TestApp, token: &str) -> String {
    let me = app
        .gql(Some(token), "{ me { referralCode } }", j!({}))
        .await;
    me.data()["me"]["referralCode"].as_str().unwrap().to_owned()
}

async fn register_with(app: &TestApp, sub: &str, code: &str) -> Gql {
    app.gql(Some(&app.member(sub)), REGISTER, j!({"c": code}))
        .await
}

fn status(r: &Gql) -> &str {
    r.data()["register"]["referral"]["status"].as_str().unwrap()
}

async fn policy(app: &TestApp, on: &str, lifetime_cap: Option<u32>) {
    caps(app, on, None, lifetime_cap).await;
}

async fn caps(app: &TestApp, on: &str, daily_cap: Option<u32>, lifetime_cap: Option<u32>) {
    let input = j!({"i": {"name": "Demo Mini-App Shop", "timezone": "Asia/Ho_Chi_Minh", "pointsPerCurrency": "10", "validityDays": 365,
        "referralQualifyOn": on, "referralDailyCap": daily_cap, "referralLifetimeCap": lifetime_cap}});
    app.gql(Some(&app.admin()), POLICY, input).await.data();
}

/// The inviter's `referrer_reward` rows for `friend` (by member id).
async fn inviter_rewards(app: &TestApp, friend: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT COUNT(*) AS n FROM ledger_entries e JOIN referrals r ON e.ref_id = CAST(r.id AS TEXT) \
         WHERE e.ref_type = 'referral' AND e.account = 'POINTS' AND e.member_id = r.referrer_id AND r.referee_id = {friend}"
    ))
    .await
}

e2e!(a_referral_rewards_both_once, |app: TestApp| async move {
    app.demo().await; // friend +30 (new_user_referral), inviter +50 (referrer_reward)
    let (inviter, _) = app.register("alice").await;
    let code = code_of(&app, &inviter).await;
    let r = register_with(&app, "bob", &format!("ref_{}", code.to_lowercase())).await;
    assert_eq!(status(&r), "REWARDED");
    assert_eq!(r.data()["register"]["member"]["balance"], "100.00");
    // The inviter's reward is the inviter's own operation, right after the friend's commit.
    app.settle_work().await;
    assert_eq!(app.balance(&inviter).await, "120.00");
    // Registering again: nothing more, and the answer still explains the referral.
    let again = register_with(&app, "bob", &code).await;
    assert_eq!(again.data()["register"]["created"], false);
    assert_eq!(status(&again), "REWARDED");
    assert_eq!(app.balance(&inviter).await, "120.00");
    let (carol, _) = app.register("carol").await;
    let other_code = code_of(&app, &carol).await;
    assert_eq!(
        status(&register_with(&app, "bob", &other_code).await),
        "ALREADY_REFERRED"
    );
    let sources = app
        .gql(
            Some(&inviter),
            "{ me { transactions(first: 1) { edges { node { source refType } } } } }",
            j!({}),
        )
        .await;
    assert_eq!(
        sources.data()["me"]["transactions"]["edges"][0]["node"]["source"],
        "referrer_reward"
    );
    app.assert_ledger_invariants().await;
});

e2e!(
    refused_referrals_pay_nothing_and_say_why,
    |app: TestApp| async move {
        app.demo().await;
        let (inviter, _) = app.register("alice").await;
        let code = code_of(&app, &inviter).await;
        let r = register_with(&app, "x1", "NOSUCHCODE").await;
        assert_eq!(
            (status(&r), r.data()["register"]["created"].as_bool()),
            ("UNKNOWN_CODE", Some(true))
        );
        assert_eq!(r.data()["register"]["member"]["balance"], "70.00");
        // A code of another program.
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
        let stranger = app.token("other", "member", "s1");
        app.gql(Some(&stranger), "mutation { register { created } }", j!({}))
            .await
            .data();
        let foreign = code_of(&app, &stranger).await;
        assert_eq!(
            status(&register_with(&app, "x2", &foreign).await),
            "OTHER_PROGRAM"
        );
        // Already registered before the code was given.
        assert_eq!(
            status(&app.gql(Some(&inviter), REGISTER, j!({"c": code})).await),
            "ALREADY_REGISTERED"
        );
        // Joined through a purchase (so it has a code), then registers with its own code.
        let purchase = j!({"i": {"memberExternalId": "x3", "orderId": "o", "amount": "1", "idempotencyKey": "k"}});
        app.gql(
            Some(&app.service()),
            "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance } }",
            purchase,
        )
        .await
        .data();
        let own = app
            .loyalty
            .member(&app.loyalty.program("demo").await.unwrap(), {
                let admin = app.admin();
                let list = app
                    .gql(
                        Some(&admin),
                        "{ members(search: \"x3\") { edges { node { id } } } }",
                        j!({}),
                    )
                    .await;
                list.data()["members"]["edges"][0]["node"]["id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .await
            .unwrap()
            .referral_code;
        assert_eq!(
            status(&register_with(&app, "x3", &own).await),
            "SELF_REFERRAL"
        );
        assert_eq!(app.balance(&inviter).await, "70.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    racing_registrations_link_one_referrer,
    |app: TestApp| async move {
        app.demo().await;
        let (a, _) = app.register("alice").await;
        let (c, _) = app.register("carol").await;
        let codes = [code_of(&app, &a).await, code_of(&app, &c).await];
        let results = join_all((0..10).map(|i| register_with(&app, "bob", &codes[i % 2]))).await;
        // One registration created the member and linked a referrer; the others see that referral
        // (REWARDED when they name the same inviter, ALREADY_REFERRED otherwise).
        let created: Vec<usize> = (0..results.len())
            .filter(|i| results[*i].data()["register"]["created"] == true)
            .collect();
        assert_eq!(created.len(), 1);
        assert_eq!(status(&results[created[0]]), "REWARDED");
        app.settle_work().await;
        let winner = created[0] % 2;
        for (i, r) in results.iter().enumerate() {
            let expected = if i % 2 == winner {
                "REWARDED"
            } else {
                "ALREADY_REFERRED"
            };
            assert_eq!(status(r), expected, "{i}");
        }
        let total: rust_decimal::Decimal = [app.balance(&a).await, app.balance(&c).await]
            .iter()
            .map(|b| b.parse::<rust_decimal::Decimal>().unwrap())
            .sum();
        assert_eq!(total, rust_decimal::Decimal::new(19000, 2)); // 70 + 70 + one 50
        assert_eq!(app.balance(&app.member("bob")).await, "100.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    the_inviter_cap_holds_under_a_race,
    |app: TestApp| async move {
        app.demo().await;
        policy(&app, "REGISTRATION", Some(2)).await;
        let (a, _) = app.register("alice").await;
        let code = code_of(&app, &a).await;
        let results = join_all((0..6).map(|i| {
            let (app, code) = (&app, code.clone());
            async move { register_with(app, &format!("f{i}"), &code).await }
        }))
        .await;
        let statuses: Vec<&str> = results.iter().map(status).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == "REWARDED").count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == "INVITER_CAP_REACHED")
                .count(),
            4
        );
        app.settle_work().await;
        assert_eq!(app.balance(&a).await, "170.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    the_daily_and_lifetime_caps_hold_under_races_without_locking_the_inviter,
    |app: TestApp| async move {
        app.demo().await;
        caps(&app, "REGISTRATION", Some(3), Some(5)).await;
        let (a, inviter) = app.register("alice").await;
        let code = code_of(&app, &a).await;
        let race = |day: u32| {
            let (app, code) = (&app, code.clone());
            join_all((0..10).map(move |i| {
                let code = code.clone();
                async move { register_with(app, &format!("d{day}f{i}"), &code).await }
            }))
        };
        let rewarded = |results: &[Gql]| {
            let statuses: Vec<&str> = results.iter().map(status).collect();
            assert!(
                statuses
                    .iter()
                    .all(|s| *s == "REWARDED" || *s == "INVITER_CAP_REACHED"),
                "{statuses:?}"
            );
            statuses.iter().filter(|s| **s == "REWARDED").count()
        };
        assert_eq!(rewarded(&race(1).await), 3, "the daily cap");
        app.clock.advance(chrono::Duration::days(1));
        assert_eq!(rewarded(&race(2).await), 2, "the lifetime cap");
        app.clock.advance(chrono::Duration::days(1));
        assert_eq!(rewarded(&race(3).await), 0);
        app.settle_work().await;
        // Five friends linked, each in its own place; the inviter paid once for each.
        let linked = app
            .sql_i64(&format!(
                "SELECT COUNT(DISTINCT ordinal) AS n FROM referrals WHERE referrer_id = {inviter}"
            ))
            .await;
        assert_eq!(linked, 5);
        let paid = app
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {inviter} \
                 AND ref_type = 'referral'"
            ))
            .await;
        assert_eq!(paid, 5);
        assert_eq!(app.balance(&a).await, "320.00"); // 70 + 5 × 50
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    an_inviter_is_paid_once_after_a_crash_between_the_two_commits,
    |app: TestApp| async move {
        app.demo().await;
        let (a, inviter) = app.register("alice").await;
        let code = code_of(&app, &a).await;
        let r = register_with(&app, "bob", &code).await;
        assert_eq!(status(&r), "REWARDED");
        assert_eq!(r.data()["register"]["member"]["balance"], "100.00");
        // This instance runs no work: the inviter's reward waits in `member_work` when it dies.
        assert_eq!(app.loyalty.pending_work().await.unwrap(), 1);
        assert_eq!(app.balance(&a).await, "70.00");
        app.stop();
        let restarted = spawn_with(app.backend, Some(&app), Options::default()).await;
        restarted.settle_work().await;
        assert_eq!(restarted.balance(&a).await, "120.00");
        let bob = restarted
            .sql_i64("SELECT id AS n FROM members WHERE external_id = 'bob'")
            .await;
        assert_eq!(inviter_rewards(&restarted, &bob.to_string()).await, 1);
        let rewarded_at = restarted
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM referrals WHERE referrer_id = {inviter} \
                 AND inviter_rewarded_at IS NOT NULL"
            ))
            .await;
        assert_eq!(rewarded_at, 1);
        let metrics = restarted.metrics().await;
        assert!(
            metrics.contains(
                r#"loyalty_member_work_runs_total{kind="REFERRAL_INVITER",result="done"}"#
            ),
            "{metrics}"
        );

        // A runner whose lease ran out while another finished the same work (the row queued
        // again, as it was before that commit): it runs, pays nothing, and the row is gone.
        restarted
            .loyalty
            .db()
            .execute(sea_orm::Statement::from_string(
                restarted.loyalty.db().get_database_backend(),
                format!(
                    "INSERT INTO member_work (program_id, member_id, kind, subject, created_at, \
                     due_at, attempts) SELECT program_id, referrer_id, 'REFERRAL_INVITER', \
                     CAST(id AS TEXT), created_at, created_at, 1 FROM referrals \
                     WHERE referrer_id = {inviter}"
                ),
            ))
            .await
            .unwrap();
        let runs = join_all((0..4).map(|_| restarted.loyalty.run_due_work())).await;
        assert!(runs.iter().all(Result::is_ok));
        restarted.settle_work().await;
        assert_eq!(inviter_rewards(&restarted, &bob.to_string()).await, 1);
        assert_eq!(restarted.balance(&a).await, "120.00");
        restarted.assert_ledger_invariants().await;
    },
    |config: &mut loyalty_server::Config| config.posting.work_poll_interval_ms = 0
);

e2e!(
    first_purchase_policy_rewards_on_the_first_purchase_only,
    |app: TestApp| async move {
        app.demo().await;
        policy(&app, "FIRST_PURCHASE", None).await;
        let (a, _) = app.register("alice").await;
        let code = code_of(&app, &a).await;
        let r = register_with(&app, "bob", &code).await;
        assert_eq!(status(&r), "PENDING");
        assert_eq!(app.balance(&a).await, "70.00");
        let buy = |order: &str| j!({"i": {"memberExternalId": "bob", "orderId": order, "amount": "10", "idempotencyKey": order}});
        let q = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance } }";
        let first = app.gql(Some(&app.service()), q, buy("o1")).await;
        assert_eq!(first.data()["recordPurchase"]["balance"], "105.00"); // 70 + 5 + 30
        app.gql(Some(&app.service()), q, buy("o2")).await.data();
        app.settle_work().await;
        assert_eq!(app.balance(&a).await, "120.00");
        assert_eq!(app.balance(&app.member("bob")).await, "110.00");
        assert_eq!(status(&register_with(&app, "bob", &code).await), "REWARDED");
        app.assert_ledger_invariants().await;
    }
);

const CLICK: &str = "mutation($c: String!, $v: String!) { trackReferralClick(code: $c, visitorId: $v) { counted } }";

e2e!(
    clicks_count_a_visitor_once_a_day_and_need_no_token,
    |app: TestApp| async move {
        app.demo().await;
        let (a, _) = app.register("alice").await;
        let code = code_of(&app, &a).await;
        let click = |v: &'static str| app.gql(None, CLICK, j!({"c": code, "v": v}));
        assert_eq!(
            click("visitor-1").await.data()["trackReferralClick"]["counted"],
            true
        );
        assert_eq!(
            click("visitor-1").await.data()["trackReferralClick"]["counted"],
            false
        );
        assert_eq!(
            click("visitor-2").await.data()["trackReferralClick"]["counted"],
            true
        );
        app.clock.advance(chrono::Duration::days(1));
        assert_eq!(
            click("visitor-1").await.data()["trackReferralClick"]["counted"],
            true
        );
        let unknown = app
            .gql(None, CLICK, j!({"c": "NOSUCHCODE", "v": "v"}))
            .await;
        assert_eq!(unknown.code(), "NOT_FOUND");
        let blank = app.gql(None, CLICK, j!({"c": code, "v": " "})).await;
        assert_eq!(blank.code(), "VALIDATION");
        // A flood on one code is cut off. The clock stands still, so the count is exact: the
        // burst is 40 and the click at day + 1 above spent one of it.
        let passed = |results: Vec<Gql>| {
            let limited: Vec<&Gql> = results
                .iter()
                .filter(|r| r.body.get("errors").is_some())
                .collect();
            assert!(limited.iter().all(|r| r.code() == "RATE_LIMITED"));
            results.len() - limited.len()
        };
        let flood = |round: u32| {
            let code = code.clone();
            let app = &app;
            join_all((0..60).map(move |i| {
                let code = code.clone();
                async move {
                    let v = format!("bot-{round}-{i}");
                    app.gql(None, CLICK, j!({"c": code, "v": v})).await
                }
            }))
        };
        assert_eq!(passed(flood(1).await), 39);
        app.clock.advance(chrono::Duration::seconds(1));
        assert_eq!(passed(flood(2).await), 20);
    }
);

const REPORT: &str = "query($f: DateTime!, $t: DateTime!, $first: Int, $after: String) { referralReport(from: $f, to: $t, first: $first, after: $after) { funnel { clicks registrations rewarded } pageInfo { hasNextPage endCursor } edges { node { member { id displayName } totalReferrals pendingReferrals clicks } } } }";

e2e!(
    the_referral_report_counts_the_funnel,
    |app: TestApp| async move {
        app.demo().await;
        let start = app.loyalty.now() - chrono::Duration::hours(1);
        let end = app.loyalty.now() + chrono::Duration::hours(1);
        let period = |first: i64, after: Option<&str>| j!({"f": start, "t": end, "first": first, "after": after});
        let admin = app.admin();
        let empty = app.gql(Some(&admin), REPORT, period(10, None)).await;
        assert_eq!(
            empty.data()["referralReport"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            empty.data()["referralReport"]["funnel"],
            j!({"clicks": 0, "registrations": 0, "rewarded": 0})
        );

        let (a, a_id) = app.register("alice").await;
        let (c, c_id) = app.register("carol").await;
        let (a_code, c_code) = (code_of(&app, &a).await, code_of(&app, &c).await);
        for v in ["v1", "v2", "v3"] {
            app.gql(None, CLICK, j!({"c": a_code, "v": v})).await.data();
        }
        app.gql(None, CLICK, j!({"c": c_code, "v": "v1"}))
            .await
            .data();
        register_with(&app, "f1", &a_code).await;
        register_with(&app, "f2", &a_code).await;
        register_with(&app, "f3", &c_code).await;

        let page = app.gql(Some(&admin), REPORT, period(1, None)).await;
        let report = &page.data()["referralReport"];
        assert_eq!(
            report["funnel"],
            j!({"clicks": 4, "registrations": 3, "rewarded": 3})
        );
        assert_eq!(report["edges"][0]["node"]["member"]["id"], a_id.as_str());
        assert_eq!(report["edges"][0]["node"]["totalReferrals"], 2);
        assert_eq!(report["edges"][0]["node"]["clicks"], 3);
        assert_eq!(report["pageInfo"]["hasNextPage"], true);
        let cursor = report["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
        let next = app
            .gql(Some(&admin), REPORT, period(1, Some(&cursor)))
            .await;
        let row = &next.data()["referralReport"]["edges"][0]["node"];
        assert_eq!(
            (row["member"]["id"].as_str(), row["totalReferrals"].as_i64()),
            (Some(c_id.as_str()), Some(1))
        );
        assert_eq!(
            next.data()["referralReport"]["pageInfo"]["hasNextPage"],
            false
        );

        // Only admins of this program.
        assert_eq!(
            app.gql(Some(&a), REPORT, period(10, None)).await.code(),
            "FORBIDDEN"
        );
        assert_eq!(
            app.gql(Some(&app.service()), REPORT, period(10, None))
                .await
                .code(),
            "FORBIDDEN"
        );
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
        let other = app
            .gql(
                Some(&app.token("other", "admin", "x")),
                REPORT,
                period(10, None),
            )
            .await;
        assert_eq!(
            other.data()["referralReport"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        assert_eq!(other.data()["referralReport"]["funnel"]["clicks"], 0);
    }
);
