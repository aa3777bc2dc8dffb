//! `/graphql/ws`: graphql-transport-ws close codes, `balanceChanged` (snapshot, then consecutive
//! versions), `activity` per program, and fan-out from one instance to another through Redis.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::e2e;
use crate::helpers::*;

/// Bounds every wait so a broken server fails the test instead of hanging it (not a timing
/// assertion: the events normally arrive in milliseconds).
const PATIENCE: Duration = Duration::from_secs(20);

const BALANCE: &str = "subscription { balanceChanged { version account balance delta snapshot transaction { id kind source } member { id displayName } } }";
const ACTIVITY: &str = "subscription { activity { version account balance delta member { id displayName } transaction { kind source } } }";

pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn connect(app: &TestApp, protocol: &str) -> Ws {
        let url = format!("{}/graphql/ws", app.url.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
        let (stream, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol.split(',').next().unwrap().trim()
        );
        Ws { stream }
    }

    /// Connected, initialised with `token` and acknowledged.
    pub async fn ready(app: &TestApp, token: &str) -> Ws {
        let mut ws = Ws::connect(app, "graphql-transport-ws").await;
        ws.init(token).await;
        assert_eq!(ws.recv().await["type"], "connection_ack");
        ws
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn init(&mut self, token: &str) {
        self.send(j!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}))
            .await;
    }

    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(j!({"type": "subscribe", "id": id, "payload": {"query": query}}))
            .await;
    }

    /// The next protocol message (pings answered by the library are skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a readable message");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The payload of the next `next` message for `id`.
    pub async fn next(&mut self, id: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(
            (message["type"].as_str(), message["id"].as_str()),
            (Some("next"), Some(id)),
            "{message}"
        );
        message["payload"]["data"].clone()
    }

    /// The next `next` payload for `id` if one comes within `wait`.
    pub async fn next_within(&mut self, id: &str, wait: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(wait, self.stream.next())
                .await
                .ok()??;
            if let Ok(Message::Text(text)) = message {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "next" && message["id"] == id {
                    return Some(message["payload"]["data"].clone());
                }
            }
        }
    }

    /// The close code and reason the server ends the connection with.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("the server closes in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("socket error before close: {err}"),
            }
        }
    }
}

/// The `balanceChanged` event in a `next` payload.
fn balance_event(data: &Value) -> &Value {
    &data["balanceChanged"]
}

e2e!(close_codes_follow_the_protocol, |app: TestApp| async move {
    app.demo().await;
    let (member, _) = app.register("alice").await;

    // 4408: no connection_init in time (3 s in tests, WS_INIT_TIMEOUT_SECS in production).
    let mut ws = Ws::connect(&app, "graphql-transport-ws").await;
    assert_eq!(ws.closed().await.0, 4408);

    // 4401: subscribe before connection_ack.
    let mut ws = Ws::connect(&app, "graphql-transport-ws").await;
    ws.subscribe("1", BALANCE).await;
    assert_eq!(ws.closed().await, (4401, "Unauthorized".into()));

    // 4403: a bad token, a missing one, an expired one.
    let mut ws = Ws::connect(&app, "graphql-transport-ws").await;
    ws.init("not-a-jwt").await;
    assert_eq!(ws.closed().await.0, 4403);
    let mut ws = Ws::connect(&app, "graphql-transport-ws").await;
    ws.send(j!({"type": "connection_init"})).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("authorization"), "{reason}");
    let expired = token_with(j!({"sub": "alice", "program": "demo", "role": "member",
        "iss": "loyalty", "aud": "loyalty-api", "exp": chrono::Utc::now().timestamp() - 3600}));
    let mut ws = Ws::connect(&app, "graphql-transport-ws").await;
    ws.init(&expired).await;
    assert_eq!(ws.closed().await.0, 4403);

    // 4429: a second connection_init.
    let mut ws = Ws::ready(&app, &member).await;
    ws.init(&member).await;
    assert_eq!(ws.closed().await.0, 4429);

    // 4409: a subscription id already running.
    let mut ws = Ws::ready(&app, &member).await;
    ws.subscribe("same", BALANCE).await;
    assert_eq!(balance_event(&ws.next("same").await)["snapshot"], true);
    ws.subscribe("same", BALANCE).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4409);
    assert!(reason.contains("same"), "{reason}");

    // 4400: not JSON, an unknown type, a subscribe without a payload, a binary frame.
    for bad in [
        "{not json",
        r#"{"type":"shout"}"#,
        r#"{"type":"subscribe","id":"1"}"#,
    ] {
        let mut ws = Ws::ready(&app, &member).await;
        ws.send_text(bad).await;
        assert_eq!(ws.closed().await.0, 4400, "{bad}");
    }
    let mut ws = Ws::ready(&app, &member).await;
    ws.stream
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws.closed().await.0, 4400);

    // ping → pong with the same payload; a completed id can be reused.
    let mut ws = Ws::ready(&app, &member).await;
    ws.send(j!({"type": "ping", "payload": {"n": 1}})).await;
    assert_eq!(ws.recv().await, j!({"type": "pong", "payload": {"n": 1}}));
    ws.subscribe("a", BALANCE).await;
    ws.next("a").await;
    ws.send(j!({"type": "complete", "id": "a"})).await;
    ws.subscribe("a", BALANCE).await;
    assert_eq!(balance_event(&ws.next("a").await)["snapshot"], true);

    // A member may not subscribe to the admin feed: an `error` for that id, the socket stays.
    ws.subscribe("x", ACTIVITY).await;
    let error = ws.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("x"))
    );
    assert_eq!(error["payload"][0]["extensions"]["code"], "FORBIDDEN");
    ws.send(j!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");

    // A token whose member never joined: NOT_FOUND for that subscription, nothing created.
    let mut ws = Ws::ready(&app, &app.member("stranger")).await;
    ws.subscribe("s", BALANCE).await;
    let error = ws.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("s"))
    );
    assert_eq!(error["payload"][0]["extensions"]["code"], "NOT_FOUND");
    let me = app
        .gql(Some(&app.member("stranger")), "{ me { id } }", j!({}))
        .await;
    assert_eq!(me.data()["me"], Value::Null);
});

e2e!(
    a_token_expiring_mid_stream_closes_4403,
    |app: TestApp| async move {
        app.demo().await;
        app.register("alice").await;
        // Valid for two more seconds (the leeway only applies to accepting it).
        let short = token_with(j!({"sub": "alice", "program": "demo", "role": "member",
        "iss": "loyalty", "aud": "loyalty-api", "exp": chrono::Utc::now().timestamp() + 2}));
        let mut ws = Ws::ready(&app, &short).await;
        ws.subscribe("1", BALANCE).await;
        assert_eq!(balance_event(&ws.next("1").await)["snapshot"], true);
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4403);
        assert!(reason.contains("expired"), "{reason}");
    }
);

e2e!(
    balance_changed_snapshot_then_consecutive_versions,
    |app: TestApp| async move {
        app.demo().await;
        let (alice, _) = app.register("alice").await;
        let (bob, _) = app.register("bob").await;
        let mut ws = Ws::ready(&app, &alice).await;
        ws.subscribe("1", BALANCE).await;
        let snapshot = balance_event(&ws.next("1").await).clone();
        assert_eq!(snapshot["snapshot"], true);
        assert_eq!(snapshot["balance"], "70.00");
        assert_eq!(snapshot["delta"], "0");
        assert_eq!(snapshot["transaction"], Value::Null);
        let start = snapshot["version"].as_i64().unwrap();
        assert_eq!(start, 2); // join + registration

        // Bob's postings never reach Alice's socket.
        app.daily_login(&bob, "b-1").await;
        app.daily_login(&alice, "a-1").await;
        let login = balance_event(&ws.next("1").await).clone();
        assert_eq!(login["version"], start + 1);
        assert_eq!(login["balance"], "75.00");
        assert_eq!(login["delta"], "5.00");
        assert_eq!(login["account"], "POINTS");
        assert_eq!(login["snapshot"], false);
        assert_eq!(login["transaction"]["source"], "daily_login");
        assert_eq!(
            login["member"]["displayName"],
            snapshot["member"]["displayName"]
        );

        // A purchase posts on both accounts: two events, consecutive versions.
        let purchase = app
        .gql(
            Some(&app.service()),
            "mutation { recordPurchase(input: {memberExternalId: \"alice\", orderId: \"o-1\", amount: \"20\", idempotencyKey: \"p-1\"}) { pointsAwarded } }",
            j!({}),
        )
        .await;
        purchase.data();
        let mut versions = vec![];
        let mut accounts = vec![];
        for _ in 0..2 {
            let event = balance_event(&ws.next("1").await).clone();
            versions.push(event["version"].as_i64().unwrap());
            accounts.push(event["account"].as_str().unwrap().to_owned());
            if event["account"] == "POINTS" {
                // 5% of 20 USD at 10 points per USD = 10 points.
                assert_eq!(event["balance"], "85.00");
            }
        }
        assert_eq!(versions, vec![start + 2, start + 3]);
        accounts.sort();
        assert_eq!(accounts, vec!["POINTS", "QUALIFICATION"]);

        // The versions the socket saw are the member's version.
        let me = app
            .gql(Some(&alice), "{ me { version balance } }", j!({}))
            .await;
        assert_eq!(me.data()["me"]["version"], start + 3);
        assert_eq!(me.data()["me"]["balance"], "85.00");
    }
);

e2e!(activity_is_per_program, |app: TestApp| async move {
    app.demo().await;
    app.loyalty
        .create_program(loyalty_domain::program::NewProgram {
            external_id: "other".into(),
            name: "Other".into(),
            timezone: "UTC".into(),
            currency: "USD".into(),
            points_per_currency: rust_decimal::Decimal::ONE,
            validity_days: None,
        })
        .await
        .unwrap();
    let mut demo_feed = Ws::ready(&app, &app.admin()).await;
    demo_feed.subscribe("feed", ACTIVITY).await;
    let mut other_feed = Ws::ready(&app, &app.token("other", "admin", "olga")).await;
    other_feed.subscribe("feed", ACTIVITY).await;
    // Subscriptions are registered once the server has read the `subscribe`: a ping answered
    // after it proves that.
    for ws in [&mut demo_feed, &mut other_feed] {
        ws.send(j!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");
    }

    let (alice, _) = app.register("alice").await;
    let mut seen = vec![];
    for _ in 0..2 {
        let event = demo_feed.next("feed").await["activity"].clone();
        seen.push(event["transaction"]["source"].as_str().unwrap().to_owned());
        assert_eq!(event["member"]["displayName"], "Test");
    }
    assert_eq!(seen, vec!["new_member_reward", "new_account_registration"]);
    app.daily_login(&alice, "k").await;
    assert_eq!(
        demo_feed.next("feed").await["activity"]["transaction"]["source"],
        "daily_login"
    );

    // The other program's admin saw none of it: its first event is its own program's.
    app.gql(
        Some(&app.token("other", "member", "zed")),
        "mutation { register(input: {displayName: \"Zed\"}) { created } }",
        j!({}),
    )
    .await
    .data();
    // "other" has no rules, so register posts nothing; an admin adjustment does.
    let member_id = app
        .gql(
            Some(&app.token("other", "member", "zed")),
            "{ me { id } }",
            j!({}),
        )
        .await
        .data()["me"]["id"]
        .clone();
    app.gql(
        Some(&app.token("other", "admin", "olga")),
        "mutation($m: ID!) { adjustPoints(memberId: $m, amount: \"7\", reason: \"welcome\", idempotencyKey: \"adj-1\") { balance } }",
        j!({"m": member_id}),
    )
    .await
    .data();
    let first = other_feed.next("feed").await["activity"].clone();
    assert_eq!(first["member"]["displayName"], "Zed");
    assert_eq!(first["delta"], "7.00");
});

/// Two instances sharing PostgreSQL and Redis: a socket on B hears a posting committed on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_committed_on_one_instance_reaches_a_socket_on_another() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_app_at(Backend::Postgres, Some(&a), None).await;
    a.demo().await;
    let (alice, _) = a.register("alice").await;
    let mut ws = Ws::ready(&b, &alice).await;
    ws.subscribe("1", BALANCE).await;
    let snapshot = balance_event(&ws.next("1").await).clone();
    let start = snapshot["version"].as_i64().unwrap();
    for (i, expected) in ["75.00", "77.00", "79.00"].iter().enumerate() {
        if i == 0 {
            a.daily_login(&alice, "l-1").await;
        } else {
            let view = a
                .gql(
                    Some(&alice),
                    "mutation($o: String) { recordAction(input: {action: \"product_view\", objectId: $o, idempotencyKey: $o}) { awarded } }",
                    j!({"o": format!("sku-{i}")}),
                )
                .await;
            assert_eq!(view.data()["recordAction"]["awarded"], true);
        }
        let event = balance_event(&ws.next("1").await).clone();
        assert_eq!(event["version"], start + 1 + i as i64);
        assert_eq!(event["balance"], *expected);
    }
    a.assert_ledger_invariants().await;
}
