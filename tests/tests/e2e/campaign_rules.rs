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
