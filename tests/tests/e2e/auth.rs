//! JWT validation (RFC 8725 cases) and who may do what.

use chrono::Utc;

use crate::e2e;
use crate::helpers::*;

fn claims() -> serde_json::Value {
    j!({"sub": "m1", "program": "demo", "role": "member", "iss": "loyalty", "aud": "loyalty-api", "exp": Utc::now().timestamp() + 600})
}

fn without(key: &str) -> serde_json::Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(key);
    c
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[key] = value;
    c
}

e2e!(bad_tokens_are_unauthenticated, |app: TestApp| async move {
    app.demo().await;
    app.register("m1").await;
    let now = Utc::now().timestamp();
    let b64 = |v: serde_json::Value| {
        use base64_engine::*;
        encode(v.to_string().as_bytes())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(j!({"alg": "none", "typ": "JWT"})),
        b64(claims())
    );
    let good = token_with(claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let bad_signature = format!(
        "{head}.{body}.{}",
        if sig.starts_with('A') {
            sig.replacen('A', "B", 1)
        } else {
            format!("A{}", &sig[1..])
        }
    );
    let tampered = format!("{head}.{}.{sig}", b64(with("sub", j!("someone-else"))));
    let cases = vec![
        ("alg none", alg_none),
        ("bad signature", bad_signature),
        ("tampered claims", tampered),
        ("expired", token_with(with("exp", j!(now - 3600)))),
        ("nbf in the future", token_with(with("nbf", j!(now + 3600)))),
        // CVE-2026-25537: jsonwebtoken < 10.3 ignored an `nbf` that is a string.
        (
            "string nbf in the future",
            token_with(with("nbf", j!((now + 3600).to_string()))),
        ),
        (
            "string exp",
            token_with(with("exp", j!((now + 600).to_string()))),
        ),
        ("missing exp", token_with(without("exp"))),
        ("missing iss", token_with(without("iss"))),
        ("wrong iss", token_with(with("iss", j!("evil")))),
        ("missing aud", token_with(without("aud"))),
        ("wrong aud", token_with(with("aud", j!("other-api")))),
        ("missing sub", token_with(without("sub"))),
        ("empty sub", token_with(with("sub", j!("")))),
        ("missing program", token_with(without("program"))),
        ("missing role", token_with(without("role"))),
        ("unknown role", token_with(with("role", j!("root")))),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (case, token) in cases {
        let r = app.gql(Some(&token), "{ me { balance } }", j!({})).await;
        assert_eq!(r.status, 401, "{case}: {}", r.body);
        assert_eq!(r.code(), "UNAUTHENTICATED", "{case}");
    }
    // No token at all on a member field.
    let r = app.gql(None, "{ me { balance } }", j!({})).await;
    assert_eq!(r.code(), "UNAUTHENTICATED");
});

e2e!(roles_are_enforced, |app: TestApp| async move {
    app.demo().await;
    let (member, id) = app.register("m1").await;
    let forbidden = [
        ("mutation { recordPurchase(input: {memberExternalId: \"m1\", orderId: \"o\", amount: \"1\", idempotencyKey: \"k\"}) { balance } }", j!({})),
        ("mutation { publishRules { version } }", j!({})),
        ("{ members { edges { node { id } } } }", j!({})),
        ("query($id: ID!) { member(id: $id) { balance } }", j!({"id": id})),
        ("mutation($id: ID!) { adjustPoints(memberId: $id, amount: \"5\", reason: \"x\", idempotencyKey: \"k\") { balance } }", j!({"id": id})),
    ];
    for (q, vars) in forbidden {
        assert_eq!(
            app.gql(Some(&member), q, vars.clone()).await.code(),
            "FORBIDDEN",
            "{q}"
        );
    }
    let service = app.service();
    assert_eq!(
        app.gql(
            Some(&service),
            "mutation { publishRules { version } }",
            j!({})
        )
        .await
        .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.gql(Some(&app.admin()), "{ me { balance } }", j!({}))
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(app.balance(&member).await, "70.00");
});

e2e!(programs_are_isolated, |app: TestApp| async move {
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
    let (_, id) = app.register("m1").await;
    let other_admin = app.token("other", "admin", "bob");
    let r = app
        .gql(
            Some(&other_admin),
            "query($id: ID!) { member(id: $id) { balance } }",
            j!({"id": id}),
        )
        .await;
    assert_eq!(r.code(), "NOT_FOUND");
    let r = app.gql(Some(&other_admin), "mutation($id: ID!) { adjustPoints(memberId: $id, amount: \"5\", reason: \"x\", idempotencyKey: \"k\") { balance } }", j!({"id": id})).await;
    assert_eq!(r.code(), "NOT_FOUND");
    let r = app
        .gql(
            Some(&other_admin),
            "{ members { edges { node { id } } } }",
            j!({}),
        )
        .await;
    assert_eq!(r.data()["members"]["edges"].as_array().unwrap().len(), 0);
    let own = app
        .gql(
            Some(&app.admin()),
            "{ members { edges { node { id externalId balance } } } }",
            j!({}),
        )
        .await;
    assert_eq!(
        own.data()["members"]["edges"][0]["node"]["externalId"],
        "m1"
    );
    // A token for an unknown program finds nothing.
    let ghost = app.token("ghost", "member", "m1");
    assert_eq!(
        app.gql(Some(&ghost), "{ me { balance } }", j!({}))
            .await
            .code(),
        "NOT_FOUND"
    );
});

mod base64_engine {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// base64url without padding (enough for hand-made JWTs).
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}
