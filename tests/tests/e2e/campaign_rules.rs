//! Campaign fields of rules through the admin API (issue 11): effects, conditions, priority,
//! exclusive and budgets round-trip through the draft and a published version; bad input is
//! refused with `VALIDATION` naming the field and stores nothing; test mode explains itself;
//! caller-chosen points and the list of rules that paid.

use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

const FIELDS: &str = "id name action source effect { kind points percent per rounding factor min max spins } rewardKind points percent conditions priority exclusive budget { total perMember spent remaining awards }";

fn create() -> String {
    format!("mutation($i: RuleInput!) {{ createRule(input: $i) {{ {FIELDS} }} }}")
}

fn list() -> String {
    format!("{{ rules {{ {FIELDS} }} }}")
}

async fn gold_tier(app: &TestApp) -> i64 {
    let tier = app
        .gql(
            Some(&app.admin()),
            "mutation($i: TierInput!) { upsertTier(input: $i) { id } }",
            j!({"i": {"name": "Gold", "minQualification": "1000", "multiplier": "1"}}),
        )
        .await;
    tier.data()["upsertTier"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// An effect as the API answers it: every field, null unless given.
fn effect(kind: &str, fields: Value) -> Value {
    let mut all = j!({"kind": kind, "points": null, "percent": null, "per": null, "rounding": null, "factor": null, "min": null, "max": null, "spins": null});
    for (key, value) in fields.as_object().unwrap() {
        all[key] = value.clone();
    }
    all
}

e2e!(
    every_effect_and_condition_kind_round_trips_to_the_live_rules,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let gold = gold_tier(&app).await;
        // (input effect, conditions, the effect the API answers)
        let cases = vec![
            (
                j!({"kind": "FIXED", "points": "100"}),
                j!([{"kind": "orderTotalAtLeast", "amount": "50.00"}, {"kind": "orderTotalBelow", "amount": "500.00"}]),
                effect("FIXED", j!({"points": "100.00"})),
            ),
            (
                j!({"kind": "PERCENT", "percent": "12.5"}),
                j!([{"kind": "linesWithSku", "skus": ["A-1", "B-2"], "minQuantity": 2, "minValue": "10.00"}]),
                effect("PERCENT", j!({"percent": "12.50"})),
            ),
            (
                j!({"kind": "PERCENT_OF_LINES", "percent": "10"}),
                j!([{"kind": "linesInCategory", "categories": ["coffee"]}]),
                effect("PERCENT_OF_LINES", j!({"percent": "10.00"})),
            ),
            (
                j!({"kind": "PER_UNIT", "points": "1", "per": "10.00"}),
                j!([{"kind": "tierIn", "tierIds": [gold]}]),
                effect(
                    "PER_UNIT",
                    j!({"points": "1.00", "per": "10.00", "rounding": "DOWN"}),
                ),
            ),
            (
                j!({"kind": "PER_UNIT", "points": "2.5", "per": "3", "rounding": "UP"}),
                j!([{"kind": "nthPurchase", "n": 3}, {"kind": "joinedWithinDays", "days": 30}]),
                effect(
                    "PER_UNIT",
                    j!({"points": "2.50", "per": "3.00", "rounding": "UP"}),
                ),
            ),
            (
                j!({"kind": "MULTIPLIER", "factor": "2"}),
                j!([{"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]}, {"kind": "localTimeBetween", "from": "18:00", "to": "24:00"}]),
                effect("MULTIPLIER", j!({"factor": "2.00"})),
            ),
            (
                j!({"kind": "CALLER_CHOSEN", "min": "10", "max": "20"}),
                j!([{"kind": "objectIdIn", "ids": ["n1", "n2"]}, {"kind": "objectIdPrefix", "prefix": "news/sport/"}]),
                effect("CALLER_CHOSEN", j!({"min": "10.00", "max": "20.00"})),
            ),
            (
                j!({"kind": "FREE_SPINS", "spins": 1}),
                j!([{"kind": "firstPurchase"}, {"kind": "memberAttributeEquals", "key": "city", "value": "Berlin"}]),
                effect("FREE_SPINS", j!({"spins": 1})),
            ),
        ];
        let mut created = Vec::new();
        for (n, (input_effect, conditions, answered)) in cases.into_iter().enumerate() {
            let n = i32::try_from(n).unwrap();
            let input = j!({"i": {
                "name": format!("Campaign {n}"), "action": "purchase", "source": format!("campaign_{n}"),
                "effect": input_effect, "conditions": conditions.clone(),
                "priority": 10 - n, "exclusive": n == 1,
                "budget": {"total": "1000", "perMember": "100.5"},
            }});
            let r = app.gql(Some(&admin), &create(), input).await;
            let rule = r.data()["createRule"].clone();
            assert_eq!(rule["effect"], answered, "{rule}");
            assert_eq!(rule["conditions"], conditions);
            assert_eq!(rule["priority"], 10 - n);
            assert_eq!(rule["exclusive"], n == 1);
            assert_eq!(
                rule["budget"],
                j!({"total": "1000.00", "perMember": "100.50", "spent": "0.00", "remaining": "1000.00", "awards": 0})
            );
            created.push(rule);
        }
        // The older input shape still works and answers as before.
        let old = app
            .gql(
                Some(&admin),
                &create(),
                j!({"i": {"name": "Old", "action": "quiz", "rewardKind": "PERCENT", "percent": "5"}}),
            )
            .await;
        let old = old.data()["createRule"].clone();
        assert_eq!(old["rewardKind"], "PERCENT");
        assert_eq!(old["percent"], "5.00");
        assert_eq!(old["effect"], effect("PERCENT", j!({"percent": "5.00"})));
        assert_eq!(old["conditions"], j!([]));
        assert_eq!(old["priority"], 0);
        assert_eq!(old["exclusive"], false);
        assert_eq!(old["budget"], Value::Null);
        created.push(old);

        let draft = app.gql(Some(&admin), &list(), j!({})).await;
        let draft: Vec<Value> = draft.data()["rules"].as_array().unwrap().clone();
        for rule in &created {
            assert!(draft.contains(rule), "{rule} missing from the draft");
        }
        let published = app
            .gql(
                Some(&admin),
                &format!("mutation {{ publishRules {{ version rules {{ {FIELDS} }} }} }}"),
                j!({}),
            )
            .await;
        assert_eq!(published.data()["publishRules"]["rules"], j!(draft));
        let live = app
            .gql(
                Some(&admin),
                &format!("{{ liveRules {{ version rules {{ {FIELDS} }} }} }}"),
                j!({}),
            )
            .await;
        assert_eq!(live.data()["liveRules"]["rules"], j!(draft));

        // updateRule replaces the campaign fields.
        let id = created[0]["id"].clone();
        let update = format!(
            "mutation($id: ID!, $i: RuleInput!) {{ updateRule(id: $id, input: $i) {{ {FIELDS} }} }}"
        );
        let updated = app
            .gql(
                Some(&admin),
                &update,
                j!({"id": id, "i": {"name": "Campaign 0", "action": "purchase", "effect": {"kind": "FREE_SPINS", "spins": 3}}}),
            )
            .await;
        let updated = &updated.data()["updateRule"];
        assert_eq!(updated["effect"], effect("FREE_SPINS", j!({"spins": 3})));
        assert_eq!(updated["conditions"], j!([]));
        assert_eq!(updated["budget"], Value::Null);
        assert_eq!(updated["rewardKind"], Value::Null);
    }
);

e2e!(
    bad_campaign_input_is_refused_naming_the_field_and_stores_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let base = |extra: Value| {
            let mut input = j!({"name": "Campaign", "action": "purchase", "effect": {"kind": "FIXED", "points": "10"}});
            for (key, value) in extra.as_object().unwrap() {
                input[key] = value.clone();
            }
            input
        };
        let cases = vec![
            (
                base(j!({"conditions": [{"kind": "moonPhase"}]})),
                "conditions[0].kind",
            ),
            (
                base(j!({"effect": {"kind": "PERCENT", "percent": "-5"}})),
                "percent",
            ),
            (
                base(j!({"rewardKind": "PERCENT", "percent": "-5", "effect": null})),
                "percent",
            ),
            (base(j!({"budget": {"total": "-1"}})), "budget.total"),
            (base(j!({"budget": {"total": "0"}})), "budget.total"),
            (base(j!({"budget": {"perMember": "0"}})), "budget.perMember"),
            (
                base(
                    j!({"conditions": [{"kind": "orderTotalAtLeast", "amount": "50.00"}, {"kind": "localTimeBetween", "from": "25:00", "to": "26:00"}]}),
                ),
                "conditions[1].from",
            ),
            (
                base(j!({"conditions": [{"kind": "orderTotalAtLeast", "amount": "fifty"}]})),
                "conditions[0].amount",
            ),
            (
                base(
                    j!({"conditions": [{"kind": "orderTotalAtLeast", "amount": "50.00", "currency": "EUR"}]}),
                ),
                "conditions[0].currency",
            ),
            (
                base(j!({"conditions": [{"kind": "tierIn", "tierIds": [987654]}]})),
                "conditions[0].tierIds",
            ),
            (
                base(j!({"effect": {"kind": "FIXED", "points": "10", "factor": "2"}})),
                "effect.factor",
            ),
            (
                base(j!({"effect": {"kind": "MULTIPLIER", "factor": "1"}})),
                "effect.factor",
            ),
            (
                base(j!({"effect": {"kind": "MULTIPLIER", "factor": "1.005"}})),
                "effect.factor",
            ),
            (
                base(j!({"effect": {"kind": "PER_UNIT", "points": "1", "per": "0"}})),
                "effect.per",
            ),
            (
                base(j!({"effect": {"kind": "PER_UNIT", "points": "1"}})),
                "effect.per",
            ),
            (
                base(j!({"effect": {"kind": "CALLER_CHOSEN", "min": "20", "max": "10"}})),
                "effect.max",
            ),
            (
                base(j!({"effect": {"kind": "FREE_SPINS", "spins": 0}})),
                "effect.spins",
            ),
            (
                base(j!({"effect": {"kind": "FREE_SPINS", "spins": 101}})),
                "effect.spins",
            ),
            (base(j!({"priority": 1001})), "priority"),
            (base(j!({"rewardKind": "FIXED", "points": "10"})), "effect"),
            (base(j!({"effect": null})), "effect"),
        ];
        let before = app.gql(Some(&admin), &list(), j!({})).await.data().clone();
        let target = before["rules"][0]["id"].clone();
        let update = "mutation($id: ID!, $i: RuleInput!) { updateRule(id: $id, input: $i) { id } }";
        for (input, field) in cases {
            let created = app.gql(Some(&admin), &create(), j!({"i": input})).await;
            assert_eq!(created.code(), "VALIDATION", "{input}");
            let message = created.body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(field), "{message} should name {field}");
            let updated = app
                .gql(Some(&admin), update, j!({"id": target, "i": input}))
                .await;
            assert_eq!(updated.code(), "VALIDATION", "{input}");
        }
        assert_eq!(app.gql(Some(&admin), &list(), j!({})).await.data(), &before);
    }
);

const TEST: &str = "mutation($i: TestRulesInput!) { testRules(input: $i) { wouldAward points reason verdicts { ruleId ruleName wouldPay points spins reason detail } } }";
const PUBLISH: &str = "mutation { publishRules { version } }";
const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded rules { ruleId name source points spins } } }";

async fn rule(app: &TestApp, input: Value) -> String {
    let r = app
        .gql(Some(&app.admin()), &create(), j!({ "i": input }))
        .await;
    r.data()["createRule"]["id"].as_str().unwrap().to_owned()
}

/// The verdict of one rule in a `testRules` answer.
fn verdict<'a>(answer: &'a Gql, rule_id: &str) -> &'a Value {
    answer.data()["testRules"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ruleId"] == rule_id)
        .unwrap_or_else(|| panic!("no verdict for rule {rule_id} in {}", answer.body))
}

e2e!(
    test_mode_names_the_failing_condition_and_the_value_seen,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let (_, member) = app.register("m1").await;
        let big_order = rule(
            &app,
            j!({"name": "Big order", "action": "purchase", "source": "big_order",
                "effect": {"kind": "FIXED", "points": "100"},
                "conditions": [{"kind": "orderTotalAtLeast", "amount": "50.00"}]}),
        )
        .await;
        let dry =
            |amount: &str| j!({"i": {"memberId": member, "action": "purchase", "amount": amount}});
        let small = app.gql(Some(&admin), TEST, dry("42.00")).await;
        assert_eq!(
            verdict(&small, &big_order),
            &j!({"ruleId": big_order, "ruleName": "Big order", "wouldPay": false, "points": "0.00", "spins": 0,
                 "reason": "CONDITIONS_NOT_MET", "detail": "conditions[0]: order total 42.00 < 50.00"})
        );
        // The demo's 5 % purchase rule still pays: 42.00 × 5 % × 10 points per unit.
        assert_eq!(small.data()["testRules"]["points"], "21.00");
        let enough = app.gql(Some(&admin), TEST, dry("50.00")).await;
        assert_eq!(verdict(&enough, &big_order)["wouldPay"], true);
        assert_eq!(verdict(&enough, &big_order)["points"], "100.00");
        assert_eq!(enough.data()["testRules"]["points"], "125.00");

        // `at`: the weekend rule tested on a weekday (program time Asia/Ho_Chi_Minh).
        let weekend = rule(
            &app,
            j!({"name": "Weekend", "action": "purchase", "source": "weekend",
                "effect": {"kind": "MULTIPLIER", "factor": "2"},
                "conditions": [{"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]}]}),
        )
        .await;
        let at = |when: &str| {
            j!({"i": {"memberId": member, "action": "purchase", "amount": "20.00",
                      "at": local("Asia/Ho_Chi_Minh", when).to_rfc3339()}})
        };
        let friday = app.gql(Some(&admin), TEST, at("2026-12-04 23:59:00")).await;
        assert_eq!(
            verdict(&friday, &weekend)["detail"],
            "conditions[0]: local day friday is not in {saturday, sunday}"
        );
        assert_eq!(friday.data()["testRules"]["points"], "10.00");
        let saturday = app.gql(Some(&admin), TEST, at("2026-12-05 00:00:00")).await;
        assert_eq!(verdict(&saturday, &weekend)["wouldPay"], true);
        assert_eq!(verdict(&saturday, &weekend)["points"], "10.00");
        assert_eq!(saturday.data()["testRules"]["points"], "20.00");

        // Lines: 10 % of the coffee lines only (2 × 5.00 of coffee, 10.00 of tea).
        let coffee = rule(
            &app,
            j!({"name": "Coffee", "action": "purchase", "source": "coffee",
                "effect": {"kind": "PERCENT_OF_LINES", "percent": "10"},
                "conditions": [{"kind": "linesInCategory", "categories": ["coffee"]}]}),
        )
        .await;
        let lines = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": member, "action": "purchase", "lines": [
                    {"sku": "esp", "category": "coffee", "quantity": 2, "unitPrice": "5.00"},
                    {"sku": "green", "category": "tea", "quantity": 1, "unitPrice": "10.00"}]}}),
            )
            .await;
        assert_eq!(verdict(&lines, &coffee)["points"], "10.00");
        let tea_only = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": member, "action": "purchase", "lines": [
                    {"sku": "green", "category": "tea", "quantity": 1, "unitPrice": "10.00"}]}}),
            )
            .await;
        assert_eq!(
            verdict(&tea_only, &coffee)["detail"],
            "conditions[0]: no line in category {\"coffee\"}"
        );
        let mismatch = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": member, "action": "purchase", "amount": "11.00", "lines": [
                    {"sku": "green", "category": "tea", "quantity": 1, "unitPrice": "10.00"}]}}),
            )
            .await;
        assert_eq!(mismatch.code(), "VALIDATION");

        // The member's purchase count is a fact test mode loads like the real award.
        let first = rule(
            &app,
            j!({"name": "First", "action": "purchase", "source": "first_purchase",
                "effect": {"kind": "FIXED", "points": "30"}, "conditions": [{"kind": "firstPurchase"}]}),
        )
        .await;
        assert_eq!(
            verdict(&app.gql(Some(&admin), TEST, dry("10.00")).await, &first)["wouldPay"],
            true
        );
        app.gql(Some(&admin), PUBLISH, j!({})).await.data();
        let bought = app
            .gql(
                Some(&app.service()),
                PURCHASE,
                j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "10.00", "idempotencyKey": "p1"}}),
            )
            .await;
        assert_eq!(bought.data()["recordPurchase"]["pointsAwarded"], "35.00");
        assert_eq!(
            verdict(&app.gql(Some(&admin), TEST, dry("10.00")).await, &first)["detail"],
            "conditions[0]: purchase #2 is not the first"
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    caller_chosen_points_come_from_the_service_within_the_range,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let (token, _) = app.register("m1").await;
        let survey = rule(
            &app,
            j!({"name": "Survey", "action": "survey", "source": "survey",
                "effect": {"kind": "CALLER_CHOSEN", "min": "10", "max": "20"},
                "budget": {"total": "100"}}),
        )
        .await;
        app.gql(Some(&admin), PUBLISH, j!({})).await.data();
        let act = "mutation($p: Decimal, $k: String) { recordAction(input: {action: \"survey\", memberExternalId: \"m1\", points: $p, idempotencyKey: $k}) { awarded points balance reason detail rules { ruleId name source points spins } } }";
        let service = app.service();
        let paid = app
            .gql(Some(&service), act, j!({"p": "15", "k": "s1"}))
            .await;
        assert_eq!(
            paid.data()["recordAction"],
            j!({"awarded": true, "points": "15.00", "balance": "85.00", "reason": null, "detail": null,
                "rules": [{"ruleId": survey, "name": "Survey", "source": "survey", "points": "15.00", "spins": 0}]})
        );
        let too_many = app
            .gql(Some(&service), act, j!({"p": "25", "k": "s2"}))
            .await;
        assert_eq!(too_many.code(), "VALIDATION");
        let missing = app.gql(Some(&service), act, j!({"k": "s3"})).await;
        assert_eq!(missing.code(), "VALIDATION");
        // A member may not choose their own points.
        let own = "mutation { recordAction(input: {action: \"survey\", points: \"15\", idempotencyKey: \"s4\"}) { awarded } }";
        assert_eq!(app.gql(Some(&token), own, j!({})).await.code(), "FORBIDDEN");
        assert_eq!(app.balance(&token).await, "85.00");
        // The admin sees what the campaign's budget has issued, in the draft and the live rules.
        let spent = j!({"total": "100.00", "perMember": null, "spent": "15.00", "remaining": "85.00", "awards": 1});
        let draft = app.gql(Some(&admin), &list(), j!({})).await;
        let draft = draft.data()["rules"].as_array().unwrap().clone();
        let mine = draft.iter().find(|r| r["id"] == survey).unwrap();
        assert_eq!(mine["budget"], spent);
        let live = app
            .gql(
                Some(&admin),
                &format!("{{ liveRules {{ rules {{ {FIELDS} }} }} }}"),
                j!({}),
            )
            .await;
        let live = live.data()["liveRules"]["rules"]
            .as_array()
            .unwrap()
            .clone();
        let mine = live.iter().find(|r| r["id"] == survey).unwrap();
        assert_eq!(mine["budget"], spent);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    the_answer_lists_every_rule_that_paid_in_priority_order,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let (token, member) = app.register("m1").await;
        let fixed = |name: &str, points: &str, priority: i32, exclusive: bool| {
            j!({"name": name, "action": "checkin", "source": name.to_lowercase(),
                "effect": {"kind": "FIXED", "points": points}, "priority": priority, "exclusive": exclusive,
                "limit": {"count": 1, "period": "DAY"}})
        };
        let double = rule(
            &app,
            j!({"name": "Double", "action": "checkin", "source": "double",
                "effect": {"kind": "MULTIPLIER", "factor": "2"}, "priority": 20}),
        )
        .await;
        let a = rule(&app, fixed("A", "10", 10, false)).await;
        let b = rule(&app, fixed("B", "5", 5, true)).await;
        let c = rule(&app, fixed("C", "3", 1, false)).await;
        let dry = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": member, "action": "checkin"}}),
            )
            .await;
        let order: Vec<&Value> = dry.data()["testRules"]["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["ruleId"])
            .collect();
        assert_eq!(order, vec![&j!(double), &j!(a), &j!(b), &j!(c)]);
        assert_eq!(verdict(&dry, &c)["reason"], "EXCLUDED");
        assert_eq!(
            verdict(&dry, &c)["detail"],
            "the exclusive rule \"B\" paid first"
        );
        app.gql(Some(&admin), PUBLISH, j!({})).await.data();
        let act = "mutation { recordAction(input: {action: \"checkin\", idempotencyKey: \"c1\"}) { awarded points rules { ruleId name source points spins } } }";
        let paid = app.gql(Some(&token), act, j!({})).await;
        // A 10 + B 5, then Double pays (2 − 1) × 15; C is excluded by B.
        assert_eq!(
            paid.data()["recordAction"],
            j!({"awarded": true, "points": "30.00", "rules": [
                {"ruleId": a, "name": "A", "source": "a", "points": "10.00", "spins": 0},
                {"ruleId": b, "name": "B", "source": "b", "points": "5.00", "spins": 0},
                {"ruleId": double, "name": "Double", "source": "double", "points": "15.00", "spins": 0}]})
        );
        assert_eq!(app.balance(&token).await, "100.00");

        // recordPurchase lists its rules too (the demo's 5 % rule and a threshold bonus), and a
        // retried request answers the same list.
        let bonus = rule(
            &app,
            j!({"name": "Bonus", "action": "purchase", "source": "bonus",
                "effect": {"kind": "FIXED", "points": "100"},
                "conditions": [{"kind": "orderTotalAtLeast", "amount": "50.00"}]}),
        )
        .await;
        app.gql(Some(&admin), PUBLISH, j!({})).await.data();
        let order = j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "60.00", "idempotencyKey": "p1"}});
        let bought = app.gql(Some(&app.service()), PURCHASE, order.clone()).await;
        let rules = bought.data()["recordPurchase"]["rules"].clone();
        let paid: Vec<(&Value, &Value)> = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (&r["source"], &r["points"]))
            .collect();
        assert_eq!(
            paid,
            vec![
                (&j!("purchase"), &j!("30.00")),
                (&j!("bonus"), &j!("100.00"))
            ]
        );
        assert_eq!(rules[1]["ruleId"], bonus);
        let again = app.gql(Some(&app.service()), PURCHASE, order).await;
        assert_eq!(again.data()["recordPurchase"]["rules"], rules);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_rule_row_written_before_campaigns_reads_as_before,
    |app: TestApp| async move {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        let program = app.demo().await;
        let db = app.loyalty.db();
        let backend = db.get_database_backend();
        // Only the columns that existed before migration 013: the new ones take their defaults.
        let columns = "program_id, action, source, name, reward_kind, points_minor, percent_minor, per_object, enabled, created_at, updated_at";
        let placeholders = match backend {
            DbBackend::Postgres => "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11",
            _ => "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?",
        };
        let now = chrono::Utc::now();
        db.execute(Statement::from_sql_and_values(
            backend,
            format!("INSERT INTO earning_rules ({columns}) VALUES ({placeholders})"),
            [
                program.id.into(),
                "old_quiz".into(),
                "old_quiz".into(),
                "Old quiz".into(),
                "FIXED".into(),
                750i64.into(),
                0i64.into(),
                false.into(),
                true.into(),
                now.into(),
                now.into(),
            ],
        ))
        .await
        .unwrap();
        let rules = app.gql(Some(&app.admin()), &list(), j!({})).await;
        let old = rules.data()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "old_quiz")
            .unwrap()
            .clone();
        assert_eq!(old["effect"], effect("FIXED", j!({"points": "7.50"})));
        assert_eq!(old["rewardKind"], "FIXED");
        assert_eq!(old["points"], "7.50");
        assert_eq!(old["conditions"], j!([]));
        assert_eq!(old["priority"], 0);
        assert_eq!(old["exclusive"], false);
        assert_eq!(old["budget"], Value::Null);
        // And it pays as before once published.
        app.gql(Some(&app.admin()), PUBLISH, j!({})).await.data();
        let (token, _) = app.register("m1").await;
        let act = "mutation { recordAction(input: {action: \"old_quiz\", idempotencyKey: \"q1\"}) { points } }";
        let paid = app.gql(Some(&token), act, j!({})).await;
        assert_eq!(paid.data()["recordAction"]["points"], "7.50");
        app.assert_ledger_invariants().await;
    }
);
