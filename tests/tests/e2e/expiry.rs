//! Lots expire after the program's validity period; spends consumed the oldest lots first.

use crate::e2e;
use crate::helpers::*;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"test\", idempotencyKey: $k) { balance } }";
const ME: &str = "{ me { balance expiringSoon { points at } } }";

e2e!(expiry_follows_fifo_consumption, |app: TestApp| async move {
    let start = app.loyalty.now();
    app.loyalty
        .create_program(loyalty_domain::program::NewProgram {
            external_id: "exp".into(),
            name: "Expiring shop".into(),
            timezone: "UTC".into(),
            currency: "USD".into(),
            points_per_currency: rust_decimal::Decimal::ONE,
            validity_days: Some(30),
        })
        .await
        .unwrap();
    let member = app.token("exp", "member", "m1");
    let admin = app.token("exp", "admin", "boss");
    let id = app
        .gql(
            Some(&member),
            "mutation { register { member { id } } }",
            j!({}),
        )
        .await
        .data()["register"]["member"]["id"]
        .clone();
    let day = |n: i64| start + chrono::Duration::days(n);

    app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "10", "k": "lot1"}))
        .await
        .data(); // expires day 30
    app.clock.set(day(30) - chrono::Duration::hours(1));
    app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "10", "k": "lot2"}))
        .await
        .data(); // expires ~day 60
    app.gql(
        Some(&admin),
        ADJUST,
        j!({"m": id, "a": "-15", "k": "spend"}),
    )
    .await
    .data();
    let me = app.gql(Some(&member), ME, j!({})).await;
    assert_eq!(me.data()["me"]["balance"], "5.00");
    assert_eq!(me.data()["me"]["expiringSoon"]["points"], "5.00");

    app.clock.set(day(31));
    assert_eq!(app.loyalty.expire_due().await.unwrap().to_string(), "0.00");
    let me = app.gql(Some(&member), ME, j!({})).await;
    assert_eq!(me.data()["me"]["balance"], "5.00");

    app.clock.set(day(61));
    assert_eq!(app.loyalty.expire_due().await.unwrap().to_string(), "5.00");
    // A second pass (another instance, a retry) expires nothing more.
    assert_eq!(app.loyalty.expire_due().await.unwrap().to_string(), "0.00");
    let me = app.gql(Some(&member), ME, j!({})).await;
    assert_eq!(me.data()["me"]["balance"], "0.00");
    assert!(me.data()["me"]["expiringSoon"].is_null());
    let history = app
        .gql(
            Some(&member),
            "{ me { transactions(first: 1) { edges { node { kind amount } } } } }",
            j!({}),
        )
        .await;
    assert_eq!(
        history.data()["me"]["transactions"]["edges"][0]["node"]["kind"],
        "EXPIRE"
    );
    assert_eq!(
        history.data()["me"]["transactions"]["edges"][0]["node"]["amount"],
        "-5.00"
    );
    let program = app.loyalty.program("exp").await.unwrap();
    assert!(app
        .loyalty
        .audit(&program)
        .await
        .unwrap()
        .violations
        .is_empty());
});

e2e!(
    concurrent_expiry_passes_expire_each_lot_once,
    |app: TestApp| async move {
        app.demo().await; // validity 365 days
        let (token, _) = app.register("m1").await;
        app.register("m2").await;
        app.clock.advance(chrono::Duration::days(366));
        let passes = futures::future::join_all((0..4).map(|_| app.loyalty.expire_due())).await;
        let total: rust_decimal::Decimal = passes.into_iter().map(|p| p.unwrap().decimal()).sum();
        assert_eq!(total, rust_decimal::Decimal::new(14000, 2)); // 2 × 70
        assert_eq!(app.balance(&token).await, "0.00");
        app.assert_ledger_invariants().await;
    }
);
