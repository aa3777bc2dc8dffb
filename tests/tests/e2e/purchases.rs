//! Purchases accrue exactly; refunds reverse proportionally and never overdraw.

use crate::e2e;
use crate::helpers::*;

const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance transaction { source refType refId } } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal!, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { pointsReversed pointsUnrecovered totalRefunded balance transaction { kind source amount } } }";
const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"test\", idempotencyKey: $k) { balance } }";

fn purchase(order: &str, amount: &str) -> serde_json::Value {
    j!({"i": {"memberExternalId": "m1", "orderId": order, "amount": amount, "idempotencyKey": format!("key-{order}")}})
}

e2e!(
    accrual_is_exact_and_refunds_reverse_proportionally,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        // 123.45 × 5% × 10 = 61.725 → 61.72 (half to even)
        let r = app
            .gql(Some(&service), PURCHASE, purchase("o-1", "123.45"))
            .await;
        assert_eq!(r.data()["recordPurchase"]["pointsAwarded"], "61.72");
        assert_eq!(r.data()["recordPurchase"]["balance"], "131.72");
        assert_eq!(
            r.data()["recordPurchase"]["transaction"]["source"],
            "purchase"
        );
        assert_eq!(r.data()["recordPurchase"]["transaction"]["refId"], "o-1");
        assert_eq!(app.balance(&token).await, "131.72");
        // Refund a third: 61.72 × 41.15 / 123.45 = 20.5733… → 20.57
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "41.15", "k": "r1"}),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "20.57");
        assert_eq!(r.data()["refundPurchase"]["balance"], "111.15");
        assert_eq!(
            r.data()["refundPurchase"]["transaction"]["kind"],
            "REVERSAL"
        );
        assert_eq!(
            r.data()["refundPurchase"]["transaction"]["source"],
            "purchase"
        );
        // Retry of the same refund: the stored result, nothing reversed twice.
        let retry = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "41.15", "k": "r1"}),
            )
            .await;
        assert_eq!(retry.data(), r.data());
        // The rest: exactly the remainder of the accrual comes back.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "82.30", "k": "r2"}),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "41.15");
        assert_eq!(r.data()["refundPurchase"]["totalRefunded"], "123.45");
        assert_eq!(app.balance(&token).await, "70.00");
        // Nothing left to refund.
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "0.01", "k": "r3"}),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    refund_after_spending_never_overdraws,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let service = app.service();
        app.gql(Some(&service), PURCHASE, purchase("o-1", "100.00"))
            .await
            .data(); // +50
        let admin = app.admin();
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "-110", "k": "spend"}),
        )
        .await
        .data();
        assert_eq!(app.balance(&token).await, "10.00");
        let r = app
            .gql(
                Some(&service),
                REFUND,
                j!({"o": "o-1", "a": "100.00", "k": "r"}),
            )
            .await;
        assert_eq!(r.data()["refundPurchase"]["pointsReversed"], "10.00");
        assert_eq!(r.data()["refundPurchase"]["pointsUnrecovered"], "40.00");
        assert_eq!(r.data()["refundPurchase"]["balance"], "0.00");
        assert_eq!(app.balance(&token).await, "0.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    purchase_refusals_have_exact_codes,
    |app: TestApp| async move {
        app.demo().await;
        app.register("m1").await;
        let service = app.service();
        let member = app.member("m1");
        assert_eq!(
            app.gql(Some(&member), PURCHASE, purchase("o", "1"))
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            app.gql(Some(&app.admin()), PURCHASE, purchase("o", "1"))
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            app.gql(Some(&service), PURCHASE, purchase("o", "-1"))
                .await
                .code(),
            "VALIDATION"
        );
        assert_eq!(
            app.gql(Some(&service), PURCHASE, purchase("o", "1.001"))
                .await
                .code(),
            "VALIDATION"
        );
        assert_eq!(
            app.gql(Some(&service), PURCHASE, purchase("", "1"))
                .await
                .code(),
            "VALIDATION"
        );
        app.gql(Some(&service), PURCHASE, purchase("o", "10"))
            .await
            .data();
        let again = j!({"i": {"memberExternalId": "m1", "orderId": "o", "amount": "10", "idempotencyKey": "other"}});
        assert_eq!(
            app.gql(Some(&service), PURCHASE, again).await.code(),
            "ALREADY_CLAIMED"
        );
        assert_eq!(
            app.gql(Some(&service), REFUND, j!({"o": "nope", "a": "1"}))
                .await
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(
            app.gql(Some(&member), REFUND, j!({"o": "o", "a": "1"}))
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(app.balance(&member).await, "75.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(decimals_stay_exact, |app: TestApp| async move {
    app.demo().await;
    let (token, id) = app.register("m1").await;
    let admin = app.admin();
    app.gql(
        Some(&admin),
        ADJUST,
        j!({"m": id, "a": "12345678901.23", "k": "big"}),
    )
    .await
    .data();
    for i in 0..7 {
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "0.01", "k": format!("c{i}")}),
        )
        .await
        .data();
    }
    app.gql(
        Some(&admin),
        ADJUST,
        j!({"m": id, "a": "-0.03", "k": "minus"}),
    )
    .await
    .data();
    assert_eq!(app.balance(&token).await, "12345678971.27");
    app.assert_ledger_invariants().await;
});

e2e!(
    debits_consume_lots_first_expiring_first,
    |app: TestApp| async move {
        app.demo().await; // validity 365 days
        let (token, id) = app.register("m1").await; // lots: 20 (join), 50 (registration)
        let admin = app.admin();
        app.clock.advance(chrono::Duration::days(10));
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "30", "k": "later-lot"}),
        )
        .await
        .data();
        // 80 of 100: the two oldest lots (70) go first, then 10 of the newer one.
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "-80", "k": "spend"}),
        )
        .await
        .data();
        use sea_orm::ConnectionTrait;
        let db = app.loyalty.db();
        let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT amount_minor, remaining_minor FROM ledger_entries WHERE member_id = {id} AND remaining_minor IS NOT NULL ORDER BY id"),
        ))
        .await
        .unwrap();
        let lots: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "amount_minor").unwrap(),
                    r.try_get("", "remaining_minor").unwrap(),
                )
            })
            .collect();
        assert_eq!(lots, [(2000, 0), (5000, 0), (3000, 2000)]);
        assert_eq!(app.balance(&token).await, "20.00");
        app.assert_ledger_invariants().await;
    }
);
