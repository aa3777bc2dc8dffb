use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::error::DomainError;

const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;
const BERLIN: Tz = chrono_tz::Europe::Berlin;

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor)
}

fn line(sku: &str, category: &str, quantity: u32, unit_minor: i64) -> Line {
    Line {
        sku: sku.into(),
        category: Some(category.into()),
        quantity,
        unit_price: money(unit_minor),
    }
}

/// A purchase on Saturday 2026-12-05 19:00 in Ho Chi Minh City: total 42.00, a coffee line and a
/// tea line, a silver member's second purchase, joined ten days before.
fn facts() -> Facts {
    let at = local(HCM, 2026, 12, 5, 19, 0);
    Facts {
        order_total: Some(money(4200)),
        lines: vec![
            line("COF-1", "coffee", 2, 1500),
            line("TEA-1", "tea", 3, 400),
        ],
        tier: Some(TierFact {
            id: 2,
            name: "silver".into(),
        }),
        at,
        tz: HCM,
        purchase_ordinal: Some(2),
        joined_at: Some(at - Duration::days(10)),
        object_id: Some("news/sport/42".into()),
        attributes: HashMap::from([("city".to_owned(), "hanoi".to_owned())]),
    }
}

fn one(value: Value) -> Condition {
    match validate(&[value]) {
        Ok(mut conditions) => conditions.remove(0),
        Err(err) => panic!("refused: {err}"),
    }
}

fn outcome(condition: Value, facts: &Facts) -> Outcome {
    evaluate(&[one(condition)], facts)
}

fn fails(condition: Value, facts: &Facts) -> String {
    match outcome(condition, facts) {
        Outcome::Fail { index: 0, reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn refusal(inputs: Vec<Value>) -> String {
    match validate(&inputs) {
        Err(DomainError::Validation(message)) => message,
        other => panic!("expected VALIDATION, got {other:?}"),
    }
}

fn strings(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

// ----- evaluation: every variant passes and fails, with the exact explanation -----

#[test]
fn order_total_at_least_and_below() {
    let mut f = facts();
    assert_eq!(
        fails(json!({"kind": "orderTotalAtLeast", "amount": "50.00"}), &f),
        "order total 42.00 < 50.00"
    );
    assert_eq!(
        outcome(json!({"kind": "orderTotalAtLeast", "amount": "42"}), &f),
        Outcome::Pass
    );
    assert_eq!(
        outcome(json!({"kind": "orderTotalBelow", "amount": "42.01"}), &f),
        Outcome::Pass
    );
    assert_eq!(
        fails(json!({"kind": "orderTotalBelow", "amount": "42.00"}), &f),
        "order total 42.00 >= 42.00"
    );
    f.order_total = None;
    assert_eq!(
        fails(json!({"kind": "orderTotalBelow", "amount": "1"}), &f),
        "no order total (not a purchase)"
    );
}

#[test]
fn threshold_boundary_99_99_vs_100() {
    let mut f = facts();
    f.order_total = Some(money(9999));
    let at_least_100 = json!({"kind": "orderTotalAtLeast", "amount": "100.00"});
    assert_eq!(
        fails(at_least_100.clone(), &f),
        "order total 99.99 < 100.00"
    );
    f.order_total = Some(money(10000));
    assert_eq!(outcome(at_least_100, &f), Outcome::Pass);
}

#[test]
fn lines_with_sku_and_in_category() {
    let f = facts();
    assert_eq!(
        outcome(json!({"kind": "linesWithSku", "skus": ["COF-1"]}), &f),
        Outcome::Pass
    );
    assert_eq!(
        fails(json!({"kind": "linesWithSku", "skus": ["X", "Y"]}), &f),
        r#"no line with SKU {"X", "Y"}"#
    );
    assert_eq!(
        outcome(
            json!({"kind": "linesInCategory", "categories": ["coffee"], "minQuantity": 2, "minValue": "30.00"}),
            &f
        ),
        Outcome::Pass
    );
    assert_eq!(
        fails(
            json!({"kind": "linesInCategory", "categories": ["coffee"], "minQuantity": 3}),
            &f
        ),
        r#"quantity of lines in category {"coffee"} is 2 < 3"#
    );
    assert_eq!(
        fails(
            json!({"kind": "linesInCategory", "categories": ["tea"], "minValue": "12.01"}),
            &f
        ),
        r#"value of lines in category {"tea"} is 12.00 < 12.01"#
    );
    assert_eq!(
        fails(
            json!({"kind": "linesInCategory", "categories": ["juice"]}),
            &f
        ),
        r#"no line in category {"juice"}"#
    );
}

#[test]
fn matching_lines_value_is_the_base_for_line_percentages() {
    let f = facts();
    let coffee = one(json!({"kind": "linesInCategory", "categories": ["coffee"]}));
    assert_eq!(matching_lines_value(&coffee, &f), Some(money(3000)));
    let both = one(json!({"kind": "linesWithSku", "skus": ["COF-1", "TEA-1"]}));
    assert_eq!(matching_lines_value(&both, &f), Some(money(4200)));
    let none = one(json!({"kind": "linesWithSku", "skus": ["X"]}));
    assert_eq!(matching_lines_value(&none, &f), Some(money(0)));
    let total = one(json!({"kind": "orderTotalAtLeast", "amount": "1"}));
    assert_eq!(matching_lines_value(&total, &f), None);
}

#[test]
fn tier_in() {
    let mut f = facts();
    assert_eq!(
        outcome(json!({"kind": "tierIn", "tierIds": [2, 3]}), &f),
        Outcome::Pass
    );
    assert_eq!(
        fails(json!({"kind": "tierIn", "tierIds": [3]}), &f),
        "tier silver (id 2) is not in {3}"
    );
    f.tier = None;
    assert_eq!(
        fails(json!({"kind": "tierIn", "tierIds": [3]}), &f),
        "member has no tier"
    );
}

#[test]
fn weekend_starts_at_local_midnight_saturday() {
    let weekend = json!({"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]});
    let mut f = facts();
    // Saturday 00:00 in Ho Chi Minh City is still Friday 17:00 UTC.
    f.at = local(HCM, 2026, 12, 5, 0, 0);
    assert_eq!(f.at, Utc.with_ymd_and_hms(2026, 12, 4, 17, 0, 0).unwrap());
    assert_eq!(outcome(weekend.clone(), &f), Outcome::Pass);
    f.at = local(HCM, 2026, 12, 4, 23, 59);
    assert_eq!(
        fails(weekend, &f),
        "local day friday is not in {saturday, sunday}"
    );
}

#[test]
fn share_window_18_to_20_is_half_open() {
    let window = json!({"kind": "localTimeBetween", "from": "18:00", "to": "20:00"});
    let mut f = facts();
    f.at = local(HCM, 2026, 12, 5, 18, 0);
    assert_eq!(outcome(window.clone(), &f), Outcome::Pass);
    f.at = local(HCM, 2026, 12, 5, 19, 59) + Duration::seconds(59);
    assert_eq!(outcome(window.clone(), &f), Outcome::Pass);
    f.at = local(HCM, 2026, 12, 5, 20, 0);
    assert_eq!(
        fails(window.clone(), &f),
        "local time 20:00 is not in 18:00–20:00"
    );
    f.at = local(HCM, 2026, 12, 5, 17, 59);
    assert_eq!(fails(window, &f), "local time 17:59 is not in 18:00–20:00");
}

#[test]
fn window_may_end_at_24_00() {
    let evening = json!({"kind": "localTimeBetween", "from": "22:00", "to": "24:00"});
    let mut f = facts();
    f.at = local(HCM, 2026, 12, 5, 23, 59);
    assert_eq!(outcome(evening.clone(), &f), Outcome::Pass);
    f.at = local(HCM, 2026, 12, 6, 0, 0);
    assert_eq!(fails(evening, &f), "local time 00:00 is not in 22:00–24:00");
}

#[test]
fn time_of_day_on_dst_change_days_in_berlin() {
    // 2026-03-29: at 01:00 UTC, Berlin jumps from 02:00 CET to 03:00 CEST.
    let night = json!({"kind": "localTimeBetween", "from": "01:00", "to": "03:00"});
    let mut f = facts();
    f.tz = BERLIN;
    f.at = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 0).unwrap(); // 01:59 CET
    assert_eq!(outcome(night.clone(), &f), Outcome::Pass);
    f.at = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(); // 03:00 CEST
    assert_eq!(fails(night, &f), "local time 03:00 is not in 01:00–03:00");
    // 2026-10-25: at 01:00 UTC, Berlin falls back from 03:00 CEST to 02:00 CET, so 02:30
    // happens twice and both pass a 02:00–03:00 window.
    let twice = json!({"kind": "localTimeBetween", "from": "02:00", "to": "03:00"});
    for utc_hour in [0, 1] {
        f.at = Utc.with_ymd_and_hms(2026, 10, 25, utc_hour, 30, 0).unwrap();
        assert_eq!(
            outcome(twice.clone(), &f),
            Outcome::Pass,
            "{utc_hour}:30 UTC"
        );
    }
    f.at = Utc.with_ymd_and_hms(2026, 10, 25, 2, 0, 0).unwrap(); // 03:00 CET
    assert_eq!(fails(twice, &f), "local time 03:00 is not in 02:00–03:00");
}

#[test]
fn first_and_nth_purchase() {
    let mut f = facts();
    f.purchase_ordinal = Some(1);
    assert_eq!(outcome(json!({"kind": "firstPurchase"}), &f), Outcome::Pass);
    f.purchase_ordinal = Some(2);
    assert_eq!(
        fails(json!({"kind": "firstPurchase"}), &f),
        "purchase #2 is not the first"
    );
    assert_eq!(
        outcome(json!({"kind": "nthPurchase", "n": 2}), &f),
        Outcome::Pass
    );
    assert_eq!(
        fails(json!({"kind": "nthPurchase", "n": 3}), &f),
        "purchase #2 is not #3"
    );
    f.purchase_ordinal = None;
    assert_eq!(
        fails(json!({"kind": "firstPurchase"}), &f),
        "not a purchase"
    );
}

#[test]
fn joined_within_days() {
    let mut f = facts();
    assert_eq!(
        outcome(json!({"kind": "joinedWithinDays", "days": 11}), &f),
        Outcome::Pass
    );
    // Exactly ten days after joining is no longer within ten days.
    assert_eq!(
        fails(json!({"kind": "joinedWithinDays", "days": 10}), &f),
        "joined 10 days ago, not within 10"
    );
    f.joined_at = None;
    assert_eq!(
        fails(json!({"kind": "joinedWithinDays", "days": 10}), &f),
        "join date unknown"
    );
}

#[test]
fn object_id_in_and_prefix() {
    let mut f = facts();
    assert_eq!(
        outcome(json!({"kind": "objectIdIn", "ids": ["news/sport/42"]}), &f),
        Outcome::Pass
    );
    assert_eq!(
        fails(json!({"kind": "objectIdIn", "ids": ["a", "b"]}), &f),
        r#"object "news/sport/42" is not in {"a", "b"}"#
    );
    assert_eq!(
        outcome(
            json!({"kind": "objectIdPrefix", "prefix": "news/sport/"}),
            &f
        ),
        Outcome::Pass
    );
    assert_eq!(
        fails(
            json!({"kind": "objectIdPrefix", "prefix": "news/tech/"}),
            &f
        ),
        r#"object "news/sport/42" does not start with "news/tech/""#
    );
    f.object_id = None;
    assert_eq!(
        fails(json!({"kind": "objectIdPrefix", "prefix": "news/"}), &f),
        "no object id"
    );
}

#[test]
fn member_attribute_equals() {
    let f = facts();
    assert_eq!(
        outcome(
            json!({"kind": "memberAttributeEquals", "key": "city", "value": "hanoi"}),
            &f
        ),
        Outcome::Pass
    );
    assert_eq!(
        fails(
            json!({"kind": "memberAttributeEquals", "key": "city", "value": "hcmc"}),
            &f
        ),
        r#"attribute "city" is "hanoi", not "hcmc""#
    );
    assert_eq!(
        fails(
            json!({"kind": "memberAttributeEquals", "key": "vip", "value": "yes"}),
            &f
        ),
        r#"attribute "vip" is not set"#
    );
}

#[test]
fn the_first_failing_condition_is_reported() {
    let conditions = validate(&[
        json!({"kind": "tierIn", "tierIds": [2]}),
        json!({"kind": "orderTotalAtLeast", "amount": "50.00"}),
        json!({"kind": "firstPurchase"}),
    ])
    .unwrap();
    assert_eq!(
        evaluate(&conditions, &facts()),
        Outcome::Fail {
            index: 1,
            reason: "order total 42.00 < 50.00".into()
        }
    );
    assert_eq!(evaluate(&[], &facts()), Outcome::Pass);
}

#[test]
fn long_sets_are_shortened_in_explanations() {
    let ids: Vec<i64> = (10..=17).collect();
    assert_eq!(
        fails(json!({"kind": "tierIn", "tierIds": ids}), &facts()),
        "tier silver (id 2) is not in {10, 11, 12, 13, 14, … 3 more}"
    );
}

// ----- validation: every refusal names the path -----

#[test]
fn refusals_name_the_path_of_the_bad_field() {
    let ok = json!({"kind": "firstPurchase"});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"kind": "foo"}),
            r#"conditions[1].kind: unknown condition "foo""#,
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

// ----- serde: the admin API's shape, round trips -----

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

// ----- properties -----

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/_-]{1,12}"
}

fn names() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(name(), 1..5)
}

fn amount() -> impl Strategy<Value = Money> {
    (1..=crate::money::MAX_MINOR).prop_map(Money::from_minor)
}

fn condition() -> impl Strategy<Value = Condition> {
    let days = prop::collection::btree_set(prop::sample::select(Weekday::ALL.to_vec()), 1..=7);
    let window = (0_u16..1440, 1_u16..=1440)
        .prop_filter("from < to", |(from, to)| from < to)
        .prop_map(|(from, to)| Condition::LocalTimeBetween {
            from: TimeOfDay::new(from / 60, from % 60).unwrap(),
            to: TimeOfDay::new(to / 60, to % 60).unwrap(),
        });
    prop_oneof![
        amount().prop_map(|amount| Condition::OrderTotalAtLeast { amount }),
        amount().prop_map(|amount| Condition::OrderTotalBelow { amount }),
        (
            names(),
            prop::option::of(1..=MAX_MIN_QUANTITY),
            prop::option::of(amount())
        )
            .prop_map(|(skus, min_quantity, min_value)| Condition::LinesWithSku {
                skus,
                min_quantity,
                min_value
            }),
        (
            names(),
            prop::option::of(1..=MAX_MIN_QUANTITY),
            prop::option::of(amount())
        )
            .prop_map(
                |(categories, min_quantity, min_value)| Condition::LinesInCategory {
                    categories,
                    min_quantity,
                    min_value
                }
            ),
        prop::collection::btree_set(1_i64..=i64::MAX, 1..5)
            .prop_map(|tier_ids| Condition::TierIn { tier_ids }),
        days.prop_map(|days| Condition::DayOfWeekIn { days }),
        window,
        Just(Condition::FirstPurchase),
        (1..=MAX_NTH_PURCHASE).prop_map(|n| Condition::NthPurchase { n }),
        (1..=MAX_JOINED_WITHIN_DAYS).prop_map(|days| Condition::JoinedWithinDays { days }),
        names().prop_map(|ids| Condition::ObjectIdIn { ids }),
        name().prop_map(|prefix| Condition::ObjectIdPrefix { prefix }),
        (name(), "\\PC{1,20}")
            .prop_map(|(key, value)| Condition::MemberAttributeEquals { key, value }),
    ]
}

fn any_facts() -> impl Strategy<Value = Facts> {
    let line = (name(), prop::option::of(name()), any::<u32>(), any::<i64>()).prop_map(
        |(sku, category, quantity, unit)| Line {
            sku,
            category,
            quantity,
            unit_price: Money::from_minor(unit),
        },
    );
    let tz = prop::sample::select(vec![
        chrono_tz::UTC,
        HCM,
        BERLIN,
        chrono_tz::America::St_Johns,
    ]);
    let instant = (-62_000_000_000_i64..250_000_000_000)
        .prop_map(|secs| DateTime::from_timestamp(secs, 0).unwrap_or_default());
    (
        (
            prop::option::of(any::<i64>()),
            prop::collection::vec(line, 0..4),
        ),
        prop::option::of((any::<i64>(), name())),
        (instant.clone(), tz, prop::option::of(any::<u32>())),
        (prop::option::of(instant), prop::option::of(name())),
        prop::collection::hash_map(name(), name(), 0..3),
    )
        .prop_map(
            |((total, lines), tier, (at, tz, ordinal), (joined_at, object_id), attributes)| Facts {
                order_total: total.map(Money::from_minor),
                lines,
                tier: tier.map(|(id, name)| TierFact { id, name }),
                at,
                tz,
                purchase_ordinal: ordinal,
                joined_at,
                object_id,
                attributes,
            },
        )
}

proptest! {
    #[test]
    fn validate_of_serialize_is_identity(conditions in prop::collection::vec(condition(), 0..=MAX_CONDITIONS)) {
        let json: Vec<Value> = conditions.iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        prop_assert_eq!(validate(&json), Ok(conditions));
    }

    #[test]
    fn evaluation_never_panics(conditions in prop::collection::vec(condition(), 0..6), facts in any_facts()) {
        match evaluate(&conditions, &facts) {
            Outcome::Pass => {}
            Outcome::Fail { index, reason } => {
                prop_assert!(index < conditions.len());
                prop_assert!(!reason.is_empty());
            }
        }
        for condition in &conditions {
            let _ = matching_lines_value(condition, &facts);
        }
    }
}
