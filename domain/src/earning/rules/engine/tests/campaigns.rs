//! The campaign scenarios of issue 11 at the engine level, with exact point values: conditions,
//! effects, priority/exclusive, multipliers, per-member caps, budget exhaustion and verdicts.
//! Program timezone Asia/Ho_Chi_Minh (UTC+7), so local days and times differ from UTC.

use std::collections::HashSet;

use chrono::{Datelike, Timelike};
use serde_json::{json, Value};

use super::*;
use crate::earning::rules::conditions::{self, Condition, Line, TierFact};
use crate::earning::rules::{Budget, Rounding};

fn pts(whole: i64) -> Points {
    Points::from_minor(whole * 100)
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor)
}

fn conds(inputs: Vec<Value>) -> Vec<Condition> {
    conditions::validate(&inputs).unwrap()
}

fn with(conditions: Vec<Value>, r: Rule) -> Rule {
    Rule {
        conditions: conds(conditions),
        ..r
    }
}

fn purchase(amount_minor: i64) -> ActionRequest {
    ActionRequest {
        amount: Some(money(amount_minor)),
        ..action("purchase")
    }
}

fn line(sku: &str, category: &str, quantity: u32, unit_minor: i64) -> Line {
    Line {
        sku: sku.into(),
        category: Some(category.into()),
        quantity,
        unit_price: money(unit_minor),
    }
}

/// A purchase whose amount is the sum of its lines.
fn purchase_of(lines: Vec<Line>) -> ActionRequest {
    let total = lines.iter().map(|l| l.value().minor()).sum();
    ActionRequest {
        lines,
        ..purchase(total)
    }
}

fn member() -> MemberFacts {
    MemberFacts {
        member_id: 7,
        ..MemberFacts::default()
    }
}

fn paid(eval: &Evaluation) -> Vec<(i64, Points)> {
    eval.earns.iter().map(|e| (e.rule_id, e.points)).collect()
}

fn total(eval: &Evaluation) -> Points {
    Points::from_minor(eval.earns.iter().map(|e| e.points.minor()).sum())
}

fn verdict(eval: &Evaluation, rule_id: i64) -> &Verdict {
    eval.verdicts
        .iter()
        .find(|v| v.rule_id == rule_id)
        .unwrap_or_else(|| panic!("no verdict for rule {rule_id}: {:?}", eval.verdicts))
}

/// (refusal, detail) of a rule's verdict.
fn why(eval: &Evaluation, rule_id: i64) -> (Option<Refusal>, Option<&str>) {
    let v = verdict(eval, rule_id);
    (v.refusal, v.detail.as_deref())
}

fn weekend_rules() -> Ruleset {
    ruleset(vec![
        rule(1, "purchase", Reward::Percent(dec!(10))),
        with(
            vec![json!({"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]})],
            rule(2, "purchase", Reward::Multiplier(dec!(2))),
        ),
    ])
}

#[test]
fn weekend_double_points_follow_the_local_day_not_utc() {
    let rs = weekend_rules();
    // Saturday 00:00 in Ho Chi Minh City is still Friday 17:00 in UTC.
    let saturday = at("2026-12-05 00:00:00");
    assert_eq!(
        (saturday.weekday(), saturday.hour()),
        (chrono::Weekday::Fri, 17)
    );
    let eval = evaluate(&rs, &member(), &purchase(10_000), &ctx(saturday)).unwrap();
    // 10 % of 100.00 = 10, doubled: the multiplier rule pays (2 − 1) × 10 more.
    assert_eq!(paid(&eval), vec![(1, pts(10)), (2, pts(10))]);
    assert_eq!(eval.refusal, None);
    assert_eq!(verdict(&eval, 2).points, pts(10));

    let friday = at("2026-12-04 23:59:00");
    let eval = evaluate(&rs, &member(), &purchase(10_000), &ctx(friday)).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(10))]);
    assert_eq!(
        why(&eval, 2),
        (
            Some(Refusal::ConditionsNotMet),
            Some("conditions[0]: local day friday is not in {saturday, sunday}")
        )
    );
    // Sunday 23:59 local still doubles; Monday 00:00 local does not.
    let sunday = evaluate(
        &rs,
        &member(),
        &purchase(10_000),
        &ctx(at("2026-12-06 23:59:00")),
    )
    .unwrap();
    assert_eq!(total(&sunday), pts(20));
    let monday = evaluate(
        &rs,
        &member(),
        &purchase(10_000),
        &ctx(at("2026-12-07 00:00:00")),
    )
    .unwrap();
    assert_eq!(total(&monday), pts(10));
}

/// The documented order: the tier multiplier scales each point-paying rule first, then the
/// campaign multiplier applies to that tier-multiplied sum (tier ×1.5, weekend ×2 → ×3).
#[test]
fn weekend_multiplier_applies_to_the_tier_multiplied_sum() {
    let mut c = ctx(at("2026-12-05 00:00:00"));
    c.multiplier = dec!(1.5);
    let eval = evaluate(&weekend_rules(), &member(), &purchase(10_000), &c).unwrap();
    // 10 % of 100.00 = 10 → ×1.5 tier = 15 → weekend pays 15 more: 30 = 100.00 × 10 % × 3.
    assert_eq!(paid(&eval), vec![(1, pts(15)), (2, pts(15))]);
    assert_eq!(total(&eval), pts(30));
    // Cents are kept: 123.45 × 10 % = 12.345 → 12.34 (half to even) → ×1.5 = 18.51 → +18.51.
    let eval = evaluate(&weekend_rules(), &member(), &purchase(12_345), &c).unwrap();
    assert_eq!(
        paid(&eval),
        vec![
            (1, Points::from_minor(1_851)),
            (2, Points::from_minor(1_851))
        ]
    );
    // On Friday only the tier applies.
    c.now = at("2026-12-04 23:59:00");
    let eval = evaluate(&weekend_rules(), &member(), &purchase(10_000), &c).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(15))]);
}

#[test]
fn multipliers_add_up_and_never_multiply_each_other() {
    let weekend = vec![json!({"kind": "dayOfWeekIn", "days": ["saturday", "sunday"]})];
    let rs = ruleset(vec![
        rule(1, "purchase", Reward::Fixed(pts(10))),
        rule(2, "purchase", Reward::Fixed(pts(5))),
        with(
            weekend.clone(),
            rule(3, "purchase", Reward::Multiplier(dec!(2))),
        ),
        with(weekend, rule(4, "purchase", Reward::Multiplier(dec!(1.5)))),
    ]);
    let eval = evaluate(
        &rs,
        &member(),
        &purchase(1_000),
        &ctx(at("2026-12-05 12:00:00")),
    )
    .unwrap();
    // Base 15; ×2 pays 15 more, ×1.5 pays 7.50 more, each on the base: 37.50, not 15 × 2 × 1.5 = 45.
    assert_eq!(
        paid(&eval),
        vec![
            (1, pts(10)),
            (2, pts(5)),
            (3, pts(15)),
            (4, Points::from_minor(750))
        ]
    );
    // A multiplier alone has nothing to multiply.
    let alone = ruleset(vec![rule(3, "purchase", Reward::Multiplier(dec!(2)))]);
    let eval = evaluate(
        &alone,
        &member(),
        &purchase(1_000),
        &ctx(at("2026-12-05 12:00:00")),
    )
    .unwrap();
    assert_eq!(eval.refusal, Some(Refusal::NothingToAward));
    assert_eq!(why(&eval, 3).1, Some("no other rule paid for this event"));
}

#[test]
fn ten_percent_of_coffee_lines_pays_on_the_coffee_lines_only() {
    let coffee = with(
        vec![json!({"kind": "linesInCategory", "categories": ["coffee"]})],
        Rule {
            name: "coffee bonus".into(),
            ..rule(1, "purchase", Reward::PercentOfLines(dec!(10)))
        },
    );
    let base = rule(2, "purchase", Reward::Percent(dec!(1)));
    let rs = ruleset(vec![coffee, base]);
    let order = purchase_of(vec![
        line("COF-1", "coffee", 2, 4_500), // 90.00
        line("TEA-1", "tea", 3, 3_000),    // 90.00
        line("COF-2", "coffee", 1, 5_200), // 52.00
        line("PAS-1", "pastry", 1, 2_500), // 25.00
    ]);
    assert_eq!(order.amount, Some(money(25_700)));
    let now = ctx(at("2026-12-02 10:00:00"));
    let eval = evaluate(&rs, &member(), &order, &now).unwrap();
    // 10 % of the coffee lines' 142.00 = 14.20; the base 1 % of 257.00 = 2.57 on the whole order.
    assert_eq!(
        paid(&eval),
        vec![(1, Points::from_minor(1_420)), (2, Points::from_minor(257))]
    );
    assert_eq!(eval.earns[0].lines, Some(vec![0, 2]));
    assert_eq!(eval.earns[1].lines, None);

    // No coffee line: the bonus does not apply and says why; the base still pays.
    let tea = purchase_of(vec![line("TEA-1", "tea", 3, 3_000)]);
    let eval = evaluate(&rs, &member(), &tea, &now).unwrap();
    assert_eq!(paid(&eval), vec![(2, Points::from_minor(90))]);
    assert_eq!(
        why(&eval, 1),
        (
            Some(Refusal::ConditionsNotMet),
            Some(r#"conditions[0]: no line in category {"coffee"}"#)
        )
    );
}

#[test]
fn percent_of_lines_with_several_line_conditions_pays_on_their_union() {
    let r = with(
        vec![
            json!({"kind": "linesInCategory", "categories": ["coffee"]}),
            json!({"kind": "linesWithSku", "skus": ["MUG-1"]}),
        ],
        rule(1, "purchase", Reward::PercentOfLines(dec!(10))),
    );
    let order = purchase_of(vec![
        line("MUG-1", "merch", 1, 12_000),
        line("TEA-1", "tea", 1, 3_000),
        line("COF-1", "coffee", 2, 4_500),
    ]);
    let eval = evaluate(
        &ruleset(vec![r]),
        &member(),
        &order,
        &ctx(at("2026-12-02 10:00:00")),
    )
    .unwrap();
    // 10 % of (120.00 + 90.00).
    assert_eq!(paid(&eval), vec![(1, pts(21))]);
    assert_eq!(eval.earns[0].lines, Some(vec![0, 2]));
}

fn spend_threshold() -> Rule {
    with(
        vec![json!({"kind": "orderTotalAtLeast", "amount": "50.00"})],
        Rule {
            limit: Some(Limit {
                count: 1,
                period: Period::Week,
            }),
            ..rule(1, "purchase", Reward::Fixed(pts(100)))
        },
    )
}

#[test]
fn orders_of_50_or_more_pay_a_flat_100_once_per_iso_week() {
    let rs = ruleset(vec![spend_threshold()]);
    // Wednesday 2026-12-02: the ISO week began on Monday 2026-11-30.
    let now = ctx(at("2026-12-02 10:00:00"));
    let eval = evaluate(&rs, &member(), &purchase(5_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(100))]);
    assert_eq!(
        eval.earns[0].natural_key.as_deref(),
        Some("purchase:7:w2026-11-30#1:r1")
    );
    // Flat: a bigger order pays the same.
    let eval = evaluate(&rs, &member(), &purchase(123_456), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(100))]);

    let eval = evaluate(&rs, &member(), &purchase(4_999), &now).unwrap();
    assert_eq!(eval.refusal, Some(Refusal::ConditionsNotMet));
    assert_eq!(
        why(&eval, 1).1,
        Some("conditions[0]: order total 49.99 < 50.00")
    );

    let paid_this_week = facts_with(
        1,
        RuleFacts {
            in_week: 1,
            lifetime: 1,
            ..RuleFacts::default()
        },
    );
    let eval = evaluate(&rs, &paid_this_week, &purchase(5_000), &now).unwrap();
    assert!(eval.earns.is_empty());
    assert_eq!(eval.refusal, Some(Refusal::AlreadyClaimed));
}

/// The week is the local ISO week: Sunday 23:59 local and Monday 00:00 local (both Sunday in
/// UTC) get different keys, Monday 00:00 and Sunday 23:59 of the same week the same key, so the
/// ledger's unique index refuses a second award within one week even under a race.
#[test]
fn the_weekly_key_follows_the_local_iso_week() {
    let rs = ruleset(vec![spend_threshold()]);
    let key = |local: &str| {
        evaluate(&rs, &member(), &purchase(5_000), &ctx(at(local)))
            .unwrap()
            .earns[0]
            .natural_key
            .clone()
            .unwrap()
    };
    let monday = key("2026-11-30 00:00:00");
    let sunday = key("2026-12-06 23:59:59");
    let next_monday = key("2026-12-07 00:00:00");
    assert_eq!(monday, "purchase:7:w2026-11-30#1:r1");
    assert_eq!(sunday, monday);
    assert_eq!(next_monday, "purchase:7:w2026-12-07#1:r1");
}

fn per_ten(rounding: Rounding) -> Ruleset {
    ruleset(vec![rule(
        1,
        "purchase",
        Reward::PerUnit {
            points: pts(1),
            per: money(1_000),
            rounding,
        },
    )])
}

#[test]
fn one_point_per_ten_rounds_as_stated() {
    let now = ctx(at("2026-12-02 10:00:00"));
    let pays = |rounding: Rounding, amount: i64| -> Option<Points> {
        let eval = evaluate(&per_ten(rounding), &member(), &purchase(amount), &now).unwrap();
        eval.earns.first().map(|e| e.points)
    };
    // DOWN: whole units only.
    assert_eq!(pays(Rounding::Down, 9_999), Some(pts(9)));
    assert_eq!(pays(Rounding::Down, 10_000), Some(pts(10)));
    assert_eq!(pays(Rounding::Down, 999), None);
    // NEAREST: half up.
    assert_eq!(pays(Rounding::Nearest, 9_999), Some(pts(10)));
    assert_eq!(pays(Rounding::Nearest, 9_499), Some(pts(9)));
    assert_eq!(pays(Rounding::Nearest, 9_500), Some(pts(10)));
    assert_eq!(pays(Rounding::Nearest, 499), None);
    assert_eq!(pays(Rounding::Nearest, 500), Some(pts(1)));
    // UP: any started unit counts.
    assert_eq!(pays(Rounding::Up, 9_999), Some(pts(10)));
    assert_eq!(pays(Rounding::Up, 9_001), Some(pts(10)));
    assert_eq!(pays(Rounding::Up, 9_000), Some(pts(9)));
    assert_eq!(pays(Rounding::Up, 1), Some(pts(1)));

    let eval = evaluate(&per_ten(Rounding::Down), &member(), &purchase(999), &now).unwrap();
    assert_eq!(eval.refusal, Some(Refusal::NothingToAward));
    // Per unit, then the tier multiplier: 9 units × 1 × 1.5 = 13.50.
    let mut gold = now;
    gold.multiplier = dec!(1.5);
    let eval = evaluate(&per_ten(Rounding::Down), &member(), &purchase(9_999), &gold).unwrap();
    assert_eq!(paid(&eval), vec![(1, Points::from_minor(1_350))]);
}

#[test]
fn first_purchase_bonus_pays_on_the_first_purchase_only() {
    let rs = ruleset(vec![
        with(
            vec![json!({"kind": "firstPurchase"})],
            rule(1, "purchase", Reward::Fixed(pts(50))),
        ),
        with(
            vec![json!({"kind": "nthPurchase", "n": 2})],
            rule(2, "purchase", Reward::Fixed(pts(20))),
        ),
    ]);
    let now = ctx(at("2026-12-02 10:00:00"));
    let nth = |ordinal: Option<u32>| MemberFacts {
        purchase_ordinal: ordinal,
        ..member()
    };
    let first = evaluate(&rs, &nth(Some(1)), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&first), vec![(1, pts(50))]);
    assert_eq!(
        why(&first, 2).1,
        Some("conditions[0]: purchase #1 is not #2")
    );
    let second = evaluate(&rs, &nth(Some(2)), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&second), vec![(2, pts(20))]);
    assert_eq!(
        why(&second, 1),
        (
            Some(Refusal::ConditionsNotMet),
            Some("conditions[0]: purchase #2 is not the first")
        )
    );
    let third = evaluate(&rs, &nth(Some(3)), &purchase(1_000), &now).unwrap();
    assert_eq!(third.refusal, Some(Refusal::ConditionsNotMet));
}

fn news_rules() -> Ruleset {
    ruleset(vec![
        rule(1, "news_read", Reward::Fixed(pts(10))),
        with(
            vec![json!({"kind": "tierIn", "tierIds": [3]})],
            Rule {
                name: "gold news ×3".into(),
                ..rule(2, "news_read", Reward::Multiplier(dec!(3)))
            },
        ),
    ])
}

#[test]
fn gold_news_reads_pay_triple_and_silver_single() {
    let now = ctx(at("2026-12-02 10:00:00"));
    let tiered = |id: i64, name: &str| MemberFacts {
        tier: Some(TierFact {
            id,
            name: name.into(),
        }),
        ..member()
    };
    let gold = evaluate(
        &news_rules(),
        &tiered(3, "gold"),
        &action("news_read"),
        &now,
    )
    .unwrap();
    assert_eq!(paid(&gold), vec![(1, pts(10)), (2, pts(20))]);
    assert_eq!(total(&gold), pts(30));
    let silver = evaluate(
        &news_rules(),
        &tiered(2, "silver"),
        &action("news_read"),
        &now,
    )
    .unwrap();
    assert_eq!(paid(&silver), vec![(1, pts(10))]);
    assert_eq!(
        why(&silver, 2),
        (
            Some(Refusal::ConditionsNotMet),
            Some("conditions[0]: tier silver (id 2) is not in {3}")
        )
    );
    let none = evaluate(&news_rules(), &member(), &action("news_read"), &now).unwrap();
    assert_eq!(total(&none), pts(10));
    assert_eq!(why(&none, 2).1, Some("conditions[0]: member has no tier"));
}

fn share_rules() -> Ruleset {
    ruleset(vec![
        rule(1, "product_share", Reward::Fixed(pts(2))),
        with(
            vec![json!({"kind": "localTimeBetween", "from": "18:00", "to": "20:00"})],
            Rule {
                name: "evening shares".into(),
                priority: 10,
                exclusive: true,
                ..rule(2, "product_share", Reward::Fixed(pts(10)))
            },
        ),
    ])
}

#[test]
fn shares_between_18_and_20_local_pay_10_and_at_20_the_base_rule() {
    let share = |local: &str| {
        evaluate(
            &share_rules(),
            &member(),
            &action("product_share"),
            &ctx(at(local)),
        )
        .unwrap()
    };
    for local in [
        "2026-12-02 18:00:00",
        "2026-12-02 19:00:00",
        "2026-12-02 19:59:59",
    ] {
        let eval = share(local);
        assert_eq!(paid(&eval), vec![(2, pts(10))], "at {local}");
        // The exclusive evening rule is considered first (priority 10) and stops the base rule.
        assert_eq!(eval.verdicts[0].rule_id, 2);
        assert_eq!(
            why(&eval, 1),
            (
                Some(Refusal::Excluded),
                Some(r#"the exclusive rule "evening shares" paid first"#)
            )
        );
    }
    let eight = share("2026-12-02 20:00:00");
    assert_eq!(paid(&eight), vec![(1, pts(2))]);
    assert_eq!(
        why(&eight, 2),
        (
            Some(Refusal::ConditionsNotMet),
            Some("conditions[0]: local time 20:00 is not in 18:00–20:00")
        )
    );
    let before = share("2026-12-02 17:59:59");
    assert_eq!(paid(&before), vec![(1, pts(2))]);
    assert_eq!(
        why(&before, 2).1,
        Some("conditions[0]: local time 17:59 is not in 18:00–20:00")
    );
}

#[test]
fn exclusive_stops_lower_priority_rules_including_multipliers() {
    let now = ctx(at("2026-12-05 12:00:00"));
    let rs = ruleset(vec![
        Rule {
            priority: 5,
            ..rule(1, "purchase", Reward::Fixed(pts(1)))
        },
        Rule {
            priority: 3,
            exclusive: true,
            name: "vip".into(),
            ..rule(2, "purchase", Reward::Fixed(pts(50)))
        },
        Rule {
            priority: 3,
            ..rule(3, "purchase", Reward::Fixed(pts(7)))
        },
        Rule {
            priority: 0,
            ..rule(4, "purchase", Reward::Multiplier(dec!(2)))
        },
        Rule {
            priority: 9,
            ..rule(5, "purchase", Reward::Multiplier(dec!(1.5)))
        },
    ]);
    let eval = evaluate(&rs, &member(), &purchase(1_000), &now).unwrap();
    // Order: priority 9 (5), 5 (1), 3 (2 then 3 by id), 0 (4).
    let order: Vec<i64> = eval.verdicts.iter().map(|v| v.rule_id).collect();
    assert_eq!(order, vec![5, 1, 2, 3, 4]);
    // Rules 1 and 2 pay; 3 (same priority, higher id) and the ×2 after it are excluded; the ×1.5
    // before the exclusive rule applies to what was paid: (1 + 50) × 0.5 = 25.50.
    assert_eq!(
        paid(&eval),
        vec![(1, pts(1)), (2, pts(50)), (5, Points::from_minor(2_550))]
    );
    for excluded in [3, 4] {
        assert_eq!(
            why(&eval, excluded),
            (
                Some(Refusal::Excluded),
                Some(r#"the exclusive rule "vip" paid first"#)
            )
        );
    }
    assert_eq!(eval.refusal, None);

    // An exclusive rule that does not pay excludes nothing.
    let capped = facts_with(
        2,
        RuleFacts {
            lifetime: 1,
            ..RuleFacts::default()
        },
    );
    let limited = ruleset(
        rs.rules
            .iter()
            .cloned()
            .map(|r| match r.id {
                2 => Rule {
                    limit: Some(Limit {
                        count: 1,
                        period: Period::Lifetime,
                    }),
                    ..r
                },
                _ => r,
            })
            .collect(),
    );
    let eval = evaluate(&limited, &capped, &purchase(1_000), &now).unwrap();
    assert_eq!(why(&eval, 2).0, Some(Refusal::AlreadyClaimed));
    // 1 + 7 = 8; ×1.5 pays 4, ×2 pays 8.
    assert_eq!(
        paid(&eval),
        vec![(1, pts(1)), (3, pts(7)), (5, pts(4)), (4, pts(8))]
    );
}

/// An exclusive multiplier stops the multipliers after it, not the point-paying rules (what it
/// multiplies is what they paid).
#[test]
fn an_exclusive_multiplier_stops_later_multipliers_only() {
    let rs = ruleset(vec![
        Rule {
            priority: 9,
            exclusive: true,
            ..rule(1, "purchase", Reward::Multiplier(dec!(3)))
        },
        rule(2, "purchase", Reward::Fixed(pts(10))),
        rule(3, "purchase", Reward::Multiplier(dec!(2))),
    ]);
    let eval = evaluate(
        &rs,
        &member(),
        &purchase(1_000),
        &ctx(at("2026-12-02 10:00:00")),
    )
    .unwrap();
    assert_eq!(paid(&eval), vec![(2, pts(10)), (1, pts(20))]);
    assert_eq!(
        why(&eval, 3),
        (
            Some(Refusal::Excluded),
            Some("an exclusive multiplier paid first")
        )
    );
}

#[test]
fn per_member_cap_refuses_an_award_that_does_not_fit_whole() {
    let capped = Rule {
        budget: Budget {
            total: None,
            per_member: Some(pts(250)),
        },
        ..rule(1, "purchase", Reward::Fixed(pts(100)))
    };
    let rs = ruleset(vec![capped, rule(2, "purchase", Reward::Fixed(pts(5)))]);
    let now = ctx(at("2026-12-02 10:00:00"));
    let had = |whole: i64| {
        facts_with(
            1,
            RuleFacts {
                lifetime: 1,
                lifetime_points: pts(whole),
                ..RuleFacts::default()
            },
        )
    };
    // 150 + 100 = 250: exactly the cap, paid.
    let eval = evaluate(&rs, &had(150), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(100)), (2, pts(5))]);
    // 200 + 100 > 250: refused whole, the other rule still pays.
    let eval = evaluate(&rs, &had(200), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(2, pts(5))]);
    assert_eq!(
        why(&eval, 1),
        (
            Some(Refusal::MemberCapReached),
            Some("member already has 200.00 of the cap 250.00, this award is 100.00")
        )
    );
    // Alone, the cap is the answer's reason.
    let alone = ruleset(vec![rs.rules[0].clone()]);
    let eval = evaluate(&alone, &had(200), &purchase(1_000), &now).unwrap();
    assert_eq!(eval.refusal, Some(Refusal::MemberCapReached));
}

#[test]
fn per_member_cap_applies_to_multipliers() {
    let rs = ruleset(vec![
        rule(1, "purchase", Reward::Fixed(pts(10))),
        Rule {
            budget: Budget {
                total: None,
                per_member: Some(pts(15)),
            },
            ..rule(2, "purchase", Reward::Multiplier(dec!(2)))
        },
    ]);
    let had = |whole: i64| {
        facts_with(
            2,
            RuleFacts {
                lifetime_points: pts(whole),
                ..RuleFacts::default()
            },
        )
    };
    let now = ctx(at("2026-12-02 10:00:00"));
    let eval = evaluate(&rs, &had(5), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(10)), (2, pts(10))]);
    let eval = evaluate(&rs, &had(6), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(10))]);
    assert_eq!(why(&eval, 2).0, Some(Refusal::MemberCapReached));
}

#[test]
fn an_exhausted_budget_refuses_that_rule_and_the_rest_still_pay() {
    let budgeted = Rule {
        budget: Budget {
            total: Some(pts(1_000)),
            per_member: None,
        },
        priority: 5,
        exclusive: true,
        ..rule(1, "purchase", Reward::Fixed(pts(100)))
    };
    let rs = ruleset(vec![budgeted, rule(2, "purchase", Reward::Fixed(pts(5)))]);
    let now = ctx(at("2026-12-02 10:00:00"));
    // Not exhausted: the exclusive budgeted rule pays and carries its budget for the poster.
    let eval = evaluate(&rs, &member(), &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(1, pts(100))]);
    assert_eq!(eval.earns[0].budget_total, Some(pts(1_000)));
    assert_eq!(why(&eval, 2).0, Some(Refusal::Excluded));
    // Exhausted: refused with the budget reason, and since it did not pay it excludes nothing.
    let spent = MemberFacts {
        exhausted: HashSet::from([1]),
        ..member()
    };
    let eval = evaluate(&rs, &spent, &purchase(1_000), &now).unwrap();
    assert_eq!(paid(&eval), vec![(2, pts(5))]);
    assert_eq!(eval.earns[0].budget_total, None);
    assert_eq!(
        why(&eval, 1),
        (
            Some(Refusal::BudgetExhausted),
            Some("the campaign's budget is spent")
        )
    );
    // Alone, the budget is the answer's reason.
    let alone = ruleset(vec![rs.rules[0].clone()]);
    let eval = evaluate(&alone, &spent, &purchase(1_000), &now).unwrap();
    assert!(eval.earns.is_empty());
    assert_eq!(eval.refusal, Some(Refusal::BudgetExhausted));
}

#[test]
fn caller_chosen_points_must_be_sent_and_within_the_range() {
    let rs = ruleset(vec![Rule {
        name: "trigger".into(),
        ..rule(
            1,
            "promo_trigger",
            Reward::CallerChosen {
                min: pts(10),
                max: pts(20),
            },
        )
    }]);
    let mut now = ctx(at("2026-12-02 10:00:00"));
    // The caller names exact points: no tier multiplier.
    now.multiplier = dec!(2);
    let chosen = |points: Option<Points>| ActionRequest {
        points,
        ..action("promo_trigger")
    };
    for (sent, expected) in [(15, 15), (10, 10), (20, 20)] {
        let eval = evaluate(&rs, &member(), &chosen(Some(pts(sent))), &now).unwrap();
        assert_eq!(paid(&eval), vec![(1, pts(expected))]);
    }
    let over = evaluate(&rs, &member(), &chosen(Some(pts(25))), &now).unwrap_err();
    assert_eq!(over.code(), "VALIDATION");
    assert_eq!(
        over.to_string(),
        r#"points: 25.00 is outside the range 10.00–20.00 of rule "trigger""#
    );
    let under = evaluate(&rs, &member(), &chosen(Some(pts(9))), &now).unwrap_err();
    assert_eq!(under.code(), "VALIDATION");
    let missing = evaluate(&rs, &member(), &chosen(None), &now).unwrap_err();
    assert_eq!(missing.code(), "VALIDATION");
    assert_eq!(
        missing.to_string(),
        r#"rule "trigger" lets the caller choose the points: send `points` (10.00–20.00)"#
    );
}

#[test]
fn free_spins_credit_spins_and_no_points() {
    let spins = Rule {
        limit: Some(Limit {
            count: 1,
            period: Period::Day,
        }),
        ..rule(1, "news_read", Reward::FreeSpins(1))
    };
    let rs = ruleset(vec![
        spins,
        rule(2, "news_read", Reward::Multiplier(dec!(2))),
    ]);
    let now = ctx(at("2026-12-02 10:00:00"));
    let eval = evaluate(&rs, &member(), &action("news_read"), &now).unwrap();
    assert_eq!(eval.earns.len(), 1);
    assert_eq!(
        (eval.earns[0].spins, eval.earns[0].points),
        (1, Points::ZERO)
    );
    assert_eq!(eval.refusal, None);
    // A spin is not points: the multiplier has nothing to multiply.
    assert_eq!(why(&eval, 2).0, Some(Refusal::NothingToAward));
    let used = facts_with(
        1,
        RuleFacts {
            in_day: 1,
            ..RuleFacts::default()
        },
    );
    let eval = evaluate(&rs, &used, &action("news_read"), &now).unwrap();
    assert_eq!(eval.refusal, Some(Refusal::AlreadyClaimed));
}

#[test]
fn verdicts_name_the_failing_condition_and_the_value_seen() {
    let rs = ruleset(vec![
        with(
            vec![json!({"kind": "orderTotalAtLeast", "amount": "50.00"})],
            rule(1, "purchase", Reward::Fixed(pts(100))),
        ),
        with(
            vec![
                json!({"kind": "orderTotalBelow", "amount": "100"}),
                json!({"kind": "memberAttributeEquals", "key": "city", "value": "hanoi"}),
            ],
            rule(2, "purchase", Reward::Fixed(pts(3))),
        ),
        rule(3, "news_read", Reward::Fixed(pts(1))),
    ]);
    let eval = evaluate(
        &rs,
        &member(),
        &purchase(4_200),
        &ctx(at("2026-12-02 10:00:00")),
    )
    .unwrap();
    assert!(eval.earns.is_empty());
    assert_eq!(eval.refusal, Some(Refusal::ConditionsNotMet));
    // One verdict per rule of the action, none for the news rule.
    assert_eq!(
        eval.verdicts,
        vec![
            Verdict {
                rule_id: 1,
                rule_name: "rule 1".into(),
                points: Points::ZERO,
                spins: 0,
                refusal: Some(Refusal::ConditionsNotMet),
                detail: Some("conditions[0]: order total 42.00 < 50.00".into()),
            },
            Verdict {
                rule_id: 2,
                rule_name: "rule 2".into(),
                points: Points::ZERO,
                spins: 0,
                refusal: Some(Refusal::ConditionsNotMet),
                detail: Some(r#"conditions[1]: attribute "city" is not set"#.into()),
            },
        ]
    );
}
