use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::earning::rules::Streak;
use crate::money::Money;

fn tz() -> Tz {
    "Asia/Ho_Chi_Minh".parse().unwrap()
}

fn ctx(now: DateTime<Utc>) -> EvalContext {
    EvalContext {
        tz: tz(),
        now,
        points_per_currency: dec!(1),
        multiplier: Decimal::ONE,
    }
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
        budget: Default::default(),
    }
}

fn daily_login() -> Rule {
    Rule {
        limit: Some(Limit {
            count: 1,
            period: Period::Day,
        }),
        streak: Some(Streak {
            step: Points::from_minor(100),
            cap: Points::from_minor(1000),
        }),
        ..rule(1, "daily_login", Reward::Fixed(Points::from_minor(500)))
    }
}

fn ruleset(rules: Vec<Rule>) -> Ruleset {
    Ruleset { version: 1, rules }
}

fn action(name: &str) -> ActionRequest {
    ActionRequest {
        action: name.into(),
        ..Default::default()
    }
}

fn facts_with(rule_id: i64, f: RuleFacts) -> MemberFacts {
    MemberFacts {
        member_id: 7,
        rules: HashMap::from([(rule_id, f)]),
        ..MemberFacts::default()
    }
}

fn at(local: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
    tz().from_local_datetime(&naive)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn first_daily_login_pays_base_and_starts_streak() {
    let eval = evaluate(
        &ruleset(vec![daily_login()]),
        &MemberFacts::default(),
        &action("daily_login"),
        &ctx(at("2026-11-23 08:00:00")),
    )
    .unwrap();
    assert_eq!(eval.earns.len(), 1);
    assert_eq!(eval.earns[0].points, Points::from_minor(500));
    assert_eq!(
        eval.streak,
        Some((NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(), 1))
    );
    assert_eq!(
        eval.earns[0].natural_key.as_deref(),
        Some("daily_login:0:2026-11-23#1:r1")
    );
}

#[test]
fn second_login_the_same_day_is_already_claimed() {
    let facts = facts_with(
        1,
        RuleFacts {
            in_day: 1,
            lifetime: 1,
            ..RuleFacts::default()
        },
    );
    let eval = evaluate(
        &ruleset(vec![daily_login()]),
        &facts,
        &action("daily_login"),
        &ctx(at("2026-11-23 23:59:59")),
    )
    .unwrap();
    assert!(eval.earns.is_empty());
    assert_eq!(eval.refusal, Some(Refusal::AlreadyClaimed));
    assert_eq!(eval.streak, None);
}

#[test]
fn natural_keys_differ_across_local_midnight() {
    let rs = ruleset(vec![daily_login()]);
    let before = evaluate(
        &rs,
        &MemberFacts::default(),
        &action("daily_login"),
        &ctx(at("2026-11-23 23:59:59")),
    )
    .unwrap();
    let after = evaluate(
        &rs,
        &MemberFacts::default(),
        &action("daily_login"),
        &ctx(at("2026-11-24 00:00:00")),
    )
    .unwrap();
    assert_ne!(before.earns[0].natural_key, after.earns[0].natural_key);
}

#[test]
fn streak_grows_by_step_and_caps() {
    let rs = ruleset(vec![daily_login()]);
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let facts = |streak: u32, last: NaiveDate| MemberFacts {
        login_streak: streak,
        last_login_date: Some(last),
        ..MemberFacts::default()
    };
    let now = ctx(at("2026-11-23 09:00:00"));
    let day3 = evaluate(
        &rs,
        &facts(2, today.pred_opt().unwrap()),
        &action("daily_login"),
        &now,
    )
    .unwrap();
    assert_eq!(day3.earns[0].points, Points::from_minor(700));
    assert_eq!(day3.streak, Some((today, 3)));
    let day30 = evaluate(
        &rs,
        &facts(29, today.pred_opt().unwrap()),
        &action("daily_login"),
        &now,
    )
    .unwrap();
    assert_eq!(day30.earns[0].points, Points::from_minor(1000));
    let broken = evaluate(
        &rs,
        &facts(29, today - Duration::days(2)),
        &action("daily_login"),
        &now,
    )
    .unwrap();
    assert_eq!(broken.earns[0].points, Points::from_minor(500));
    assert_eq!(broken.streak, Some((today, 1)));
}

#[test]
fn a_money_effect_without_an_amount_pays_nothing_and_blocks_no_other_rule() {
    let percent = rule(1, "quiz", Reward::Percent(Decimal::TEN));
    let fixed = rule(2, "quiz", Reward::Fixed(Points::from_minor(300)));
    let rs = ruleset(vec![percent, fixed]);
    let now = ctx(at("2026-11-23 09:00:00"));
    let eval = evaluate(&rs, &MemberFacts::default(), &action("quiz"), &now).unwrap();
    assert_eq!(eval.earns.len(), 1);
    assert_eq!(eval.earns[0].rule_id, 2);
    assert_eq!(eval.verdicts[0].refusal, Some(Refusal::NothingToAward));
    assert_eq!(
        eval.verdicts[0].detail.as_deref(),
        Some("no amount: only purchases carry one")
    );
}

#[test]
fn per_object_rule_pays_once_per_object_and_needs_an_object() {
    let view = Rule {
        per_object: true,
        ..rule(2, "product_view", Reward::Fixed(Points::from_minor(200)))
    };
    let rs = ruleset(vec![view]);
    let now = ctx(at("2026-11-23 09:00:00"));
    let err = evaluate(&rs, &MemberFacts::default(), &action("product_view"), &now).unwrap_err();
    assert_eq!(err.code(), "VALIDATION");
    let req = ActionRequest {
        object_id: Some("p1".into()),
        ..action("product_view")
    };
    let eval = evaluate(&rs, &MemberFacts::default(), &req, &now).unwrap();
    assert_eq!(
        eval.earns[0].natural_key.as_deref(),
        Some("product_view:0:obj:p1:r2")
    );
    let claimed = facts_with(
        2,
        RuleFacts {
            object_claimed: true,
            lifetime: 1,
            ..RuleFacts::default()
        },
    );
    assert_eq!(
        evaluate(&rs, &claimed, &req, &now).unwrap().refusal,
        Some(Refusal::AlreadyClaimed)
    );
}

#[test]
fn n_per_week_limit_reports_limit_reached() {
    let share = Rule {
        limit: Some(Limit {
            count: 3,
            period: Period::Week,
        }),
        ..rule(3, "product_share", Reward::Fixed(Points::from_minor(100)))
    };
    let rs = ruleset(vec![share]);
    let now = ctx(at("2026-11-23 09:00:00"));
    let two = facts_with(
        3,
        RuleFacts {
            in_week: 2,
            ..RuleFacts::default()
        },
    );
    let eval = evaluate(&rs, &two, &action("product_share"), &now).unwrap();
    assert_eq!(
        eval.earns[0].natural_key.as_deref(),
        Some("product_share:7:w2026-11-23#3:r3")
    );
    let three = facts_with(
        3,
        RuleFacts {
            in_week: 3,
            ..RuleFacts::default()
        },
    );
    assert_eq!(
        evaluate(&rs, &three, &action("product_share"), &now)
            .unwrap()
            .refusal,
        Some(Refusal::LimitReached)
    );
}

#[test]
fn disabled_or_out_of_window_rules_are_inactive() {
    let now = at("2026-11-23 09:00:00");
    let disabled = Rule {
        enabled: false,
        ..daily_login()
    };
    let future = Rule {
        active_from: Some(now + Duration::hours(1)),
        ..daily_login()
    };
    let past = Rule {
        active_to: Some(now),
        ..daily_login()
    };
    for r in [disabled, future, past] {
        let eval = evaluate(
            &ruleset(vec![r]),
            &MemberFacts::default(),
            &action("daily_login"),
            &ctx(now),
        )
        .unwrap();
        assert_eq!(eval.refusal, Some(Refusal::RuleInactive));
    }
    let eval = evaluate(
        &ruleset(vec![]),
        &MemberFacts::default(),
        &action("daily_login"),
        &ctx(now),
    )
    .unwrap();
    assert_eq!(eval.refusal, Some(Refusal::NoRule));
}

#[test]
fn percent_of_purchase_is_exact_to_the_cent() {
    let purchase = rule(4, "purchase", Reward::Percent(dec!(5)));
    let rs = ruleset(vec![purchase]);
    let mut c = ctx(at("2026-11-23 09:00:00"));
    c.points_per_currency = dec!(10);
    let req = ActionRequest {
        amount: Some(Money::from_minor(12_345)),
        ..action("purchase")
    };
    // 123.45 × 5% × 10 = 61.725 → 61.72 (half to even)
    let eval = evaluate(&rs, &MemberFacts::default(), &req, &c).unwrap();
    assert_eq!(eval.earns[0].points, Points::from_minor(6_172));
    assert_eq!(eval.earns[0].natural_key, None);
    let tiny = ActionRequest {
        amount: Some(Money::from_minor(1)),
        ..action("purchase")
    };
    c.points_per_currency = dec!(0.01);
    assert_eq!(
        evaluate(&rs, &MemberFacts::default(), &tiny, &c)
            .unwrap()
            .refusal,
        Some(Refusal::NothingToAward)
    );
}

#[test]
fn tier_multiplier_scales_the_award() {
    let mut c = ctx(at("2026-11-23 09:00:00"));
    c.multiplier = dec!(1.5);
    let eval = evaluate(
        &ruleset(vec![daily_login()]),
        &MemberFacts::default(),
        &action("daily_login"),
        &c,
    )
    .unwrap();
    assert_eq!(eval.earns[0].points, Points::from_minor(750));
}

#[test]
fn opportunities_show_what_is_left() {
    let share = Rule {
        limit: Some(Limit {
            count: 3,
            period: Period::Day,
        }),
        ..rule(3, "product_share", Reward::Fixed(Points::from_minor(100)))
    };
    let off = Rule {
        enabled: false,
        ..rule(9, "news_read", Reward::Fixed(Points::from_minor(1)))
    };
    let rs = ruleset(vec![daily_login(), share, off]);
    let mut facts = facts_with(
        3,
        RuleFacts {
            in_day: 1,
            ..RuleFacts::default()
        },
    );
    facts.rules.insert(
        1,
        RuleFacts {
            in_day: 1,
            ..RuleFacts::default()
        },
    );
    let ops = opportunities(&rs, &facts, &ctx(at("2026-11-23 09:00:00")));
    assert_eq!(ops.len(), 2);
    assert_eq!((ops[0].remaining, ops[0].claimed), (Some(0), true));
    assert_eq!((ops[1].remaining, ops[1].claimed), (Some(2), false));
}

proptest! {
    /// Whatever the history, a limited rule never pays once its count for the period is reached,
    /// and an award never exceeds the streak cap.
    #[test]
    fn limits_and_caps_hold(
        count in 1u32..5,
        period in prop_oneof![Just(Period::Lifetime), Just(Period::Day), Just(Period::Week), Just(Period::Month)],
        used in 0u32..8,
        streak in 0u32..100,
        base in 1i64..10_000,
        step in 0i64..1_000,
        cap in 1i64..50_000,
        hour in 0i64..(24 * 365),
    ) {
        let r = Rule {
            limit: Some(Limit { count, period }),
            streak: Some(Streak { step: Points::from_minor(step), cap: Points::from_minor(cap) }),
            ..rule(1, "daily_login", Reward::Fixed(Points::from_minor(base)))
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(hour);
        let today = crate::periods::local_date(tz(), now);
        let mut facts = facts_with(1, RuleFacts { lifetime: used, in_day: used, in_week: used, in_month: used, object_claimed: false, ..Default::default() });
        facts.login_streak = streak;
        facts.last_login_date = today.pred_opt();
        let eval = evaluate(&ruleset(vec![r]), &facts, &action("daily_login"), &ctx(now)).unwrap();
        if used >= count {
            prop_assert!(eval.earns.is_empty());
            prop_assert!(eval.refusal.is_some());
        } else {
            prop_assert_eq!(eval.earns.len(), 1);
            let paid = eval.earns[0].points.minor();
            prop_assert!(paid >= base.min(cap.max(base)));
            prop_assert!(paid <= cap.max(base));
            prop_assert!(eval.earns[0].natural_key.is_some());
        }
    }

    /// Percent rewards are exact: never more than two fraction digits, and within half a cent of
    /// the true product.
    #[test]
    fn percent_rewards_are_rounded_once(amount in 1i64..100_000_000, percent_bp in 1i64..10_000, ratio_bp in 1i64..100_000) {
        let percent = Decimal::new(percent_bp, 2);
        let ratio = Decimal::new(ratio_bp, 2);
        let mut c = ctx(Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap());
        c.points_per_currency = ratio;
        let req = ActionRequest { amount: Some(Money::from_minor(amount)), ..action("purchase") };
        let eval = evaluate(&ruleset(vec![rule(4, "purchase", Reward::Percent(percent))]), &MemberFacts::default(), &req, &c).unwrap();
        let exact = Decimal::new(amount, 2) * percent / Decimal::ONE_HUNDRED * ratio;
        match eval.earns.first() {
            Some(earn) => prop_assert!((earn.points.decimal() - exact).abs() <= dec!(0.005)),
            None => prop_assert!(exact <= dec!(0.005)),
        }
    }
}

mod campaigns;
mod props;
