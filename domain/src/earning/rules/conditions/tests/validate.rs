use serde_json::{json, Value};

use super::*;

#[test]
fn refusals_name_the_path_of_the_bad_field() {
    let ok = json!({"kind": "firstPurchase"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"kind": "foo"}),
            r#"conditions[1].kind: unknown condition "foo""#,
        ),
        (
            json!({"kind": "memberAttributeEquals", "key": "City", "value": "hcm"}),
            "conditions[1].key: must be a–z, 0–9 and `_`",
        ),
        (json!({"amount": "1"}), "conditions[1].kind: required"),
        (json!({"kind": 3}), "conditions[1].kind: must be a string"),
        (
            json!("orderTotalAtLeast"),
            "conditions[1]: must be an object",
        ),
        (
            json!({"kind": "orderTotalAtLeast", "amount": "0.00"}),
            "conditions[1].amount: must be at least 0.01",
        ),
        (
            json!({"kind": "orderTotalAtLeast", "amount": "-5"}),
            "conditions[1].amount: must be at least 0.01",
        ),
        (
            json!({"kind": "orderTotalBelow", "amount": "1.001"}),
            "conditions[1].amount: must have at most two fraction digits",
        ),
        (
            json!({"kind": "orderTotalBelow", "amount": "100000000000.01"}),
            "conditions[1].amount: must be at most 100000000000.00",
        ),
        (
            json!({"kind": "orderTotalBelow", "amount": 50}),
            r#"conditions[1].amount: must be a decimal string like "50.00""#,
        ),
        (
            json!({"kind": "orderTotalBelow", "amount": "fifty"}),
            r#"conditions[1].amount: invalid decimal "fifty""#,
        ),
        (
            json!({"kind": "orderTotalBelow"}),
            "conditions[1].amount: required",
        ),
        (
            json!({"kind": "orderTotalBelow", "amount": "5", "currency": "EUR"}),
            "conditions[1].currency: unknown field",
        ),
        (
            json!({"kind": "firstPurchase", "n": 1}),
            "conditions[1].n: unknown field",
        ),
        (
            json!({"kind": "linesWithSku", "skus": []}),
            "conditions[1].skus: must not be empty",
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 0, "period": "DAY"}),
            "conditions[1].count: must be an integer between 1 and 1000",
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 1001, "period": "DAY"}),
            "conditions[1].count: must be an integer between 1 and 1000",
        ),
        (
            json!({"kind": "actionCountAtLeast", "period": "DAY"}),
            "conditions[1].count: required",
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 5}),
            "conditions[1].period: required",
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 5, "period": "day"}),
            r#"conditions[1].period: unknown period "day" (must be one of DAY, WEEK, MONTH, LIFETIME)"#,
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 5, "period": 1}),
            "conditions[1].period: must be one of DAY, WEEK, MONTH, LIFETIME",
        ),
        (
            json!({"kind": "actionCountAtLeast", "count": 5, "period": "DAY", "action": "x"}),
            "conditions[1].action: unknown field",
        ),
        (
            json!({"kind": "linesWithSku", "skus": "COF-1"}),
            "conditions[1].skus: must be an array",
        ),
        (
            json!({"kind": "linesWithSku", "skus": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "conditions[1].skus: at most 100 values",
        ),
        (
            json!({"kind": "linesInCategory", "categories": ["ok", ""]}),
            "conditions[1].categories[1]: must be a string of 1 to 64 characters",
        ),
        (
            json!({"kind": "linesInCategory", "categories": ["coffee"], "minQuantity": 0}),
            "conditions[1].minQuantity: must be an integer between 1 and 1000000",
        ),
        (
            json!({"kind": "linesInCategory", "categories": ["coffee"], "minValue": "-1"}),
            "conditions[1].minValue: must be at least 0.01",
        ),
        (
            json!({"kind": "tierIn", "tierIds": [1, -2]}),
            "conditions[1].tierIds[1]: must be a tier id (a positive integer)",
        ),
        (
            json!({"kind": "dayOfWeekIn", "days": ["saturday", "sat"]}),
            r#"conditions[1].days[1]: unknown day "sat" (monday to sunday)"#,
        ),
        (
            json!({"kind": "dayOfWeekIn", "days": [6]}),
            "conditions[1].days[0]: must be a day name (monday to sunday)",
        ),
        (
            json!({"kind": "localTimeBetween", "from": "25:00", "to": "26:00"}),
            r#"conditions[1].from: invalid time "25:00""#,
        ),
        (
            json!({"kind": "localTimeBetween", "from": "18:00", "to": "8:00"}),
            r#"conditions[1].to: invalid time "8:00""#,
        ),
        (
            json!({"kind": "localTimeBetween", "from": "18:00", "to": 20}),
            r#"conditions[1].to: must be a time "HH:MM""#,
        ),
        (
            json!({"kind": "localTimeBetween", "from": "22:00", "to": "02:00"}),
            "conditions[1].to: must be after from 22:00 (a window may not cross midnight)",
        ),
        (
            json!({"kind": "localTimeBetween", "from": "18:00", "to": "18:00"}),
            "conditions[1].to: must be after from 18:00 (a window may not cross midnight)",
        ),
        (
            json!({"kind": "nthPurchase", "n": 0}),
            "conditions[1].n: must be an integer between 1 and 1000",
        ),
        (
            json!({"kind": "joinedWithinDays", "days": 3651}),
            "conditions[1].days: must be an integer between 1 and 3650",
        ),
        (
            json!({"kind": "joinedWithinDays", "days": 1.5}),
            "conditions[1].days: must be an integer between 1 and 3650",
        ),
        (
            json!({"kind": "objectIdPrefix", "prefix": "x".repeat(65)}),
            "conditions[1].prefix: must be a string of 1 to 64 characters",
        ),
        (
            json!({"kind": "memberAttributeEquals", "key": "k".repeat(65), "value": "v"}),
            "conditions[1].key: must be a string of 1 to 64 characters",
        ),
        (
            json!({"kind": "memberAttributeEquals", "key": "k", "value": "v".repeat(257)}),
            "conditions[1].value: must be a string of 1 to 256 characters",
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(refusal(vec![ok.clone(), bad.clone()]), expected, "{bad}");
    }
}

#[test]
fn too_many_conditions_are_refused() {
    let many = vec![json!({"kind": "firstPurchase"}); MAX_CONDITIONS + 1];
    assert_eq!(refusal(many), "conditions: at most 20 conditions");
    let enough = vec![json!({"kind": "firstPurchase"}); MAX_CONDITIONS];
    assert_eq!(validate(&enough).map(|c| c.len()), Ok(MAX_CONDITIONS));
}

#[test]
fn bounds_are_inclusive_and_sets_deduplicate() {
    let max = one(json!({"kind": "objectIdIn", "ids": ["x".repeat(64), "a", "a"]}));
    assert_eq!(
        max,
        Condition::ObjectIdIn {
            ids: strings(&["a", &"x".repeat(64)])
        }
    );
    assert_eq!(
        one(json!({"kind": "orderTotalAtLeast", "amount": "100000000000.00"})),
        Condition::OrderTotalAtLeast {
            amount: money(crate::money::MAX_MINOR)
        }
    );
    // null is absent: optional fields may be sent as null.
    assert_eq!(
        one(json!({"kind": "linesWithSku", "skus": ["A"], "minQuantity": null})),
        Condition::LinesWithSku {
            skus: strings(&["A"]),
            min_quantity: None,
            min_value: None
        }
    );
}
