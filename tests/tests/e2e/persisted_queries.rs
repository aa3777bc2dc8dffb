//! Automatic persisted queries (Apollo's APQ, version 1) over POST, GET, batches and the
//! WebSocket: a miss asks for the text, the text is checked against its hash and kept, the hash
//! alone then runs; the cache is bounded; a cached document refuses bad variables exactly as
//! its text does.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::e2e;
use crate::helpers::*;
use crate::live::Ws;

/// A paying mutation with variables (two points per product, ten products a day).
const VIEW: &str = "mutation View($sku: String!, $key: String) { recordAction(input: {action: \"product_view\", objectId: $sku, idempotencyKey: $key}) { awarded points balance } }";
const BALANCE: &str = "{ me { balance } }";

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    j!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

/// One APQ request: the hash, and the text when `text` is given.
fn body(text: Option<&str>, hash: &str, variables: Value) -> Value {
    let mut body = j!({"variables": variables, "extensions": persisted(hash)});
    if let Some(text) = text {
        body["query"] = j!(text);
    }
    body
}

async fn post(app: &TestApp, token: &str, body: Value) -> Gql {
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    Gql {
        status,
        body: response.json().await.unwrap(),
    }
}

async fn view(app: &TestApp, token: &str, text: Option<&str>, sku: &str) -> Gql {
    let variables = j!({"sku": sku, "key": format!("view-{sku}")});
    post(app, token, body(text, &sha256(VIEW), variables)).await
}

fn assert_refused(r: &Gql, code: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.code(), code, "{}", r.body);
    assert_eq!(r.body["data"], Value::Null, "nothing ran: {}", r.body);
}

e2e!(
    a_miss_asks_for_the_text_then_the_hash_alone_runs,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let rows = app.ledger_rows(&id).await;

        let miss = view(&app, &token, None, "p1").await;
        assert_refused(&miss, "PERSISTED_QUERY_NOT_FOUND");
        // Apollo Client retries on this message or code; urql on the message alone.
        assert_eq!(miss.body["errors"][0]["message"], "PersistedQueryNotFound");
        assert_eq!(app.ledger_rows(&id).await, rows);

        let stored = view(&app, &token, Some(VIEW), "p1").await;
        assert_eq!(stored.data()["recordAction"]["awarded"], true);
        assert_eq!(app.balance(&token).await, "72.00");

        let hit = view(&app, &token, None, "p2").await;
        assert_eq!(hit.data()["recordAction"]["points"], "2.00");
        assert_eq!(hit.data()["recordAction"]["balance"], "74.00");
        assert_eq!(app.balance(&token).await, "74.00");
        // The same key again through the hash: the stored result, no second posting.
        let again = view(&app, &token, None, "p2").await;
        assert_eq!(again.data()["recordAction"]["balance"], "74.00");
        assert_eq!(app.ledger_rows(&id).await, rows + 2);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_hash_that_is_not_the_texts_is_refused,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let rows = app.ledger_rows(&id).await;
        let other = sha256(BALANCE);
        let variables = j!({"sku": "p1", "key": "k1"});

        let r = post(&app, &token, body(Some(VIEW), &other, variables.clone())).await;
        assert_refused(&r, "PERSISTED_QUERY_HASH_MISMATCH");
        assert_eq!(app.balance(&token).await, "70.00");
        assert_eq!(app.ledger_rows(&id).await, rows, "nothing posted");
        // Nothing was kept under either hash.
        let r = post(&app, &token, body(None, &other, j!({}))).await;
        assert_refused(&r, "PERSISTED_QUERY_NOT_FOUND");
        assert_refused(
            &view(&app, &token, None, "p1").await,
            "PERSISTED_QUERY_NOT_FOUND",
        );

        // A malformed hash or another protocol version is a request error, not a miss.
        let hash = sha256(VIEW);
        for extensions in [
            j!({"persistedQuery": {"version": 1, "sha256Hash": hash.to_uppercase()}}),
            j!({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}),
            j!({"persistedQuery": {"version": 2, "sha256Hash": hash}}),
            j!({"persistedQuery": "yes"}),
        ] {
            let request = j!({"query": VIEW, "variables": variables, "extensions": extensions});
            let r = post(&app, &token, request).await;
            assert_refused(&r, "VALIDATION");
        }
        assert_eq!(app.ledger_rows(&id).await, rows, "nothing posted");
    }
);

e2e!(persisted_queries_over_get, |app: TestApp| async move {
    app.demo().await;
    let (token, id) = app.register("m1").await;
    let get = |hash: String| {
        let extensions = persisted(&hash).to_string();
        let request = app
            .client
            .get(format!("{}/graphql", app.url))
            .query(&[("extensions", extensions.as_str())])
            .bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            Gql {
                status,
                body: response.json().await.unwrap(),
            }
        }
    };
    assert_refused(&get(sha256(BALANCE)).await, "PERSISTED_QUERY_NOT_FOUND");
    post(&app, &token, body(Some(BALANCE), &sha256(BALANCE), j!({})))
        .await
        .data();
    let r = get(sha256(BALANCE)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.data()["me"]["balance"], "70.00");

    // A persisted mutation stays POST-only.
    let rows = app.ledger_rows(&id).await;
    view(&app, &token, Some(VIEW), "p1").await.data();
    let r = get(sha256(VIEW)).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(app.ledger_rows(&id).await, rows + 1, "only the POST posted");
});

e2e!(a_batch_mixes_hits_and_misses, |app: TestApp| async move {
    app.demo().await;
    let (token, id) = app.register("m1").await;
    let rows = app.ledger_rows(&id).await;
    view(&app, &token, Some(VIEW), "p1").await.data();
    let batch = j!([
        body(None, &sha256(VIEW), j!({"sku": "p2", "key": "k2"})),
        body(None, &sha256("{ me { id } }"), j!({})),
        body(Some(BALANCE), &sha256(BALANCE), j!({})),
    ]);
    let r = post(&app, &token, batch).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answers = r.body.as_array().unwrap();
    assert_eq!(answers.len(), 3, "{}", r.body);
    assert_eq!(answers[0]["data"]["recordAction"]["awarded"], true);
    assert_eq!(
        answers[1]["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(answers[1]["data"], Value::Null);
    assert!(
        answers[2]["data"]["me"]["balance"].is_string(),
        "{}",
        r.body
    );
    assert_eq!(app.balance(&token).await, "74.00");
    assert_eq!(app.ledger_rows(&id).await, rows + 2);
    app.assert_ledger_invariants().await;
});

e2e!(
    the_cache_keeps_the_most_recently_used_documents,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let [a, b, c] = [
            "{ me { balance } }",
            "{ me { id } }",
            "{ me { displayName } }",
        ];
        let run = |text: Option<&'static str>, hash: String| {
            let token = token.clone();
            let app = &app;
            async move { post(app, &token, body(text, &hash, j!({}))).await }
        };
        for text in [a, b] {
            run(Some(text), sha256(text)).await.data();
        }
        run(None, sha256(a)).await.data();
        // Two documents fit: `b` was used least recently, so `c` evicts it.
        run(Some(c), sha256(c)).await.data();
        assert_refused(&run(None, sha256(b)).await, "PERSISTED_QUERY_NOT_FOUND");
        run(None, sha256(a)).await.data();
        run(None, sha256(c)).await.data();
        // The client's retry puts it back.
        run(Some(b), sha256(b)).await.data();
        run(None, sha256(b)).await.data();
    },
    |config: &mut loyalty_server::config::Config| config.graphql.persisted_query_cache_size = 2
);

e2e!(
    a_cached_document_refuses_what_its_text_refuses,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        view(&app, &token, Some(VIEW), "p1").await.data();
        let rows = app.ledger_rows(&id).await;
        // Wrong type, missing non-null, null for non-null, an unknown variable only.
        for variables in [
            j!({"sku": 5, "key": "bad-1"}),
            j!({"key": "bad-2"}),
            j!({"sku": null, "key": "bad-3"}),
            j!({"sku": ["p9"], "key": "bad-4"}),
        ] {
            let plain = app.gql(Some(&token), VIEW, variables.clone()).await;
            assert_eq!(plain.code(), "VALIDATION", "{variables}: {}", plain.body);
            let cached = post(&app, &token, body(None, &sha256(VIEW), variables)).await;
            assert_eq!(cached.status, plain.status);
            assert_eq!(cached.body, plain.body);
        }
        assert_eq!(app.ledger_rows(&id).await, rows, "nothing posted");

        // A whole-argument variable: good values skip validation on a hit, bad ones do not.
        let record = "mutation R($input: RecordActionInput!) { recordAction(input: $input) { awarded balance } }";
        let input = |sku: &str| j!({"input": {"action": "product_view", "objectId": sku, "idempotencyKey": sku}});
        post(
            &app,
            &token,
            body(Some(record), &sha256(record), input("p2")),
        )
        .await
        .data();
        for variables in [
            j!({"input": {"action": 5}}),
            j!({"input": {}}),
            j!({"input": null}),
            j!({}),
            j!({"input": {"action": "product_view", "objectId": "p3", "nope": 1}}),
            j!({"input": "product_view"}),
        ] {
            let plain = app.gql(Some(&token), record, variables.clone()).await;
            assert_eq!(plain.code(), "VALIDATION", "{variables}: {}", plain.body);
            let cached = post(&app, &token, body(None, &sha256(record), variables)).await;
            assert_eq!(cached.status, plain.status);
            assert_eq!(cached.body, plain.body);
        }
        assert_eq!(
            app.ledger_rows(&id).await,
            rows + 1,
            "only the good one posted"
        );
        let r = post(&app, &token, body(None, &sha256(record), input("p4"))).await;
        assert_eq!(r.data()["recordAction"]["balance"], "76.00");

        // A document without variables is validated once; an invalid one is refused every time.
        let invalid = "{ me { balance nope } }";
        let plain = app.gql(Some(&token), invalid, j!({})).await;
        assert_eq!(plain.code(), "VALIDATION");
        for text in [Some(invalid), None, None] {
            let cached = post(&app, &token, body(text, &sha256(invalid), j!({}))).await;
            assert_eq!(cached.body, plain.body);
        }
        for _ in 0..2 {
            let r = post(&app, &token, body(Some(BALANCE), &sha256(BALANCE), j!({}))).await;
            assert_eq!(r.data()["me"]["balance"], "76.00");
            let r = post(&app, &token, body(None, &sha256(BALANCE), j!({}))).await;
            assert_eq!(r.data()["me"]["balance"], "76.00");
        }
    }
);

e2e!(
    persisted_queries_over_the_websocket,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let mut ws = Ws::ready(&app, &token).await;
        let subscribe = |id: &str, text: Option<&str>| {
            let mut payload = j!({"extensions": persisted(&sha256(BALANCE))});
            if let Some(text) = text {
                payload["query"] = j!(text);
            }
            j!({"type": "subscribe", "id": id, "payload": payload})
        };
        ws.send(subscribe("miss", None)).await;
        let message = ws.recv().await;
        assert_eq!(message["type"], "error", "{message}");
        assert_eq!(message["id"], "miss");
        assert_eq!(
            message["payload"][0]["extensions"]["code"],
            "PERSISTED_QUERY_NOT_FOUND"
        );
        assert_eq!(message["payload"][0]["message"], "PersistedQueryNotFound");
        ws.send(subscribe("text", Some(BALANCE))).await;
        assert_eq!(ws.next("text").await["me"]["balance"], "70.00");
        assert_eq!(ws.recv().await["type"], "complete");
        ws.send(subscribe("hash", None)).await;
        assert_eq!(ws.next("hash").await["me"]["balance"], "70.00");
    }
);

e2e!(
    switched_off_the_server_says_so,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let r = post(&app, &token, body(None, &sha256(BALANCE), j!({}))).await;
        assert_refused(&r, "PERSISTED_QUERY_NOT_SUPPORTED");
        // Apollo Client then stops sending hashes and sends plain requests.
        assert_eq!(r.body["errors"][0]["message"], "PersistedQueryNotSupported");
        assert_eq!(app.balance(&token).await, "70.00");
    },
    |config: &mut loyalty_server::config::Config| config.graphql.persisted_query_cache_size = 0
);
