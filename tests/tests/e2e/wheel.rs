//! The lucky wheel over HTTP: odds, provable fairness, races on balance, daily limit and stock.

use futures::future::join_all;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::e2e;
use crate::helpers::*;

const UPSERT: &str = "mutation($i: WheelInput!) { upsertWheel(input: $i) { id totalWeight segments { id label probability available } } }";
const WHEELS: &str = "{ wheels { id spinsLeftToday commitment totalWeight segments { id label weight probability available stock } } }";
const SPIN: &str = "mutation($w: ID!, $c: String!, $k: String!) { spinWheel(wheelId: $w, clientSeed: $c, idempotencyKey: $k) { spinId cost balance nextCommitment segment { id label prize { kind points } } proof { serverSeed serverSeedHash clientSeed nonce drawSegmentIds drawWeights } } }";
const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"setup\", idempotencyKey: $k) { balance } }";

/// The wheel with `id` in a `wheels` answer (the demo program has its own wheel too).
fn by_id<'a>(answer: &'a Gql, id: &str) -> &'a serde_json::Value {
    answer.data()["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap()
}

fn segment(
    label: &str,
    weight: u64,
    prize: &str,
    points: Option<&str>,
    stock: Option<i64>,
) -> serde_json::Value {
    j!({"label": label, "weight": weight, "prize": prize, "points": points, "stock": stock})
}

async fn wheel(app: &TestApp, cost: &str, limit: u32, segments: Vec<serde_json::Value>) -> String {
    let input = j!({"i": {"name": "Lucky", "spinCost": cost, "dailySpinLimit": limit, "segments": segments}});
    let r = app.gql(Some(&app.admin()), UPSERT, input).await;
    r.data()["upsertWheel"]["id"].as_str().unwrap().to_owned()
}

/// Anyone's recomputation, from the published algorithm (README).
fn recompute(seed_hex: &str, client_seed: &str, nonce: u64, weights: &[u64]) -> usize {
    let seed = hex::decode(seed_hex).unwrap();
    let total: u64 = weights.iter().sum();
    let zone = u64::MAX - (u64::MAX % total + 1) % total;
    for round in 0u64.. {
        let message = if round == 0 {
            format!("{client_seed}:{nonce}")
        } else {
            format!("{client_seed}:{nonce}:{round}")
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&seed).unwrap();
        mac.update(message.as_bytes());
        for chunk in mac.finalize().into_bytes().chunks_exact(8) {
            let value = u64::from_be_bytes(chunk.try_into().unwrap());
            if value <= zone {
                let r = value % total;
                let mut cumulative = 0;
                return weights
                    .iter()
                    .position(|w| {
                        cumulative += w;
                        r < cumulative
                    })
                    .unwrap();
            }
        }
    }
    unreachable!()
}

e2e!(
    spins_are_provably_fair_and_pay_their_prize,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let id = wheel(
            &app,
            "10",
            5,
            vec![
                segment("Ten points", 1, "POINTS", Some("10"), None),
                segment("Nothing", 2, "NOTHING", None, None),
                segment("Jackpot", 1, "POINTS", Some("50"), None),
            ],
        )
        .await;
        let before = app.gql(Some(&token), WHEELS, j!({})).await;
        let w = by_id(&before, &id);
        let odds: Vec<&str> = w["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["probability"].as_str().unwrap())
            .collect();
        assert_eq!(odds, ["0.25", "0.5", "0.25"]);
        assert_eq!(w["spinsLeftToday"], 5);
        let commitment = w["commitment"].as_str().unwrap().to_owned();

        let spin = app
            .gql(
                Some(&token),
                SPIN,
                j!({"w": id, "c": "lucky-me", "k": "s1"}),
            )
            .await;
        let s = &spin.data()["spinWheel"];
        let proof = &s["proof"];
        // The revealed seed is the one committed to, and it recomputes the result.
        assert_eq!(proof["serverSeedHash"], commitment.as_str());
        let seed = hex::decode(proof["serverSeed"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&seed)), commitment);
        let weights: Vec<u64> = proof["drawWeights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .collect();
        let index = recompute(
            proof["serverSeed"].as_str().unwrap(),
            "lucky-me",
            proof["nonce"].as_u64().unwrap(),
            &weights,
        );
        assert_eq!(proof["drawSegmentIds"][index], s["segment"]["id"]);
        // Balance: 70 − 10 + prize.
        let prize: rust_decimal::Decimal = s["segment"]["prize"]["points"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap();
        let expected = rust_decimal::Decimal::new(6000, 2) + prize;
        assert_eq!(
            s["balance"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            expected
        );
        assert_eq!(
            app.balance(&token)
                .await
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            expected
        );
        // The seed rotated; a retry with the same key returns the same spin.
        let after = app.gql(Some(&token), WHEELS, j!({})).await;
        assert_eq!(by_id(&after, &id)["commitment"], s["nextCommitment"]);
        assert_ne!(s["nextCommitment"], commitment.as_str());
        assert_eq!(by_id(&after, &id)["spinsLeftToday"], 4);
        let retry = app
            .gql(
                Some(&token),
                SPIN,
                j!({"w": id, "c": "lucky-me", "k": "s1"}),
            )
            .await;
        assert_eq!(retry.data(), spin.data());
        let history = app.gql(Some(&token), "{ me { transactions(first: 5) { edges { node { kind purpose source amount } } } } }", j!({})).await;
        let kinds: Vec<String> = history.data()["me"]["transactions"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["node"]["kind"].as_str().unwrap(),
                    e["node"]["purpose"]
                        .as_str()
                        .or(e["node"]["source"].as_str())
                        .unwrap_or("-")
                )
            })
            .collect();
        assert!(kinds.contains(&"SPEND:lucky_wheel".to_owned()), "{kinds:?}");
        app.assert_ledger_invariants().await;
    }
);

e2e!(parallel_spins_never_overdraw, |app: TestApp| async move {
    app.demo().await;
    let (token, member) = app.register("m1").await;
    app.gql(
        Some(&app.admin()),
        ADJUST,
        j!({"m": member, "a": "-40", "k": "to-30"}),
    )
    .await
    .data();
    let id = wheel(
        &app,
        "10",
        100,
        vec![segment("Nothing", 1, "NOTHING", None, None)],
    )
    .await;
    let results = join_all((0..10).map(|i| {
        let (app, token, id) = (&app, token.clone(), id.clone());
        async move {
            app.gql(
                Some(&token),
                SPIN,
                j!({"w": id, "c": "c", "k": format!("k{i}")}),
            )
            .await
        }
    }))
    .await;
    let ok = results
        .iter()
        .filter(|r| r.body.get("errors").is_none())
        .count();
    assert_eq!(ok, 3);
    for r in results.iter().filter(|r| r.body.get("errors").is_some()) {
        assert_eq!(r.code(), "INSUFFICIENT_POINTS");
    }
    assert_eq!(app.balance(&token).await, "0.00");
    let view = app.gql(Some(&token), WHEELS, j!({})).await;
    assert_eq!(by_id(&view, &id)["spinsLeftToday"], 97);
    app.assert_ledger_invariants().await;
});

e2e!(
    the_daily_spin_limit_holds_under_a_race,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let id = wheel(
            &app,
            "1",
            2,
            vec![segment("Nothing", 1, "NOTHING", None, None)],
        )
        .await;
        let results = join_all((0..8).map(|i| {
            let (app, token, id) = (&app, token.clone(), id.clone());
            async move {
                app.gql(
                    Some(&token),
                    SPIN,
                    j!({"w": id, "c": "c", "k": format!("k{i}")}),
                )
                .await
            }
        }))
        .await;
        assert_eq!(
            results
                .iter()
                .filter(|r| r.body.get("errors").is_none())
                .count(),
            2
        );
        for r in results.iter().filter(|r| r.body.get("errors").is_some()) {
            assert_eq!(r.code(), "LIMIT_REACHED");
        }
        assert_eq!(app.balance(&token).await, "68.00");
        // A new program day resets the limit.
        app.clock.advance(chrono::Duration::days(1));
        app.gql(Some(&token), SPIN, j!({"w": id, "c": "c", "k": "tomorrow"}))
            .await
            .data();
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    exhausted_prizes_leave_the_draw_and_an_empty_wheel_charges_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let (token, member) = app.register("m1").await;
        let (other, _) = app.register("m2").await;
        let _ = member;
        let id = wheel(
            &app,
            "5",
            10,
            vec![
                segment("Last prize", 3, "POINTS", Some("20"), Some(1)),
                segment("Second", 1, "POINTS", Some("1"), Some(1)),
            ],
        )
        .await;
        // Two members race for two single prizes: both get one, the wheel is then empty.
        let a = app.gql(Some(&token), SPIN, j!({"w": id, "c": "a", "k": "a1"}));
        let b = app.gql(Some(&other), SPIN, j!({"w": id, "c": "b", "k": "b1"}));
        let (a, b) = futures::join!(a, b);
        let won: Vec<String> = [&a, &b]
            .iter()
            .filter(|r| r.body.get("errors").is_none())
            .map(|r| {
                r.data()["spinWheel"]["segment"]["label"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        for r in [&a, &b].iter().filter(|r| r.body.get("errors").is_some()) {
            assert_eq!(r.code(), "OUT_OF_STOCK");
        }
        let mut unique = won.clone();
        unique.dedup();
        assert_eq!(
            unique.len(),
            won.len(),
            "a single prize was won twice: {won:?}"
        );
        // Spin until the wheel is empty; then spins are refused without a charge.
        for i in 0..4 {
            app.gql(
                Some(&token),
                SPIN,
                j!({"w": id, "c": "a", "k": format!("more{i}")}),
            )
            .await;
        }
        let view = app.gql(Some(&token), WHEELS, j!({})).await;
        let segments = by_id(&view, &id)["segments"].as_array().unwrap().clone();
        assert!(segments
            .iter()
            .all(|s| s["available"] == false && s["probability"] == "0"));
        let before = app.balance(&token).await;
        let refused = app
            .gql(Some(&token), SPIN, j!({"w": id, "c": "a", "k": "empty"}))
            .await;
        assert_eq!(refused.code(), "OUT_OF_STOCK");
        assert_eq!(app.balance(&token).await, before);
        app.assert_ledger_invariants().await;
    }
);

e2e!(wheel_refusals_have_exact_codes, |app: TestApp| async move {
    app.demo().await;
    let (token, _) = app.register("m1").await;
    let admin = app.admin();
    for segments in [
        vec![],
        vec![segment("Zero", 0, "NOTHING", None, None)],
        vec![segment("No points", 1, "POINTS", None, None)],
        vec![j!({"label": "Ghost gift", "weight": 1, "prize": "GIFT", "giftId": "999999"})],
    ] {
        let input =
            j!({"i": {"name": "Bad", "spinCost": "1", "dailySpinLimit": 1, "segments": segments}});
        assert_eq!(
            app.gql(Some(&admin), UPSERT, input).await.code(),
            "VALIDATION"
        );
    }
    let input = j!({"i": {"name": "Nope", "spinCost": "1", "dailySpinLimit": 1, "segments": [segment("x", 1, "NOTHING", None, None)]}});
    assert_eq!(
        app.gql(Some(&token), UPSERT, input).await.code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.gql(Some(&token), SPIN, j!({"w": "999999", "c": "c", "k": "k"}))
            .await
            .code(),
        "NOT_FOUND"
    );
    let id = wheel(&app, "1", 1, vec![segment("x", 1, "NOTHING", None, None)]).await;
    assert_eq!(
        app.gql(Some(&token), SPIN, j!({"w": id, "c": "a:b", "k": "k"}))
            .await
            .code(),
        "VALIDATION"
    );
    assert_eq!(
        app.gql(
            Some(&app.service()),
            SPIN,
            j!({"w": id, "c": "c", "k": "k"})
        )
        .await
        .code(),
        "FORBIDDEN"
    );
    let other_admin = app.token("other", "admin", "x");
    assert_eq!(
        app.gql(Some(&other_admin), WHEELS, j!({})).await.code(),
        "NOT_FOUND"
    );
    assert_eq!(app.balance(&token).await, "70.00");
});

e2e!(
    gift_and_voucher_prizes_are_granted_in_the_spin,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let admin = app.admin();
        let gift = app
            .gql(
                Some(&admin),
                "mutation { createGift(input: {name: \"Mug\", cost: \"100\", stock: 1}) { id } }",
                j!({}),
            )
            .await;
        let gift_id = gift.data()["createGift"]["id"].clone();
        let id = wheel(
            &app,
            "0",
            10,
            vec![j!({"label": "A mug", "weight": 1, "prize": "GIFT", "giftId": gift_id})],
        )
        .await;
        let spin = app.gql(Some(&token), "mutation($w: ID!) { spinWheel(wheelId: $w, clientSeed: \"c\", idempotencyKey: \"g\") { redemptionId segment { prize { kind } } balance } }", j!({"w": id})).await;
        assert_eq!(spin.data()["spinWheel"]["segment"]["prize"]["kind"], "GIFT");
        assert!(spin.data()["spinWheel"]["redemptionId"].is_string());
        assert_eq!(spin.data()["spinWheel"]["balance"], "70.00"); // a free spin, a free mug
        let mine = app
            .gql(
                Some(&token),
                "{ myRedemptions { edges { node { cost origin gift { name } } } } }",
                j!({}),
            )
            .await;
        let node = &mine.data()["myRedemptions"]["edges"][0]["node"];
        assert_eq!(
            (
                node["cost"].as_str(),
                node["origin"].as_str(),
                node["gift"]["name"].as_str()
            ),
            (Some("0.00"), Some("WHEEL"), Some("Mug"))
        );
        // The only mug is gone: the segment left the draw.
        let view = app.gql(Some(&token), WHEELS, j!({})).await;
        assert_eq!(by_id(&view, &id)["segments"][0]["available"], false);

        let vouchers = wheel(
            &app,
            "5",
            10,
            vec![segment("Voucher", 1, "VOUCHER", Some("30"), None)],
        )
        .await;
        let spin = app.gql(Some(&token), "mutation($w: ID!) { spinWheel(wheelId: $w, clientSeed: \"c\", idempotencyKey: \"v\") { voucherCode balance } }", j!({"w": vouchers})).await;
        let code = spin.data()["spinWheel"]["voucherCode"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(spin.data()["spinWheel"]["balance"], "65.00");
        let mine = app
            .gql(
                Some(&token),
                "{ myVouchers { edges { node { code value } } } }",
                j!({}),
            )
            .await;
        let node = &mine.data()["myVouchers"]["edges"][0]["node"];
        assert_eq!(node["code"], code.as_str());
        assert_eq!(node["value"], "3.00"); // 30 points ÷ 10 points per USD
        app.assert_ledger_invariants().await;
    }
);
