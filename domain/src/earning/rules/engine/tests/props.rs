//! Properties of `evaluate` over random purchase rulesets (every effect, priorities, exclusive
//! rules, conditions, limits, per-member caps, exhausted budgets, tier multipliers).

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::earning::rules::conditions::{self, Line};
use crate::earning::rules::{Budget, Rounding};

#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    value: i64,
    priority: i32,
    exclusive: bool,
    min_total: Option<i64>,
    coffee_only: bool,
    limit_used: bool,
    exhausted: bool,
    /// (per-member cap, points the member already had from the rule), minor units.
    cap: Option<(i64, i64)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..6,
        1i64..5_000,
        0i32..4,
        prop::bool::weighted(0.2),
        prop::option::weighted(0.3, 1i64..20_000),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.2, (1i64..20_000, 0i64..20_000)),
    )
        .prop_map(
            |(
                kind,
                value,
                priority,
                exclusive,
                min_total,
                coffee_only,
                limit_used,
                exhausted,
                cap,
            )| Spec {
                kind,
                value,
                priority,
                exclusive,
                min_total,
                coffee_only,
                limit_used,
                exhausted,
                cap,
            },
        )
}

fn build(id: i64, spec: &Spec) -> Rule {
    let reward = match spec.kind {
        0 => Reward::Fixed(Points::from_minor(spec.value)),
        1 => Reward::Percent(Decimal::new(spec.value % 50 + 1, 0)),
        2 => Reward::PercentOfLines(Decimal::new(spec.value % 50 + 1, 0)),
        3 => Reward::PerUnit {
            points: Points::from_minor(100),
            per: Money::from_minor(spec.value % 2_000 + 1),
            rounding: [Rounding::Down, Rounding::Nearest, Rounding::Up]
                [usize::try_from(spec.value % 3).unwrap()],
        },
        // ×1.0 to ×3.9.
        4 => Reward::Multiplier(Decimal::new(10 + spec.value % 30, 1)),
        _ => Reward::FreeSpins(u32::try_from(spec.value % 3).unwrap()),
    };
    let mut inputs: Vec<Value> = Vec::new();
    if let Some(minor) = spec.min_total {
        inputs.push(
            json!({"kind": "orderTotalAtLeast", "amount": Decimal::new(minor, 2).to_string()}),
        );
    }
    if spec.coffee_only {
        inputs.push(json!({"kind": "linesInCategory", "categories": ["coffee"]}));
    }
    Rule {
        limit: Some(Limit {
            count: 2,
            period: Period::Day,
        }),
        priority: spec.priority,
        exclusive: spec.exclusive,
        conditions: conditions::validate(&inputs).unwrap(),
        budget: Budget {
            total: Some(Points::from_minor(1_000_000)),
            per_member: spec.cap.map(|(cap, _)| Points::from_minor(cap)),
        },
        ..rule(id, "purchase", reward)
    }
}

fn facts_for(specs: &[Spec]) -> MemberFacts {
    let mut facts = MemberFacts {
        member_id: 7,
        ..MemberFacts::default()
    };
    for (i, spec) in specs.iter().enumerate() {
        let id = i64::try_from(i).unwrap() + 1;
        facts.rules.insert(
            id,
            RuleFacts {
                in_day: if spec.limit_used { 2 } else { 0 },
                lifetime: if spec.limit_used { 2 } else { 0 },
                lifetime_points: Points::from_minor(spec.cap.map_or(0, |(_, had)| had)),
                ..RuleFacts::default()
            },
        );
        if spec.exhausted {
            facts.exhausted.insert(id);
        }
    }
    facts
}

fn lines() -> impl Strategy<Value = Vec<Line>> {
    prop::collection::vec((any::<bool>(), 1u32..4, 1i64..5_000), 0..5).prop_map(|lines| {
        lines
            .into_iter()
            .enumerate()
            .map(|(i, (coffee, quantity, price))| Line {
                sku: format!("SKU-{i}"),
                category: Some(if coffee { "coffee" } else { "tea" }.into()),
                quantity,
                unit_price: Money::from_minor(price),
            })
            .collect()
    })
}

fn scenario() -> impl Strategy<Value = (Vec<Spec>, Vec<Line>, i64, Decimal, i64, u64)> {
    (
        prop::collection::vec(spec(), 1..8),
        lines(),
        1i64..20_000,
        prop::sample::select(vec![dec!(1), dec!(1.25), dec!(1.5), dec!(2)]),
        0i64..(24 * 14),
        any::<u64>(),
    )
}

fn is_multiplier(rule: &Rule) -> bool {
    matches!(rule.reward, Reward::Multiplier(_))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluation_is_consistent((specs, lines, amount, tier, hour, seed) in scenario()) {
        let mut rules: Vec<Rule> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| build(i64::try_from(i).unwrap() + 1, s))
            .collect();
        // A rule of another action: never considered for a purchase.
        rules.push(rule(100, "news_read", Reward::Fixed(Points::from_minor(100))));
        let rs = ruleset(rules.clone());
        let facts = facts_for(&specs);
        let request = if lines.is_empty() {
            ActionRequest { amount: Some(Money::from_minor(amount)), ..action("purchase") }
        } else {
            let total = lines.iter().map(|l| l.value().minor()).sum();
            ActionRequest { amount: Some(Money::from_minor(total)), lines, ..action("purchase") }
        };
        let mut c = ctx(Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + Duration::hours(hour));
        c.multiplier = tier;
        let eval = evaluate(&rs, &facts, &request, &c).unwrap();

        // Deterministic, and independent of the order rules are stored in.
        prop_assert_eq!(&evaluate(&rs, &facts, &request, &c).unwrap(), &eval);
        let mut shuffled = rules.clone();
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap()) % (i as u64 + 1)).unwrap();
            shuffled.swap(i, j);
        }
        prop_assert_eq!(&evaluate(&ruleset(shuffled), &facts, &request, &c).unwrap(), &eval);

        // One verdict per purchase rule, in descending priority then ascending id.
        prop_assert_eq!(eval.verdicts.len(), specs.len());
        let by_id = |id: i64| rs.rules.iter().find(|r| r.id == id).unwrap();
        for pair in eval.verdicts.windows(2) {
            let (a, b) = (by_id(pair[0].rule_id), by_id(pair[1].rule_id));
            prop_assert!((-a.priority, a.id) < (-b.priority, b.id));
        }

        // Refused iff nothing was paid.
        prop_assert_eq!(eval.refusal.is_none(), !eval.earns.is_empty());

        // The paying verdicts are exactly the earns, with the same points and spins.
        let mut from_verdicts: Vec<(i64, Points, u32)> = eval.verdicts.iter()
            .filter(|v| v.refusal.is_none())
            .map(|v| (v.rule_id, v.points, v.spins))
            .collect();
        let mut from_earns: Vec<(i64, Points, u32)> = eval.earns.iter()
            .map(|e| (e.rule_id, e.points, e.spins))
            .collect();
        from_verdicts.sort();
        from_earns.sort();
        prop_assert_eq!(&from_verdicts, &from_earns);
        let unique: HashSet<i64> = eval.earns.iter().map(|e| e.rule_id).collect();
        prop_assert_eq!(unique.len(), eval.earns.len());

        for earn in &eval.earns {
            prop_assert!(!facts.exhausted.contains(&earn.rule_id));
            prop_assert!(earn.points.is_positive() || earn.spins > 0);
            prop_assert!(!earn.points.decimal().is_sign_negative());
            let r = by_id(earn.rule_id);
            if let Some(cap) = r.budget.per_member {
                let had = facts.rules[&r.id].lifetime_points;
                prop_assert!(had.checked_add(earn.points).unwrap() <= cap);
            }
        }

        // A point-paying rule pays exactly what it pays alone: other rules never change it.
        for earn in eval.earns.iter().filter(|e| !is_multiplier(by_id(e.rule_id))) {
            let alone = ruleset(vec![by_id(earn.rule_id).clone()]);
            let solo = evaluate(&alone, &facts, &request, &c).unwrap();
            prop_assert_eq!(&solo.earns, &vec![earn.clone()]);
        }

        // Each multiplier pays (factor − 1) × the sum the point-paying rules paid.
        let base: Decimal = eval.earns.iter()
            .filter(|e| !is_multiplier(by_id(e.rule_id)))
            .map(|e| e.points.decimal())
            .sum();
        for earn in eval.earns.iter().filter(|e| is_multiplier(by_id(e.rule_id))) {
            let Reward::Multiplier(factor) = by_id(earn.rule_id).reward else { unreachable!() };
            prop_assert_eq!(earn.points, Points::round_from(base * (factor - Decimal::ONE)).unwrap());
        }

        // Excluded only after a paying exclusive rule; after a paying exclusive point rule every
        // later rule is excluded, after a paying exclusive multiplier no later multiplier pays
        // (those the main pass already refused keep their own reason).
        for (j, v) in eval.verdicts.iter().enumerate() {
            if v.refusal == Some(Refusal::Excluded) {
                prop_assert!(eval.verdicts[..j].iter().any(|p| p.refusal.is_none() && by_id(p.rule_id).exclusive));
            }
        }
        for (i, v) in eval.verdicts.iter().enumerate() {
            let r = by_id(v.rule_id);
            if v.refusal.is_none() && r.exclusive {
                for later in &eval.verdicts[i + 1..] {
                    if !is_multiplier(r) {
                        prop_assert_eq!(later.refusal, Some(Refusal::Excluded));
                    } else if is_multiplier(by_id(later.rule_id)) {
                        prop_assert!(later.refusal.is_some());
                    }
                }
            }
        }
    }
}
