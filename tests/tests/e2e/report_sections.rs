//! The report's sections beside the Customer Loyalty Report's own (issue 12): acquisition,
//! activity by month, membership duration, coverage, average discount, the three average order
//! values, the purchase rate and points by campaign. Every figure against a recomputation from
//! the raw rows, lagging (half folded) and folded, over three months of members' and
//! non-members' orders, refunds, vouchers and campaigns; midnight and month boundaries in the
//! program's timezone; and non-member orders from recording to refund.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

const TZ: &str = "Asia/Ho_Chi_Minh";

pub const SECTIONS: &str = "query($from: Date!, $to: Date!, $cf: Date, $ct: Date) {
  loyaltyReport(from: $from, to: $to, granularity: DAY, compareFrom: $cf, compareTo: $ct) {
    members { total new }
    revenue averageOrderValue
    acquisition { newMembers withPurchase withoutPurchase }
    coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare }
    averageDiscount { total fromPoints fromPrizes vouchers rate }
    averageOrderValues { members nonMembers everyone }
    purchasers purchaseRate
    activityByMonth { month memberOrders revenue lastPurchaseMembers }
    membershipDuration { label minMonths maxMonths members orders revenue averagePurchase revenuePerMember }
    campaigns { ruleId name pointsIssued awards membersReached budgetTotal budgetSpent budgetRemaining deleted }
    series { bucketStart newMembers newMembersWithPurchase memberOrders memberRevenue nonMemberOrders nonMemberRevenue discount }
    comparison {
      revenue averageOrderValue
      acquisition { newMembers withPurchase withoutPurchase }
      coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare }
      averageDiscount { total fromPoints fromPrizes vouchers rate }
      averageOrderValues { members nonMembers everyone }
      purchasers purchaseRate
      activityByMonth { month memberOrders revenue lastPurchaseMembers }
      membershipDuration { label minMonths maxMonths members orders revenue averagePurchase revenuePerMember }
      campaigns { ruleId name pointsIssued awards membersReached budgetTotal budgetSpent budgetRemaining deleted }
    }
  }
}";

const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { memberOrder pointsAwarded reason transactions { id } } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { memberOrder refundedAmount totalRefunded pointsReversed } }";
const DISCOUNT: &str = "mutation($p: Decimal!, $k: String!) { redeemDiscount(points: $p, idempotencyKey: $k) { voucher { code } } }";
const CONSUME: &str =
    "mutation($c: String!, $o: String!) { consumeVoucher(code: $c, orderId: $o) { value } }";
const SPIN: &str = "mutation($w: ID!, $k: String!) { spinWheel(wheelId: $w, clientSeed: \"seed\", idempotencyKey: $k) { spinId } }";
const ACTION: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded } }";

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn money(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

fn ratio(n: i64, d: i64) -> Decimal {
    if d <= 0 {
        return Decimal::ZERO;
    }
    (Decimal::from(n) / Decimal::from(d))
        .round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven)
}

fn average(minor: i64, count: i64) -> Decimal {
    if count <= 0 {
        return Decimal::ZERO;
    }
    (money(minor) / Decimal::from(count))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// The raw rows, each with its local day.
#[derive(Default)]
struct Raw {
    /// member id → local join day.
    joined: BTreeMap<i64, NaiveDate>,
    /// (member, amount, day).
    purchases: Vec<(i64, i64, NaiveDate)>,
    /// (member of the order, amount, day).
    refunds: Vec<(i64, i64, NaiveDate)>,
    guest_orders: Vec<(i64, NaiveDate)>,
    guest_refunds: Vec<(i64, NaiveDate)>,
    /// (origin, value, day).
    voucher_uses: Vec<(String, i64, NaiveDate)>,
    /// (member, account, kind, amount, rule of the earn it is or reverses, day).
    ledger: Vec<(i64, String, String, i64, Option<i64>, NaiveDate)>,
    /// (id, name, budget total, spent, deleted).
    rules: Vec<(i64, String, Option<i64>, i64, bool)>,
}

impl Raw {
    /// Members' orders and revenue (less refunds) on the days `on` takes, of the members `of`
    /// takes.
    fn members(&self, on: impl Fn(&NaiveDate) -> bool, of: impl Fn(&i64) -> bool) -> (i64, i64) {
        let orders = self.purchases.iter().filter(|p| on(&p.2) && of(&p.0));
        let refunds = self.refunds.iter().filter(|p| on(&p.2) && of(&p.0));
        (
            orders.clone().count() as i64,
            orders.map(|p| p.1).sum::<i64>() - refunds.map(|p| p.1).sum::<i64>(),
        )
    }

    /// Non-members' orders and revenue (less refunds) on the days `on` takes.
    fn guests(&self, on: impl Fn(&NaiveDate) -> bool) -> (i64, i64) {
        let orders = self.guest_orders.iter().filter(|p| on(&p.1));
        let refunds = self.guest_refunds.iter().filter(|p| on(&p.1));
        (
            orders.clone().count() as i64,
            orders.map(|p| p.0).sum::<i64>() - refunds.map(|p| p.0).sum::<i64>(),
        )
    }
}

async fn raw(app: &TestApp) -> Raw {
    let db = app.loyalty.db();
    let backend = db.get_database_backend();
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let day = |at: DateTime<Utc>| at.with_timezone(&tz).date_naive();
    let pid = app.loyalty.program("demo").await.unwrap().id;
    let rows = |sql: String| async move {
        db.query_all(Statement::from_string(backend, sql))
            .await
            .unwrap()
    };
    let mut out = Raw::default();
    for r in rows(format!(
        "SELECT id, joined_at FROM members WHERE program_id = {pid}"
    ))
    .await
    {
        out.joined.insert(
            r.try_get("", "id").unwrap(),
            day(r.try_get("", "joined_at").unwrap()),
        );
    }
    for r in rows(format!(
        "SELECT member_id, amount_minor, created_at FROM purchases WHERE program_id = {pid}"
    ))
    .await
    {
        out.purchases.push((
            r.try_get("", "member_id").unwrap(),
            r.try_get("", "amount_minor").unwrap(),
            day(r.try_get("", "created_at").unwrap()),
        ));
    }
    for r in rows(format!(
        "SELECT p.member_id, r.amount_minor, r.created_at FROM refunds r \
         JOIN purchases p ON p.id = r.purchase_id WHERE r.program_id = {pid}"
    ))
    .await
    {
        out.refunds.push((
            r.try_get("", "member_id").unwrap(),
            r.try_get("", "amount_minor").unwrap(),
            day(r.try_get("", "created_at").unwrap()),
        ));
    }
    for (table, list) in [
        ("guest_orders", &mut out.guest_orders),
        ("guest_refunds", &mut out.guest_refunds),
    ] {
        for r in rows(format!(
            "SELECT amount_minor, created_at FROM {table} WHERE program_id = {pid}"
        ))
        .await
        {
            list.push((
                r.try_get("", "amount_minor").unwrap(),
                day(r.try_get("", "created_at").unwrap()),
            ));
        }
    }
    for r in rows(format!(
        "SELECT origin, value_minor, used_at FROM vouchers WHERE program_id = {pid} \
         AND status = 'USED'"
    ))
    .await
    {
        out.voucher_uses.push((
            r.try_get("", "origin").unwrap(),
            r.try_get("", "value_minor").unwrap(),
            day(r.try_get("", "used_at").unwrap()),
        ));
    }
    for r in rows(format!(
        "SELECT l.member_id, l.account, l.kind, l.amount_minor, l.rule_id, e.rule_id AS reversed_rule, \
         l.created_at FROM ledger_entries l LEFT JOIN ledger_entries e ON e.id = l.reverses_id \
         WHERE l.program_id = {pid}"
    ))
    .await
    {
        let own: Option<i64> = r.try_get("", "rule_id").unwrap();
        let reversed: Option<i64> = r.try_get("", "reversed_rule").unwrap();
        out.ledger.push((
            r.try_get("", "member_id").unwrap(),
            r.try_get("", "account").unwrap(),
            r.try_get("", "kind").unwrap(),
            r.try_get("", "amount_minor").unwrap(),
            own.or(reversed),
            day(r.try_get("", "created_at").unwrap()),
        ));
    }
    for r in rows(format!(
        "SELECT r.id, r.name, r.budget_total_minor, b.spent_minor, r.deleted_at FROM earning_rules r \
         LEFT JOIN rule_budgets b ON b.rule_id = r.id WHERE r.program_id = {pid}"
    ))
    .await
    {
        let deleted: Option<DateTime<Utc>> = r.try_get("", "deleted_at").unwrap();
        let spent: Option<i64> = r.try_get("", "spent_minor").unwrap();
        out.rules.push((
            r.try_get("", "id").unwrap(),
            r.try_get("", "name").unwrap(),
            r.try_get("", "budget_total_minor").unwrap(),
            spent.unwrap_or(0),
            deleted.is_some(),
        ));
    }
    out
}

/// The first day of each calendar month of `[from, to]`, the first clamped to `from`.
fn month_starts(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let mut starts = vec![from];
    let mut next = NaiveDate::from_ymd_opt(from.year(), from.month(), 1)
        .unwrap()
        .checked_add_months(chrono::Months::new(1))
        .unwrap();
    while next <= to {
        starts.push(next);
        next = next.checked_add_months(chrono::Months::new(1)).unwrap();
    }
    starts
}

/// Checks every section of one period (`r`: the report or its comparison) against the raw rows.
fn check_sections(r: &Value, raw: &Raw, from: NaiveDate, to: NaiveDate) {
    let within = |d: &NaiveDate| *d >= from && *d <= to;
    let at = format!("{from}..{to}");
    // Acquisition: new members, and those with an order by `to`.
    let bought_by_end: BTreeSet<i64> = raw
        .purchases
        .iter()
        .filter(|p| p.2 <= to)
        .map(|p| p.0)
        .collect();
    let new: Vec<i64> = raw
        .joined
        .iter()
        .filter(|(_, d)| within(d))
        .map(|(m, _)| *m)
        .collect();
    let with = new.iter().filter(|m| bought_by_end.contains(m)).count();
    assert_eq!(
        r["acquisition"],
        j!({"newMembers": new.len(), "withPurchase": with, "withoutPurchase": new.len() - with}),
        "acquisition {at}"
    );
    // Coverage and the average order values.
    let (member_orders, member_revenue) = raw.members(within, |_| true);
    let (guest_orders, guest_revenue) = raw.guests(within);
    let c = &r["coverage"];
    assert_eq!(c["memberOrders"], member_orders, "member orders {at}");
    assert_eq!(c["nonMemberOrders"], guest_orders, "non-member orders {at}");
    assert_eq!(
        dec(&c["orderShare"]),
        ratio(member_orders, member_orders + guest_orders)
    );
    assert_eq!(
        dec(&c["memberRevenue"]),
        money(member_revenue),
        "member revenue {at}"
    );
    assert_eq!(
        dec(&c["nonMemberRevenue"]),
        money(guest_revenue),
        "guest revenue {at}"
    );
    assert_eq!(
        dec(&c["revenueShare"]),
        ratio(member_revenue, member_revenue + guest_revenue)
    );
    assert_eq!(
        dec(&r["revenue"]),
        money(member_revenue),
        "members' revenue stays {at}"
    );
    let v = &r["averageOrderValues"];
    assert_eq!(dec(&v["members"]), average(member_revenue, member_orders));
    assert_eq!(dec(&v["nonMembers"]), average(guest_revenue, guest_orders));
    assert_eq!(
        dec(&v["everyone"]),
        average(member_revenue + guest_revenue, member_orders + guest_orders),
        "everyone's AOV {at}"
    );
    assert_eq!(dec(&r["averageOrderValue"]), dec(&v["members"]));
    // Average discount.
    let uses: Vec<&(String, i64, NaiveDate)> =
        raw.voucher_uses.iter().filter(|u| within(&u.2)).collect();
    let total: i64 = uses.iter().map(|u| u.1).sum();
    let from_points: i64 = uses.iter().filter(|u| u.0 == "discount").map(|u| u.1).sum();
    let d = &r["averageDiscount"];
    assert_eq!(dec(&d["total"]), money(total), "discount {at}");
    assert_eq!(dec(&d["fromPoints"]), money(from_points));
    assert_eq!(dec(&d["fromPrizes"]), money(total - from_points));
    assert_eq!(d["vouchers"], uses.len());
    assert_eq!(dec(&d["rate"]), ratio(total, member_revenue));
    // Purchase rate.
    let purchasers: BTreeSet<i64> = raw
        .purchases
        .iter()
        .filter(|p| within(&p.2))
        .map(|p| p.0)
        .collect();
    let total_members = raw.joined.values().filter(|d| **d <= to).count() as i64;
    assert_eq!(r["purchasers"], purchasers.len(), "purchasers {at}");
    assert_eq!(
        dec(&r["purchaseRate"]),
        ratio(purchasers.len() as i64, total_members)
    );
    // Activity by month: revenue per month, members by the month of their last order by `to`.
    let starts = month_starts(from, to);
    let months = r["activityByMonth"].as_array().unwrap();
    assert_eq!(months.len(), starts.len(), "months {at}");
    let mut last: BTreeMap<i64, NaiveDate> = BTreeMap::new();
    for (member, _, day) in raw.purchases.iter().filter(|p| p.2 <= to) {
        let e = last.entry(*member).or_insert(*day);
        *e = (*e).max(*day);
    }
    for (i, (month, start)) in months.iter().zip(&starts).enumerate() {
        let end = starts
            .get(i + 1)
            .map(|n| *n - Duration::days(1))
            .unwrap_or(to);
        let inside = |d: &NaiveDate| d >= start && *d <= end;
        assert_eq!(month["month"], start.to_string());
        let (orders, revenue) = raw.members(inside, |_| true);
        let lasts = last.values().filter(|d| inside(d)).count();
        assert_eq!(month["memberOrders"], orders, "orders of {start} {at}");
        assert_eq!(dec(&month["revenue"]), money(revenue), "revenue of {start}");
        assert_eq!(
            month["lastPurchaseMembers"], lasts,
            "last purchases in {start} {at}"
        );
    }
    // Membership duration, in calendar months from the join month to `to`'s month.
    let edges = [
        (0, Some(0)),
        (1, Some(2)),
        (3, Some(5)),
        (6, Some(11)),
        (12, Some(23)),
        (24, None),
    ];
    let bucket_of = |joined: NaiveDate| {
        let months = (to.year() - joined.year()) * 12 + to.month() as i32 - joined.month() as i32;
        edges
            .iter()
            .position(|(min, max): &(i32, Option<i32>)| {
                months >= *min && max.is_none_or(|max| months <= max)
            })
            .unwrap()
    };
    let buckets = r["membershipDuration"].as_array().unwrap();
    assert_eq!(buckets.len(), 6);
    for (i, bucket) in buckets.iter().enumerate() {
        let members = raw
            .joined
            .values()
            .filter(|d| **d <= to && bucket_of(**d) == i)
            .count() as i64;
        let of = |m: &i64| raw.joined.get(m).is_some_and(|d| bucket_of(*d) == i);
        let (orders, revenue) = raw.members(within, of);
        assert_eq!(bucket["minMonths"], edges[i].0);
        assert_eq!(
            bucket["members"], members,
            "duration bucket {i} members {at}"
        );
        assert_eq!(bucket["orders"], orders, "duration bucket {i} orders {at}");
        assert_eq!(
            dec(&bucket["revenue"]),
            money(revenue),
            "bucket {i} revenue {at}"
        );
        assert_eq!(dec(&bucket["averagePurchase"]), average(revenue, orders));
        assert_eq!(dec(&bucket["revenuePerMember"]), average(revenue, members));
    }
    // Campaigns.
    let campaigns = r["campaigns"].as_array().unwrap();
    let mut expected: BTreeMap<i64, (i64, i64, BTreeSet<i64>)> = BTreeMap::new();
    for (member, account, kind, amount, rule, day) in &raw.ledger {
        let Some(rule) = rule else { continue };
        if !within(day) {
            continue;
        }
        let e = expected.entry(*rule).or_default();
        match (account.as_str(), kind.as_str()) {
            ("POINTS", "EARN") => {
                e.0 += amount;
                e.1 += 1;
                e.2.insert(*member);
            }
            ("POINTS", "REVERSAL") => e.0 += amount,
            (_, "EARN") => {
                e.2.insert(*member);
            }
            _ => {}
        }
    }
    let listed: Vec<i64> = campaigns
        .iter()
        .map(|c| c["ruleId"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut want: Vec<i64> = raw
        .rules
        .iter()
        .filter(|r| !r.4)
        .map(|r| r.0)
        .chain(expected.keys().copied())
        .collect();
    want.sort_unstable();
    want.dedup();
    assert_eq!(listed, want, "campaigns listed {at}");
    for c in campaigns {
        let id: i64 = c["ruleId"].as_str().unwrap().parse().unwrap();
        let (points, awards, reached) = expected.remove(&id).unwrap_or_default();
        assert_eq!(
            dec(&c["pointsIssued"]),
            money(points),
            "campaign {id} points {at}"
        );
        assert_eq!(c["awards"], awards, "campaign {id} awards {at}");
        assert_eq!(
            c["membersReached"],
            reached.len(),
            "campaign {id} reach {at}"
        );
        let rule = raw.rules.iter().find(|r| r.0 == id).unwrap();
        assert_eq!(c["name"], rule.1.as_str());
        assert_eq!(dec(&c["budgetSpent"]), money(rule.3));
        match rule.2 {
            Some(total) => {
                assert_eq!(dec(&c["budgetTotal"]), money(total));
                assert_eq!(dec(&c["budgetRemaining"]), money((total - rule.3).max(0)));
            }
            None => assert!(c["budgetTotal"].is_null() && c["budgetRemaining"].is_null()),
        }
    }
}

/// The DAY series' new columns against the raw rows.
fn check_series(r: &Value, raw: &Raw, from: NaiveDate, to: NaiveDate) {
    let bought_by_end: BTreeSet<i64> = raw
        .purchases
        .iter()
        .filter(|p| p.2 <= to)
        .map(|p| p.0)
        .collect();
    for (i, bucket) in r["series"].as_array().unwrap().iter().enumerate() {
        let day = from + Duration::days(i as i64);
        let on = |d: &NaiveDate| *d == day;
        let joined: Vec<i64> = raw
            .joined
            .iter()
            .filter(|(_, d)| on(d))
            .map(|(m, _)| *m)
            .collect();
        let with = joined.iter().filter(|m| bought_by_end.contains(m)).count();
        let (orders, revenue) = raw.members(on, |_| true);
        let (guests, guest_revenue) = raw.guests(on);
        let discount: i64 = raw
            .voucher_uses
            .iter()
            .filter(|u| on(&u.2))
            .map(|u| u.1)
            .sum();
        assert_eq!(
            bucket["newMembersWithPurchase"], with,
            "with purchase on {day}"
        );
        assert_eq!(bucket["memberOrders"], orders, "orders on {day}");
        assert_eq!(
            dec(&bucket["memberRevenue"]),
            money(revenue),
            "revenue on {day}"
        );
        assert_eq!(bucket["nonMemberOrders"], guests, "guest orders on {day}");
        assert_eq!(dec(&bucket["nonMemberRevenue"]), money(guest_revenue));
        assert_eq!(
            dec(&bucket["discount"]),
            money(discount),
            "discount on {day}"
        );
    }
}

/// Seeded activity over 100 local days: members joining throughout (some before the first
/// report day), their orders and refunds, non-members' orders and refunds, vouchers bought with
/// points and won on the wheel and consumed, daily logins, and the demo campaigns (one with a
/// budget). Returns the first day.
async fn activity(app: &TestApp, seed: u64) -> NaiveDate {
    use rand::{Rng, SeedableRng};
    let start = local(TZ, "2026-01-05 08:00:00");
    app.clock.set(start);
    let program = app.demo().await;
    app.loyalty.seed_demo_campaigns(&program).await.unwrap();
    let service = app.service();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut members: Vec<(String, String)> = vec![];
    let mut orders: Vec<(String, i64)> = vec![];
    let mut guest_orders: Vec<(String, i64)> = vec![];
    let mut codes: Vec<String> = vec![];
    let wheel = {
        let (token, _) = app.register("m0").await;
        members.push((token.clone(), "m0".into()));
        app.gql(Some(&token), "{ wheels { id } }", j!({}))
            .await
            .data()["wheels"][0]["id"]
            .clone()
    };
    let mut n = 0;
    for day in 0..100 {
        app.clock.set(start + Duration::days(day));
        if day % 7 == 0 || rng.random_bool(0.1) {
            let sub = format!("m{}", members.len());
            let (token, _) = app.register(&sub).await;
            members.push((token, sub));
        }
        for _ in 0..5 {
            n += 1;
            app.clock
                .advance(Duration::minutes(rng.random_range(10..120)));
            let key = format!("k{n}");
            let (token, sub) = members[rng.random_range(0..members.len())].clone();
            match rng.random_range(0..10) {
                0..=2 => {
                    let amount = rng.random_range(500..40_000);
                    let order = format!("o{n}");
                    app.gql(Some(&service), PURCHASE, j!({"i": {"memberExternalId": sub, "orderId": order, "amount": money(amount).to_string(), "idempotencyKey": key}}))
                        .await
                        .data();
                    orders.push((order, amount));
                }
                3 => {
                    let amount = rng.random_range(500..20_000);
                    let order = format!("g{n}");
                    // Half anonymous, half an unknown customer who does not join.
                    let buyer = if rng.random_bool(0.5) {
                        j!({"orderId": order, "amount": money(amount).to_string(), "idempotencyKey": key})
                    } else {
                        j!({"memberExternalId": format!("walk-in-{n}"), "joinProgram": false, "orderId": order, "amount": money(amount).to_string(), "idempotencyKey": key})
                    };
                    let r = app.gql(Some(&service), PURCHASE, j!({"i": buyer})).await;
                    assert_eq!(r.data()["recordPurchase"]["memberOrder"], false);
                    guest_orders.push((order, amount));
                }
                4 => {
                    let list = if rng.random_bool(0.7) {
                        &mut orders
                    } else {
                        &mut guest_orders
                    };
                    if !list.is_empty() {
                        let i = rng.random_range(0..list.len());
                        let (order, left) = &mut list[i];
                        if *left > 1 {
                            let part = rng.random_range(1..=*left);
                            *left -= part;
                            app.gql(
                                Some(&service),
                                REFUND,
                                j!({"o": order, "a": money(part).to_string(), "k": key}),
                            )
                            .await
                            .data();
                        }
                    }
                }
                5 => {
                    let r = app
                        .gql(Some(&token), DISCOUNT, j!({"p": "10", "k": key}))
                        .await;
                    if r.body["errors"].is_null() {
                        codes.push(
                            r.data()["redeemDiscount"]["voucher"]["code"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        );
                    }
                }
                6 => {
                    app.gql(Some(&token), SPIN, j!({"w": wheel, "k": key}))
                        .await;
                }
                7 => {
                    if !codes.is_empty() {
                        let code = codes.swap_remove(rng.random_range(0..codes.len()));
                        let r = app
                            .gql(
                                Some(&service),
                                CONSUME,
                                j!({"c": code, "o": format!("v{n}")}),
                            )
                            .await;
                        // Vouchers last 30 days.
                        if !r.body["errors"].is_null() {
                            assert_eq!(r.code(), "VALIDATION");
                        }
                    }
                }
                _ => {
                    app.gql(Some(&token), ACTION, j!({"a": "daily_login", "k": key}))
                        .await;
                }
            }
        }
        if day == 55 {
            // Wheel prizes that are vouchers: consume the ones won so far.
            let prizes = app
                .loyalty
                .db()
                .query_all(Statement::from_string(
                    app.loyalty.db().get_database_backend(),
                    "SELECT code FROM vouchers WHERE origin = 'wheel' AND status = 'ACTIVE'",
                ))
                .await
                .unwrap();
            for (i, row) in prizes.iter().enumerate() {
                let code: String = row.try_get("", "code").unwrap();
                let r = app
                    .gql(
                        Some(&service),
                        CONSUME,
                        j!({"c": code, "o": format!("w{i}")}),
                    )
                    .await
                    .body;
                // An expired one is refused (vouchers last 30 days).
                assert!(
                    r["errors"].is_null() || r["errors"][0]["extensions"]["code"] == "VALIDATION"
                );
            }
            // Half the history folded, half still the tail.
            app.loyalty.fold_reports().await.unwrap();
        }
    }
    start
        .with_timezone(&TZ.parse::<chrono_tz::Tz>().unwrap())
        .date_naive()
}

async fn check_all(app: &TestApp, first: NaiveDate) {
    let raw = raw(app).await;
    assert!(
        raw.guest_refunds.len() + raw.refunds.len() > 3,
        "refunds in the run"
    );
    assert!(
        raw.voucher_uses.iter().any(|u| u.0 == "discount"),
        "a points voucher used"
    );
    let admin = app.admin();
    let d = |n: i64| first + Duration::days(n);
    for (from, to) in [
        (d(0), d(99)),
        (d(20), d(50)),
        (d(57), d(57)),
        (d(-10), d(120)),
        (d(26), d(85)),
    ] {
        let res = app
            .gql(
                Some(&admin),
                SECTIONS,
                j!({"from": from.to_string(), "to": to.to_string(), "cf": d(10).to_string(), "ct": d(40).to_string()}),
            )
            .await;
        let r = &res.data()["loyaltyReport"];
        check_sections(r, &raw, from, to);
        check_series(r, &raw, from, to);
        check_sections(&r["comparison"], &raw, d(10), d(40));
    }
}

e2e!(
    report_sections_match_the_raw_rows,
    |app: TestApp| async move {
        let first = activity(&app, 12).await;
        // Lagging: 56 of 100 days folded.
        check_all(&app, first).await;
        app.loyalty.fold_reports().await.unwrap();
        check_all(&app, first).await;
        // Non-members' orders never touched the ledger.
        app.assert_ledger_invariants().await;
        let raw = raw(&app).await;
        assert_eq!(
            app.sql_i64("SELECT COUNT(*) AS n FROM members WHERE external_id LIKE 'walk-in-%'")
                .await,
            0
        );
        assert!(!raw.guest_orders.is_empty());
    }
);

e2e!(
    report_sections_cut_days_at_program_midnight,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-01-31 23:58:00"));
        app.demo().await;
        let service = app.service();
        let admin = app.admin();
        let order = |sub: Option<&str>, id: &str, amount: &str| {
            let mut input = j!({"orderId": id, "amount": amount, "idempotencyKey": id});
            if let Some(sub) = sub {
                input["memberExternalId"] = j!(sub);
            }
            app.gql(Some(&service), PURCHASE, j!({"i": input}))
        };
        // 23:58 and 23:59:59 local on January 31st; then 00:00 on February 1st.
        app.register("jan").await;
        order(Some("jan"), "a1", "10.00").await.data();
        app.clock.set(local(TZ, "2026-01-31 23:59:59"));
        order(None, "g1", "30.00").await.data();
        app.clock.set(local(TZ, "2026-02-01 00:00:00"));
        app.register("feb").await;
        order(Some("feb"), "b1", "20.00").await.data();
        order(Some("jan"), "a2", "40.00").await.data();
        order(None, "g2", "50.00").await.data();
        for folded in [false, true] {
            if folded {
                app.loyalty.fold_reports().await.unwrap();
            }
            let jan = app
                .gql(
                    Some(&admin),
                    SECTIONS,
                    j!({"from": "2026-01-31", "to": "2026-01-31"}),
                )
                .await;
            let jan = &jan.data()["loyaltyReport"];
            assert_eq!(
                jan["acquisition"],
                j!({"newMembers": 1, "withPurchase": 1, "withoutPurchase": 0})
            );
            assert_eq!(jan["coverage"]["memberOrders"], 1);
            assert_eq!(jan["coverage"]["nonMemberOrders"], 1);
            assert_eq!(jan["coverage"]["revenueShare"], "0.2500");
            assert_eq!(jan["purchaseRate"], "1.0000");
            let both = app
                .gql(
                    Some(&admin),
                    SECTIONS,
                    j!({"from": "2026-01-31", "to": "2026-02-01"}),
                )
                .await;
            let both = &both.data()["loyaltyReport"];
            // "jan" last bought on February 1st: January counts nobody as its last.
            assert_eq!(
                both["activityByMonth"],
                j!([
                    {"month": "2026-01-31", "memberOrders": 1, "revenue": "10.00", "lastPurchaseMembers": 0},
                    {"month": "2026-02-01", "memberOrders": 2, "revenue": "60.00", "lastPurchaseMembers": 2}
                ]),
                "folded: {folded}"
            );
            assert_eq!(
                both["averageOrderValues"],
                j!({"members": "23.33", "nonMembers": "40.00", "everyone": "30.00"})
            );
            // At February's end "jan" (joined in January) is one month in, "feb" under one.
            let buckets = both["membershipDuration"].as_array().unwrap();
            assert_eq!(
                (buckets[0]["members"].clone(), buckets[1]["members"].clone()),
                (j!(1), j!(1))
            );
            assert_eq!(buckets[0]["revenue"], "20.00");
            assert_eq!(buckets[1]["revenue"], "50.00");
            assert_eq!(buckets[1]["averagePurchase"], "25.00");
        }
    }
);

e2e!(
    non_member_orders_count_in_totals_and_never_post_points,
    |app: TestApp| async move {
        app.clock.set(local(TZ, "2026-05-10 10:00:00"));
        app.demo().await;
        let service = app.service();
        let admin = app.admin();
        app.register("regular").await;
        let rows_before = app
            .sql_i64("SELECT COUNT(*) AS n FROM ledger_entries")
            .await;
        let members_before = app.sql_i64("SELECT COUNT(*) AS n FROM members").await;
        let record = |input: Value| app.gql(Some(&service), PURCHASE, j!({"i": input}));

        let anonymous = j!({"orderId": "g-1", "amount": "80.00", "idempotencyKey": "g-1"});
        let r = record(anonymous.clone()).await;
        assert_eq!(
            r.data()["recordPurchase"],
            j!({"memberOrder": false, "pointsAwarded": "0.00", "reason": "NOT_A_MEMBER", "transactions": []})
        );
        // A retry answers the same and records nothing more; the key with another order is refused.
        assert_eq!(
            record(anonymous).await.data()["recordPurchase"]["memberOrder"],
            false
        );
        let reused =
            record(j!({"orderId": "g-2", "amount": "80.00", "idempotencyKey": "g-1"})).await;
        assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
        // The same order id again (other key) is already recorded, as for members.
        let again =
            record(j!({"orderId": "g-1", "amount": "80.00", "idempotencyKey": "g-1b"})).await;
        assert_eq!(again.code(), "ALREADY_CLAIMED");
        // An unknown customer who does not join: a non-member's order, no member created.
        let walk_in = record(j!({"memberExternalId": "walk-in", "joinProgram": false, "orderId": "g-3", "amount": "20.00", "idempotencyKey": "g-3"})).await;
        assert_eq!(walk_in.data()["recordPurchase"]["memberOrder"], false);
        assert_eq!(
            app.sql_i64("SELECT COUNT(*) AS n FROM ledger_entries")
                .await,
            rows_before,
            "non-members' orders post nothing"
        );
        // A known member with joinProgram false: the member's order, with points.
        let known = record(j!({"memberExternalId": "regular", "joinProgram": false, "orderId": "m-1", "amount": "100.00", "idempotencyKey": "m-1"})).await;
        assert_eq!(known.data()["recordPurchase"]["memberOrder"], true);
        // A non-member order id used by a member is refused, and the reverse.
        let clash = record(j!({"orderId": "m-1", "amount": "5.00", "idempotencyKey": "g-4"})).await;
        assert_eq!(clash.code(), "ALREADY_CLAIMED");
        // Bad input.
        let bad = record(j!({"orderId": "g-5", "amount": "0", "idempotencyKey": "g-5"})).await;
        assert_eq!(bad.code(), "VALIDATION");
        let bad_id = record(j!({"memberExternalId": "no spaces", "joinProgram": false, "orderId": "g-6", "amount": "1.00", "idempotencyKey": "g-6"})).await;
        assert_eq!(bad_id.code(), "VALIDATION");

        assert_eq!(
            app.sql_i64("SELECT COUNT(*) AS n FROM members").await,
            members_before,
            "nobody joined"
        );

        // Refunds: part, a retry of it, too much, by lines; 10 concurrent retries of one key.
        let refund = |order: &str, amount: &str, key: &str| {
            app.gql(
                Some(&service),
                REFUND,
                j!({"o": order, "a": amount, "k": key}),
            )
        };
        let r = refund("g-1", "30.00", "r-1").await;
        assert_eq!(
            r.data()["refundPurchase"],
            j!({"memberOrder": false, "refundedAmount": "30.00", "totalRefunded": "30.00", "pointsReversed": "0.00"})
        );
        assert_eq!(
            refund("g-1", "30.00", "r-1").await.data()["refundPurchase"]["totalRefunded"],
            "30.00"
        );
        assert_eq!(
            refund("g-1", "31.00", "r-1").await.code(),
            "IDEMPOTENCY_KEY_REUSED"
        );
        assert_eq!(refund("g-1", "50.01", "r-2").await.code(), "VALIDATION");
        let by_lines = app
        .gql(Some(&service), "mutation { refundPurchase(orderId: \"g-1\", lines: [{lineNumber: 1, quantity: 1}]) { memberOrder } }", j!({}))
        .await;
        assert_eq!(by_lines.code(), "VALIDATION");
        let tasks: Vec<_> = (0..10)
        .map(|_| {
            app.spawn_gql(
                &service,
                "mutation { refundPurchase(orderId: \"g-1\", amount: \"5.00\", idempotencyKey: \"r-3\") { totalRefunded } }",
                j!({}),
            )
        })
        .collect();
        for task in tasks {
            let r = task.await.unwrap();
            assert_eq!(
                r.data()["refundPurchase"]["totalRefunded"],
                "35.00",
                "{:?}",
                r.body
            );
        }
        assert_eq!(
            app.sql_i64("SELECT refunded_minor AS n FROM guest_orders WHERE order_id = 'g-1'")
                .await,
            3500
        );
        assert_eq!(refund("missing", "1.00", "r-9").await.code(), "NOT_FOUND");

        // The report: non-members count in coverage and everyone's AOV, never in members' figures.
        app.loyalty.fold_reports().await.unwrap();
        let r = app
            .gql(
                Some(&admin),
                SECTIONS,
                j!({"from": "2026-05-10", "to": "2026-05-10"}),
            )
            .await;
        let r = &r.data()["loyaltyReport"];
        assert_eq!(r["members"]["total"], 1);
        assert_eq!(r["revenue"], "100.00");
        assert_eq!(
            r["coverage"],
            j!({"memberOrders": 1, "nonMemberOrders": 2, "orderShare": "0.3333",
            "memberRevenue": "100.00", "nonMemberRevenue": "65.00", "revenueShare": "0.6061"})
        );
        assert_eq!(
            r["averageOrderValues"],
            j!({"members": "100.00", "nonMembers": "32.50", "everyone": "55.00"})
        );
        assert_eq!(r["purchasers"], 1);
        app.assert_ledger_invariants().await;
    }
);

/// Members with a ledger row in `[from, to]`, from the raw rows.
async fn active_members(app: &TestApp, from: NaiveDate, to: NaiveDate) -> i64 {
    let raw = raw(app).await;
    raw.ledger
        .iter()
        .filter(|l| (from..=to).contains(&l.5))
        .map(|l| l.0)
        .collect::<BTreeSet<_>>()
        .len() as i64
}

// Activity folded out of time order (a late batch lands between days already folded, before
// and after a member's first and last day) and a tail left unfolded: every distinct count
// (active members, buyers, buyers by month of their last order, campaign reach) still equals
// the raw rows', for windows that start and end on, between and around the days.
e2e!(
    report_distinct_counts_hold_when_days_fold_out_of_order,
    |app: TestApp| async move {
        let start = local(TZ, "2026-03-02 09:00:00");
        app.clock.set(start);
        let program = app.demo().await;
        app.loyalty.seed_demo_campaigns(&program).await.unwrap();
        let service = app.service();
        let mut tokens = vec![];
        for m in 0..5 {
            tokens.push(app.register(&format!("m{m}")).await.0);
        }
        // Each batch's days, folded after the batch; the last batch stays the tail.
        let batches: [&[i64]; 5] = [&[40], &[10, 45], &[20, 5, 42], &[30, 1, 41, 60], &[25, 50]];
        let mut n = 0;
        for (b, days) in batches.iter().enumerate() {
            for day in *days {
                for m in 0..5i64 {
                    if (day + m) % 3 == 0 {
                        continue;
                    }
                    n += 1;
                    app.clock
                        .set(start + Duration::days(*day) + Duration::minutes(n));
                    let key = format!("k{n}");
                    if m % 2 == 0 {
                        app.gql(Some(&service), PURCHASE, j!({"i": {"memberExternalId": format!("m{m}"), "orderId": format!("o{n}"), "amount": "25.00", "idempotencyKey": key}}))
                            .await
                            .data();
                    } else {
                        app.gql(
                            Some(&tokens[m as usize]),
                            ACTION,
                            j!({"a": "daily_login", "k": key}),
                        )
                        .await
                        .data();
                    }
                }
            }
            if b + 1 < batches.len() {
                app.loyalty.fold_reports().await.unwrap();
            }
        }
        let raw = raw(&app).await;
        let first = start
            .with_timezone(&TZ.parse::<chrono_tz::Tz>().unwrap())
            .date_naive();
        let d = |n: i64| first + Duration::days(n);
        let admin = app.admin();
        for (from, to) in [
            (0, 0),
            (1, 1),
            (2, 9),
            (5, 5),
            (6, 19),
            (11, 29),
            (21, 39),
            (26, 40),
            (40, 40),
            (43, 44),
            (46, 59),
            (0, 60),
            (31, 61),
        ] {
            let (from, to) = (d(from), d(to));
            let res = app
                .gql(
                    Some(&admin),
                    "query($from: Date!, $to: Date!) { loyaltyReport(from: $from, to: $to) { members { active } } }",
                    j!({"from": from.to_string(), "to": to.to_string()}),
                )
                .await;
            assert_eq!(
                res.data()["loyaltyReport"]["members"]["active"],
                active_members(&app, from, to).await,
                "active members {from}..{to}"
            );
            let res = app
                .gql(
                    Some(&admin),
                    SECTIONS,
                    j!({"from": from.to_string(), "to": to.to_string()}),
                )
                .await;
            check_sections(&res.data()["loyaltyReport"], &raw, from, to);
        }
        app.assert_ledger_invariants().await;
    }
);
