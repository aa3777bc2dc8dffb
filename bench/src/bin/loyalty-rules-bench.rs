//! `loyalty-rules-bench`: the rule engine alone, no database, no HTTP. Builds a ruleset of N live
//! rules (default 200) over three actions, with every condition kind and every effect, and times
//! `evaluate` on one event per action: a purchase with 10 lines, a news read and a product share.
//!
//! Usually started through `bench/run.sh rules` (builds this binary in release and runs it).
//! Prints one markdown table: rules and conditions for the event's action, what the evaluation
//! paid, and mean / p50 / p99 / min microseconds per `evaluate` (each call timed on its own).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Parser;
use loyalty_domain::earning::rules::conditions::{self, Line, TierFact};
use loyalty_domain::earning::rules::{
    evaluate, ActionRequest, Budget, EvalContext, Limit, MemberFacts, Period, Reward, Rounding,
    Rule, RuleFacts, Ruleset,
};
use loyalty_domain::{Money, Points};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Rule-engine microbenchmark: `evaluate` over a large live ruleset.
#[derive(Debug, Parser)]
#[command(name = "loyalty-rules-bench", version)]
struct Args {
    /// Live rules in the ruleset, spread 60 % purchase, 20 % news_read, 20 % product_share.
    #[arg(long, default_value_t = 200)]
    rules: usize,
    /// Timed evaluations per event (after as many untimed warm-up evaluations as a tenth of it).
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
}

const TZ: Tz = chrono_tz::Asia::Ho_Chi_Minh;
const GOLD: i64 = 3;

/// Saturday 2026-12-05 19:00 in Ho Chi Minh City: weekend, inside the 18:00–20:00 windows.
fn now() -> Result<DateTime<Utc>> {
    let local = TZ.with_ymd_and_hms(2026, 12, 5, 19, 0, 0).single();
    Ok(local.context("a valid local time")?.with_timezone(&Utc))
}

/// The condition kinds in a fixed order; rule `i` takes three consecutive kinds starting at
/// `i mod 13`, so every kind appears on ~46 of 200 rules. `holds` chooses a value the benchmark's
/// events satisfy (for the purchase; actions have no order total or lines, so those kinds fail
/// there as they would in production).
fn condition(kind: usize, holds: bool, i: usize, action: &str) -> Value {
    let pick = |yes: Value, no: Value| if holds { yes } else { no };
    match kind % 13 {
        0 => json!({"kind": "orderTotalAtLeast", "amount": pick(json!("50.00"), json!("5000.00"))}),
        1 => json!({"kind": "orderTotalBelow", "amount": pick(json!("1000.00"), json!("10.00"))}),
        2 => json!({"kind": "linesWithSku",
            "skus": pick(json!(["COF-1", "COF-2", format!("SKU-{i}")]), json!([format!("SKU-{i}")])),
            "minQuantity": 2}),
        3 => json!({"kind": "linesInCategory",
            "categories": pick(json!(["coffee", "beans"]), json!(["wine"])),
            "minValue": "10.00"}),
        4 => json!({"kind": "tierIn", "tierIds": pick(json!([2, GOLD]), json!([1, 2]))}),
        5 => json!({"kind": "dayOfWeekIn",
            "days": pick(json!(["saturday", "sunday"]), json!(["monday", "tuesday"]))}),
        6 => json!({"kind": "localTimeBetween",
            "from": pick(json!("18:00"), json!("07:00")), "to": pick(json!("20:00"), json!("09:30"))}),
        7 => json!({"kind": "firstPurchase"}),
        8 => json!({"kind": "nthPurchase", "n": pick(json!(1), json!(10))}),
        9 => json!({"kind": "joinedWithinDays", "days": pick(json!(90), json!(7))}),
        10 => json!({"kind": "objectIdIn",
            "ids": pick(json!(["store/hcm-01", "news/sport/42", "p/42", format!("x/{i}")]),
                        json!([format!("x/{i}")]))}),
        11 => json!({"kind": "objectIdPrefix",
            "prefix": pick(json!(object_prefix(action)), json!("zz/"))}),
        _ => json!({"kind": "memberAttributeEquals", "key": "city",
            "value": pick(json!("hcm"), json!("hanoi"))}),
    }
}

/// The start of the object id of the benchmark's event for `action`.
fn object_prefix(action: &str) -> &'static str {
    match action {
        "purchase" => "store/",
        "news_read" => "news/",
        _ => "p/",
    }
}

/// The effect of the `n`-th rule of `action`: for purchases every effect (a tenth of them ×2
/// multipliers); for actions, which have no amount, fixed points, ×2 multipliers, free spins and
/// caller-chosen points (news reads: the caller sends 15).
fn reward(n: usize, action: &str) -> Reward {
    let points = |whole: i64| Points::from_minor(whole * 100);
    let fixed = Reward::Fixed(points(5 + i64::try_from(n % 7).unwrap_or_default()));
    if action != "purchase" {
        return match n % 10 {
            0 => Reward::Multiplier(Decimal::TWO),
            6 if action == "news_read" => Reward::CallerChosen {
                min: points(10),
                max: points(20),
            },
            7 => Reward::FreeSpins(1),
            _ => fixed,
        };
    }
    match n % 10 {
        0 => Reward::Multiplier(Decimal::TWO),
        3 => Reward::Percent(Decimal::new(5, 0)),
        4 => Reward::PercentOfLines(Decimal::new(10, 0)),
        5 => Reward::PerUnit {
            points: points(1),
            per: Money::from_minor(1_000),
            rounding: Rounding::Down,
        },
        6 => Reward::PerUnit {
            points: points(2),
            per: Money::from_minor(2_500),
            rounding: Rounding::Nearest,
        },
        7 => Reward::PerUnit {
            points: points(1),
            per: Money::from_minor(500),
            rounding: Rounding::Up,
        },
        8 => Reward::FreeSpins(1),
        _ => fixed,
    }
}

struct Setup {
    ruleset: Ruleset,
    facts: MemberFacts,
    ctx: EvalContext,
}

fn setup(count: usize) -> Result<Setup> {
    let now = now()?;
    let mut rules = Vec::with_capacity(count);
    let mut facts_by_rule = HashMap::new();
    let mut per_action: HashMap<&str, usize> = HashMap::new();
    for i in 0..count {
        let action = match i % 5 {
            0..=2 => "purchase",
            3 => "news_read",
            _ => "product_share",
        };
        let n = per_action.entry(action).or_default();
        let nth = *n;
        *n += 1;
        // A third of the rules fail on their first condition, a third on their last, a third pay.
        let fail_at = match i % 3 {
            0 => Some(0),
            1 => Some(2),
            _ => None,
        };
        let inputs: Vec<Value> = (0..3)
            .map(|k| condition(i + k, fail_at != Some(k), i, action))
            .collect();
        let conditions = conditions::validate(&inputs)
            .with_context(|| format!("rule {i}: conditions {inputs:?}"))?;
        let id = i64::try_from(i + 1)?;
        let rule = Rule {
            id,
            name: format!("campaign {i}"),
            action: action.to_owned(),
            source: format!("campaign_{i}"),
            reward: reward(nth, action),
            limit: (i % 4 == 0).then_some(Limit {
                count: 5,
                period: [Period::Day, Period::Week, Period::Month, Period::Lifetime][i % 4],
            }),
            per_object: false,
            streak: None,
            active_from: Some(now - Duration::days(30)),
            active_to: Some(now + Duration::days(30)),
            enabled: true,
            qualifying: i % 2 == 0,
            conditions,
            priority: i32::try_from((i * 7) % 10)?,
            exclusive: false,
            budget: Budget {
                total: (i % 6 == 0).then_some(Points::from_minor(100_000_000)),
                per_member: (i % 6 == 1).then_some(Points::from_minor(1_000_000)),
            },
        };
        facts_by_rule.insert(
            id,
            RuleFacts {
                lifetime: 1,
                in_day: 1,
                in_week: 1,
                in_month: 1,
                object_claimed: false,
                lifetime_points: Points::from_minor(1_000),
            },
        );
        rules.push(rule);
    }
    let joined = now - Duration::days(30);
    let facts = MemberFacts {
        member_id: 42,
        login_streak: 0,
        last_login_date: None,
        rules: facts_by_rule,
        tier: Some(TierFact {
            id: GOLD,
            name: "gold".into(),
        }),
        joined_at: Some(joined),
        // The purchase is the member's first; `main` clears this for actions.
        purchase_ordinal: Some(1),
        attributes: HashMap::from([
            ("city".to_owned(), "hcm".to_owned()),
            ("segment".to_owned(), "vip".to_owned()),
            ("lang".to_owned(), "vi".to_owned()),
        ]),
        exhausted: HashSet::from([7, 77]),
        badges: Default::default(),
        action_counts: None,
    };
    let ctx = EvalContext {
        tz: TZ,
        now,
        points_per_currency: Decimal::ONE,
        multiplier: Decimal::new(15, 1),
    };
    Ok(Setup {
        ruleset: Ruleset { version: 1, rules },
        facts,
        ctx,
    })
}

fn line(sku: &str, category: &str, quantity: u32, unit_minor: i64) -> Line {
    Line {
        sku: sku.into(),
        category: Some(category.into()),
        quantity,
        unit_price: Money::from_minor(unit_minor),
    }
}

/// (label, request) for each measured event.
fn events() -> Vec<(&'static str, ActionRequest)> {
    let lines = vec![
        line("COF-1", "coffee", 2, 4_500),
        line("COF-2", "coffee", 1, 5_200),
        line("TEA-1", "tea", 3, 3_000),
        line("TEA-2", "tea", 1, 2_800),
        line("BEA-1", "beans", 1, 18_000),
        line("PAS-1", "pastry", 4, 2_500),
        line("PAS-2", "pastry", 2, 3_100),
        line("MUG-1", "merch", 1, 12_000),
        line("CUP-1", "merch", 6, 900),
        line("SYR-1", "syrup", 2, 1_500),
    ];
    let total = lines.iter().map(|l| l.value().minor()).sum();
    vec![
        (
            "purchase, 10 lines",
            ActionRequest {
                action: "purchase".into(),
                object_id: Some("store/hcm-01".into()),
                amount: Some(Money::from_minor(total)),
                lines,
                points: None,
            },
        ),
        (
            "news_read (caller-chosen 15)",
            ActionRequest {
                action: "news_read".into(),
                object_id: Some("news/sport/42".into()),
                amount: None,
                lines: Vec::new(),
                points: Some(Points::from_minor(1_500)),
            },
        ),
        (
            "product_share",
            ActionRequest {
                action: "product_share".into(),
                object_id: Some("p/42".into()),
                amount: None,
                lines: Vec::new(),
                points: None,
            },
        ),
    ]
}

fn percentile(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_ns.len() - 1) as f64).round() as usize;
    sorted_ns[rank.min(sorted_ns.len() - 1)] as f64 / 1_000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.iterations > 0, "--iterations must be at least 1");
    let Setup {
        ruleset,
        facts,
        ctx,
    } = setup(args.rules)?;
    let live = ruleset.rules.iter().filter(|r| r.is_live(ctx.now)).count();
    let all_conditions: usize = ruleset.rules.iter().map(|r| r.conditions.len()).sum();
    let kinds: HashSet<String> = ruleset
        .rules
        .iter()
        .flat_map(|r| &r.conditions)
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect();
    println!(
        "{live} live rules, {all_conditions} conditions of {} kinds, tier ×{}, program timezone {TZ}, \
         {} timed evaluations per event",
        kinds.len(),
        ctx.multiplier,
        args.iterations
    );
    // A shared machine's other work shows in the mean and p99 (preemption), hardly in p50/min.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "load average {} on {} CPUs",
            load.join(" "),
            std::thread::available_parallelism().map_or(0, usize::from)
        );
    }
    println!();
    println!(
        "| event | rules for the action | conditions on them | paid (rules / points / spins) \
         | evaluations | mean µs | p50 µs | p99 µs | min µs |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
    for (label, request) in events() {
        let facts = MemberFacts {
            purchase_ordinal: facts
                .purchase_ordinal
                .filter(|_| request.action == "purchase"),
            ..facts.clone()
        };
        let own: Vec<&Rule> = ruleset.rules_for(&request.action).collect();
        let own_conditions: usize = own.iter().map(|r| r.conditions.len()).sum();
        let once = evaluate(&ruleset, &facts, &request, &ctx)
            .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        ensure!(
            once.verdicts.len() == own.len(),
            "{label}: one verdict per rule"
        );
        let points: i64 = once.earns.iter().map(|e| e.points.minor()).sum();
        let spins: u32 = once.earns.iter().map(|e| e.spins).sum();
        for _ in 0..args.iterations / 10 {
            black_box(evaluate(
                black_box(&ruleset),
                black_box(&facts),
                black_box(&request),
                black_box(&ctx),
            ))
            .ok();
        }
        let mut samples = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations {
            let start = Instant::now();
            let result = evaluate(
                black_box(&ruleset),
                black_box(&facts),
                black_box(&request),
                black_box(&ctx),
            );
            let elapsed = start.elapsed();
            black_box(result).ok();
            samples.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
        let mean =
            samples.iter().map(|&ns| ns as f64).sum::<f64>() / samples.len() as f64 / 1_000.0;
        samples.sort_unstable();
        println!(
            "| {label} | {} | {own_conditions} | {} / {}.{:02} / {spins} | {} | {mean:.2} | {:.2} | {:.2} | {:.2} |",
            own.len(),
            once.earns.len(),
            points / 100,
            points % 100,
            samples.len(),
            percentile(&samples, 50.0),
            percentile(&samples, 99.0),
            percentile(&samples, 0.0),
        );
    }
    Ok(())
}
