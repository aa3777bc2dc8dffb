//! Campaigns through the admin API, with exact point values: conditions, effects, stacking and
//! budgets on top of the demo program's rules (Asia/Ho_Chi_Minh, UTC+7; 10 points per currency
//! unit; purchases pay 5 %, so 100.00 pays 50.00).

use crate::e2e;
use crate::helpers::*;

const TZ: &str = "Asia/Ho_Chi_Minh";
const CREATE: &str = "mutation($i: RuleInput!) { createRule(input: $i) { id } }";
const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded awarded reason rules { ruleId name source points } } }";
const ACT: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded points reason rules { name points } } }";
const UPSERT_TIER: &str = "mutation($i: TierInput!) { upsertTier(input: $i) { id } }";

/// Creates a draft rule and returns its id.
async fn rule(app: &TestApp, input: serde_json::Value) -> String {
    let created = app
        .gql(Some(&app.admin()), CREATE, j!({ "i": input }))
        .await;
    created.data()["createRule"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn publish(app: &TestApp) {
    app.gql(
        Some(&app.admin()),
        "mutation { publishRules { version } }",
        j!({}),
    )
    .await
    .data();
}

/// Removes a demo rule for `action` from the draft (tests that want a campaign alone).
async fn drop_demo_rule(app: &TestApp, action: &str) {
    let admin = app.admin();
    let rules = app
        .gql(Some(&admin), "{ rules { id action } }", j!({}))
        .await;
    for r in rules.data()["rules"].as_array().unwrap() {
        if r["action"] == action {
            app.gql(
                Some(&admin),
                "mutation($id: ID!) { deleteRule(id: $id) { id } }",
                j!({ "id": r["id"] }),
            )
            .await
            .data();
        }
    }
}

async fn purchase(app: &TestApp, member: &str, order: &str, amount: &str) -> serde_json::Value {
    let res = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": member, "orderId": order, "amount": amount, "idempotencyKey": format!("k-{order}")}}),
        )
        .await;
    res.data()["recordPurchase"].clone()
}

/// Points the rule named `name` paid in an answer's `rules` list (0 when it did not pay).
fn paid_by(answer: &serde_json::Value, name: &str) -> String {
    answer["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| r["points"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| "0".into())
}

e2e!(
    weekend_double_points_follow_the_program_timezone_and_the_tier,
    |app: TestApp| async move {
        app.demo().await;
        // Everyone is Silver with ×1.5: the campaign doubles the tier-multiplied points.
        app.gql(
            Some(&app.admin()),
            UPSERT_TIER,
            j!({"i": {"name": "Silver", "minQualification": "0", "multiplier": "1.5"}}),
        )
        .await
        .data();
        rule(
            &app,
            j!({"name": "Weekend x2", "action": "purchase", "source": "weekend_x2",
                "effect": {"kind": "MULTIPLIER", "factor": "2"},
                "conditions": [{"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]}]}),
        )
        .await;
        publish(&app).await;
        app.register("m1").await;

        // 2026-12-04 is a Friday: 23:59 local is 16:59 UTC.
        app.clock.set(local(TZ, "2026-12-04 23:59:00"));
        let friday = purchase(&app, "m1", "o-fri", "100.00").await;
        // 100.00 × 5 % × 10 = 50, × 1.5 (Silver) = 75; no weekend bonus.
        assert_eq!(friday["pointsAwarded"], "75.00");
        assert_eq!(paid_by(&friday, "Weekend x2"), "0");

        app.clock.set(local(TZ, "2026-12-05 00:00:00"));
        let saturday = purchase(&app, "m1", "o-sat", "100.00").await;
        // 75 from the purchase rule, and the campaign pays 75 × (2 − 1) more.
        assert_eq!(saturday["pointsAwarded"], "150.00");
        assert_eq!(paid_by(&saturday, "Weekend x2"), "75.00");
        let sources: Vec<_> = saturday["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["source"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sources, ["purchase", "weekend_x2"]);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    spend_threshold_pays_a_flat_bonus_once_per_iso_week,
    |app: TestApp| async move {
        app.demo().await;
        rule(
            &app,
            j!({"name": "Big basket", "action": "purchase", "source": "big_basket",
                "effect": {"kind": "FIXED", "points": "100"},
                "conditions": [{"kind": "orderTotalAtLeast", "amount": "50.00"}],
                "limit": {"count": 1, "period": "WEEK"}}),
        )
        .await;
        publish(&app).await;
        app.register("m1").await;
        // Wednesday 2026-12-02 local.
        app.clock.set(local(TZ, "2026-12-02 12:00:00"));
        let small = purchase(&app, "m1", "o1", "49.99").await;
        assert_eq!(paid_by(&small, "Big basket"), "0");
        let big = purchase(&app, "m1", "o2", "50.00").await;
        assert_eq!(paid_by(&big, "Big basket"), "100.00");
        assert_eq!(big["pointsAwarded"], "125.00");
        // Sunday 23:59 local is still the same ISO week.
        app.clock.set(local(TZ, "2026-12-06 23:59:00"));
        let again = purchase(&app, "m1", "o3", "80.00").await;
        assert_eq!(paid_by(&again, "Big basket"), "0");
        assert_eq!(again["pointsAwarded"], "40.00");
        // Monday 00:00 local starts a new week.
        app.clock.set(local(TZ, "2026-12-07 00:00:00"));
        let next = purchase(&app, "m1", "o4", "80.00").await;
        assert_eq!(paid_by(&next, "Big basket"), "100.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(one_point_per_ten_rounds_down, |app: TestApp| async move {
    app.demo().await;
    drop_demo_rule(&app, "purchase").await;
    rule(
        &app,
        j!({"name": "1 per 10", "action": "purchase",
                "effect": {"kind": "PER_UNIT", "points": "1", "per": "10.00", "rounding": "DOWN"}}),
    )
    .await;
    publish(&app).await;
    app.register("m1").await;
    let answer = purchase(&app, "m1", "o1", "99.99").await;
    assert_eq!(answer["pointsAwarded"], "9.00");
    let answer = purchase(&app, "m1", "o2", "100.00").await;
    assert_eq!(answer["pointsAwarded"], "10.00");
    let answer = purchase(&app, "m1", "o3", "9.99").await;
    assert_eq!(answer["pointsAwarded"], "0.00");
    assert_eq!(answer["awarded"], false);
    assert_eq!(answer["reason"], "NOTHING_TO_AWARD");
    app.assert_ledger_invariants().await;
});

e2e!(
    first_purchase_bonus_is_paid_once_under_concurrent_first_purchases,
    |app: TestApp| async move {
        app.demo().await;
        rule(
            &app,
            j!({"name": "First order", "action": "purchase", "source": "first_order",
                "effect": {"kind": "FIXED", "points": "30"},
                "conditions": [{"kind": "firstPurchase"}]}),
        )
        .await;
        publish(&app).await;
        let (token, _) = app.register("m1").await;
        let before = app.balance(&token).await;
        let answers = futures::future::join_all((0..10).map(|n| {
            let app = &app;
            async move { purchase(app, "m1", &format!("o{n}"), "10.00").await }
        }))
        .await;
        let bonuses: Vec<_> = answers
            .iter()
            .map(|a| paid_by(a, "First order"))
            .filter(|p| p != "0")
            .collect();
        assert_eq!(bonuses, ["30.00"]);
        // Ten purchases × 5.00, plus the one bonus.
        let expected = before.parse::<f64>().unwrap() + 50.0 + 30.0;
        assert_eq!(app.balance(&token).await, format!("{expected:.2}"));
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    gold_members_news_reads_pay_triple,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        app.gql(
            Some(&admin),
            UPSERT_TIER,
            j!({"i": {"name": "Silver", "minQualification": "0", "multiplier": "1"}}),
        )
        .await
        .data();
        let gold = app
            .gql(
                Some(&admin),
                UPSERT_TIER,
                j!({"i": {"name": "Gold", "minQualification": "100", "multiplier": "1"}}),
            )
            .await;
        let gold_id: i64 = gold.data()["upsertTier"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        rule(
            &app,
            j!({"name": "Gold news x3", "action": "news_read",
                "effect": {"kind": "MULTIPLIER", "factor": "3"},
                "conditions": [{"kind": "tierIn", "tierIds": [gold_id]}]}),
        )
        .await;
        publish(&app).await;
        let (gold_token, _) = app.register("gold").await;
        let (silver_token, _) = app.register("silver").await;
        // 200.00 × 5 % × 10 = 100 qualification points: Gold.
        purchase(&app, "gold", "o1", "200.00").await;
        let read = |token: String| {
            let app = &app;
            async move {
                let res = app
                    .gql(Some(&token), ACT, j!({"a": "news_read", "o": "n1"}))
                    .await;
                res.data()["recordAction"].clone()
            }
        };
        assert_eq!(read(gold_token).await["points"], "9.00");
        let silver = read(silver_token).await;
        assert_eq!(silver["points"], "3.00");
        assert_eq!(paid_by(&silver, "Gold news x3"), "0");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    evening_shares_pay_ten_until_twenty_hundred,
    |app: TestApp| async move {
        app.demo().await;
        rule(
            &app,
            j!({"name": "Evening shares", "action": "product_share", "source": "evening_share",
                "effect": {"kind": "FIXED", "points": "10"},
                "priority": 10, "exclusive": true,
                "conditions": [{"kind": "localTimeBetween", "from": "18:00", "to": "20:00"}]}),
        )
        .await;
        publish(&app).await;
        let (token, _) = app.register("m1").await;
        let share = |object: &'static str, key: &'static str| {
            let app = &app;
            let token = token.clone();
            async move {
                let res = app
                    .gql(
                        Some(&token),
                        ACT,
                        j!({"a": "product_share", "o": object, "k": key}),
                    )
                    .await;
                res.data()["recordAction"].clone()
            }
        };
        app.clock.set(local(TZ, "2026-12-02 17:59:00"));
        assert_eq!(share("p1", "s1").await["points"], "5.00");
        app.clock.set(local(TZ, "2026-12-02 18:00:00"));
        let evening = share("p2", "s2").await;
        // The exclusive campaign pays alone: the base rule does not add its 5.
        assert_eq!(evening["points"], "10.00");
        assert_eq!(paid_by(&evening, "Evening shares"), "10.00");
        app.clock.set(local(TZ, "2026-12-02 19:59:59"));
        assert_eq!(share("p3", "s3").await["points"], "10.00");
        app.clock.set(local(TZ, "2026-12-02 20:00:00"));
        let late = share("p4", "s4").await;
        assert_eq!(late["points"], "5.00");
        assert_eq!(paid_by(&late, "Evening shares"), "0");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_budget_is_never_exceeded_by_concurrent_members,
    |app: TestApp| async move {
        app.demo().await;
        drop_demo_rule(&app, "purchase").await;
        let id = rule(
            &app,
            j!({"name": "Launch bonus", "action": "purchase", "source": "launch_bonus",
                "effect": {"kind": "FIXED", "points": "100"},
                "budget": {"total": "1000"}}),
        )
        .await;
        publish(&app).await;
        let answers = futures::future::join_all((0..50).map(|n| {
            let app = &app;
            async move { purchase(app, &format!("m{n}"), &format!("o{n}"), "60.00").await }
        }))
        .await;
        let paid = answers.iter().filter(|a| a["awarded"] == true).count();
        assert_eq!(paid, 10);
        for refused in answers.iter().filter(|a| a["awarded"] == false) {
            assert_eq!(refused["reason"], "BUDGET_EXHAUSTED");
            assert_eq!(refused["pointsAwarded"], "0.00");
        }
        let rules = app
            .gql(
                Some(&app.admin()),
                "{ rules { id budget { total spent remaining awards } } }",
                j!({}),
            )
            .await;
        let budget = rules.data()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap()["budget"]
            .clone();
        assert_eq!(budget["spent"], "1000.00");
        assert_eq!(budget["remaining"], "0.00");
        assert_eq!(budget["awards"], 10);
        // The ledger agrees: ten rows of 100 under the campaign's source.
        let program = app.demo().await;
        let report = app.loyalty.audit(&program).await.unwrap();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        let issued: i64 = app
            .sql_i64(
                "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS n FROM ledger_entries WHERE source = 'launch_bonus'",
            )
            .await;
        assert_eq!(issued, 100_000);
    }
);

e2e!(
    the_demo_campaigns_stack_on_a_saturday_coffee_order,
    |app: TestApp| async move {
        let program = app.demo().await;
        app.loyalty.seed_demo_campaigns(&program).await.unwrap();
        // Seeding again adds nothing.
        app.loyalty.seed_demo_campaigns(&program).await.unwrap();
        let rules = app
            .gql(
                Some(&app.admin()),
                "{ liveRules { rules { source } } }",
                j!({}),
            )
            .await;
        let sources: Vec<_> = rules.data()["liveRules"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["source"].as_str())
            .filter(|s| ["weekend_double", "coffee_bonus", "big_basket"].contains(s))
            .collect();
        assert_eq!(sources.len(), 3, "{sources:?}");
        app.register("m1").await;
        app.clock.set(local(TZ, "2026-12-05 10:00:00"));
        let order = j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "60.00",
            "idempotencyKey": "k-o1", "lines": [
                {"sku": "latte", "category": "coffee", "quantity": 2, "unitPrice": "20.00"},
                {"sku": "green", "category": "tea", "quantity": 1, "unitPrice": "20.00"}]}});
        let answer = app.gql(Some(&app.service()), PURCHASE, order).await;
        let answer = answer.data()["recordPurchase"].clone();
        // 5 % of 60.00 × 10 = 30, 10 % of the 40.00 of coffee × 10 = 40, the big basket 100,
        // and the weekend doubles their 170.
        assert_eq!(paid_by(&answer, "5% back on purchases"), "30.00");
        assert_eq!(
            paid_by(&answer, "Coffee lovers: 10 % back on coffee"),
            "40.00"
        );
        assert_eq!(
            paid_by(
                &answer,
                "Big basket: 100 points on an order of 50.00 or more, once a week"
            ),
            "100.00"
        );
        assert_eq!(paid_by(&answer, "Weekend double points"), "170.00");
        assert_eq!(answer["pointsAwarded"], "340.00");
        app.assert_ledger_invariants().await;
    }
);
