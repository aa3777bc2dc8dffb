//! CSV exports are safe to open in a spreadsheet (OWASP CSV injection): text that people chose
//! (a display name, an adjustment reason, an order id, a member id, a tier name) and that starts
//! like a formula gets a leading `'`; amounts, even negative ones, stay numbers.

use crate::e2e;
use crate::helpers::*;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $r: String!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: $r, idempotencyKey: $k) { balance } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";
const TIER: &str = "mutation($i: TierInput!) { upsertTier(input: $i) { id } }";

async fn csv(app: &TestApp, path: &str) -> Vec<csv::StringRecord> {
    let response = app
        .client
        .get(format!("{}{path}", app.url))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body = response.text().await.unwrap();
    csv::Reader::from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect()
}

e2e!(csv_exports_neutralise_formulas, |app: TestApp| async move {
    app.clock
        .set(local("Asia/Ho_Chi_Minh", "2026-05-10 09:00:00"));
    app.demo().await;
    let admin = app.admin();
    app.gql(
        Some(&admin),
        TIER,
        j!({"i": {"name": "@SUM(1)", "minQualification": "0", "multiplier": "1"}}),
    )
    .await
    .data();
    let token = app.member("-csv");
    let registered = app
        .gql(
            Some(&token),
            "mutation($n: String) { register(input: {displayName: $n}) { member { id } } }",
            j!({"n": "=HYPERLINK(\"http://x\")"}),
        )
        .await;
    let id = registered.data()["register"]["member"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (amount, reason, key) in [("10", "+cmd", "k1"), ("-5", "-5 points", "k2")] {
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": amount, "r": reason, "k": key}),
        )
        .await
        .data();
    }
    app.gql(
        Some(&app.service()),
        PURCHASE,
        j!({"i": {"memberExternalId": "-csv", "orderId": "@order", "amount": "20", "idempotencyKey": "p1"}}),
    )
    .await
    .data();

    let ledger = csv(
        &app,
        "/admin/export/ledger.csv?from=2026-05-10&to=2026-05-10",
    )
    .await;
    // Columns: id, created_at, local_date, member_id, member_external_id, member_name, account,
    // kind, amount, source, purpose, ref_type, ref_id, note.
    assert!(!ledger.is_empty());
    for row in &ledger {
        assert_eq!(&row[3], id, "{row:?}");
        assert_eq!(&row[4], "'-csv", "{row:?}");
        assert_eq!(&row[5], "'=HYPERLINK(\"http://x\")", "{row:?}");
        assert!(row[0].parse::<i64>().is_ok(), "{row:?}");
    }
    let note = |note: &str| {
        ledger
            .iter()
            .find(|r| &r[13] == note)
            .unwrap_or_else(|| panic!("no row with note {note}: {ledger:?}"))
            .clone()
    };
    assert_eq!(&note("'+cmd")[8], "10.00");
    // A negative amount is a number, not a formula: no quote.
    assert_eq!(&note("'-5 points")[8], "-5.00");
    let order = ledger
        .iter()
        .find(|r| &r[11] == "order")
        .unwrap_or_else(|| panic!("no purchase row: {ledger:?}"));
    assert_eq!(&order[12], "'@order");
    assert_eq!(&order[8], "10.00"); // 5% of 20 units × 10 points

    let report = csv(
        &app,
        "/admin/export/report.csv?from=2026-05-10&to=2026-05-10",
    )
    .await;
    // Columns: section, key, label, value, count, share.
    let tier = report
        .iter()
        .find(|r| &r[0] == "tier" && !r[1].is_empty())
        .unwrap_or_else(|| panic!("no tier line: {report:?}"));
    assert_eq!(&tier[2], "'@SUM(1)");
    assert_eq!(&tier[4], "1");
    let used = report
        .iter()
        .find(|r| &r[0] == "summary" && &r[1] == "points_used")
        .unwrap();
    assert_eq!(&used[3], "5.00");
    app.assert_ledger_invariants().await;
});
