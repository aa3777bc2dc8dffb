//! Purchases with lines: the lines must add up to the amount, rules see them, and a refund of
//! lines reverses only what was paid on those lines (issue 11, item 1).

use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Statement};

use crate::e2e;
use crate::helpers::*;

const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance transactions { account source amount } } }";
const REFUND: &str = "mutation($o: String!, $l: [RefundLineInput!], $a: Decimal, $k: String) { refundPurchase(orderId: $o, lines: $l, amount: $a, idempotencyKey: $k) { refundedAmount totalRefunded pointsReversed pointsUnrecovered balance transaction { source amount } transactions { kind account source amount } } }";
const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"test\", idempotencyKey: $k) { balance } }";
const QUALIFICATION: &str = "{ me { qualificationBalance } }";

/// Coffee 2 × 10.00 (line 1) and tea 1 × 10.00 (line 2): 30.00.
fn coffee_and_tea() -> serde_json::Value {
    j!([
        {"sku": "espresso", "category": "coffee", "quantity": 2, "unitPrice": "10.00"},
        {"sku": "sencha", "category": "tea", "quantity": 1, "unitPrice": "10.00"},
    ])
}

fn purchase(
    member: &str,
    order: &str,
    amount: &str,
    lines: serde_json::Value,
) -> serde_json::Value {
    j!({"i": {"memberExternalId": member, "orderId": order, "amount": amount, "lines": lines, "idempotencyKey": format!("key-{order}")}})
}

fn refund_lines(order: &str, lines: serde_json::Value, key: &str) -> serde_json::Value {
    j!({"o": order, "l": lines, "k": key})
}

fn message(res: &Gql) -> String {
    res.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {}", res.body))
        .to_owned()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.loyalty.db();
    let row = db
        .query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The demo program's live rules plus "10 % of coffee lines" (source `coffee_bonus`,
/// qualifying): `linesInCategory ["coffee"]` with `PERCENT_OF_LINES` 10, through the admin API.
async fn publish_coffee_bonus(app: &TestApp) {
    let admin = app.admin();
    app.gql(
        Some(&admin),
        "mutation($i: RuleInput!) { createRule(input: $i) { id } }",
        j!({"i": {"name": "10 % of coffee", "action": "purchase", "source": "coffee_bonus",
            "qualifying": true,
            "effect": {"kind": "PERCENT_OF_LINES", "percent": "10"},
            "conditions": [{"kind": "linesInCategory", "categories": ["coffee"]}]}}),
    )
    .await
    .data();
    app.gql(
        Some(&admin),
        "mutation { publishRules { version } }",
        j!({}),
    )
    .await
    .data();
}

e2e!(
    lines_that_do_not_add_up_are_refused_and_nothing_is_stored,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        let members = scalar(&app, "SELECT COUNT(*) AS n FROM members").await;
        let rows = scalar(&app, "SELECT COUNT(*) AS n FROM ledger_entries").await;
        let lines = j!([
            {"sku": "espresso", "category": "coffee", "quantity": 2, "unitPrice": "10.00"},
            {"sku": "sencha", "quantity": 1, "unitPrice": "22.00"},
        ]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "50.00", lines.clone()),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(
            message(&r),
            "lines: the lines add up to 42.00, not amount 50.00"
        );
        // A member the refused purchase would have joined is not created either.
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("ghost", "o-2", "50.00", lines.clone()),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM purchases").await, 0);
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM purchase_lines").await,
            0
        );
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM members").await,
            members
        );
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM ledger_entries").await,
            rows
        );
        assert_eq!(app.balance(&token).await, "70.00");
        // The same lines with the right amount are recorded, lines and all.
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "42.00", lines),
            )
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "21.00");
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM purchase_lines").await,
            2
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT unit_price_minor AS n FROM purchase_lines WHERE line_number = 2"
            )
            .await,
            2200
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    bad_line_fields_are_refused_with_their_path,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        let good = j!({"sku": "a", "quantity": 1, "unitPrice": "1.00"});
        let cases = [
            (
                j!({"sku": "a", "quantity": 0, "unitPrice": "1.00"}),
                "lines[2].quantity: must be at least 1",
            ),
            (
                j!({"sku": "a", "quantity": -3, "unitPrice": "1.00"}),
                "lines[2].quantity: must be at least 1",
            ),
            (
                j!({"sku": "", "quantity": 1, "unitPrice": "1.00"}),
                "lines[2].sku: must be 1 to 64 characters",
            ),
            (
                j!({"sku": "a", "category": "c".repeat(65), "quantity": 1, "unitPrice": "1.00"}),
                "lines[2].category: must be 1 to 64 characters",
            ),
            (
                j!({"sku": "a", "quantity": 1, "unitPrice": "-1.00"}),
                "lines[2].unitPrice: must not be negative",
            ),
            (
                j!({"sku": "a", "quantity": 1, "unitPrice": "0.001"}),
                "lines[2].unitPrice: must have at most two fraction digits",
            ),
        ];
        for (n, (bad, expected)) in cases.into_iter().enumerate() {
            let lines = j!([good.clone(), good.clone(), bad]);
            let r = app
                .gql(
                    Some(&service),
                    PURCHASE,
                    purchase("m1", &format!("bad-{n}"), "3.00", lines),
                )
                .await;
            assert_eq!(r.code(), "VALIDATION", "{expected}");
            assert_eq!(message(&r), expected);
        }
        let many = serde_json::Value::Array(vec![good.clone(); 201]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "many", "201.00", many),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(message(&r), "lines: at most 200 lines");
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "none", "1.00", j!([])),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(
            message(&r),
            "lines: must not be empty (leave it out for an order without lines)"
        );
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM purchases").await, 0);
        assert_eq!(app.balance(&token).await, "70.00");
        // 200 lines are fine, all stored.
        let most = serde_json::Value::Array(vec![good.clone(); 200]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "most", "200.00", most),
            )
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "100.00");
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM purchase_lines").await,
            200
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    lines_are_part_of_the_idempotent_request,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        let first = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "30.00", coffee_and_tea()),
            )
            .await;
        assert_eq!(first.data()["recordPurchase"]["pointsAwarded"], "15.00");
        let again = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "30.00", coffee_and_tea()),
            )
            .await;
        assert_eq!(again.data(), first.data());
        // The same key with other lines, or without them: a different request.
        let other =
            j!([{"sku": "espresso", "category": "coffee", "quantity": 3, "unitPrice": "10.00"}]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "30.00", other),
            )
            .await;
        assert_eq!(r.code(), "IDEMPOTENCY_KEY_REUSED");
        let r = app
        .gql(
            Some(&service),
            PURCHASE,
            j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "30.00", "idempotencyKey": "key-o-1"}}),
        )
        .await;
        assert_eq!(r.code(), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(app.balance(&token).await, "85.00");
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) AS n FROM purchase_lines").await,
            2
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    ten_percent_of_coffee_lines_is_paid_and_reversed_with_the_coffee_line_only,
    |app: TestApp| async move {
        app.demo().await;
        publish_coffee_bonus(&app).await;
        let (token, _) = app.register("m1").await; // 70.00
        let service = app.service();
        // 5 % of 30.00 × 10 = 15.00 on the order; 10 % of the coffee's 20.00 × 10 = 20.00.
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "30.00", coffee_and_tea()),
            )
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "35.00");
        assert_eq!(r.data()["recordPurchase"]["balance"], "105.00");
        let points: Vec<(String, String)> = r.data()["recordPurchase"]["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["account"] == "POINTS")
            .map(|t| {
                (
                    t["source"].as_str().unwrap().to_owned(),
                    t["amount"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            points,
            [
                ("purchase".to_owned(), "15.00".to_owned()),
                ("coffee_bonus".to_owned(), "20.00".to_owned())
            ]
        );
        let qualification = app.gql(Some(&token), QUALIFICATION, j!({})).await;
        assert_eq!(qualification.data()["me"]["qualificationBalance"], "35.00");

        // An order of tea only pays no coffee bonus.
        let tea = j!([{"sku": "sencha", "category": "tea", "quantity": 1, "unitPrice": "10.00"}]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-tea", "10.00", tea),
            )
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "5.00");

        // Refunding the tea line reverses none of the bonus: a third of the order's 15.00.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 2, "quantity": 1}]), "r-tea"),
            )
            .await;
        let out = &r.data()["refundPurchase"];
        assert_eq!(out["refundedAmount"], "10.00");
        assert_eq!(out["pointsReversed"], "5.00");
        assert_eq!(out["balance"], "105.00");
        assert_eq!(
            out["transactions"],
            j!([{"kind": "REVERSAL", "account": "POINTS", "source": "purchase", "amount": "-5.00"}])
        );
        // Refunding the coffee line reverses exactly the bonus, and the rest of the order's.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 1, "quantity": 2}]), "r-coffee"),
            )
            .await;
        let out = &r.data()["refundPurchase"];
        assert_eq!(out["refundedAmount"], "20.00");
        assert_eq!(out["totalRefunded"], "30.00");
        assert_eq!(out["pointsReversed"], "30.00");
        assert_eq!(out["pointsUnrecovered"], "0.00");
        assert_eq!(out["balance"], "75.00");
        assert_eq!(
            out["transactions"],
            j!([
                {"kind": "REVERSAL", "account": "POINTS", "source": "purchase", "amount": "-10.00"},
                {"kind": "REVERSAL", "account": "POINTS", "source": "coffee_bonus", "amount": "-20.00"},
            ])
        );
        assert_eq!(out["transaction"]["source"], "purchase");
        // The coffee bonus nets to zero by its source; qualification follows the points.
        assert_eq!(
            scalar(&app, "SELECT CAST(SUM(amount_minor) AS BIGINT) AS n FROM ledger_entries WHERE account = 'POINTS' AND source = 'coffee_bonus'").await,
            0
        );
        let qualification = app.gql(Some(&token), QUALIFICATION, j!({})).await;
        assert_eq!(qualification.data()["me"]["qualificationBalance"], "5.00");
        assert_eq!(
            scalar(
                &app,
                "SELECT reversed_minor AS n FROM purchases WHERE order_id = 'o-1'"
            )
            .await,
            3500
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT refunded_minor AS n FROM purchases WHERE order_id = 'o-1'"
            )
            .await,
            3000
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(SUM(refunded_quantity) AS BIGINT) AS n FROM purchase_lines"
            )
            .await,
            3
        );
        assert_eq!(app.balance(&token).await, "75.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    coffee_first_then_tea_and_refunds_by_amount_spread_over_the_lines,
    |app: TestApp| async move {
        app.demo().await;
        publish_coffee_bonus(&app).await;
        let (token, id) = app.register("m1").await; // 70.00
        let service = app.service();
        app.gql(
            Some(&service),
            PURCHASE,
            purchase("m1", "o-1", "30.00", coffee_and_tea()),
        )
        .await
        .data(); // +35.00
                 // One coffee unit: half the bonus (10.00) and a third of the order's 15.00 (5.00).
        let r = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 1, "quantity": 1}]), "r1"),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "15.00");
        // The same key again: the stored answer, nothing reversed twice.
        let again = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 1, "quantity": 1}]), "r1"),
            )
            .await;
        assert_eq!(again.data(), r.data());
        let reused = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 2, "quantity": 1}]), "r1"),
            )
            .await;
        assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
        // 10.00 by amount over what is left (coffee 10.00, tea 10.00): half of each, so a
        // quarter of the bonus (5.00) and a third of the order's (5.00).
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "10.00", "k": "r2"}),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "10.00");
        assert_eq!(
            r.data()["refundPurchase"]["transactions"],
            j!([
                {"kind": "REVERSAL", "account": "POINTS", "source": "purchase", "amount": "-5.00"},
                {"kind": "REVERSAL", "account": "POINTS", "source": "coffee_bonus", "amount": "-5.00"},
            ])
        );
        // After a refund by amount, lines can no longer be named.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines("o-1", j!([{"lineNumber": 2, "quantity": 1}]), "r3"),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(
            message(&r),
            "lines: order `o-1` was already refunded by amount; refund the rest by amount"
        );
        // The points are spent down to 2.00; the rest of the order (10.00) is due 10.00.
        app.gql(
            Some(&app.admin()),
            ADJUST,
            j!({"m": id, "a": "-78.00", "k": "spend"}),
        )
        .await
        .data();
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "10.00", "k": "r4"}),
            )
            .await;
        let out = &r.data()["refundPurchase"];
        assert_eq!(out["totalRefunded"], "30.00");
        assert_eq!(out["pointsReversed"], "2.00");
        assert_eq!(out["pointsUnrecovered"], "8.00");
        assert_eq!(out["balance"], "0.00");
        assert_eq!(
            scalar(
                &app,
                "SELECT unrecovered_minor AS n FROM purchases WHERE order_id = 'o-1'"
            )
            .await,
            800
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT reversed_minor AS n FROM purchases WHERE order_id = 'o-1'"
            )
            .await,
            3500
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(SUM(points_unrecovered_minor) AS BIGINT) AS n FROM refunds"
            )
            .await,
            800
        );
        assert_eq!(app.balance(&token).await, "0.00");
        // Qualification is never spent: all of it came back.
        let qualification = app.gql(Some(&token), QUALIFICATION, j!({})).await;
        assert_eq!(qualification.data()["me"]["qualificationBalance"], "0.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    line_refund_refusals_have_exact_codes,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        app.gql(
            Some(&service),
            PURCHASE,
            purchase("m1", "o-1", "30.00", coffee_and_tea()),
        )
        .await
        .data(); // +15.00
        let plain = j!({"i": {"memberExternalId": "m1", "orderId": "o-plain", "amount": "10.00", "idempotencyKey": "plain"}});
        app.gql(Some(&service), PURCHASE, plain).await.data(); // +5.00
        let one = j!([{"lineNumber": 1, "quantity": 1}]);
        let cases = [
            (
                j!({"o": "o-1", "a": "1.00", "l": one.clone()}),
                "VALIDATION",
                "give either amount or lines, not both",
            ),
            (
                j!({"o": "o-1"}),
                "VALIDATION",
                "amount or lines is required",
            ),
            (
                refund_lines("o-1", j!([{"lineNumber": 3, "quantity": 1}]), "k1"),
                "VALIDATION",
                "lines[0].lineNumber: order \"o-1\" has no line 3 (it has 2)",
            ),
            (
                refund_lines(
                    "o-1",
                    j!([{"lineNumber": 2, "quantity": 1}, {"lineNumber": 1, "quantity": 3}]),
                    "k2",
                ),
                "VALIDATION",
                "lines[1].quantity: line 1 has 2 left to refund, not 3",
            ),
            (
                refund_lines(
                    "o-1",
                    j!([{"lineNumber": 1, "quantity": 1}, {"lineNumber": 1, "quantity": 1}]),
                    "k3",
                ),
                "VALIDATION",
                "lines[1].lineNumber: line 1 is named twice",
            ),
            (
                refund_lines("o-1", j!([{"lineNumber": 1, "quantity": 0}]), "k4"),
                "VALIDATION",
                "lines[0].quantity: must be at least 1",
            ),
            (
                refund_lines("o-plain", one.clone(), "k5"),
                "VALIDATION",
                "lines: order `o-plain` was recorded without lines; refund an amount instead",
            ),
            (
                refund_lines("nope", one.clone(), "k6"),
                "NOT_FOUND",
                "order `nope` not found",
            ),
        ];
        for (variables, code, expected) in cases {
            let r = app.gql(Some(&service), REFUND, variables).await;
            assert_eq!(r.code(), code, "{expected}");
            assert_eq!(message(&r), expected);
        }
        let member = app.member("m1");
        let r = app
            .gql(
                Some(&member),
                REFUND,
                refund_lines("o-1", one.clone(), "k7"),
            )
            .await;
        assert_eq!(r.code(), "FORBIDDEN");
        // Nothing moved.
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM refunds").await, 0);
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(SUM(refunded_minor) AS BIGINT) AS n FROM purchases"
            )
            .await,
            0
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(SUM(refunded_quantity) AS BIGINT) AS n FROM purchase_lines"
            )
            .await,
            0
        );
        assert_eq!(app.balance(&token).await, "90.00");
        // A whole line then more of it: the second is refused.
        app.gql(
            Some(&service),
            REFUND,
            refund_lines("o-1", j!([{"lineNumber": 1, "quantity": 2}]), "k8"),
        )
        .await
        .data();
        let r = app
            .gql(Some(&service), REFUND, refund_lines("o-1", one, "k9"))
            .await;
        assert_eq!(r.code(), "VALIDATION");
        assert_eq!(
            message(&r),
            "lines[0].quantity: line 1 has 0 left to refund, not 1"
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    concurrent_line_refunds_never_reverse_more_than_the_accrual,
    |app: TestApp| async move {
        app.demo().await;
        publish_coffee_bonus(&app).await;
        let (token, _) = app.register("m1").await; // 70.00
        let service = app.service();
        // Coffee 10 × 2.00 and tea 1 × 10.00: 15.00 on the order, 20.00 on the coffee.
        let lines = j!([
            {"sku": "espresso", "category": "coffee", "quantity": 10, "unitPrice": "2.00"},
            {"sku": "sencha", "category": "tea", "quantity": 1, "unitPrice": "10.00"},
        ]);
        let r = app
            .gql(
                Some(&service),
                PURCHASE,
                purchase("m1", "o-1", "30.00", lines),
            )
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "35.00");
        // Ten refunds of 3 coffee units each, at once: only three fit (9 of 10 units).
        let requests = (0..10).map(|n| {
            let app = &app;
            let service = &service;
            async move {
                app.gql(
                    Some(service),
                    REFUND,
                    refund_lines(
                        "o-1",
                        j!([{"lineNumber": 1, "quantity": 3}]),
                        &format!("c{n}"),
                    ),
                )
                .await
            }
        });
        let answers = futures::future::join_all(requests).await;
        let mut reversed = Decimal::ZERO;
        let mut refused = 0;
        for answer in &answers {
            if answer.body.get("errors").is_some() {
                assert_eq!(answer.code(), "VALIDATION", "{}", answer.body);
                refused += 1;
            } else {
                let points = answer.data()["refundPurchase"]["pointsReversed"]
                    .as_str()
                    .unwrap();
                reversed += points.parse::<Decimal>().unwrap();
            }
        }
        assert_eq!(refused, 7);
        // 9 of 10 coffee units: 18.00 of the bonus, and 18.00 / 30.00 of the order's 15.00.
        assert_eq!(reversed, Decimal::new(2700, 2));
        assert_eq!(app.balance(&token).await, "78.00");
        // The last unit, then the tea: everything comes back, and never more.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                refund_lines(
                    "o-1",
                    j!([{"lineNumber": 1, "quantity": 1}, {"lineNumber": 2, "quantity": 1}]),
                    "last",
                ),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "8.00");
        assert_eq!(app.balance(&token).await, "70.00");
        assert_eq!(
            scalar(&app, "SELECT CAST(SUM(amount_minor) AS BIGINT) AS n FROM ledger_entries WHERE account = 'POINTS' AND source = 'coffee_bonus'").await,
            0
        );
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(SUM(points_reversed_minor) AS BIGINT) AS n FROM refunds"
            )
            .await,
            3500
        );
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM refunds").await, 4);
        assert_eq!(
            scalar(
                &app,
                "SELECT refunded_quantity AS n FROM purchase_lines WHERE line_number = 1"
            )
            .await,
            10
        );
        app.assert_ledger_invariants().await;
    }
);
