//! The transport's own limits: only `graphql-transport-ws` is spoken (anything else offered is
//! closed with 4406), messages over 64 KiB close with 1009, open WebSockets per client address
//! are capped, and behind `TRUSTED_PROXIES` the client address comes from `X-Forwarded-For`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::e2e;
use crate::helpers::*;
use crate::live::Ws;

const PATIENCE: Duration = Duration::from_secs(20);
const BALANCE: &str = "subscription { balanceChanged { version balance } }";

/// A handshake done by hand, offering `protocols`: tungstenite's client would itself refuse a
/// server that selects none of them, which is exactly the answer under test. Returns the
/// status line, the response headers and the socket.
async fn handshake(app: &TestApp, protocols: &str) -> (String, String, WebSocketStream<TcpStream>) {
    let address = app.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /graphql/ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte, so nothing after the head (the server's first frame) is swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
            .await
            .expect("a handshake answer in time")
            .unwrap();
        head.push(byte);
    }
    let head = String::from_utf8(head).unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    let socket = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    (status.to_owned(), headers.to_ascii_lowercase(), socket)
}

async fn close_code(socket: &mut WebSocketStream<TcpStream>) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
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

e2e!(
    the_legacy_graphql_ws_protocol_is_refused_with_4406,
    |app: TestApp| async move {
        app.demo().await;
        let (alice, _) = app.register("alice").await;
        for offered in ["graphql-ws", "graphql-ws, mqtt", "soap"] {
            let (status, headers, mut socket) = handshake(&app, offered).await;
            assert!(status.contains(" 101 "), "{offered}: {status}");
            assert!(
                !headers.contains("sec-websocket-protocol"),
                "{offered}: no subprotocol is selected: {headers}"
            );
            // Even a client that goes on as if it were accepted gets nothing but the close.
            let init = j!({"type": "connection_init", "payload": {"authorization": format!("Bearer {alice}")}});
            let _ =
                futures::SinkExt::send(&mut socket, Message::Text(init.to_string().into())).await;
            assert_eq!(
                close_code(&mut socket).await,
                (4406, "Subprotocol not acceptable".to_owned()),
                "{offered}"
            );
        }
        // Offering ours among others selects ours.
        let (status, headers, _) = handshake(&app, "graphql-ws, graphql-transport-ws").await;
        assert!(status.contains(" 101 "), "{status}");
        assert!(
            headers.contains("sec-websocket-protocol: graphql-transport-ws"),
            "{headers}"
        );
    }
);

e2e!(
    a_message_over_64_kib_closes_with_1009,
    |app: TestApp| async move {
        app.demo().await;
        let (alice, _) = app.register("alice").await;
        // A subscribe whose query alone is 70,000 bytes.
        let mut ws = Ws::ready(&app, &alice).await;
        let padded = format!("{BALANCE} #{}", "x".repeat(70_000));
        ws.send(j!({"type": "subscribe", "id": "1", "payload": {"query": padded}}))
            .await;
        assert_eq!(ws.closed().await.0, 1009);
        // The same in two frames of 40,000 bytes each: the message is what counts.
        let (_, _, mut socket) = handshake(&app, "graphql-transport-ws").await;
        let init = j!({"type": "connection_init", "payload": {"authorization": format!("Bearer {alice}")}});
        socket
            .send(Message::Text(init.to_string().into()))
            .await
            .unwrap();
        let half = "x".repeat(40_000);
        let text = Data::Text;
        for (part, opcode, last) in [
            (&half, OpCode::Data(text), false),
            (&half, OpCode::Data(Data::Continue), true),
        ] {
            socket
                .send(Message::Frame(Frame::message(part.clone(), opcode, last)))
                .await
                .unwrap();
        }
        assert_eq!(close_code(&mut socket).await.0, 1009);
        // Just under the limit is an ordinary message.
        let mut ws = Ws::ready(&app, &alice).await;
        let padded = format!("{BALANCE} #{}", "x".repeat(60_000));
        ws.send(j!({"type": "subscribe", "id": "1", "payload": {"query": padded}}))
            .await;
        assert_eq!(ws.next("1").await["balanceChanged"]["balance"], "70.00");
    }
);

/// Opens a graphql-transport-ws socket with `x-forwarded-for`, or the HTTP status of the
/// refusal.
async fn open(
    app: &TestApp,
    forwarded_for: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, u16> {
    let url = format!("{}/graphql/ws", app.url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(address) = forwarded_for {
        request
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(address).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("unexpected handshake failure: {err}"),
    }
}

/// Retries `open` until a place is free again (the server notices a closed socket shortly
/// after the client closes it).
async fn open_eventually(app: &TestApp, forwarded_for: Option<&str>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if open(app, forwarded_for).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// The caps live in the HTTP layer, the same on both backends: SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_websockets_are_capped_per_client_address() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.ws_max_sockets_per_ip = 2
    })
    .await;
    let first = open(&app, None).await.unwrap();
    let _second = open(&app, None).await.unwrap();
    assert_eq!(
        open(&app, None).await.err(),
        Some(429),
        "the third is refused"
    );
    // Without TRUSTED_PROXIES a forwarded address is not believed: still the same client.
    assert_eq!(open(&app, Some("198.51.100.7")).await.err(), Some(429));
    // Plain HTTP is unaffected.
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Closing one frees its place.
    let mut first = first;
    first.close(None).await.unwrap();
    drop(first);
    open_eventually(&app, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.ws_max_sockets_per_ip = 1;
        config.http.trusted_proxies = loopback_proxies();
    })
    .await;
    // Our test client plays the proxy (127.0.0.1), forwarding two different clients.
    let _a = open(&app, Some("203.0.113.7")).await.unwrap();
    assert_eq!(
        open(&app, Some("198.51.100.1, 203.0.113.7")).await.err(),
        Some(429),
        "the right-most untrusted hop is the client; what it wrote on the left is ignored"
    );
    let _b = open(&app, Some("203.0.113.8")).await.unwrap();
    assert_eq!(open(&app, Some("203.0.113.8")).await.err(), Some(429));
    // The per-IP request limit keys on the same address.
    let limited = spawn_app_with(Backend::Sqlite, |config| {
        config.rate_limit_ip_per_sec = 1;
        config.http.trusted_proxies = loopback_proxies();
    })
    .await;
    let post = |forwarded: &'static str| {
        limited
            .client
            .post(format!("{}/graphql", limited.url))
            .header("x-forwarded-for", forwarded)
            .json(&j!({"query": "{ __typename }"}))
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post("203.0.113.7").await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(post("203.0.113.9").await.unwrap().status().as_u16(), 200);
}

fn loopback_proxies() -> loyalty_server::config::TrustedProxies {
    loyalty_server::config::TrustedProxies::parse("127.0.0.0/8").unwrap()
}
