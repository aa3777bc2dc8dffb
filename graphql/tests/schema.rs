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
