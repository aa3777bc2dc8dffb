//! Conditions without a database: explanations (`evaluate.rs`), refusals with their paths
//! (`validate.rs`), the JSON shape (`serde.rs`) and properties (`props.rs`).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::*;
use crate::error::DomainError;

mod evaluate;
mod props;
mod serde;
mod validate;

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
/// tea line, a silver member's second purchase, joined ten days before; its action counts are a
/// news read's (the 3rd today, 7th this week, 12th this month, 40th ever).
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
        badges: Default::default(),
        action_counts: Some(ActionCounts {
            action: "news_read".into(),
            day: 3,
            week: 7,
            month: 12,
            lifetime: 40,
        }),
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
