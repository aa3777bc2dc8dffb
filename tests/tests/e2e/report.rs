//! The Customer Loyalty Report: every figure against an independent recomputation from the raw
//! ledger, program-timezone boundaries, lagging aggregates, access, and the CSV exports.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

pub const REPORT: &str = "query($from: Date!, $to: Date!, $g: Granularity, $cf: Date, $ct: Date) {
  loyaltyReport(from: $from, to: $to, granularity: $g, compareFrom: $cf, compareTo: $ct) {
    asOf from to granularity timezone currency
    pointsIssued { total count bySource { source label points count share } }
    pointsUsed { total count byPurpose { purpose label points count share } }
    pointsExpired outstandingBalance redemptionRate
    members { total new active }
    tierDistribution { tier { id name } count }
    revenue averageOrderValue
    series { bucketStart issued used expired newMembers }
    comparison {
      from to
      pointsIssued { total count bySource { source label points count share } }
      pointsUsed { total count byPurpose { purpose label points count share } }
      pointsExpired outstandingBalance redemptionRate members { total new active }
      revenue averageOrderValue
    }
  }
}";

const TZ: &str = "Asia/Ho_Chi_Minh";

async fn report(app: &TestApp, token: &str, from: &str, to: &str, g: &str) -> Gql {
    app.gql(Some(token), REPORT, j!({"from": from, "to": to, "g": g}))
        .await
}

e2e!(report_empty_period_is_zeros, |app: TestApp| async move {
    app.demo().await;
    let res = report(&app, &app.admin(), "2026-01-01", "2026-01-03", "DAY").await;
    let r = &res.data()["loyaltyReport"];
    assert_eq!(r["timezone"], TZ);
    assert_eq!(r["from"], "2026-01-01");
    assert_eq!(r["pointsIssued"]["total"], "0.00");
    assert_eq!(r["pointsIssued"]["count"], 0);
    let sources: Vec<&str> = r["pointsIssued"]["bySource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "daily_login",
            "first_product_view",
            "first_news_read",
            "first_product_share",
            "new_account_registration",
            "new_member_reward",
            "new_user_referral",
            "referrer_reward",
            "purchase",
            "lucky_wheel_prize",
            "admin_adjustment"
        ]
    );
    assert_eq!(r["pointsIssued"]["bySource"][0]["label"], "Daily login");
    assert!(r["pointsIssued"]["bySource"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["points"] == "0.00" && s["share"] == "0.0000" && s["count"] == 0));
    let purposes: Vec<&str> = r["pointsUsed"]["byPurpose"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        [
            "lucky_wheel",
            "gift_redemption",
            "discount",
            "admin_adjustment"
        ]
    );
    assert_eq!(r["pointsExpired"], "0.00");
    assert_eq!(r["outstandingBalance"], "0.00");
    assert_eq!(r["redemptionRate"], "0.0000");
    assert_eq!(r["members"], j!({"total": 0, "new": 0, "active": 0}));
    assert_eq!(r["revenue"], "0.00");
    assert_eq!(r["averageOrderValue"], "0.00");
    assert_eq!(
        r["tierDistribution"].as_array().unwrap().last().unwrap()["tier"],
        Value::Null
    );
    assert_eq!(r["series"].as_array().unwrap().len(), 3);
    assert_eq!(
        r["series"][2],
        j!({"bucketStart": "2026-01-03", "issued": "0.00", "used": "0.00", "expired": "0.00", "newMembers": 0})
    );
    assert_eq!(r["comparison"], Value::Null);
});

e2e!(
    report_refuses_bad_periods_and_non_admins,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        assert_eq!(
            report(&app, &admin, "2026-01-03", "2026-01-02", "DAY")
                .await
                .code(),
            "VALIDATION"
        );
        // 366 days is the limit, both ends included.
        assert_eq!(
            report(&app, &admin, "2025-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "VALIDATION"
        );
        let longest = report(&app, &admin, "2025-01-01", "2026-01-01", "MONTH").await;
        assert_eq!(
            longest.data()["loyaltyReport"]["series"]
                .as_array()
                .unwrap()
                .len(),
            13
        );
        let half = app
            .gql(
                Some(&admin),
                REPORT,
                j!({"from": "2026-01-01", "to": "2026-01-02", "cf": "2025-01-01"}),
            )
            .await;
        assert_eq!(half.code(), "VALIDATION");
        let (member, _) = app.register("m1").await;
        assert_eq!(
            report(&app, &member, "2026-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            report(&app, &app.service(), "2026-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "FORBIDDEN"
        );
        let none = app
            .gql(None, REPORT, j!({"from": "2026-01-01", "to": "2026-01-02"}))
            .await;
        assert_eq!(none.code(), "UNAUTHENTICATED");
    }
);

// ---------------------------------------------------------------------------------------------
// An independent recomputation of every figure from the raw rows (no report code involved).

/// member, account, kind, amount, source, purpose, local day.
type RawPosting = (
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    NaiveDate,
);

#[derive(Debug, Clone)]
struct Raw {
    ledger: Vec<RawPosting>,
    joined: Vec<NaiveDate>,
    purchases: Vec<(i64, NaiveDate)>,
    refunds: Vec<(i64, NaiveDate)>,
}

async fn raw(app: &TestApp, program: &str) -> Raw {
    let db = app.loyalty.db();
    let backend = db.get_database_backend();
    let program = app.loyalty.program(program).await.unwrap();
    let tz = program.tz;
    let day = |at: DateTime<Utc>| at.with_timezone(&tz).date_naive();
    let pid = program.id;
    let q = |sql: String| Statement::from_string(backend, sql);
    let mut out = Raw {
        ledger: vec![],
        joined: vec![],
        purchases: vec![],
        refunds: vec![],
    };
    for row in db
        .query_all(q(format!(
            "SELECT member_id, account, kind, amount_minor, source, purpose, created_at \
             FROM ledger_entries WHERE program_id = {pid}"
        )))
        .await
        .unwrap()
    {
        out.ledger.push((
            row.try_get("", "member_id").unwrap(),
            row.try_get("", "account").unwrap(),
            row.try_get("", "kind").unwrap(),
            row.try_get("", "amount_minor").unwrap(),
            row.try_get("", "source").unwrap(),
            row.try_get("", "purpose").unwrap(),
            day(row.try_get("", "created_at").unwrap()),
        ));
    }
    for row in db
        .query_all(q(format!(
            "SELECT joined_at FROM members WHERE program_id = {pid}"
        )))
        .await
        .unwrap()
    {
        out.joined.push(day(row.try_get("", "joined_at").unwrap()));
    }
    for (table, list) in [
        ("purchases", &mut out.purchases),
        ("refunds", &mut out.refunds),
    ] {
        for row in db
            .query_all(q(format!(
                "SELECT amount_minor, created_at FROM {table} WHERE program_id = {pid}"
            )))
            .await
            .unwrap()
        {
            list.push((
                row.try_get("", "amount_minor").unwrap(),
                day(row.try_get("", "created_at").unwrap()),
            ));
        }
    }
    out
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn pts(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

/// Checks one period's figures (`r` is the report or its `comparison`) against the raw rows.
fn check_figures(r: &Value, raw: &Raw, from: NaiveDate, to: NaiveDate) {
    let within = |d: &NaiveDate| *d >= from && *d <= to;
    let mut issued: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut used: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (mut expired, mut outstanding) = (0i64, 0i64);
    let mut active = HashSet::new();
    for (member, account, kind, amount, source, purpose, day) in &raw.ledger {
        if within(day) {
            active.insert(*member);
        }
        if account != "POINTS" {
            continue;
        }
        if day <= &to {
            outstanding += amount;
        }
        if !within(day) {
            continue;
        }
        let src = source.clone().unwrap_or_default();
        let pur = purpose.clone().unwrap_or_default();
        match (kind.as_str(), *amount > 0) {
            ("EARN", _) | ("ADJUST", true) => {
                let e = issued.entry(src).or_default();
                e.0 += amount;
                e.1 += 1;
            }
            ("REVERSAL", _) => issued.entry(src).or_default().0 += amount,
            ("SPEND", _) | ("ADJUST", false) => {
                let e = used.entry(pur).or_default();
                e.0 -= amount;
                e.1 += 1;
            }
            ("REFUND", _) => used.entry(pur).or_default().0 -= amount,
            ("EXPIRE", _) => expired -= amount,
            other => panic!("unexpected ledger kind {other:?}"),
        }
    }
    for (field, list, expected) in [
        ("pointsIssued", "bySource", &issued),
        ("pointsUsed", "byPurpose", &used),
    ] {
        let key = if list == "bySource" {
            "source"
        } else {
            "purpose"
        };
        let rows = r[field][list].as_array().unwrap();
        let total: i64 = expected.values().map(|v| v.0).sum();
        assert_eq!(
            dec(&r[field]["total"]),
            pts(total),
            "{field} total {from}..{to}"
        );
        assert_eq!(
            r[field]["count"].as_i64().unwrap(),
            expected.values().map(|v| v.1).sum::<i64>(),
            "{field} count"
        );
        for (k, (points, count)) in expected {
            let row = rows
                .iter()
                .find(|x| x[key] == k.as_str())
                .unwrap_or_else(|| panic!("{field}: no row for {k}"));
            assert_eq!(dec(&row["points"]), pts(*points), "{field} {k} points");
            assert_eq!(row["count"].as_i64().unwrap(), *count, "{field} {k} count");
        }
        for row in rows {
            if !expected.contains_key(row[key].as_str().unwrap()) {
                assert_eq!(row["points"], "0.00");
                assert_eq!(row["count"], 0);
            }
        }
        let shares: Vec<Decimal> = rows.iter().map(|x| dec(&x["share"])).collect();
        if total > 0 {
            assert_eq!(
                shares.iter().copied().sum::<Decimal>(),
                Decimal::ONE,
                "{field} shares"
            );
            for row in rows {
                let exact = dec(&row["points"]) / pts(total);
                assert!(
                    (dec(&row["share"]) - exact).abs() < Decimal::new(1, 4),
                    "{field} share {row}"
                );
            }
        } else {
            assert!(shares.iter().all(|s| s.is_zero()));
        }
    }
    let issued_total: i64 = issued.values().map(|v| v.0).sum();
    let used_total: i64 = used.values().map(|v| v.0).sum();
    let rate = if issued_total > 0 {
        (Decimal::from(used_total) / Decimal::from(issued_total))
            .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointNearestEven)
    } else {
        Decimal::ZERO
    };
    assert_eq!(dec(&r["redemptionRate"]), rate, "redemption rate");
    assert_eq!(
        dec(&r["pointsExpired"]),
        pts(expired),
        "expired {from}..{to}"
    );
    assert_eq!(
        dec(&r["outstandingBalance"]),
        pts(outstanding),
        "outstanding at {to}"
    );
    assert_eq!(
        r["members"],
        j!({
            "total": raw.joined.iter().filter(|d| **d <= to).count(),
            "new": raw.joined.iter().filter(|d| within(d)).count(),
            "active": active.len(),
        }),
        "members {from}..{to}"
    );
    let bought: Vec<i64> = raw
        .purchases
        .iter()
        .filter(|p| within(&p.1))
        .map(|p| p.0)
        .collect();
    let refunded: i64 = raw
        .refunds
        .iter()
        .filter(|p| within(&p.1))
        .map(|p| p.0)
        .sum();
    let revenue = bought.iter().sum::<i64>() - refunded;
    assert_eq!(dec(&r["revenue"]), pts(revenue), "revenue");
    let aov = if bought.is_empty() {
        Decimal::ZERO
    } else {
        (pts(revenue) / Decimal::from(bought.len()))
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointNearestEven)
    };
    assert_eq!(dec(&r["averageOrderValue"]), aov, "average order value");
}

/// Checks a DAY series against the raw rows.
fn check_series(r: &Value, raw: &Raw, from: NaiveDate, to: NaiveDate) {
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len() as i64, (to - from).num_days() + 1);
    for (i, bucket) in series.iter().enumerate() {
        let day = from + Duration::days(i as i64);
        assert_eq!(bucket["bucketStart"], day.to_string());
        let (mut issued, mut used, mut expired) = (0, 0, 0);
        for (_, account, kind, amount, _, _, d) in &raw.ledger {
            if account != "POINTS" || *d != day {
                continue;
            }
            match kind.as_str() {
                "EARN" | "REVERSAL" => issued += amount,
                "ADJUST" if *amount > 0 => issued += amount,
                "SPEND" | "REFUND" | "ADJUST" => used -= amount,
                _ => expired -= amount,
            }
        }
        assert_eq!(dec(&bucket["issued"]), pts(issued), "issued on {day}");
        assert_eq!(dec(&bucket["used"]), pts(used), "used on {day}");
        assert_eq!(dec(&bucket["expired"]), pts(expired), "expired on {day}");
        assert_eq!(
            bucket["newMembers"].as_u64().unwrap() as usize,
            raw.joined.iter().filter(|d| **d == day).count()
        );
    }
}

const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal!, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { pointsReversed } }";
const ACTION: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded } }";
const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"Goodwill, \\\"VIP\\\"\\nđặc biệt\", idempotencyKey: $k) { balance } }";
const REDEEM: &str = "mutation($g: ID!, $k: String!) { redeemGift(giftId: $g, idempotencyKey: $k) { redemption { id } } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRedemption(id: $id) { balance } }";
const SPIN: &str = "mutation($w: ID!, $k: String!) { spinWheel(wheelId: $w, clientSeed: \"seed\", idempotencyKey: $k) { spinId } }";
const DISCOUNT: &str = "mutation($p: Decimal!, $k: String!) { redeemDiscount(points: $p, idempotencyKey: $k) { balance } }";

/// Seeded random activity of many members over ten local days, with expiry (4-day validity).
/// Returns the first day.
async fn random_activity(app: &TestApp, seed: u64) -> NaiveDate {
    use rand::{Rng, SeedableRng};
    let start = local(TZ, "2026-03-02 07:00:00");
    app.clock.set(start);
    app.loyalty
        .create_program(loyalty_domain::program::NewProgram {
            external_id: "demo".into(),
            name: "Demo".into(),
            timezone: TZ.into(),
            currency: "USD".into(),
            points_per_currency: Decimal::new(10, 0),
            validity_days: Some(4),
        })
        .await
        .unwrap();
    app.demo().await;
    let admin = app.admin();
    let service = app.service();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut members = vec![];
    for i in 0..10 {
        members.push(app.register(&format!("m{i}")).await);
    }
    let gifts = app
        .gql(Some(&members[0].0), "{ gifts { id } }", j!({}))
        .await;
    let gift_ids: Vec<String> = gifts.data()["gifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    let wheel = app
        .gql(Some(&members[0].0), "{ wheels { id } }", j!({}))
        .await
        .data()["wheels"][0]["id"]
        .clone();
    let mut orders: Vec<(String, i64)> = vec![];
    let mut redemptions: Vec<String> = vec![];
    let mut n = 0;
    for day in 0..10 {
        app.clock.set(start + Duration::days(day));
        app.loyalty.expire_due().await.unwrap();
        for _ in 0..18 {
            n += 1;
            app.clock
                .advance(Duration::minutes(rng.random_range(1..50)));
            let (token, id) = &members[rng.random_range(0..members.len())];
            let key = format!("k{n}");
            match rng.random_range(0..11) {
                0 => {
                    app.gql(Some(token), ACTION, j!({"a": "daily_login", "k": key}))
                        .await;
                }
                1 | 2 => {
                    let action =
                        ["product_view", "news_read", "product_share"][rng.random_range(0..3)];
                    let object = format!("p{}", rng.random_range(0..40));
                    app.gql(
                        Some(token),
                        ACTION,
                        j!({"a": action, "o": object, "k": key}),
                    )
                    .await;
                }
                3 | 4 => {
                    let amount = Decimal::new(rng.random_range(500..30_000), 2);
                    let order = format!("order-{n}");
                    let ext = format!("m{}", members.iter().position(|m| &m.1 == id).unwrap());
                    let r = app
                        .gql(Some(&service), PURCHASE, j!({"i": {"memberExternalId": ext, "orderId": order, "amount": amount.to_string(), "idempotencyKey": key}}))
                        .await;
                    r.data();
                    orders.push((order, amount.mantissa() as i64));
                }
                5 => {
                    if let Some(i) = (!orders.is_empty()).then(|| rng.random_range(0..orders.len()))
                    {
                        let (order, left) = &mut orders[i];
                        if *left > 1 {
                            let part = rng.random_range(1..=*left);
                            *left -= part;
                            app.gql(
                                Some(&service),
                                REFUND,
                                j!({"o": order, "a": pts(part).to_string(), "k": key}),
                            )
                            .await
                            .data();
                        }
                    }
                }
                6 => {
                    let amount = if rng.random_bool(0.6) {
                        rng.random_range(1..40)
                    } else {
                        -rng.random_range(1..15)
                    };
                    app.gql(
                        Some(&admin),
                        ADJUST,
                        j!({"m": id, "a": amount.to_string(), "k": key}),
                    )
                    .await;
                }
                7 => {
                    let g = &gift_ids[rng.random_range(0..gift_ids.len())];
                    let r = app.gql(Some(token), REDEEM, j!({"g": g, "k": key})).await;
                    if r.body["errors"].is_null() {
                        redemptions.push(
                            r.data()["redeemGift"]["redemption"]["id"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        );
                    }
                }
                8 => {
                    if let Some(r) = redemptions.pop() {
                        app.gql(Some(&admin), CANCEL, j!({"id": r})).await.data();
                    }
                }
                9 => {
                    app.gql(Some(token), SPIN, j!({"w": wheel, "k": key})).await;
                }
                _ => {
                    app.gql(Some(token), DISCOUNT, j!({"p": "10", "k": key}))
                        .await;
                }
            }
        }
        if day == 4 {
            // Half the history folded, half still the tail.
            app.loyalty.fold_reports().await.unwrap();
        }
    }
    // A member who joins on the last day and never posts again after registering.
    app.clock
        .set(start + Duration::days(9) + Duration::hours(12));
    app.register("late").await;
    start
        .with_timezone(&TZ.parse::<chrono_tz::Tz>().unwrap())
        .date_naive()
}

async fn check_all(app: &TestApp, first: NaiveDate) {
    let raw = raw(app, "demo").await;
    let admin = app.admin();
    let d = |n: i64| first + Duration::days(n);
    for (from, to) in [(d(0), d(9)), (d(2), d(5)), (d(6), d(6)), (d(-3), d(12))] {
        let res = app
            .gql(
                Some(&admin),
                REPORT,
                j!({"from": from.to_string(), "to": to.to_string(), "g": "DAY",
                    "cf": d(0).to_string(), "ct": d(3).to_string()}),
            )
            .await;
        let r = &res.data()["loyaltyReport"];
        check_figures(r, &raw, from, to);
        check_series(r, &raw, from, to);
        check_figures(&r["comparison"], &raw, d(0), d(3));
    }
}

e2e!(report_matches_the_raw_ledger, |app: TestApp| async move {
    let first = random_activity(&app, 6).await;
    // Sanity: the run produced every kind of posting the report distinguishes.
    let raw = raw(&app, "demo").await;
    for kind in ["EARN", "REVERSAL", "SPEND", "REFUND", "EXPIRE", "ADJUST"] {
        assert!(
            raw.ledger.iter().any(|l| l.2 == kind),
            "no {kind} posting in the run"
        );
    }
    // Lagging: only the first five days are folded.
    check_all(&app, first).await;
    // Folded completely: the same answers.
    app.loyalty.fold_reports().await.unwrap();
    check_all(&app, first).await;
    // Nothing folded at all (a fresh aggregate state would be the same as a stopped folder).
    app.assert_ledger_invariants().await;

    // Another program's admin sees none of it.
    app.loyalty
        .create_program(loyalty_domain::program::NewProgram {
            external_id: "other".into(),
            name: "Other".into(),
            timezone: TZ.into(),
            currency: "EUR".into(),
            points_per_currency: Decimal::ONE,
            validity_days: None,
        })
        .await
        .unwrap();
    let other = app.token("other", "admin", "eve");
    let res = report(
        &app,
        &other,
        &first.to_string(),
        &(first + Duration::days(9)).to_string(),
        "WEEK",
    )
    .await;
    let r = &res.data()["loyaltyReport"];
    assert_eq!(r["currency"], "EUR");
    assert_eq!(r["pointsIssued"]["total"], "0.00");
    assert_eq!(r["pointsUsed"]["total"], "0.00");
    assert_eq!(r["outstandingBalance"], "0.00");
    assert_eq!(r["members"], j!({"total": 0, "new": 0, "active": 0}));
    assert_eq!(r["revenue"], "0.00");
});

e2e!(
    a_timezone_change_rebuilds_the_folded_sums_once,
    |app: TestApp| async move {
        let first = random_activity(&app, 9).await;
        // A member who joins at 02:00 on day 10 here, which is still day 9 in Berlin.
        let at = |time: &str| local(TZ, &format!("{} {time}", first + Duration::days(10)));
        app.clock.set(at("02:00:00"));
        let (_, night) = app.register("night").await;
        assert_eq!(app.loyalty.fold_reports().await.unwrap().rebuilt, 0);
        check_all(&app, first).await;
        // Days now end at Berlin's midnight: the sums cut in the old zone are rebuilt once, by
        // the next pass, and the report (raw rows cut in the new zone) matches again.
        let update = "mutation($i: ProgramInput!) { updateProgram(input: $i) { timezone } }";
        let moved = app
            .gql(
                Some(&app.admin()),
                update,
                j!({"i": {"name": "Demo", "timezone": "Europe/Berlin", "pointsPerCurrency": "10", "validityDays": 4}}),
            )
            .await;
        assert_eq!(moved.data()["updateProgram"]["timezone"], "Europe/Berlin");
        assert_eq!(app.loyalty.fold_reports().await.unwrap().rebuilt, 1);
        assert_eq!(app.loyalty.fold_reports().await.unwrap().rebuilt, 0);
        check_all(&app, first).await;
        // Day 10 in Berlin is a new day for that member, though day 10 here was folded for it
        // before the change: its mark is written, and it counts as active on day 10.
        app.clock.set(at("12:00:00"));
        app.gql(
            Some(&app.admin()),
            ADJUST,
            j!({"m": night, "a": "5", "k": "noon"}),
        )
        .await
        .data();
        let pass = app.loyalty.fold_reports().await.unwrap();
        assert_eq!((pass.rows, pass.rebuilt), (1, 0));
        assert!(pass.marks >= 1);
        let day = (first + Duration::days(10)).to_string();
        let res = report(&app, &app.admin(), &day, &day, "DAY").await;
        assert_eq!(res.data()["loyaltyReport"]["members"]["active"], 1);
        check_all(&app, first).await;
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_members_later_rows_of_a_day_fold_without_rewriting_its_marks,
    |app: TestApp| async move {
        let first = random_activity(&app, 12).await;
        let (_, id) = app.register("regular").await;
        assert!(app.loyalty.fold_reports().await.unwrap().marks > 0);
        // The program's sums are recorded as cut in its timezone (the folder writes that row
        // only for a program it has not folded before).
        let program = app.loyalty.program("demo").await.unwrap().id;
        assert_eq!(cut_in(&app).await, [(program, TZ.to_owned())]);
        let admin = app.admin();
        let adjust =
            |key: &'static str| app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "5", "k": key}));
        // Later the same day: the member was active that day already, so the row adds to the
        // sums but writes no mark, and the report stays exact.
        app.clock.advance(Duration::minutes(30));
        adjust("again").await.data();
        let pass = app.loyalty.fold_reports().await.unwrap();
        assert_eq!((pass.rows, pass.marks), (1, 0));
        check_all(&app, first).await;
        // The next day is a new mark.
        app.clock.advance(Duration::days(1));
        adjust("next day").await.data();
        let pass = app.loyalty.fold_reports().await.unwrap();
        assert_eq!((pass.rows, pass.marks), (1, 1));
        check_all(&app, first).await;
        assert_eq!(cut_in(&app).await, [(program, TZ.to_owned())]);
        app.assert_ledger_invariants().await;
    }
);

/// Every program's folded sums and the timezone they are cut in (`report_programs`).
async fn cut_in(app: &TestApp) -> Vec<(i64, String)> {
    let db = app.loyalty.db();
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        "SELECT program_id, timezone FROM report_programs ORDER BY program_id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get("", "program_id").unwrap(),
            row.try_get("", "timezone").unwrap(),
        )
    })
    .collect()
}

e2e!(
    report_days_end_at_program_midnight,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-03-31 12:00:00"));
        app.demo().await;
        let (_, id) = app.register("night-owl").await; // 70 points at noon (join + registration)
        let admin = app.admin();
        app.clock.set(local(TZ, "2026-03-31 23:59:59"));
        app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "1", "k": "late"}))
            .await
            .data();
        app.clock.set(local(TZ, "2026-04-01 00:00:00"));
        app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "2", "k": "early"}))
            .await
            .data();
        for folded in [false, true] {
            if folded {
                app.loyalty.fold_reports().await.unwrap();
            }
            let day = report(&app, &admin, "2026-03-31", "2026-04-01", "DAY").await;
            let series = &day.data()["loyaltyReport"]["series"];
            assert_eq!(series[0]["bucketStart"], "2026-03-31");
            assert_eq!(series[0]["issued"], "71.00", "folded: {folded}");
            assert_eq!(series[0]["newMembers"], 1);
            assert_eq!(series[1]["issued"], "2.00");
            let march = report(&app, &admin, "2026-03-31", "2026-03-31", "DAY").await;
            assert_eq!(march.data()["loyaltyReport"]["outstandingBalance"], "71.00");
            let month = report(&app, &admin, "2026-03-01", "2026-04-30", "MONTH").await;
            let buckets: Vec<(String, String)> = month.data()["loyaltyReport"]["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["bucketStart"].as_str().unwrap().into(),
                        b["issued"].as_str().unwrap().into(),
                    )
                })
                .collect();
            assert_eq!(
                buckets,
                [
                    ("2026-03-01".into(), "71.00".into()),
                    ("2026-04-01".into(), "2.00".into())
                ]
            );
            // 2026-03-29 is a Sunday: its ISO week began on Monday 2026-03-23.
            let week = report(&app, &admin, "2026-03-29", "2026-04-06", "WEEK").await;
            let buckets: Vec<(String, String)> = week.data()["loyaltyReport"]["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["bucketStart"].as_str().unwrap().into(),
                        b["issued"].as_str().unwrap().into(),
                    )
                })
                .collect();
            assert_eq!(
                buckets,
                [
                    ("2026-03-23".into(), "0.00".into()),
                    ("2026-03-30".into(), "73.00".into()),
                    ("2026-04-06".into(), "0.00".into())
                ]
            );
            assert_eq!(week.data()["loyaltyReport"]["granularity"], "WEEK");
        }
    }
);

e2e!(
    report_folding_during_postings_counts_each_row_once,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let mut ids = vec![];
        for i in 0..4 {
            ids.push(app.register(&format!("c{i}")).await.1);
        }
        let app = std::sync::Arc::new(app);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let folder = {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut passes = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    app.loyalty.fold_reports().await.unwrap();
                    passes += 1;
                }
                passes
            })
        };
        let mut writers = vec![];
        for (w, id) in ids.iter().enumerate() {
            let (app, admin, id) = (app.clone(), admin.clone(), id.clone());
            writers.push(tokio::spawn(async move {
                for n in 0..25 {
                    app.gql(
                        Some(&admin),
                        ADJUST,
                        j!({"m": id, "a": "1.5", "k": format!("w{w}-{n}")}),
                    )
                    .await
                    .data();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(folder.await.unwrap() > 0);
        let today = app
            .loyalty
            .now()
            .with_timezone(&TZ.parse::<chrono_tz::Tz>().unwrap())
            .date_naive()
            .to_string();
        let expected = Decimal::new(4 * 70 * 100 + 100 * 150, 2);
        let before = report(&app, &admin, &today, &today, "DAY").await;
        assert_eq!(
            dec(&before.data()["loyaltyReport"]["pointsIssued"]["total"]),
            expected
        );
        app.loyalty.fold_reports().await.unwrap();
        let after = report(&app, &admin, &today, &today, "DAY").await;
        assert_eq!(
            dec(&after.data()["loyaltyReport"]["pointsIssued"]["total"]),
            expected
        );
        assert_eq!(
            after.data()["loyaltyReport"]["pointsIssued"]["count"],
            4 * 2 + 100
        );
        // The stored sums hold every adjustment exactly once.
        let db = app.loyalty.db();
        let row = db
            .query_one(Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(SUM(amount_minor) AS BIGINT) AS s, CAST(SUM(count) AS BIGINT) AS c \
             FROM report_daily WHERE kind = 'ADJUST_IN'",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "s").unwrap(), 100 * 150);
        assert_eq!(row.try_get::<i64>("", "c").unwrap(), 100);
    }
);

async fn get_csv(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app.client.get(format!("{}{path}", app.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

e2e!(report_csv_exports, |app: TestApp| async move {
    app.clock.set(local(TZ, "2026-05-10 09:00:00"));
    app.demo().await;
    let admin = app.admin();
    let (member, id) = app.register("csv-member").await;
    app.gql(
        Some(&admin),
        ADJUST,
        j!({"m": id, "a": "12.5", "k": "csv1"}),
    )
    .await
    .data();
    app.clock.set(local(TZ, "2026-05-11 23:59:59"));
    app.gql(
        Some(&admin),
        ADJUST,
        j!({"m": id, "a": "-2.25", "k": "csv2"}),
    )
    .await
    .data();
    app.clock.set(local(TZ, "2026-05-12 00:00:00"));
    app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "1", "k": "csv3"}))
        .await
        .data();

    let (status, headers, body) = get_csv(
        &app,
        "/admin/export/ledger.csv?from=2026-05-10&to=2026-05-11",
        Some(&admin),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"ledger-demo-2026-05-10-2026-05-11.csv\""
    );
    // The note with a comma, quotes, a newline and non-ASCII is one quoted field.
    assert!(
        body.contains("\"Goodwill, \"\"VIP\"\"\nđặc biệt\""),
        "{body}"
    );
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "created_at",
            "local_date",
            "member_id",
            "member_external_id",
            "member_name",
            "account",
            "kind",
            "amount",
            "source",
            "purpose",
            "ref_type",
            "ref_id",
            "note"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    // Registration (join + registration) and two adjustments; the 00:00:00 one is the next day.
    let db = app.loyalty.db();
    let expected = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id, kind, amount_minor FROM ledger_entries WHERE member_id = {id} AND account = 'POINTS' ORDER BY id"),
        ))
        .await
        .unwrap();
    let expected: Vec<(String, String, Decimal)> = expected
        .iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "id").unwrap().to_string(),
                r.try_get::<String>("", "kind").unwrap(),
                pts(r.try_get::<i64>("", "amount_minor").unwrap()),
            )
        })
        .take(4)
        .collect();
    let got: Vec<(String, String, Decimal)> = rows
        .iter()
        .map(|r| (r[0].to_owned(), r[7].to_owned(), r[8].parse().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(&rows[2][13], "Goodwill, \"VIP\"\nđặc biệt");
    assert_eq!(&rows[3][2], "2026-05-11");
    assert_eq!(&rows[3][4], "csv-member");
    assert_eq!(&rows[3][8], "-2.25");
    assert_eq!(&rows[3][10], "admin_adjustment");

    let (status, headers, body) = get_csv(
        &app,
        "/admin/export/report.csv?from=2026-05-10&to=2026-05-12",
        Some(&admin),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["section", "key", "label", "value", "count", "share"]
    );
    let lines: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let find = |section: &str, key: &str| {
        lines
            .iter()
            .find(|l| &l[0] == section && &l[1] == key)
            .unwrap_or_else(|| panic!("no line {section}/{key}"))
            .clone()
    };
    assert_eq!(&find("summary", "points_issued")[3], "83.50"); // 70 + 12.50 + 1
    assert_eq!(&find("summary", "points_used")[3], "2.25");
    assert_eq!(&find("summary", "outstanding_balance")[3], "81.25");
    assert_eq!(
        &find("points_issued", "admin_adjustment")[2],
        "Admin adjustment"
    );
    assert_eq!(&find("series_issued", "2026-05-12")[3], "1.00");

    // Refusals: 401 without or with a bad token, 403 for members and services, 400 bad dates.
    for path in [
        "/admin/export/ledger.csv?from=2026-05-10&to=2026-05-11",
        "/admin/export/report.csv?from=2026-05-10&to=2026-05-11",
    ] {
        assert_eq!(get_csv(&app, path, None).await.0, 401);
        assert_eq!(get_csv(&app, path, Some("not-a-token")).await.0, 401);
        assert_eq!(get_csv(&app, path, Some(&member)).await.0, 403);
        assert_eq!(get_csv(&app, path, Some(&app.service())).await.0, 403);
    }
    let (status, _, body) = get_csv(
        &app,
        "/admin/export/ledger.csv?from=2026-05-12&to=2026-05-10",
        Some(&admin),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("VALIDATION"));
    assert_eq!(
        get_csv(
            &app,
            "/admin/export/ledger.csv?from=yesterday&to=2026-05-10",
            Some(&admin)
        )
        .await
        .0,
        400
    );
    // Another program's admin exports nothing of this one.
    let (status, _, body) = get_csv(
        &app,
        "/admin/export/ledger.csv?from=2026-05-10&to=2026-05-12",
        Some(&app.token("demo2", "admin", "x")),
    )
    .await;
    assert_eq!(status, 404, "{body}");
});
