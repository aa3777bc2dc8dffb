//! Tiers follow the qualification balance up and down and multiply earnings.

use crate::e2e;
use crate::helpers::*;

const UPSERT: &str = "mutation($i: TierInput!) { upsertTier(input: $i) { id name } }";
const ME: &str = "{ me { balance qualificationBalance tier { name multiplier } } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";

e2e!(
    tiers_follow_qualification_and_multiply_earnings,
    |app: TestApp| async move {
        app.demo().await; // the demo purchase rule is qualifying: 5% × 10 points per unit
        let admin = app.admin();
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"name": "Silver", "minQualification": "0", "multiplier": "1"}}),
        )
        .await
        .data();
        let gold = app
            .gql(
                Some(&admin),
                UPSERT,
                j!({"i": {"name": "Gold", "minQualification": "100", "multiplier": "2"}}),
            )
            .await;
        let gold_id = gold.data()["upsertTier"]["id"].clone();
        let (token, _) = app.register("m1").await;
        let me = app.gql(Some(&token), ME, j!({})).await;
        assert_eq!(me.data()["me"]["tier"]["name"], "Silver");

        let service = app.service();
        let order = j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "200.00", "idempotencyKey": "p1"}});
        assert_eq!(
            app.gql(Some(&service), PURCHASE, order).await.data()["recordPurchase"]
                ["pointsAwarded"],
            "100.00"
        );
        let me = app.gql(Some(&token), ME, j!({})).await;
        assert_eq!(me.data()["me"]["qualificationBalance"], "100.00");
        assert_eq!(me.data()["me"]["tier"]["name"], "Gold");
        // Gold doubles the daily login (5 → 10).
        assert_eq!(
            app.daily_login(&token, "d1").await.data()["recordAction"]["points"],
            "10.00"
        );

        // A refund takes qualification back: the member drops to Silver.
        let refund = "mutation { refundPurchase(orderId: \"o1\", amount: \"100.00\", idempotencyKey: \"r1\") { pointsReversed } }";
        assert_eq!(
            app.gql(Some(&service), refund, j!({})).await.data()["refundPurchase"]
                ["pointsReversed"],
            "50.00"
        );
        let me = app.gql(Some(&token), ME, j!({})).await;
        assert_eq!(me.data()["me"]["qualificationBalance"], "50.00");
        assert_eq!(me.data()["me"]["tier"]["name"], "Silver");
        assert_eq!(me.data()["me"]["balance"], "130.00"); // 70 + 100 + 10 − 50

        // Lowering Gold's threshold re-places members at once.
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"id": gold_id, "name": "Gold", "minQualification": "50", "multiplier": "2"}}),
        )
        .await
        .data();
        assert_eq!(
            app.gql(Some(&token), ME, j!({})).await.data()["me"]["tier"]["name"],
            "Gold"
        );
        app.gql(
            Some(&admin),
            "mutation($id: ID!) { deleteTier(id: $id) { name } }",
            j!({"id": gold_id}),
        )
        .await
        .data();
        assert_eq!(
            app.gql(Some(&token), ME, j!({})).await.data()["me"]["tier"]["name"],
            "Silver"
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(tier_refusals_have_exact_codes, |app: TestApp| async move {
    app.demo().await;
    let admin = app.admin();
    app.gql(
        Some(&admin),
        UPSERT,
        j!({"i": {"name": "Base", "minQualification": "0", "multiplier": "1"}}),
    )
    .await
    .data();
    for input in [
        j!({"name": "", "minQualification": "0", "multiplier": "1"}),
        j!({"name": "x", "minQualification": "-1", "multiplier": "1"}),
        j!({"name": "x", "minQualification": "5", "multiplier": "0"}),
        j!({"name": "x", "minQualification": "5", "multiplier": "1.001"}),
        j!({"name": "Dup", "minQualification": "0", "multiplier": "1"}),
    ] {
        assert_eq!(
            app.gql(Some(&admin), UPSERT, j!({"i": input})).await.code(),
            "VALIDATION",
            "{input}"
        );
    }
    let (member, _) = app.register("m1").await;
    assert_eq!(
        app.gql(
            Some(&member),
            UPSERT,
            j!({"i": {"name": "x", "minQualification": "1", "multiplier": "1"}})
        )
        .await
        .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.gql(Some(&member), "{ tiers { name } }", j!({}))
            .await
            .code(),
        "FORBIDDEN"
    );
    let other = app.token("other", "admin", "x");
    assert_eq!(
        app.gql(
            Some(&admin),
            "mutation { deleteTier(id: \"999\") { name } }",
            j!({})
        )
        .await
        .code(),
        "NOT_FOUND"
    );
    assert_eq!(
        app.gql(Some(&other), "{ tiers { name } }", j!({}))
            .await
            .code(),
        "NOT_FOUND"
    );
});

/// A purchase for `m1` on `app`; its points.
async fn purchase(app: &TestApp, order: &str, amount: &str) -> String {
    let input = j!({"i": {"memberExternalId": "m1", "orderId": order, "amount": amount, "idempotencyKey": order}});
    let paid = app.gql(Some(&app.service()), PURCHASE, input).await;
    paid.data()["recordPurchase"]["pointsAwarded"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn tier_of(app: &TestApp, token: &str) -> serde_json::Value {
    app.gql(Some(token), ME, j!({})).await.data()["me"]["tier"]["name"].clone()
}

// Postings place members from a tier ladder each instance caches; a tier change must reach the
// very next posting on the instance that made it, and (through the bus) on the others.
e2e!(
    the_posting_after_a_tier_change_places_by_the_new_tiers,
    |app: TestApp| async move {
        app.demo().await; // purchases qualify: 5% × 10 points per unit
        let admin = app.admin();
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"name": "Silver", "minQualification": "0", "multiplier": "1"}}),
        )
        .await
        .data();
        let gold = app
            .gql(
                Some(&admin),
                UPSERT,
                j!({"i": {"name": "Gold", "minQualification": "100", "multiplier": "2"}}),
            )
            .await;
        let gold_id = gold.data()["upsertTier"]["id"].clone();
        let (token, _) = app.register("m1").await;
        // This posting places the member, so the instance now holds the ladder 0 / 100.
        assert_eq!(purchase(&app, "o1", "100.00").await, "50.00");
        assert_eq!(tier_of(&app, &token).await, "Silver");

        // Gold from 60: the member (50) stays Silver, the next qualifying posting (60) is Gold.
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"id": gold_id, "name": "Gold", "minQualification": "60", "multiplier": "2"}}),
        )
        .await
        .data();
        assert_eq!(tier_of(&app, &token).await, "Silver");
        assert_eq!(purchase(&app, "o2", "20.00").await, "10.00");
        assert_eq!(tier_of(&app, &token).await, "Gold");
        // And Gold's multiplier applies from the posting after it (5 → 10).
        assert_eq!(
            app.daily_login(&token, "d1").await.data()["recordAction"]["points"],
            "10.00"
        );
        // A new multiplier applies to the very next posting.
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"id": gold_id, "name": "Gold", "minQualification": "60", "multiplier": "3"}}),
        )
        .await
        .data();
        assert_eq!(purchase(&app, "o3", "20.00").await, "30.00"); // qualification 90

        // Gold deleted and a Platinum from 100 created: the member drops to Silver at once, and
        // the next posting (90 + 10) reaches Platinum, never the deleted Gold.
        app.gql(
            Some(&admin),
            "mutation($id: ID!) { deleteTier(id: $id) { name } }",
            j!({"id": gold_id}),
        )
        .await
        .data();
        assert_eq!(tier_of(&app, &token).await, "Silver");
        app.gql(
            Some(&admin),
            UPSERT,
            j!({"i": {"name": "Platinum", "minQualification": "100", "multiplier": "4"}}),
        )
        .await
        .data();
        assert_eq!(purchase(&app, "o4", "20.00").await, "10.00");
        let me = app.gql(Some(&token), ME, j!({})).await;
        assert_eq!(me.data()["me"]["qualificationBalance"], "100.00");
        assert_eq!(me.data()["me"]["tier"]["name"], "Platinum");
        assert_eq!(me.data()["me"]["tier"]["multiplier"], "4.00");

        if app.backend == Backend::Postgres {
            // A second instance that cached the ladder (its own posting placed the member)
            // follows a change made on the first through the bus.
            let other = spawn_app_at(app.backend, Some(&app), None).await;
            assert_eq!(purchase(&other, "o5", "20.00").await, "40.00"); // 140, Platinum × 4
            assert_eq!(tier_of(&other, &token).await, "Platinum");
            let tiers = app.gql(Some(&admin), "{ tiers { id name } }", j!({})).await;
            let platinum_id = tiers.data()["tiers"][1]["id"].clone();
            assert_eq!(tiers.data()["tiers"][1]["name"], "Platinum");
            // Platinum from 150: the member (140) drops to Silver; renamed so the other
            // instance shows when it dropped its ladder (bounded wait, no timing claim).
            app.gql(
                Some(&admin),
                UPSERT,
                j!({"i": {"id": platinum_id, "name": "Diamond", "minQualification": "150", "multiplier": "4"}}),
            )
            .await
            .data();
            assert_eq!(tier_of(&app, &token).await, "Silver");
            let silver_id = tiers.data()["tiers"][0]["id"].clone();
            app.gql(
                Some(&admin),
                UPSERT,
                j!({"i": {"id": silver_id, "name": "Argent", "minQualification": "0", "multiplier": "1"}}),
            )
            .await
            .data();
            let mut seen = serde_json::Value::Null;
            for _ in 0..100 {
                seen = tier_of(&other, &token).await;
                if seen == "Argent" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(seen, "Argent");
            // 140 + 10 reaches Diamond's 150 on the other instance too.
            assert_eq!(purchase(&other, "o6", "20.00").await, "10.00");
            assert_eq!(tier_of(&other, &token).await, "Diamond");
        }
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    next_tier_is_the_lowest_tier_above_the_qualification_balance,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let next =
            "{ me { qualificationBalance tier { name } nextTier { name minQualification } } }";
        // No tiers: nothing to reach.
        let me = app.gql(Some(&token), next, j!({})).await;
        assert_eq!(me.data()["me"]["nextTier"], serde_json::Value::Null);

        let admin = app.admin();
        for (name, min) in [("Gold", "100"), ("Silver", "0"), ("Platinum", "500")] {
            app.gql(
                Some(&admin),
                UPSERT,
                j!({"i": {"name": name, "minQualification": min, "multiplier": "1"}}),
            )
            .await
            .data();
        }
        let me = app.gql(Some(&token), next, j!({})).await;
        assert_eq!(me.data()["me"]["tier"]["name"], "Silver");
        assert_eq!(
            me.data()["me"]["nextTier"],
            j!({"name": "Gold", "minQualification": "100.00"})
        );

        // 1,000.00 × 5 % × 10 = 500 qualification points: the top tier, nothing next.
        let order = j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "1000.00", "idempotencyKey": "p1"}});
        app.gql(Some(&app.service()), PURCHASE, order).await.data();
        let me = app.gql(Some(&token), next, j!({})).await;
        assert_eq!(me.data()["me"]["qualificationBalance"], "500.00");
        assert_eq!(me.data()["me"]["tier"]["name"], "Platinum");
        assert_eq!(me.data()["me"]["nextTier"], serde_json::Value::Null);
        app.assert_ledger_invariants().await;
    }
);
