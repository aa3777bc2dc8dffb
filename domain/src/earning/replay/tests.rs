//! The replay fold without a database: limits and budgets from zero, the recorded tier, the
//! action counts, and the live-only rules of the report.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::earning::rules::{Budget, Limit, Period, Reward};

const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;

fn local(d: u32, h: u32, min: u32) -> DateTime<Utc> {
    HCM.with_ymd_and_hms(2026, 11, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn rule(id: i64, action: &str, reward: Reward) -> Rule {
    Rule {
        id,
        name: format!("rule {id}"),
        action: action.into(),
        source: action.into(),
        reward,
        limit: None,
        per_object: false,
        streak: None,
        active_from: None,
        active_to: None,
        enabled: true,
        qualifying: false,
        conditions: Vec::new(),
        priority: 0,
        exclusive: false,
        budget: Budget::default(),
    }
}

fn points(whole: i64) -> Points {
    Points::from_minor(whole * 100)
}

fn event(member_id: i64, action: &str, at: DateTime<Utc>) -> RecordedEvent {
    RecordedEvent {
        member_id,
        action: action.into(),
        object_id: None,
        amount: None,
        chosen: None,
        tier_id: None,
        at,
        lines: Vec::new(),
    }
}

fn purchase(member_id: i64, amount_minor: i64, at: DateTime<Utc>) -> RecordedEvent {
    RecordedEvent {
        amount: Some(Money::from_minor(amount_minor)),
        ..event(member_id, "purchase", at)
    }
}

fn run(ruleset: &Ruleset, tiers: HashMap<i64, TierSeed>, events: &[RecordedEvent]) -> ReplayReport {
    let mut fold = Fold::new(ruleset, HCM, Decimal::ONE, tiers);
    for event in events {
        fold.apply(event);
    }
    fold.finish(&HashMap::new(), &HashMap::new())
}

fn by_id(report: &ReplayReport, id: i64) -> &RuleReplay {
    report.rules.iter().find(|r| r.rule_id == id).unwrap()
}

#[test]
fn limits_count_from_the_start_of_the_replay_by_local_day() {
    let quiz = Rule {
        limit: Some(Limit {
            count: 2,
            period: Period::Day,
        }),
        ..rule(1, "quiz", Reward::Fixed(points(5)))
    };
    let ruleset = Ruleset {
        version: 0,
        rules: vec![quiz],
    };
    // Member 7: three on the 2nd (two paid), one at 00:10 local on the 3rd (a new day, paid;
    // still the 2nd in UTC). Member 8: one. An event of another action pays nothing.
    let events = [
        event(7, "quiz", local(2, 9, 0)),
        event(7, "quiz", local(2, 10, 0)),
        event(7, "quiz", local(2, 23, 59)),
        event(7, "quiz", local(3, 0, 10)),
        event(8, "quiz", local(3, 12, 0)),
        event(8, "news_read", local(3, 12, 5)),
    ];
    let report = run(&ruleset, HashMap::new(), &events);
    assert_eq!(report.events, 6);
    assert_eq!(report.events_matched, 4);
    assert_eq!(report.members_reached, 2);
    let quiz = by_id(&report, 1);
    assert_eq!(quiz.events_matched, 4);
    assert_eq!(quiz.members_reached, 2);
    assert_eq!(quiz.points_issued, points(20));
    assert!(quiz.in_ruleset);
    assert_eq!(report.points_issued, points(20));
}

#[test]
fn budgets_start_from_zero_and_are_never_exceeded() {
    let big = Rule {
        budget: Budget {
            total: Some(points(250)),
            per_member: None,
        },
        ..rule(1, "purchase", Reward::Fixed(points(100)))
    };
    let base = rule(2, "purchase", Reward::Percent(dec!(1)));
    let ruleset = Ruleset {
        version: 0,
        rules: vec![big, base],
    };
    let events: Vec<_> = (0..4)
        .map(|n| purchase(10 + n, 10_000, local(2, 9, 0) + Duration::minutes(n)))
        .collect();
    let report = run(&ruleset, HashMap::new(), &events);
    // 100 + 100 fit in 250, the third award of 100 does not: refused whole, not paid in part.
    assert_eq!(by_id(&report, 1).events_matched, 2);
    assert_eq!(by_id(&report, 1).points_issued, points(200));
    // The 1 % rule pays 1.00 on every 100.00 purchase regardless.
    assert_eq!(by_id(&report, 2).events_matched, 4);
    assert_eq!(by_id(&report, 2).points_issued, points(4));
    assert_eq!(report.points_issued, points(204));
    assert_eq!(report.members_reached, 4);
}

#[test]
fn the_tier_recorded_on_the_event_sets_the_multiplier() {
    let ruleset = Ruleset {
        version: 3,
        rules: vec![rule(1, "purchase", Reward::Percent(dec!(10)))],
    };
    let tiers = HashMap::from([(
        5,
        TierSeed {
            name: "gold".into(),
            multiplier: dec!(1.5),
        },
    )]);
    let gold = RecordedEvent {
        tier_id: Some(5),
        ..purchase(1, 4_000, local(2, 9, 0))
    };
    let plain = purchase(2, 4_000, local(2, 9, 1));
    let report = run(&ruleset, tiers, &[gold, plain]);
    // 10 % of 40.00 = 4.00; ×1.5 for the gold event = 6.00; 4.00 for the other.
    assert_eq!(by_id(&report, 1).points_issued, Points::from_minor(1_000));
    assert_eq!(report.ruleset_version, 3);
}

#[test]
fn five_news_reads_in_a_day_grant_one_spin() {
    let spin = Rule {
        conditions: vec![Condition::ActionCountAtLeast {
            count: 5,
            period: Period::Day,
        }],
        limit: Some(Limit {
            count: 1,
            period: Period::Day,
        }),
        ..rule(1, "news_read", Reward::FreeSpins(1))
    };
    let ruleset = Ruleset {
        version: 0,
        rules: vec![spin],
    };
    // Day 2: nine reads (the 5th grants the spin, the limit holds the rest). Day 3: four reads
    // (not enough). Day 4: five reads (a spin).
    let mut events = Vec::new();
    for (day, reads) in [(2, 9), (3, 4), (4, 5)] {
        for n in 0..reads {
            events.push(event(7, "news_read", local(day, 8, n)));
        }
    }
    let report = run(&ruleset, HashMap::new(), &events);
    let spin = by_id(&report, 1);
    assert_eq!(spin.events_matched, 2);
    assert_eq!(spin.spins, 2);
    assert_eq!(spin.points_issued, Points::ZERO);
    assert_eq!(report.spins, 2);
    assert_eq!(report.events, 18);
}

#[test]
fn first_purchase_counts_the_purchases_before_the_period() {
    let first = Rule {
        conditions: vec![Condition::FirstPurchase],
        ..rule(1, "purchase", Reward::Fixed(points(50)))
    };
    let ruleset = Ruleset {
        version: 0,
        rules: vec![first],
    };
    let mut fold = Fold::new(&ruleset, HCM, Decimal::ONE, HashMap::new());
    fold.seed(
        1,
        MemberSeed {
            purchases_before: 1,
            ..MemberSeed::default()
        },
    );
    fold.seed(2, MemberSeed::default());
    assert!(fold.knows(1) && fold.knows(2) && !fold.knows(3));
    for event in [
        purchase(1, 1_000, local(2, 9, 0)),
        purchase(2, 1_000, local(2, 9, 1)),
        purchase(2, 1_000, local(2, 9, 2)),
    ] {
        fold.apply(&event);
    }
    let report = fold.finish(&HashMap::new(), &HashMap::new());
    // Member 1 bought before the period; member 2's first purchase pays, their second not.
    assert_eq!(by_id(&report, 1).events_matched, 1);
    assert_eq!(by_id(&report, 1).points_issued, points(50));
}

#[test]
fn the_report_adds_what_the_live_rules_issued_and_live_only_rules() {
    let ruleset = Ruleset {
        version: 0,
        rules: vec![rule(1, "quiz", Reward::Fixed(points(5)))],
    };
    let mut fold = Fold::new(&ruleset, HCM, Decimal::ONE, HashMap::new());
    fold.apply(&event(7, "quiz", local(2, 9, 0)));
    let actually = HashMap::from([(1, 1_500), (9, 700), (4, 100)]);
    let names = HashMap::from([(9, "Old campaign".to_owned())]);
    let report = fold.finish(&actually, &names);
    let ids: Vec<i64> = report.rules.iter().map(|r| r.rule_id).collect();
    assert_eq!(ids, vec![1, 4, 9]);
    assert_eq!(by_id(&report, 1).actually_issued, points(15));
    assert_eq!(by_id(&report, 9).name, "Old campaign");
    assert_eq!(by_id(&report, 4).name, "rule 4");
    assert!(!by_id(&report, 9).in_ruleset);
    assert_eq!(by_id(&report, 9).events_matched, 0);
    assert_eq!(report.actually_issued, points(23));
    assert_eq!(report.points_issued, points(5));
}

#[test]
fn an_event_the_engine_refuses_as_invalid_pays_nothing() {
    // A per-object rule needs an object id: the engine refuses the event, replay counts it
    // and goes on.
    let view = Rule {
        per_object: true,
        ..rule(1, "product_view", Reward::Fixed(points(2)))
    };
    let ruleset = Ruleset {
        version: 0,
        rules: vec![view],
    };
    let with_object = RecordedEvent {
        object_id: Some("p1".into()),
        ..event(7, "product_view", local(2, 9, 1))
    };
    let again = RecordedEvent {
        at: local(2, 9, 2),
        ..with_object.clone()
    };
    let report = run(
        &ruleset,
        HashMap::new(),
        &[event(7, "product_view", local(2, 9, 0)), with_object, again],
    );
    assert_eq!(report.events, 3);
    // The same object pays once.
    assert_eq!(by_id(&report, 1).events_matched, 1);
    assert_eq!(by_id(&report, 1).points_issued, points(2));
}
