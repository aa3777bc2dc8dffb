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
