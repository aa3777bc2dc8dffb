use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::*;

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

#[test]
fn action_count_at_least_counts_this_event_in_its_period() {
    let mut f = facts();
    // The third news read today: "at least the 3rd" holds, "at least the 5th" does not.
    let fifth_today = json!({"kind": "actionCountAtLeast", "count": 5, "period": "DAY"});
    assert_eq!(fails(fifth_today.clone(), &f), "news_read #3 today < 5");
    assert_eq!(
        outcome(
            json!({"kind": "actionCountAtLeast", "count": 3, "period": "DAY"}),
            &f
        ),
        Outcome::Pass
    );
    assert_eq!(
        outcome(
            json!({"kind": "actionCountAtLeast", "count": 5, "period": "WEEK"}),
            &f
        ),
        Outcome::Pass
    );
    assert_eq!(
        fails(
            json!({"kind": "actionCountAtLeast", "count": 13, "period": "MONTH"}),
            &f
        ),
        "news_read #12 this month < 13"
    );
    assert_eq!(
        fails(
            json!({"kind": "actionCountAtLeast", "count": 41, "period": "LIFETIME"}),
            &f
        ),
        "news_read #40 ever < 41"
    );
    // The fifth (and every later) read of the day passes.
    if let Some(counts) = f.action_counts.as_mut() {
        counts.day = 5;
    }
    assert_eq!(outcome(fifth_today.clone(), &f), Outcome::Pass);
    f.action_counts = None;
    assert_eq!(fails(fifth_today, &f), "action count unknown");
}
