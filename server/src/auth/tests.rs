//! RELIABILITY.md "JWT": every refusal case, and the one acceptance.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::{JwtConfig, JwtKey, KeyOrigin, Secret, TEST_JWT_SECRET};

const RS_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-private.pem");
const RS_PUBLIC: &str = include_str!("../../tests/fixtures/rs256-public.pem");
const OTHER_RS_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-other-private.pem");

fn jwt_config(key: JwtKey) -> JwtConfig {
    JwtConfig {
        key,
        origin: KeyOrigin::Code,
        issuer: "loyalty".into(),
        audience: "loyalty-api".into(),
        leeway_secs: 30,
    }
}

fn hs() -> JwtAuth {
    JwtAuth::new(&jwt_config(JwtKey::Hs256 {
        secret: Secret::new(TEST_JWT_SECRET),
    }))
    .unwrap()
}

fn rs(private: bool) -> JwtAuth {
    JwtAuth::new(&jwt_config(JwtKey::Rs256 {
        public_key_pem: RS_PUBLIC.into(),
        private_key_pem: private.then(|| Secret::new(RS_PRIVATE)),
    }))
    .unwrap()
}

fn valid_claims() -> Value {
    let now = unix_now();
    json!({
        "sub": "alice",
        "program": "demo",
        "role": "member",
        "iss": "loyalty",
        "aud": "loyalty-api",
        "exp": now + 600,
        "iat": now,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn hs_token(claims: &Value) -> String {
    hs().sign(claims).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // Minimal base64url without padding, so the test does not need another crate.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn valid_token_yields_actor() {
    let actor = hs().verify(&hs_token(&valid_claims())).unwrap();
    assert_eq!(
        actor,
        Actor {
            program: "demo".into(),
            role: Role::Member,
            subject: "alice".into()
        }
    );
}

#[test]
fn mint_round_trips_every_role() {
    let auth = hs();
    for role in [Role::Member, Role::Service, Role::Admin] {
        let token = auth
            .mint("shop", role, "who", Duration::from_secs(60))
            .unwrap();
        let actor = auth.verify(&token).unwrap();
        assert_eq!(actor.role, role);
        assert_eq!(actor.program, "shop");
        assert_eq!(actor.subject, "who");
    }
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(valid_claims().to_string().as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let err = hs().verify(&token).unwrap_err();
        assert!(
            matches!(err, AuthError::UnsupportedAlgorithm | AuthError::Malformed),
            "{token}: {err:?}"
        );
    }
    assert_eq!(
        hs().verify(&format!("{header}.{payload}.")),
        Err(AuthError::UnsupportedAlgorithm)
    );
}

#[test]
fn other_hmac_algorithms_are_refused() {
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &Header::new(alg),
            &valid_claims(),
            &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(hs().verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }
}

#[test]
fn hs_rs_confusion_is_refused() {
    // The classic attack: HS256 "signed" with the server's public key as the HMAC secret.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid_claims(),
        &EncodingKey::from_secret(RS_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        rs(false).verify(&forged),
        Err(AuthError::UnsupportedAlgorithm)
    );

    // And the other way: an RS256 token presented to an HS256 server.
    let rs_token = rs(true).sign(&valid_claims()).unwrap();
    assert_eq!(hs().verify(&rs_token), Err(AuthError::UnsupportedAlgorithm));
}

#[test]
fn bad_signature_is_refused() {
    let other = JwtAuth::new(&jwt_config(JwtKey::Hs256 {
        secret: Secret::new("another-secret-that-is-long-enough-0123456789"),
    }))
    .unwrap();
    let token = other.sign(&valid_claims()).unwrap();
    assert_eq!(hs().verify(&token), Err(AuthError::BadSignature));

    // A tampered payload under the original signature.
    let token = hs_token(&valid_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let admin = with(valid_claims(), "role", json!("admin"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(admin.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(hs().verify(&tampered), Err(AuthError::BadSignature));

    // RS256 signed by an unrelated key pair.
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &valid_claims(),
        &EncodingKey::from_rsa_pem(OTHER_RS_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(rs(false).verify(&foreign), Err(AuthError::BadSignature));
}

#[test]
fn rs256_with_the_right_key_is_accepted() {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &valid_claims(),
        &EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(rs(false).verify(&token).unwrap().subject, "alice");
    rs(true).self_check().unwrap();
    rs(false).self_check().unwrap();
}

#[test]
fn rs256_self_check_catches_mismatched_keys() {
    let auth = JwtAuth::new(&jwt_config(JwtKey::Rs256 {
        public_key_pem: RS_PUBLIC.into(),
        private_key_pem: Some(Secret::new(OTHER_RS_PRIVATE)),
    }))
    .unwrap();
    let err = auth.self_check().unwrap_err().to_string();
    assert!(err.contains("self-check"), "{err}");
}

#[test]
fn expiry_honours_the_leeway_only() {
    let now = unix_now();
    // Inside the 30 s leeway: accepted.
    let token = hs_token(&with(valid_claims(), "exp", json!(now - 10)));
    assert!(hs().verify(&token).is_ok());
    // Beyond it: refused.
    let token = hs_token(&with(valid_claims(), "exp", json!(now - 31 - 5)));
    assert_eq!(hs().verify(&token), Err(AuthError::Expired));
}

#[test]
fn nbf_in_the_future_is_refused() {
    let now = unix_now();
    let token = hs_token(&with(valid_claims(), "nbf", json!(now + 3600)));
    assert_eq!(hs().verify(&token), Err(AuthError::NotYetValid));
    let token = hs_token(&with(valid_claims(), "nbf", json!(now - 1)));
    assert!(hs().verify(&token).is_ok());
}

/// CVE-2026-25537: jsonwebtoken before 10.3 skipped an `nbf` that was not a number, so a
/// string `nbf` an hour ahead was accepted. Every non-numeric time claim is refused.
#[test]
fn time_claims_that_are_not_numbers_are_refused() {
    let now = unix_now();
    for (claim, value, expected) in [
        (
            "nbf",
            json!((now + 3600).to_string()),
            AuthError::InvalidClaim("nbf"),
        ),
        (
            "nbf",
            json!((now - 3600).to_string()),
            AuthError::InvalidClaim("nbf"),
        ),
        ("nbf", json!("soon"), AuthError::InvalidClaim("nbf")),
        // `exp` is required, so a string reads as missing (it never did pass).
        (
            "exp",
            json!((now + 600).to_string()),
            AuthError::MissingClaim("exp".into()),
        ),
    ] {
        let token = hs_token(&with(valid_claims(), claim, value.clone()));
        assert_eq!(hs().verify(&token), Err(expected), "{claim} = {value}");
    }
    // RS256 too: the check is the library's, whatever the key.
    let token = rs(true)
        .sign(&with(
            valid_claims(),
            "nbf",
            json!((now + 3600).to_string()),
        ))
        .unwrap();
    assert_eq!(rs(true).verify(&token), Err(AuthError::InvalidClaim("nbf")));
}

#[test]
fn missing_claims_are_refused_by_name() {
    for claim in ["exp", "iss", "aud", "sub", "program", "role"] {
        let token = hs_token(&without(valid_claims(), claim));
        assert_eq!(
            hs().verify(&token),
            Err(AuthError::MissingClaim(claim.to_owned())),
            "claim {claim}"
        );
        assert_eq!(
            hs().verify(&token).unwrap_err().to_string(),
            format!("missing claim {claim}")
        );
    }
}

#[test]
fn empty_claims_count_as_missing() {
    for claim in ["sub", "program", "role"] {
        let token = hs_token(&with(valid_claims(), claim, json!("  ")));
        assert_eq!(
            hs().verify(&token),
            Err(AuthError::MissingClaim(claim.to_owned()))
        );
    }
}

#[test]
fn wrong_claims_are_refused() {
    let cases = [
        ("iss", json!("someone-else"), AuthError::WrongIssuer),
        ("aud", json!("other-api"), AuthError::WrongAudience),
        ("aud", json!(["other-api"]), AuthError::WrongAudience),
        ("role", json!("root"), AuthError::InvalidClaim("role")),
        ("role", json!("Admin"), AuthError::InvalidClaim("role")),
        (
            "program",
            json!("x".repeat(65)),
            AuthError::InvalidClaim("program"),
        ),
        ("sub", json!(42), AuthError::Malformed),
        (
            "exp",
            json!("tomorrow"),
            AuthError::MissingClaim("exp".into()),
        ),
    ];
    for (claim, value, expected) in cases {
        let token = hs_token(&with(valid_claims(), claim, value.clone()));
        assert_eq!(hs().verify(&token), Err(expected), "{claim} = {value}");
    }
    // An audience list that contains ours is fine.
    let token = hs_token(&with(valid_claims(), "aud", json!(["x", "loyalty-api"])));
    assert!(hs().verify(&token).is_ok());
}

#[test]
fn garbage_is_malformed() {
    for token in ["", "abc", "a.b.c", "...."] {
        assert_eq!(hs().verify(token), Err(AuthError::Malformed), "{token:?}");
    }
    assert_eq!(
        hs().verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(AuthError::TooLarge)
    );
}

#[test]
fn headers_yield_an_optional_actor() {
    let auth = hs();
    assert_eq!(auth.actor_from_headers(&HeaderMap::new()), Ok(None));

    let token = hs_token(&valid_claims());
    for prefix in ["Bearer ", "bearer ", "BEARER  "] {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("{prefix}{token}")).unwrap();
        headers.insert(header::AUTHORIZATION, value);
        assert_eq!(
            auth.actor_from_headers(&headers).unwrap().unwrap().subject,
            "alice"
        );
    }
    for bad in ["Basic abc", "Bearer", "Token abc", &token] {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(bad).unwrap());
        assert!(auth.actor_from_headers(&headers).is_err(), "{bad}");
    }
}

#[test]
fn rs256_without_private_key_cannot_sign() {
    let err = rs(false)
        .mint("demo", Role::Admin, "ops", Duration::from_secs(60))
        .unwrap_err();
    assert!(err.to_string().contains("JWT_PRIVATE_KEY_PEM"), "{err}");
}

#[test]
fn mint_uses_the_configured_key() {
    let config = crate::config::Config::for_tests(None, None, "t:".into(), "/tmp/unused".into());
    let token = mint(
        &config,
        "demo",
        Role::Service,
        "pos-1",
        Duration::from_secs(60),
    )
    .unwrap();
    let actor = hs().verify(&token).unwrap();
    assert_eq!(
        actor,
        Actor {
            program: "demo".into(),
            role: Role::Service,
            subject: "pos-1".into()
        }
    );
}

#[test]
fn rs256_keys_under_2048_bits_are_refused_naming_the_variable() {
    let err = JwtAuth::new(&jwt_config(JwtKey::Rs256 {
        public_key_pem: include_str!("../../tests/fixtures/rs256-1024-public.pem").into(),
        private_key_pem: None,
    }))
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("JWT_PUBLIC_KEY_PEM") && err.contains("1024"),
        "{err}"
    );
}
