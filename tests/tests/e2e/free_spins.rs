//! Free wheel spins: a `FREE_SPINS` campaign credits the SPINS account (1.00 per spin, never
//! points), and `spinWheel` spends one before any points, also under concurrent spins.
//!
//! Most tests publish their rules by writing a ruleset version directly ([`publish_raw_rules`],
//! to pin the stored shape); the scenario goes through the admin API.

use futures::future::join_all;
use loyalty_domain::Loyalty;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

const UPSERT: &str = "mutation($i: WheelInput!) { upsertWheel(input: $i) { id } }";
const SPIN: &str = "mutation($w: ID!, $k: String!) { spinWheel(wheelId: $w, clientSeed: \"seed\", idempotencyKey: $k) { spinId cost paidWith freeSpins balance transactions { account kind amount purpose refType refId } } }";
const ACTION: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded points spins balance reason transactions { account kind amount source ruleId expiresAt } } }";
const ME: &str = "{ me { balance freeSpins lifetimeEarned } }";

/// `$1, $2, …` as the backend wants its placeholders.
fn sql(backend: DatabaseBackend, text: &str) -> String {
    match backend {
        DatabaseBackend::Sqlite => (1..=9).rev().fold(text.to_owned(), |text, n| {
            text.replace(&format!("${n}"), "?")
        }),
        _ => text.to_owned(),
    }
}

/// Publishes `demo`'s live rules plus `extra` (rules in their published JSON form) as a new
/// ruleset version, the way `publishRules` stores one: the stand-in for the admin API's new
/// reward kinds and conditions until c11-admin lands.
pub async fn publish_raw_rules(loyalty: &Loyalty, extra: Vec<Value>) {
    let program = loyalty.program("demo").await.unwrap();
    let live = loyalty.live_ruleset(&program).await.unwrap();
    let mut rules = serde_json::to_value(&live.rules).unwrap();
    rules.as_array_mut().unwrap().extend(extra);
    let db = loyalty.db();
    let backend = db.get_database_backend();
    let txn = db.begin().await.unwrap();
    txn.execute(Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "UPDATE programs SET ruleset_version = ruleset_version + 1 WHERE id = $1",
        ),
        [program.id.into()],
    ))
    .await
    .unwrap();
    let version: i64 = txn
        .query_one(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT ruleset_version AS v FROM programs WHERE id = $1",
            ),
            [program.id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "v")
        .unwrap();
    txn.execute(Statement::from_sql_and_values(
        backend,
        sql(
            backend,
            "INSERT INTO rulesets (program_id, version, rules, published_by, published_at) \
             VALUES ($1, $2, $3, $4, $5)",
        ),
        [
            program.id.into(),
            version.into(),
            rules.to_string().into(),
            "test".into(),
            chrono::Utc::now().into(),
        ],
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

/// A rule as a published ruleset holds it.
pub fn raw_rule(id: i64, action: &str, reward: Value, limit: Value, conditions: Value) -> Value {
    j!({
        "id": id, "name": format!("campaign {id}"), "action": action,
        "source": format!("campaign_{id}"), "reward": reward, "limit": limit,
        "per_object": false, "streak": null, "active_from": null, "active_to": null,
        "enabled": true, "conditions": conditions,
    })
}

fn free_spins(spins: u32) -> Value {
    j!({"kind": "FREE_SPINS", "value": spins})
}

/// A wheel that pays nothing, so balances are exact.
async fn blank_wheel(app: &TestApp, cost: &str, daily_limit: u32) -> String {
    let segments = j!([{"label": "Nothing", "weight": 1, "prize": "NOTHING"}]);
    let input = j!({"i": {"name": "Blank", "spinCost": cost, "dailySpinLimit": daily_limit, "segments": segments}});
    let r = app.gql(Some(&app.admin()), UPSERT, input).await;
    r.data()["upsertWheel"]["id"].as_str().unwrap().to_owned()
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.gql(Some(token), ME, j!({})).await.data()["me"].clone()
}

e2e!(
    a_free_spin_campaign_credits_spins_and_the_wheel_spends_them_before_points,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let no_limit = Value::Null;
        publish_raw_rules(
            &app.loyalty,
            vec![raw_rule(
                9101,
                "bonus_spin",
                free_spins(2),
                no_limit,
                j!([]),
            )],
        )
        .await;

        let earned = app
            .gql(
                Some(&token),
                ACTION,
                j!({"a": "bonus_spin", "k": "bonus-1"}),
            )
            .await;
        let e = &earned.data()["recordAction"];
        assert_eq!(e["awarded"], true);
        assert_eq!(
            (e["points"].as_str(), e["spins"].as_u64()),
            (Some("0.00"), Some(2))
        );
        assert_eq!(e["balance"], "70.00");
        assert_eq!(
            e["transactions"],
            j!([{"account": "SPINS", "kind": "EARN", "amount": "2.00",
                 "source": "campaign_9101", "ruleId": "9101", "expiresAt": null}])
        );
        // A retry with the same key credits nothing more.
        let retried = app
            .gql(
                Some(&token),
                ACTION,
                j!({"a": "bonus_spin", "k": "bonus-1"}),
            )
            .await;
        assert_eq!(retried.data(), earned.data());
        assert_eq!(
            me(&app, &token).await,
            j!({"balance": "70.00", "freeSpins": 2, "lifetimeEarned": "70.00"})
        );

        let wheel = blank_wheel(&app, "10", 10).await;
        let spins: Vec<Value> = {
            let mut out = Vec::new();
            for n in 0..3 {
                let r = app
                    .gql(
                        Some(&token),
                        SPIN,
                        j!({"w": wheel, "k": format!("spin-{n}")}),
                    )
                    .await;
                out.push(r.data()["spinWheel"].clone());
            }
            out
        };
        let summary: Vec<(String, String, u64, String)> = spins
            .iter()
            .map(|s| {
                (
                    s["paidWith"].as_str().unwrap().to_owned(),
                    s["cost"].as_str().unwrap().to_owned(),
                    s["freeSpins"].as_u64().unwrap(),
                    s["balance"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let row = |paid: &str, cost: &str, left: u64, balance: &str| {
            (paid.to_owned(), cost.to_owned(), left, balance.to_owned())
        };
        assert_eq!(
            summary,
            [
                row("FREE_SPIN", "0.00", 1, "70.00"),
                row("FREE_SPIN", "0.00", 0, "70.00"),
                row("POINTS", "10.00", 0, "60.00"),
            ]
        );
        assert_eq!(
            spins[0]["transactions"],
            j!([{"account": "SPINS", "kind": "SPEND", "amount": "-1.00", "purpose": "lucky_wheel",
                 "refType": "spin", "refId": spins[0]["spinId"]}])
        );
        assert_eq!(spins[2]["transactions"][0]["account"], "POINTS");
        assert_eq!(
            me(&app, &token).await,
            j!({"balance": "60.00", "freeSpins": 0, "lifetimeEarned": "70.00"})
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    ten_concurrent_spins_use_exactly_the_three_free_spins_held,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        publish_raw_rules(
            &app.loyalty,
            vec![raw_rule(
                9102,
                "bonus_spin",
                free_spins(3),
                j!({"count": 1, "period": "LIFETIME"}),
                j!([]),
            )],
        )
        .await;
        let earned = app.gql(Some(&token), ACTION, j!({"a": "bonus_spin"})).await;
        assert_eq!(earned.data()["recordAction"]["spins"], 3);
        // 70.00 points pay exactly five spins at 14.00.
        let wheel = blank_wheel(&app, "14", 20).await;
        let answers = join_all((0..10).map(|n| {
            let (app, token, wheel) = (&app, token.clone(), wheel.clone());
            async move {
                app.gql(
                    Some(&token),
                    SPIN,
                    j!({"w": wheel, "k": format!("race-{n}")}),
                )
                .await
            }
        }))
        .await;
        let mut free = 0;
        let mut paid = 0;
        let mut refused = Vec::new();
        for answer in &answers {
            if answer.body.get("errors").is_some() {
                refused.push(answer.code());
                continue;
            }
            match answer.data()["spinWheel"]["paidWith"].as_str().unwrap() {
                "FREE_SPIN" => free += 1,
                "POINTS" => paid += 1,
                other => panic!("unexpected payment {other}"),
            }
        }
        assert_eq!((free, paid), (3, 5));
        assert_eq!(refused, ["INSUFFICIENT_POINTS", "INSUFFICIENT_POINTS"]);
        assert_eq!(
            me(&app, &token).await,
            j!({"balance": "0.00", "freeSpins": 0, "lifetimeEarned": "70.00"})
        );
        let history = app
            .gql(
                Some(&token),
                "{ me { transactions(first: 20) { edges { node { account kind amount } } } } }",
                j!({}),
            )
            .await;
        let spends: Vec<(String, String)> = history.data()["me"]["transactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["node"])
            .filter(|n| n["kind"] == "SPEND")
            .map(|n| {
                (
                    n["account"].as_str().unwrap().to_owned(),
                    n["amount"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(spends.len(), 8);
        assert_eq!(
            spends
                .iter()
                .filter(|s| *s == &("SPINS".to_owned(), "-1.00".to_owned()))
                .count(),
            3
        );
        assert_eq!(
            spends
                .iter()
                .filter(|s| *s == &("POINTS".to_owned(), "-14.00".to_owned()))
                .count(),
            5
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    spins_never_count_as_points_in_the_report_or_on_leaderboards,
    |app: TestApp| async move {
        app.clock
            .set(local("Asia/Ho_Chi_Minh", "2026-06-10 12:00:00"));
        app.demo().await;
        let (token, _) = app.register("m1").await;
        publish_raw_rules(
            &app.loyalty,
            vec![raw_rule(
                9103,
                "bonus_spin",
                free_spins(5),
                Value::Null,
                j!([]),
            )],
        )
        .await;
        app.gql(Some(&token), ACTION, j!({"a": "bonus_spin", "k": "b1"}))
            .await
            .data();
        let wheel = blank_wheel(&app, "10", 5).await;
        let spin = app
            .gql(Some(&token), SPIN, j!({"w": wheel, "k": "s1"}))
            .await;
        assert_eq!(spin.data()["spinWheel"]["paidWith"], "FREE_SPIN");

        let report = app
            .gql(
                Some(&app.admin()),
                "{ loyaltyReport(from: \"2026-06-10\", to: \"2026-06-10\") { pointsIssued { total count bySource { source points } } pointsUsed { total count } outstandingBalance members { active } } }",
                j!({}),
            )
            .await;
        let r = &report.data()["loyaltyReport"];
        // Join (20.00) and registration (50.00) only: the five spins and the one used are not
        // points.
        assert_eq!(r["pointsIssued"]["total"], "70.00");
        assert_eq!(r["pointsIssued"]["count"], 2);
        assert!(r["pointsIssued"]["bySource"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["source"] != "campaign_9103"));
        assert_eq!(r["pointsUsed"], j!({"total": "0.00", "count": 0}));
        assert_eq!(r["outstandingBalance"], "70.00");
        assert_eq!(r["members"]["active"], 1);
        let board = app
            .gql(Some(&token), "{ leaderboard { me { points } } }", j!({}))
            .await;
        assert_eq!(board.data()["leaderboard"]["me"]["points"], "70.00");
        assert_eq!(
            me(&app, &token).await,
            j!({"balance": "70.00", "freeSpins": 4, "lifetimeEarned": "70.00"})
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    five_news_reads_in_a_day_grant_a_free_spin,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let admin = app.admin();
        let created = app
            .gql(
                Some(&admin),
                "mutation { createRule(input: {name: \"Reader's spin\", action: \"news_read\", source: \"reader_spin\", effect: {kind: FREE_SPINS, spins: 1}, conditions: [{kind: \"actionCountAtLeast\", count: 5, period: \"DAY\"}], limit: {count: 1, period: DAY}}) { id } }",
                j!({}),
            )
            .await;
        created.data();
        app.gql(
            Some(&admin),
            "mutation { publishRules { version } }",
            j!({}),
        )
        .await
        .data();
        let mut spins = Vec::new();
        for n in 0..6 {
            let read = app
                .gql(
                    Some(&token),
                    ACTION,
                    j!({"a": "news_read", "o": format!("news-{n}")}),
                )
                .await;
            spins.push(read.data()["recordAction"]["spins"].as_u64().unwrap());
        }
        // The fifth read of the day grants the spin; the sixth is past the once-a-day limit.
        assert_eq!(spins, [0, 0, 0, 0, 1, 0]);
        // 70.00 + five first reads at 3.00 (the demo pays five a day).
        assert_eq!(
            me(&app, &token).await,
            j!({"balance": "85.00", "freeSpins": 1, "lifetimeEarned": "85.00"})
        );
        let wheel = blank_wheel(&app, "10", 5).await;
        let spin = app
            .gql(Some(&token), SPIN, j!({"w": wheel, "k": "after-reading"}))
            .await;
        let s = &spin.data()["spinWheel"];
        assert_eq!(
            (s["paidWith"].as_str(), s["cost"].as_str()),
            (Some("FREE_SPIN"), Some("0.00"))
        );
        assert_eq!(s["balance"], "85.00");
        assert_eq!(s["freeSpins"], 0);
        app.assert_ledger_invariants().await;
    }
);
