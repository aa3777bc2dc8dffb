//! Gifts: no oversell, limits under races, a spend and its redemption are one transaction,
//! cancellations refund exactly, and every refusal has its code.

use futures::future::join_all;
use sea_orm::{ConnectionTrait, Statement};

use crate::e2e;
use crate::helpers::*;

const CREATE: &str = "mutation($i: GiftInput!) { createGift(input: $i) { id name description imageUrl cost stock perMemberLimit inStock archivedAt } }";
const UPDATE: &str = "mutation($id: ID!, $i: GiftInput!) { updateGift(id: $id, input: $i) { id name cost stock perMemberLimit inStock } }";
const ARCHIVE: &str = "mutation($id: ID!) { archiveGift(id: $id) { id archivedAt inStock } }";
pub const REDEEM: &str = "mutation($g: ID!, $k: String!) { redeemGift(giftId: $g, idempotencyKey: $k) { redemption { id gift { id name } status cost origin createdAt } balance transaction { id amount kind purpose refType refId } } }";
const FULFILL: &str = "mutation($id: ID!) { fulfillRedemption(id: $id) { id status } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRedemption(id: $id) { redemption { id status cost } balance transaction { amount kind purpose refType refId } } }";
const MINE: &str =
    "{ myRedemptions(first: 10) { edges { node { id status cost gift { id name } } } } }";
const GIFTS: &str = "{ gifts { id name stock inStock } }";
const ALL_GIFTS: &str = "{ gifts(includeArchived: true) { id name stock inStock archivedAt } }";
pub const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"setup\", idempotencyKey: $k) { balance } }";

/// Creates a gift through the admin API and returns its id.
async fn create_gift(app: &TestApp, input: serde_json::Value) -> String {
    let r = app
        .gql(Some(&app.admin()), CREATE, j!({ "i": input }))
        .await;
    r.data()["createGift"]["id"].as_str().unwrap().to_owned()
}

async fn redeem(app: &TestApp, token: &str, gift: &str, key: &str) -> Gql {
    app.gql(Some(token), REDEEM, j!({"g": gift, "k": key}))
        .await
}

/// One number from SQL (counts, stock).
pub async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.loyalty.db();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn stock(app: &TestApp, gift: &str) -> i64 {
    scalar(
        app,
        &format!("SELECT CAST(stock AS BIGINT) AS n FROM gifts WHERE id = {gift}"),
    )
    .await
}

/// RELIABILITY invariant 7: every gift or discount debit has its redemption or voucher and
/// every bought redemption or voucher has its debit, on top of the ledger invariants.
pub async fn assert_spends_match_purchases(app: &TestApp) {
    for (purpose, table, origin) in [
        ("gift_redemption", "redemptions", "redeem"),
        ("discount", "vouchers", "discount"),
    ] {
        let debits = scalar(
            app,
            &format!(
                "SELECT COUNT(*) AS n FROM ledger_entries WHERE kind = 'SPEND' AND purpose = '{purpose}'"
            ),
        )
        .await;
        let bought = scalar(
            app,
            &format!("SELECT COUNT(*) AS n FROM {table} WHERE origin = '{origin}'"),
        )
        .await;
        let linked = scalar(
            app,
            &format!(
                "SELECT COUNT(*) AS n FROM {table} t JOIN ledger_entries l ON l.id = t.spend_entry_id \
                 WHERE t.origin = '{origin}' AND l.kind = 'SPEND' AND l.purpose = '{purpose}' \
                 AND l.amount_minor = -t.{}",
                if table == "vouchers" { "points_minor" } else { "cost_minor" }
            ),
        )
        .await;
        assert_eq!(debits, bought, "{purpose}: debits vs {table}");
        assert_eq!(
            linked, bought,
            "{purpose}: every {table} row links its debit"
        );
    }
    app.assert_ledger_invariants().await;
}

e2e!(
    stock_race_sells_exactly_the_stock,
    |app: TestApp| async move {
        app.demo().await;
        let gift = create_gift(&app, j!({"name": "Scarce", "cost": "10", "stock": 3})).await;
        let mut members = Vec::new();
        for i in 0..10 {
            members.push(app.register(&format!("m{i}")).await);
        }
        let results = join_all(
            members
                .iter()
                .map(|(token, _)| redeem(&app, token, &gift, "buy")),
        )
        .await;
        let mut winners = 0;
        for ((token, _), r) in members.iter().zip(&results) {
            if r.body.get("errors").is_none() {
                winners += 1;
                assert_eq!(r.data()["redeemGift"]["balance"], "60.00");
                assert_eq!(app.balance(token).await, "60.00");
            } else {
                assert_eq!(r.code(), "OUT_OF_STOCK");
                assert_eq!(app.balance(token).await, "70.00", "losers are not charged");
            }
        }
        assert_eq!(winners, 3);
        assert_eq!(stock(&app, &gift).await, 0);
        assert_eq!(
            scalar(
                &app,
                &format!("SELECT COUNT(*) AS n FROM redemptions WHERE gift_id = {gift}")
            )
            .await,
            3
        );
        let listed = app.gql(Some(&members[0].0), GIFTS, j!({})).await;
        let listed = listed.data()["gifts"].as_array().unwrap().clone();
        let scarce = listed.iter().find(|g| g["id"] == gift.as_str()).unwrap();
        assert_eq!(scarce["inStock"], false);
        assert_eq!(scarce["stock"], 0);
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    per_member_limit_holds_under_a_race,
    |app: TestApp| async move {
        app.demo().await;
        let gift = create_gift(
            &app,
            j!({"name": "Two per member", "cost": "5", "perMemberLimit": 2}),
        )
        .await;
        let (token, _) = app.register("m1").await;
        let results = join_all((0..10).map(|i| {
            let (app, token, gift) = (&app, token.clone(), gift.clone());
            async move { redeem(app, &token, &gift, &format!("k{i}")).await }
        }))
        .await;
        let ok = results
            .iter()
            .filter(|r| r.body.get("errors").is_none())
            .count();
        assert_eq!(ok, 2);
        for r in results.iter().filter(|r| r.body.get("errors").is_some()) {
            assert_eq!(r.code(), "LIMIT_REACHED");
        }
        assert_eq!(app.balance(&token).await, "60.00");
        // Another member has their own allowance.
        let (other, _) = app.register("m2").await;
        redeem(&app, &other, &gift, "k0").await.data();
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(not_enough_points_posts_nothing, |app: TestApp| async move {
    app.demo().await;
    let gift = create_gift(&app, j!({"name": "Pricey", "cost": "70.01", "stock": 5})).await;
    let (token, id) = app.register("m1").await;
    let rows = app.ledger_rows(&id).await;
    let r = redeem(&app, &token, &gift, "k").await;
    assert_eq!(r.code(), "INSUFFICIENT_POINTS");
    assert_eq!(app.ledger_rows(&id).await, rows);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) AS n FROM redemptions").await,
        0
    );
    assert_eq!(stock(&app, &gift).await, 5);
    assert_eq!(app.balance(&token).await, "70.00");
    // Exactly enough is enough.
    app.gql(
        Some(&app.admin()),
        ADJUST,
        j!({"m": id, "a": "0.01", "k": "top-up"}),
    )
    .await
    .data();
    let r = redeem(&app, &token, &gift, "k2").await;
    assert_eq!(r.data()["redeemGift"]["balance"], "0.00");
    assert_eq!(stock(&app, &gift).await, 4);
    assert_spends_match_purchases(&app).await;
});

e2e!(
    cancel_refunds_exactly_and_restocks,
    |app: TestApp| async move {
        app.demo().await;
        let gift = create_gift(
            &app,
            j!({"name": "Mug", "cost": "12.34", "stock": 2, "perMemberLimit": 1}),
        )
        .await;
        let (token, member_id) = app.register("m1").await;
        let admin = app.admin();
        let r = redeem(&app, &token, &gift, "k1").await;
        let bought = r.data()["redeemGift"].clone();
        assert_eq!(bought["balance"], "57.66");
        assert_eq!(bought["redemption"]["status"], "PENDING");
        assert_eq!(bought["redemption"]["cost"], "12.34");
        assert_eq!(bought["redemption"]["origin"], "REDEEM");
        assert_eq!(bought["redemption"]["gift"]["name"], "Mug");
        assert_eq!(bought["transaction"]["amount"], "-12.34");
        assert_eq!(bought["transaction"]["kind"], "SPEND");
        assert_eq!(bought["transaction"]["purpose"], "gift_redemption");
        assert_eq!(bought["transaction"]["refType"], "redemption");
        let redemption = bought["redemption"]["id"].as_str().unwrap().to_owned();
        assert_eq!(bought["transaction"]["refId"], redemption.as_str());
        assert_eq!(stock(&app, &gift).await, 1);
        // The limit of one is taken...
        assert_eq!(
            redeem(&app, &token, &gift, "k2").await.code(),
            "LIMIT_REACHED"
        );

        let c = app.gql(Some(&admin), CANCEL, j!({"id": redemption})).await;
        let c = c.data()["cancelRedemption"].clone();
        assert_eq!(c["redemption"]["status"], "CANCELLED");
        assert_eq!(c["balance"], "70.00");
        assert_eq!(c["transaction"]["amount"], "12.34");
        assert_eq!(c["transaction"]["kind"], "REFUND");
        assert_eq!(c["transaction"]["purpose"], "gift_redemption");
        assert_eq!(c["transaction"]["refId"], redemption.as_str());
        assert_eq!(app.balance(&token).await, "70.00");
        assert_eq!(stock(&app, &gift).await, 2);
        // Cancelling twice refunds once; a cancelled one cannot be fulfilled.
        let again = app.gql(Some(&admin), CANCEL, j!({"id": redemption})).await;
        assert_eq!(again.code(), "VALIDATION");
        let f = app.gql(Some(&admin), FULFILL, j!({"id": redemption})).await;
        assert_eq!(f.code(), "VALIDATION");
        assert_eq!(app.balance(&token).await, "70.00");

        // ...and freed by the cancellation.
        let r = redeem(&app, &token, &gift, "k3").await;
        let second = r.data()["redeemGift"]["redemption"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let f = app.gql(Some(&admin), FULFILL, j!({"id": second})).await;
        assert_eq!(f.data()["fulfillRedemption"]["status"], "FULFILLED");
        let f = app.gql(Some(&admin), FULFILL, j!({"id": second})).await;
        assert_eq!(f.code(), "VALIDATION");
        let c = app.gql(Some(&admin), CANCEL, j!({"id": second})).await;
        assert_eq!(c.code(), "VALIDATION");
        assert_eq!(app.balance(&token).await, "57.66");

        let mine = app.gql(Some(&token), MINE, j!({})).await;
        let edges = mine.data()["myRedemptions"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        let statuses: Vec<_> = edges.iter().map(|e| e["node"]["status"].clone()).collect();
        assert_eq!(statuses, vec![j!("FULFILLED"), j!("CANCELLED")]);
        let listed = app
            .gql(
                Some(&admin),
                "{ redemptions(status: CANCELLED) { edges { node { id memberId } } } }",
                j!({}),
            )
            .await;
        let listed = listed.data()["redemptions"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["node"]["id"], redemption.as_str());
        assert_eq!(listed[0]["node"]["memberId"], member_id.as_str());
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    archived_gifts_cannot_be_redeemed,
    |app: TestApp| async move {
        app.demo().await;
        let gift = create_gift(&app, j!({"name": "Retired", "cost": "1"})).await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        let a = app.gql(Some(&admin), ARCHIVE, j!({"id": gift})).await;
        assert!(a.data()["archiveGift"]["archivedAt"].is_string());
        assert_eq!(a.data()["archiveGift"]["inStock"], false);
        // Archiving twice keeps the first time.
        let again = app.gql(Some(&admin), ARCHIVE, j!({"id": gift})).await;
        assert_eq!(
            again.data()["archiveGift"]["archivedAt"],
            a.data()["archiveGift"]["archivedAt"]
        );
        let listed = app.gql(Some(&token), GIFTS, j!({})).await;
        assert!(!listed.data()["gifts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == gift.as_str()));
        let all = app.gql(Some(&admin), ALL_GIFTS, j!({})).await;
        assert!(all.data()["gifts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == gift.as_str() && g["archivedAt"].is_string()));
        assert_eq!(
            app.gql(Some(&token), ALL_GIFTS, j!({})).await.code(),
            "FORBIDDEN"
        );
        let rows = app.ledger_rows(&id).await;
        // An archived gift is known but withdrawn: VALIDATION (an unknown id is NOT_FOUND).
        assert_eq!(redeem(&app, &token, &gift, "k").await.code(), "VALIDATION");
        assert_eq!(
            redeem(&app, &token, "999999", "k2").await.code(),
            "NOT_FOUND"
        );
        assert_eq!(redeem(&app, &token, "abc", "k3").await.code(), "NOT_FOUND");
        assert_eq!(app.ledger_rows(&id).await, rows);
        let u = app
            .gql(
                Some(&admin),
                UPDATE,
                j!({"id": gift, "i": {"name": "Back", "cost": "1"}}),
            )
            .await;
        assert_eq!(u.code(), "VALIDATION");
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    gifts_are_created_updated_and_listed,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let r = app
            .gql(
                Some(&admin),
                CREATE,
                j!({"i": {"name": " Poster ", "description": "A1 print", "imageUrl": "https://cdn.example/p.png", "cost": "25.50", "stock": 1, "perMemberLimit": 3}}),
            )
            .await;
        let g = r.data()["createGift"].clone();
        assert_eq!(g["name"], "Poster");
        assert_eq!(g["description"], "A1 print");
        assert_eq!(g["imageUrl"], "https://cdn.example/p.png");
        assert_eq!(g["cost"], "25.50");
        assert_eq!(g["stock"], 1);
        assert_eq!(g["perMemberLimit"], 3);
        assert_eq!(g["inStock"], true);
        let id = g["id"].as_str().unwrap().to_owned();
        let u = app
            .gql(
                Some(&admin),
                UPDATE,
                j!({"id": id, "i": {"name": "Poster XL", "cost": "30", "stock": 0}}),
            )
            .await;
        let u = u.data()["updateGift"].clone();
        assert_eq!(u["name"], "Poster XL");
        assert_eq!(u["cost"], "30.00");
        assert_eq!(u["stock"], 0);
        assert_eq!(u["perMemberLimit"], serde_json::Value::Null);
        assert_eq!(u["inStock"], false);
        let (token, _) = app.register("m1").await;
        assert_eq!(redeem(&app, &token, &id, "k").await.code(), "OUT_OF_STOCK");
        // The demo catalogue is there too, and members see it.
        let listed = app.gql(Some(&token), GIFTS, j!({})).await;
        let names: Vec<_> = listed.data()["gifts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(names.contains(&"Free coffee".to_owned()), "{names:?}");
        assert!(names.contains(&"Poster XL".to_owned()), "{names:?}");
        for bad in [
            j!({"name": "", "cost": "1"}),
            j!({"name": "x", "cost": "0"}),
            j!({"name": "x", "cost": "1.001"}),
            j!({"name": "x", "cost": "1", "stock": -1}),
            j!({"name": "x", "cost": "1", "perMemberLimit": 0}),
            j!({"name": "x", "cost": "1", "imageUrl": "javascript:alert(1)"}),
        ] {
            let r = app.gql(Some(&admin), CREATE, j!({ "i": bad })).await;
            assert_eq!(r.code(), "VALIDATION", "{bad}");
        }
        assert_eq!(
            app.gql(
                Some(&admin),
                UPDATE,
                j!({"id": "424242", "i": {"name": "x", "cost": "1"}})
            )
            .await
            .code(),
            "NOT_FOUND"
        );
    }
);

e2e!(
    gift_operations_check_roles_and_programs,
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
        let gift = create_gift(&app, j!({"name": "Ours", "cost": "1", "stock": 3})).await;
        let (token, _) = app.register("m1").await;
        let r = redeem(&app, &token, &gift, "k").await;
        let redemption = r.data()["redeemGift"]["redemption"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let input = j!({"name": "x", "cost": "1"});
        let admin_ops = [
            (CREATE, j!({ "i": input })),
            (UPDATE, j!({"id": gift, "i": input})),
            (ARCHIVE, j!({"id": gift})),
            (FULFILL, j!({"id": redemption})),
            (CANCEL, j!({"id": redemption})),
            ("{ redemptions { edges { node { id } } } }", j!({})),
        ];
        for caller in [token.clone(), app.service()] {
            for (query, vars) in &admin_ops {
                let r = app.gql(Some(&caller), query, vars.clone()).await;
                assert_eq!(r.code(), "FORBIDDEN", "{query}");
            }
        }
        // Another program's admin sees none of it.
        let other_admin = app.token("other", "admin", "bob");
        for (query, vars) in &admin_ops[1..5] {
            let r = app.gql(Some(&other_admin), query, vars.clone()).await;
            assert_eq!(r.code(), "NOT_FOUND", "{query}");
        }
        let r = app
            .gql(
                Some(&other_admin),
                "{ redemptions { edges { node { id } } } }",
                j!({}),
            )
            .await;
        assert_eq!(
            r.data()["redemptions"]["edges"].as_array().unwrap().len(),
            0
        );
        let r = app.gql(Some(&other_admin), ALL_GIFTS, j!({})).await;
        assert_eq!(r.data()["gifts"].as_array().unwrap().len(), 0);
        // Another program's member cannot redeem our gift.
        let stranger = app.token("other", "member", "m1");
        app.gql(Some(&stranger), "mutation { register { created } }", j!({}))
            .await
            .data();
        assert_eq!(
            redeem(&app, &stranger, &gift, "k").await.code(),
            "NOT_FOUND"
        );
        // Redeeming is for members; their history is their own.
        assert_eq!(
            redeem(&app, &app.service(), &gift, "k").await.code(),
            "FORBIDDEN"
        );
        assert_eq!(
            redeem(&app, &app.admin(), &gift, "k").await.code(),
            "FORBIDDEN"
        );
        let (other_member, _) = app.register("m2").await;
        let mine = app.gql(Some(&other_member), MINE, j!({})).await;
        assert_eq!(
            mine.data()["myRedemptions"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        assert_eq!(stock(&app, &gift).await, 2);
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    redeem_is_idempotent_and_refusals_are_replayed,
    |app: TestApp| async move {
        app.demo().await;
        let gift = create_gift(&app, j!({"name": "Last one", "cost": "10", "stock": 1})).await;
        let other_gift = create_gift(&app, j!({"name": "Other", "cost": "10"})).await;
        let (a, a_id) = app.register("a").await;
        let (b, _) = app.register("b").await;
        let first = redeem(&app, &a, &gift, "ka").await;
        let rows = app.ledger_rows(&a_id).await;
        let retry = redeem(&app, &a, &gift, "ka").await;
        assert_eq!(first.data(), retry.data());
        app.flush_redis().await;
        let retry = redeem(&app, &a, &gift, "ka").await;
        assert_eq!(first.data(), retry.data());
        assert_eq!(app.ledger_rows(&a_id).await, rows);
        assert_eq!(
            redeem(&app, &a, &other_gift, "ka").await.code(),
            "IDEMPOTENCY_KEY_REUSED"
        );
        assert_eq!(app.balance(&a).await, "60.00");
        // B is refused; after A's redemption is cancelled, B's retry still sees the refusal.
        assert_eq!(redeem(&app, &b, &gift, "kb").await.code(), "OUT_OF_STOCK");
        let redemption = first.data()["redeemGift"]["redemption"]["id"].clone();
        app.gql(Some(&app.admin()), CANCEL, j!({"id": redemption}))
            .await
            .data();
        assert_eq!(stock(&app, &gift).await, 1);
        assert_eq!(redeem(&app, &b, &gift, "kb").await.code(), "OUT_OF_STOCK");
        redeem(&app, &b, &gift, "kb-2").await.data();
        assert_eq!(stock(&app, &gift).await, 0);
        assert_spends_match_purchases(&app).await;
    }
);

e2e!(
    me_shows_what_the_admin_member_view_shows,
    |app: TestApp| async move {
        // `me` reads the member, its balances and its posting counter in one statement; the
        // admin's `members` reads them separately: every field must agree, spends included.
        app.demo().await;
        let (token, id) = app.register("m1").await; // 70
        app.daily_login(&token, "login").await; // +5
        let gift = create_gift(&app, j!({"name": "Mug", "cost": "12.50"})).await;
        assert_eq!(
            redeem(&app, &token, &gift, "mug").await.data()["redeemGift"]["balance"],
            "62.50"
        );
        const FIELDS: &str = "id externalId balance qualificationBalance lifetimeEarned lifetimeSpent freeSpins loginStreak version";
        let me = app
            .gql(Some(&token), &format!("{{ me {{ {FIELDS} }} }}"), j!({}))
            .await;
        let me = &me.data()["me"];
        assert_eq!(me["balance"], "62.50");
        assert_eq!(me["lifetimeEarned"], "75.00");
        assert_eq!(me["lifetimeSpent"], "12.50");
        assert!(me["version"].as_i64().unwrap() >= 3, "{me}");
        let page = app
            .gql(
                Some(&app.admin()),
                &format!("{{ members(first: 100) {{ edges {{ node {{ {FIELDS} }} }} }} }}"),
                j!({}),
            )
            .await;
        let node = page.data()["members"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| &edge["node"])
            .find(|node| node["id"] == id.as_str())
            .unwrap()
            .clone();
        assert_eq!(me, &node);
        let unknown = app
            .gql(
                Some(&app.token("demo", "member", "nobody")),
                "{ me { balance } }",
                j!({}),
            )
            .await;
        assert_eq!(unknown.data()["me"], serde_json::Value::Null);
    }
);
