//! Guards and hardening through `schema.execute`, without HTTP (async-graphql `tests/guard.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_graphql::Request;
use loyalty_domain::clock::SystemClock;
use loyalty_domain::store::MemoryStore;
use loyalty_domain::{Actor, Loyalty, Role};
use loyalty_graphql::{build_schema, LoyaltySchema, SchemaOptions};
use tokio_util::sync::CancellationToken;

async fn schema(introspection: bool) -> LoyaltySchema {
    let dir = std::env::temp_dir().join(format!("loyalty-gql-{}", uuid::Uuid::new_v4().simple()));
    let url = loyalty_domain::ledger::db::sqlite_url(&dir.join("test.db")).unwrap();
    let db = loyalty_domain::ledger::db::connect(&url, 2).await.unwrap();
    loyalty_domain::ledger::db::migrate(&db).await.unwrap();
    let loyalty = Loyalty::new(
        db,
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        CancellationToken::new(),
    );
    loyalty.seed_demo().await.unwrap();
    build_schema(
        loyalty,
        SchemaOptions {
            introspection,
            max_depth: 12,
            max_complexity: 300,
        },
    )
}

fn actor(role: Role) -> Actor {
    Actor {
        program: "demo".into(),
        role,
        subject: "someone".into(),
    }
}

fn code(response: &async_graphql::Response) -> String {
    response.errors[0]
        .extensions
        .as_ref()
        .unwrap()
        .get("code")
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn guards_answer_unauthenticated_and_forbidden() {
    let schema = schema(true).await;
    let anonymous = schema.execute(Request::new("{ me { balance } }")).await;
    assert_eq!(code(&anonymous), "\"UNAUTHENTICATED\"");
    let member = schema
        .execute(Request::new("{ members { edges { node { id } } } }").data(actor(Role::Member)))
        .await;
    assert_eq!(code(&member), "\"FORBIDDEN\"");
    let admin = schema
        .execute(Request::new("{ members { edges { node { id } } } }").data(actor(Role::Admin)))
        .await;
    assert!(admin.errors.is_empty(), "{:?}", admin.errors);
    let me = schema
        .execute(Request::new("{ me { balance } }").data(actor(Role::Member)))
        .await;
    assert_eq!(
        me.data.into_json().unwrap(),
        serde_json::json!({"me": null})
    );
}

#[tokio::test]
async fn introspection_and_suggestions_can_be_switched_off() {
    let open = schema(true).await;
    let on = open
        .execute(Request::new("{ __schema { queryType { name } } }"))
        .await;
    assert!(on.errors.is_empty());
    let closed = schema(false).await;
    let off = closed
        .execute(Request::new("{ __schema { queryType { name } } }"))
        .await;
    // Disabled introspection answers nothing about the schema.
    let data = off.data.into_json().unwrap();
    assert!(data.get("__schema").is_none_or(|s| s.is_null()), "{data}");
    let typo = closed
        .execute(Request::new("{ mee { balance } }").data(actor(Role::Member)))
        .await;
    assert!(
        !typo.errors[0].message.contains("Did you mean"),
        "{}",
        typo.errors[0].message
    );
}

#[tokio::test]
async fn a_thousand_aliases_are_refused_before_any_resolver() {
    let schema = schema(true).await;
    let aliases: String = (0..1000)
        .map(|i| format!("a{i}: recordAction(input: {{action: \"news_read\", objectId: \"n{i}\"}}) {{ awarded }} "))
        .collect();
    let response = schema
        .execute(Request::new(format!("mutation {{ {aliases} }}")).data(actor(Role::Member)))
        .await;
    assert!(
        response.errors[0].message.contains("complex"),
        "{}",
        response.errors[0].message
    );
}

fn caller(program: &str, role: Role) -> Actor {
    Actor {
        program: program.into(),
        role,
        subject: "someone".into(),
    }
}

fn message(response: &async_graphql::Response) -> &str {
    &response.errors[0].message
}

/// The guard converts the token into the capability a field needs before any domain call. The
/// callers here belong to a program that does not exist: the domain, once reached, answers
/// `NOT_FOUND`, so a `FORBIDDEN` shows the refusal came first, and the allowed roles' `NOT_FOUND`
/// shows the same field does reach the domain.
#[tokio::test]
async fn the_guard_refuses_the_wrong_role_before_the_domain_is_reached() {
    let schema = schema(true).await;
    use Role::{Admin, Member, Service};
    let fields: &[(&str, &[Role])] = &[
        (
            r#"mutation { adjustPoints(memberId: "1", amount: 10, reason: "r", idempotencyKey: "k") { __typename } }"#,
            &[Admin],
        ),
        ("mutation { publishRules { __typename } }", &[Admin]),
        ("mutation { publishChallenges { __typename } }", &[Admin]),
        ("{ challenges { __typename } }", &[Admin]),
        (
            r#"mutation { grantBadge(memberId: "1", badgeId: "1") { __typename } }"#,
            &[Admin],
        ),
        (
            r#"mutation { recordPurchase(input: {memberExternalId: "m", orderId: "o", amount: 10, idempotencyKey: "k"}) { __typename } }"#,
            &[Service],
        ),
        (
            r#"mutation { refundPurchase(orderId: "o", amount: 1) { __typename } }"#,
            &[Service],
        ),
        (
            r#"mutation { consumeVoucher(code: "ABCD", orderId: "o") { __typename } }"#,
            &[Service],
        ),
        (
            r#"mutation { setMemberAttributes(memberExternalId: "m", attributes: [{key: "city", value: "hanoi"}]) { __typename } }"#,
            &[Service],
        ),
        (
            r#"mutation { redeemGift(giftId: "1", idempotencyKey: "k") { __typename } }"#,
            &[Member],
        ),
        (
            r#"mutation { spinWheel(wheelId: "1", clientSeed: "s", idempotencyKey: "k") { __typename } }"#,
            &[Member],
        ),
        (
            r#"mutation { redeemDiscount(points: 10, idempotencyKey: "k") { __typename } }"#,
            &[Member],
        ),
        ("mutation { register { __typename } }", &[Member]),
        (
            r#"mutation { recordAction(input: {action: "news_read", objectId: "n1"}) { __typename } }"#,
            &[Member, Service],
        ),
        ("{ me { __typename } }", &[Member]),
        ("{ wheels { __typename } }", &[Member, Admin]),
        ("{ leaderboard { __typename } }", &[Member, Admin]),
        ("{ members { __typename } }", &[Admin]),
        ("{ webhookEndpoints { __typename } }", &[Admin]),
        (
            r#"mutation { createWebhookEndpoint(input: {url: "https://example.com", eventTypes: ["points.earned"]}) { __typename } }"#,
            &[Admin],
        ),
        (
            r#"mutation { sendTestWebhook(endpointId: "1") { __typename } }"#,
            &[Admin],
        ),
    ];
    for (query, allowed) in fields {
        let needs: Vec<_> = allowed.iter().map(|r| r.as_str()).collect();
        for role in [Member, Service, Admin] {
            let response = schema
                .execute(Request::new(*query).data(caller("no-such-program", role)))
                .await;
            if allowed.contains(&role) {
                assert_eq!(code(&response), "\"NOT_FOUND\"", "{role:?} {query}");
            } else {
                assert_eq!(code(&response), "\"FORBIDDEN\"", "{role:?} {query}");
                assert_eq!(
                    message(&response),
                    format!(
                        "a {} token cannot do this (needs {})",
                        role.as_str(),
                        needs.join(" or ")
                    ),
                    "{query}"
                );
            }
        }
    }
}

/// A member token on a real program asking for an admin adjustment changes nothing.
#[tokio::test]
async fn a_member_cannot_adjust_points_and_nothing_is_posted() {
    let schema = schema(true).await;
    let member = caller("demo", Role::Member);
    let registered = schema
        .execute(
            Request::new("mutation { register { member { id balance } } }").data(member.clone()),
        )
        .await;
    assert!(registered.errors.is_empty(), "{:?}", registered.errors);
    let data = registered.data.into_json().unwrap();
    let id = data["register"]["member"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = data["register"]["member"]["balance"].clone();
    let adjust = format!(
        r#"mutation {{ adjustPoints(memberId: "{id}", amount: 1000, reason: "gift", idempotencyKey: "k1") {{ balance }} }}"#
    );
    let refused = schema
        .execute(Request::new(adjust.as_str()).data(member.clone()))
        .await;
    assert_eq!(code(&refused), "\"FORBIDDEN\"");
    assert_eq!(
        message(&refused),
        "a member token cannot do this (needs admin)"
    );
    let me = schema
        .execute(Request::new("{ me { balance } }").data(member))
        .await;
    assert_eq!(me.data.into_json().unwrap()["me"]["balance"], before);
    let admin = schema
        .execute(Request::new(adjust.as_str()).data(caller("demo", Role::Admin)))
        .await;
    assert!(admin.errors.is_empty(), "{:?}", admin.errors);
}

/// graphql-js 16's `getIntrospectionQuery()` (what GraphiQL and client code generators send).
const STANDARD_INTROSPECTION: &str =
    include_str!("../../tests/tests/e2e/fixtures/introspection-graphql-js-16.graphql");

/// The server's default limits (`GRAPHQL_MAX_DEPTH` 12, `GRAPHQL_MAX_COMPLEXITY` 2500): the
/// standard query is answered when introspection is on, with no database behind the schema,
/// and the depth limit still refuses an ordinary query one level too deep.
#[tokio::test]
async fn the_standard_introspection_query_is_answered_under_the_default_limits() {
    let options = |introspection| SchemaOptions {
        introspection,
        max_depth: 12,
        max_complexity: 2500,
    };
    let open = loyalty_graphql::schema_builder(options(true)).finish();
    let answer = open.execute(Request::new(STANDARD_INTROSPECTION)).await;
    assert!(answer.errors.is_empty(), "{:?}", answer.errors);
    let data = answer.data.into_json().unwrap();
    let types: Vec<&str> = data["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in ["Query", "Mutation", "Subscription", "Member", "SpinProof"] {
        assert!(types.contains(&name), "{name} missing from {types:?}");
    }

    let nested = |levels: usize| {
        let open: String = (0..levels).map(|i| format!("f{i} {{ ")).collect();
        format!("{{ {open}x{} }}", " }".repeat(levels))
    };
    // 12 levels of ordinary fields plus the leaf: 13, one over.
    let deep = open.execute(Request::new(nested(12))).await;
    assert_eq!(deep.errors[0].message, "Query is nested too deep.");

    let closed = loyalty_graphql::schema_builder(options(false)).finish();
    let answer = closed.execute(Request::new(STANDARD_INTROSPECTION)).await;
    let data = answer.data.into_json().unwrap();
    assert!(
        data.get("__schema").is_none_or(|s| s.is_null()),
        "introspection off answers nothing: {data}"
    );
}
