//! Discount vouchers: no overdraft under races, a code is used once however many checkouts race
//! for it, expiry follows the server's clock, and every refusal has its code.

use std::collections::HashSet;

use futures::future::join_all;

use crate::e2e;
use crate::gifts::{assert_spends_match_purchases, scalar, ADJUST};
use crate::helpers::*;

const DISCOUNT: &str = "mutation($p: Decimal!, $k: String!) { redeemDiscount(points: $p, idempotencyKey: $k) { voucher { id code value currency points expiresAt status origin } balance transaction { id amount kind purpose refType refId } } }";
const CONSUME: &str = "mutation($c: String!, $o: String!) { consumeVoucher(code: $c, orderId: $o) { code status value usedAt orderId } }";
const MINE: &str = "{ myVouchers(first: 50) { edges { node { code status value points orderId expiresAt } } pageInfo { hasNextPage } } }";
const ALPHABET: &str = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

async fn discount(app: &TestApp, token: &str, points: &str, key: &str) -> Gql {
    app.gql(Some(token), DISCOUNT, j!({"p": points, "k": key}))
        .await
}

async fn consume(app: &TestApp, code: &str, order: &str) -> Gql {
    app.gql(Some(&app.service()), CONSUME, j!({"c": code, "o": order}))
        .await
}

e2e!(
    parallel_discounts_never_overdraw,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        app.gql(
            Some(&app.admin()),
            ADJUST,
            j!({"m": id, "a": "-20", "k": "to-50"}),
        )
        .await
        .data();
        assert_eq!(app.balance(&token).await, "50.00");
        let results = join_all((0..20).map(|i| {
            let (app, token) = (&app, token.clone());
            async move { discount(app, &token, "10", &format!("d{i}")).await }
        }))
        .await;
        let mut codes = HashSet::new();
        for r in &results {
            if r.body.get("errors").is_none() {
                let v = &r.data()["redeemDiscount"]["voucher"];
                assert_eq!(v["value"], "1.00");
                assert_eq!(v["currency"], "USD");
                assert_eq!(v["points"], "10.00");
                assert_eq!(v["status"], "ACTIVE");
                codes.insert(v["code"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(r.code(), "INSUFFICIENT_POINTS");
            }
        }
        assert_eq!(codes.len(), 5, "five distinct vouchers");
        for code in &codes {
            assert_eq!(code.len(), 12);
            assert!(code.chars().all(|c| ALPHABET.contains(c)), "{code}");
        }
        assert_eq!(app.balance(&token).await, "0.00");
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM vouchers").await, 5);
        let mine = app.gql(Some(&token), MINE, j!({})).await;
        assert_eq!(
            mine.data()["myVouchers"]["edges"].as_array().unwrap().len(),
            5
        );
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    a_voucher_is_consumed_once_under_concurrency,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let r = discount(&app, &token, "25", "d").await;
        let bought = r.data()["redeemDiscount"].clone();
        assert_eq!(bought["balance"], "45.00");
        assert_eq!(bought["voucher"]["value"], "2.50");
        assert_eq!(bought["transaction"]["amount"], "-25.00");
        assert_eq!(bought["transaction"]["kind"], "SPEND");
        assert_eq!(bought["transaction"]["purpose"], "discount");
        assert_eq!(bought["transaction"]["refType"], "voucher");
        assert_eq!(bought["transaction"]["refId"], bought["voucher"]["id"]);
        let code = bought["voucher"]["code"].as_str().unwrap().to_owned();
        let results = join_all((0..10).map(|i| {
            let (app, code) = (&app, code.clone());
            async move { consume(app, &code, &format!("order-{i}")).await }
        }))
        .await;
        let ok: Vec<_> = results
            .iter()
            .filter(|r| r.body.get("errors").is_none())
            .collect();
        assert_eq!(ok.len(), 1);
        for r in results.iter().filter(|r| r.body.get("errors").is_some()) {
            assert_eq!(r.code(), "ALREADY_CLAIMED");
        }
        let used = ok[0].data()["consumeVoucher"].clone();
        assert_eq!(used["status"], "USED");
        assert_eq!(used["value"], "2.50");
        assert!(used["usedAt"].is_string());
        // Later, even for the winning order and typed in lower case: already used.
        let order = used["orderId"].as_str().unwrap().to_owned();
        assert_eq!(
            consume(&app, &code.to_lowercase(), &order).await.code(),
            "ALREADY_CLAIMED"
        );
        let mine = app.gql(Some(&token), MINE, j!({})).await;
        let node = mine.data()["myVouchers"]["edges"][0]["node"].clone();
        assert_eq!(node["status"], "USED");
        assert_eq!(node["orderId"], order.as_str());
        assert_eq!(app.balance(&token).await, "45.00");
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(expired_vouchers_are_refused, |app: TestApp| async move {
    app.demo().await;
    let (token, _) = app.register("m1").await;
    let issued_at = app.loyalty.now();
    let r = discount(&app, &token, "10", "old").await;
    let v = r.data()["redeemDiscount"]["voucher"].clone();
    let expires: chrono::DateTime<chrono::Utc> = v["expiresAt"].as_str().unwrap().parse().unwrap();
    // Stored timestamps keep microseconds (PostgreSQL), the clock nanoseconds.
    let validity = expires.signed_duration_since(issued_at) - chrono::Duration::days(30);
    assert!(
        validity.abs() < chrono::Duration::milliseconds(1),
        "{validity}"
    );
    let old = v["code"].as_str().unwrap().to_owned();
    app.clock.advance(chrono::Duration::days(29));
    let r = discount(&app, &token, "10", "new").await;
    let fresh = r.data()["redeemDiscount"]["voucher"]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock.advance(chrono::Duration::days(1));
    let r = consume(&app, &old, "o-1").await;
    assert_eq!(r.code(), "VALIDATION");
    let message = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("expired at"), "{message}");
    // Still valid one day before its own expiry.
    consume(&app, &fresh, "o-2").await.data();
    let mine = app.gql(Some(&token), MINE, j!({})).await;
    let statuses: Vec<_> = mine.data()["myVouchers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["status"].clone())
        .collect();
    assert_eq!(statuses, vec![j!("USED"), j!("EXPIRED")]);
    // The points of an expired voucher stay spent.
    assert_eq!(app.balance(&token).await, "50.00");
    assert_spends_match_purchases(&app).await;
});

e2e!(
    values_round_half_to_even_and_refusals_have_codes,
    |app: TestApp| async move {
        app.demo().await;
        app.loyalty
            .create_program(loyalty_domain::program::NewProgram {
                external_id: "other".into(),
                name: "Other shop".into(),
                timezone: "UTC".into(),
                currency: "EUR".into(),
                points_per_currency: rust_decimal::Decimal::ONE,
                validity_days: None,
            })
            .await
            .unwrap();
        let (token, id) = app.register("m1").await;
        // 10 points per USD: 0.15 → 0.015 → 0.02 and 0.25 → 0.025 → 0.02 (half to even).
        let r = discount(&app, &token, "0.15", "a").await;
        assert_eq!(r.data()["redeemDiscount"]["voucher"]["value"], "0.02");
        let r = discount(&app, &token, "0.25", "b").await;
        assert_eq!(r.data()["redeemDiscount"]["voucher"]["value"], "0.02");
        let r = discount(&app, &token, "33.33", "c").await;
        assert_eq!(r.data()["redeemDiscount"]["voucher"]["value"], "3.33");
        let rows = app.ledger_rows(&id).await;
        let balance = app.balance(&token).await;
        for (points, code) in [
            ("0.05", "VALIDATION"),
            ("0", "VALIDATION"),
            ("-1", "VALIDATION"),
            ("1.001", "VALIDATION"),
            ("1000", "INSUFFICIENT_POINTS"),
        ] {
            let r = discount(&app, &token, points, &format!("bad-{points}")).await;
            assert_eq!(r.code(), code, "{points}");
        }
        assert_eq!(app.ledger_rows(&id).await, rows);
        assert_eq!(app.balance(&token).await, balance);
        assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM vouchers").await, 3);
        let r = discount(&app, &token, "10", "").await;
        assert_eq!(r.code(), "VALIDATION");
        // Roles: members buy, services consume.
        assert_eq!(
            discount(&app, &app.service(), "10", "s").await.code(),
            "FORBIDDEN"
        );
        assert_eq!(
            discount(&app, &app.admin(), "10", "s").await.code(),
            "FORBIDDEN"
        );
        let mine = app.gql(Some(&token), MINE, j!({})).await;
        let code = mine.data()["myVouchers"]["edges"][0]["node"]["code"]
            .as_str()
            .unwrap()
            .to_owned();
        for caller in [token.clone(), app.admin()] {
            let r = app
                .gql(Some(&caller), CONSUME, j!({"c": code, "o": "o"}))
                .await;
            assert_eq!(r.code(), "FORBIDDEN");
        }
        assert_eq!(
            app.gql(Some(&app.service()), MINE, j!({})).await.code(),
            "FORBIDDEN"
        );
        // Another program's checkout cannot see our vouchers.
        let other = app.token("other", "service", "pos");
        let r = app
            .gql(Some(&other), CONSUME, j!({"c": code, "o": "o"}))
            .await;
        assert_eq!(r.code(), "NOT_FOUND");
        assert_eq!(consume(&app, "NOSUCHCODE22", "o").await.code(), "NOT_FOUND");
        assert_eq!(consume(&app, &code, "").await.code(), "VALIDATION");
        consume(&app, &code, "o").await.data();
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(redeem_discount_is_idempotent, |app: TestApp| async move {
    app.demo().await;
    let (token, id) = app.register("m1").await;
    let first = discount(&app, &token, "20", "k").await;
    let rows = app.ledger_rows(&id).await;
    let retry = discount(&app, &token, "20", "k").await;
    assert_eq!(first.data(), retry.data());
    app.flush_redis().await;
    let retry = discount(&app, &token, "20", "k").await;
    assert_eq!(first.data(), retry.data());
    assert_eq!(
        discount(&app, &token, "21", "k").await.code(),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(app.ledger_rows(&id).await, rows);
    assert_eq!(app.balance(&token).await, "50.00");
    assert_eq!(scalar(&app, "SELECT COUNT(*) AS n FROM vouchers").await, 1);
    // Another member's identical key is their own.
    let (other, _) = app.register("m2").await;
    let theirs = discount(&app, &other, "20", "k").await;
    assert_ne!(
        theirs.data()["redeemDiscount"]["voucher"]["code"],
        first.data()["redeemDiscount"]["voucher"]["code"]
    );
    assert_spends_match_purchases(&app).await;
});
