use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

fn every_variant() -> Vec<(Condition, Value)> {
    vec![
        (
            Condition::OrderTotalAtLeast {
                amount: money(5000),
            },
            json!({"kind": "orderTotalAtLeast", "amount": "50.00"}),
        ),
        (
            Condition::OrderTotalBelow { amount: money(1) },
            json!({"kind": "orderTotalBelow", "amount": "0.01"}),
        ),
        (
            Condition::LinesWithSku {
                skus: strings(&["A", "B"]),
                min_quantity: Some(2),
                min_value: Some(money(1000)),
            },
            json!({"kind": "linesWithSku", "skus": ["A", "B"], "minQuantity": 2, "minValue": "10.00"}),
        ),
        (
            Condition::LinesInCategory {
                categories: strings(&["coffee"]),
                min_quantity: None,
                min_value: None,
            },
            json!({"kind": "linesInCategory", "categories": ["coffee"]}),
        ),
        (
            Condition::TierIn {
                tier_ids: BTreeSet::from([3, 4]),
            },
            json!({"kind": "tierIn", "tierIds": [3, 4]}),
        ),
        (
            Condition::DayOfWeekIn {
                days: BTreeSet::from([Weekday::Saturday, Weekday::Sunday]),
            },
            json!({"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]}),
        ),
        (
            Condition::LocalTimeBetween {
                from: TimeOfDay::new(18, 0).unwrap(),
                to: TimeOfDay::END_OF_DAY,
            },
            json!({"kind": "localTimeBetween", "from": "18:00", "to": "24:00"}),
        ),
        (Condition::FirstPurchase, json!({"kind": "firstPurchase"})),
        (
            Condition::NthPurchase { n: 3 },
            json!({"kind": "nthPurchase", "n": 3}),
        ),
        (
            Condition::JoinedWithinDays { days: 30 },
            json!({"kind": "joinedWithinDays", "days": 30}),
        ),
        (
            Condition::ObjectIdIn {
                ids: strings(&["p1"]),
            },
            json!({"kind": "objectIdIn", "ids": ["p1"]}),
        ),
        (
            Condition::ObjectIdPrefix {
                prefix: "news/sport/".into(),
            },
            json!({"kind": "objectIdPrefix", "prefix": "news/sport/"}),
        ),
        (
            Condition::MemberAttributeEquals {
                key: "city".into(),
                value: "hanoi".into(),
            },
            json!({"kind": "memberAttributeEquals", "key": "city", "value": "hanoi"}),
        ),
        (
            Condition::ActionCountAtLeast {
                count: 5,
                period: Period::Day,
            },
            json!({"kind": "actionCountAtLeast", "count": 5, "period": "DAY"}),
        ),
    ]
}

#[test]
fn serde_round_trip_for_every_variant() {
    for (condition, shape) in every_variant() {
        assert_eq!(serde_json::to_value(&condition).unwrap(), shape);
        assert_eq!(one(shape.clone()), condition, "{shape}");
        let back: Condition = serde_json::from_value(shape.clone()).unwrap();
        assert_eq!(back, condition);
    }
}

#[test]
fn deserializing_validates_too() {
    let err = serde_json::from_value::<Condition>(json!({"kind": "nthPurchase", "n": 0}))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "condition.n: must be an integer between 1 and 1000");
}
