//! Exactly-once: one key, one posting; reuse with other arguments refused; Redis optional.

use futures::future::join_all;

use crate::e2e;
use crate::helpers::*;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"goodwill\", idempotencyKey: $k) { awarded balance transaction { id amount } } }";
const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded balance transaction { id } } }";

e2e!(
    fifty_identical_requests_post_once,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let rows_before = app.ledger_rows(&id).await;
        let admin = app.admin();
        let results = join_all((0..50).map(|_| {
            app.gql(
                Some(&admin),
                ADJUST,
                j!({"m": id, "a": "10.50", "k": "adj-1"}),
            )
        }))
        .await;
        let ok: Vec<_> = results
            .iter()
            .filter(|r| r.body.get("errors").is_none())
            .collect();
        for r in results.iter().filter(|r| r.body.get("errors").is_some()) {
            assert_eq!(r.code(), "CONFLICT");
        }
        assert!(!ok.is_empty());
        let tx_ids: std::collections::HashSet<_> = ok
            .iter()
            .map(|r| r.data()["adjustPoints"]["transaction"]["id"].clone())
            .collect();
        assert_eq!(tx_ids.len(), 1, "every success is the one stored result");
        assert_eq!(ok[0].data()["adjustPoints"]["balance"], "80.50");
        assert_eq!(app.ledger_rows(&id).await, rows_before + 1);
        assert_eq!(app.balance(&token).await, "80.50");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    same_key_other_arguments_is_refused,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "5", "k": "k1"}))
            .await
            .data();
        let reused = app
            .gql(Some(&admin), ADJUST, j!({"m": id, "a": "6", "k": "k1"}))
            .await;
        assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
        app.flush_redis().await;
        let reused = app
            .gql(Some(&admin), ADJUST, j!({"m": id, "a": "6", "k": "k1"}))
            .await;
        assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(app.balance(&token).await, "75.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_retry_after_redis_is_flushed_posts_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let service = app.service();
        let input = j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "100.00", "idempotencyKey": "p-1"}});
        let first = app.gql(Some(&service), PURCHASE, input.clone()).await;
        app.flush_redis().await;
        let retry = app.gql(Some(&service), PURCHASE, input).await;
        assert_eq!(first.data(), retry.data());
        // 70 + 5% of 100 × 10 points per unit
        assert_eq!(app.balance(&token).await, "120.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(stored_refusals_are_replayed, |app: TestApp| async move {
    app.demo().await;
    let (token, id) = app.register("m1").await;
    let admin = app.admin();
    let over = app
        .gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "-100", "k": "take"}),
        )
        .await;
    assert_eq!(over.code(), "INSUFFICIENT_POINTS");
    // Enough points now, but the key already answered.
    app.gql(Some(&admin), ADJUST, j!({"m": id, "a": "100", "k": "give"}))
        .await
        .data();
    let again = app
        .gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "-100", "k": "take"}),
        )
        .await;
    assert_eq!(again.code(), "INSUFFICIENT_POINTS");
    assert_eq!(app.balance(&token).await, "170.00");
    app.assert_ledger_invariants().await;
});

e2e!(keys_are_scoped_to_their_caller, |app: TestApp| async move {
    app.demo().await;
    let (a, _) = app.register("a").await;
    let (b, _) = app.register("b").await;
    let q = "mutation($k: String) { recordAction(input: {action: \"product_view\", objectId: \"p1\", idempotencyKey: $k}) { awarded balance } }";
    let ra = app.gql(Some(&a), q, j!({"k": "same"})).await;
    let rb = app.gql(Some(&b), q, j!({"k": "same"})).await;
    assert_eq!(ra.data()["recordAction"]["awarded"], true);
    assert_eq!(rb.data()["recordAction"]["awarded"], true);
    assert_eq!(app.balance(&a).await, "72.00");
    assert_eq!(app.balance(&b).await, "72.00");
});

e2e!(
    parallel_earns_and_spends_add_up,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        // 70 to start; 30 × +2 and 30 × −3 race; some spends may be refused, never overdrawn.
        let results = join_all((0..60).map(|i| {
            let (app, admin, id) = (&app, admin.clone(), id.clone());
            async move {
                let amount = if i % 2 == 0 { "2" } else { "-3" };
                (
                    amount,
                    app.gql(
                        Some(&admin),
                        ADJUST,
                        j!({"m": id, "a": amount, "k": format!("k{i}")}),
                    )
                    .await,
                )
            }
        }))
        .await;
        let mut expected = 7000i64;
        for (amount, r) in &results {
            if r.body.get("errors").is_none() {
                expected += if *amount == "2" { 200 } else { -300 };
            } else {
                assert_eq!(r.code(), "INSUFFICIENT_POINTS");
            }
        }
        let balance: rust_decimal::Decimal = app.balance(&token).await.parse().unwrap();
        assert_eq!(balance, rust_decimal::Decimal::new(expected, 2));
        assert!(expected >= 0);
        app.assert_ledger_invariants().await;
        let _ = id;
    }
);

e2e!(
    idempotency_records_are_kept_for_the_retention_window,
    |app: TestApp| async move {
        app.demo().await;
        let (_, id) = app.register("m1").await;
        let admin = app.admin();
        let first = app
            .gql(Some(&admin), ADJUST, j!({"m": id, "a": "1", "k": "kept"}))
            .await;
        app.clock.advance(chrono::Duration::days(6));
        let retention = loyalty_domain::service::IDEMPOTENCY_RETENTION;
        assert_eq!(app.loyalty.purge_idempotency(retention).await.unwrap(), 0);
        app.flush_redis().await;
        let retry = app
            .gql(Some(&admin), ADJUST, j!({"m": id, "a": "1", "k": "kept"}))
            .await;
        assert_eq!(first.data(), retry.data());
        app.clock.advance(chrono::Duration::days(2));
        assert_eq!(app.loyalty.purge_idempotency(retention).await.unwrap(), 1);
        app.assert_ledger_invariants().await;
    }
);
