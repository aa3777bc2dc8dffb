//! `/graphql/ws`: GraphQL over WebSocket.
//!
//! `graphql-transport-ws` (the default, and what a client without a subprotocol gets) is served
//! by [`Session`] below, so that every close code is exactly what the protocol
//! (enisdenjo/graphql-ws `PROTOCOL.md`) says: 4400 malformed message, 4401 subscribe before
//! `connection_ack`, 4403 bad or expired token (also when it expires mid-stream), 4408 no
//! `connection_init` in time, 4409 duplicate subscription id, 4429 second `connection_init`,
//! 1009 a message over 64 KiB.
//!
//! Only `graphql-transport-ws` is spoken. A client that offers subprotocols but not that one
//! (the legacy `graphql-ws` of subscriptions-transport-ws, say) is closed with 4406
//! "Subprotocol not acceptable", as enisdenjo/graphql-ws's server does: the legacy protocol had
//! no init timeout, no close at the token's expiry and no close codes, so it was removed
//! rather than kept as a second, weaker way in.
//!
//! The token travels in `connection_init`'s payload: `{"authorization": "Bearer …"}`.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::{Request as GqlRequest, Variables};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use futures::{SinkExt, StreamExt};
use loyalty_domain::Actor;
use loyalty_graphql::RequestId;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_http::request_id::RequestId as RequestIdHeader;

use super::client_addr::ClientAddr;
use super::errors::{RATE_LIMITED, VALIDATION};
use super::graphql::mask_errors;
use super::rate_limit::{too_many_requests, RetryAfter};
use super::AppState;
use crate::auth::AuthError;

pub const TRANSPORT_WS: &str = "graphql-transport-ws";

/// Largest client message accepted.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Subscriptions one connection may run at once.
const MAX_SUBSCRIPTIONS: usize = 100;
/// Messages queued for a slow client before the connection's subscriptions wait.
const OUTBOX: usize = 256;

/// `GET /graphql/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestIdHeader>>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let request_id = request_id
        .and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    let client = client.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(c)| c.0);
    let Some(slot) = state.sockets.try_open(client) else {
        ::metrics::counter!("http_rate_limited_total", "limit" => "ws_sockets_per_ip").increment(1);
        return too_many_requests(
            RetryAfter(Duration::from_secs(1)),
            "too many open WebSockets from this address",
        );
    };
    // Small buffers: 10,000 idle sockets must not cost 256 KiB each (tungstenite's default
    // 128 KiB read and write buffers). Events are a few hundred bytes and are written one by one.
    let ws = ws
        .protocols([TRANSPORT_WS])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024);
    // No subprotocol at all means ours; offering only others (e.g. the legacy `graphql-ws`) is
    // refused after the handshake, where a close code can say why.
    let acceptable =
        ws.selected_protocol().is_some() || !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        metrics::gauge!("loyalty_ws_connections").increment(1.0);
        if acceptable {
            Session::new(state, request_id).run(socket).await;
        } else {
            close_at_once(socket, 4406, "Subprotocol not acceptable").await;
        }
        metrics::gauge!("loyalty_ws_connections").decrement(1.0);
    })
}

async fn close_at_once(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        // Wait (bounded) for the client's close reply, so the close frame is not lost to a reset.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Reads `{"authorization": "Bearer <jwt>"}` (the key and the scheme in any capitalisation)
/// and verifies it as an HTTP `Authorization` header: the caller and when the token expires.
fn authenticate(state: &AppState, payload: Option<&Value>) -> Result<(Actor, u64), String> {
    let value = payload
        .and_then(Value::as_object)
        .and_then(|map| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_str)
        .ok_or("connection_init payload needs {\"authorization\": \"Bearer <token>\"}")?;
    state
        .auth
        .verify_authorization(value)
        .map_err(|err: AuthError| err.to_string())
}

/// A message from a graphql-transport-ws client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        payload: Option<Value>,
    },
    Ping {
        payload: Option<Value>,
    },
    Pong {
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribePayload {
    /// Empty when `extensions.persistedQuery` names a cached document.
    #[serde(default)]
    query: String,
    operation_name: Option<String>,
    variables: Option<Value>,
    #[serde(default)]
    extensions: async_graphql::Extensions,
}

/// Why a session ends: a close code and reason, or the peer went away.
struct Close(u16, String);

fn close(code: u16, reason: impl Into<String>) -> Close {
    Close(code, reason.into())
}

/// One graphql-transport-ws connection.
struct Session {
    state: AppState,
    request_id: String,
    init_received: bool,
    actor: Option<Actor>,
    /// When the token presented at `connection_init` expires.
    expires_at: Option<Instant>,
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl Session {
    fn new(state: AppState, request_id: String) -> Self {
        Session {
            state,
            request_id,
            init_received: false,
            actor: None,
            expires_at: None,
            subscriptions: HashMap::new(),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (outbox, mut outgoing) = mpsc::channel::<Message>(OUTBOX);
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let init_deadline =
            Instant::now() + Duration::from_secs(self.state.config.ws_init_timeout_secs);
        let shutdown = self.state.shutdown.clone();
        let ended = loop {
            let expiry = self.expires_at;
            tokio::select! {
                () = shutdown.cancelled() => break Some(close(1001, "server is shutting down")),
                () = tokio::time::sleep_until(init_deadline), if !self.init_received => {
                    break Some(close(4408, "Connection initialisation timeout"));
                }
                () = sleep_until(expiry), if expiry.is_some() => {
                    break Some(close(4403, "Forbidden: the token has expired"));
                }
                message = stream.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            break Some(close(4400, "Binary messages are not supported"));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Err(err)) if too_big(&err) => {
                            break Some(close(1009, "Message too big"));
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    };
                    if let Err(ended) = self.on_text(text.as_str(), &outbox).await {
                        break Some(ended);
                    }
                }
            }
        };
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
        if let Some(Close(code, reason)) = ended {
            let _ = outbox
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from(truncate(reason, 123)),
                })))
                .await;
        }
        drop(outbox);
        let _ = writer.await;
    }

    async fn on_text(&mut self, text: &str, outbox: &mpsc::Sender<Message>) -> Result<(), Close> {
        let message: ClientMessage = serde_json::from_str(text)
            .map_err(|err| close(4400, format!("Invalid message received: {err}")))?;
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.init_received {
                    return Err(close(4429, "Too many initialisation requests"));
                }
                self.init_received = true;
                let (actor, exp) = authenticate(&self.state, payload.as_ref())
                    .map_err(|err| close(4403, format!("Forbidden: {err}")))?;
                self.actor = Some(actor);
                self.expires_at = Some(instant_of(exp));
                send(outbox, json!({"type": "connection_ack"})).await;
            }
            ClientMessage::Ping { payload } => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = payload {
                    pong["payload"] = payload;
                }
                send(outbox, pong).await;
            }
            ClientMessage::Pong { .. } => {}
            ClientMessage::Subscribe { id, payload } => {
                let Some(actor) = self.actor.clone() else {
                    return Err(close(4401, "Unauthorized"));
                };
                self.subscriptions.retain(|_, task| !task.is_finished());
                if self.subscriptions.contains_key(&id) {
                    return Err(close(
                        4409,
                        format!("Subscriber for {} already exists", truncate(id, 80)),
                    ));
                }
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    let message =
                        format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
                    refuse(outbox, &id, RATE_LIMITED, &message).await;
                    return Ok(());
                }
                // The same persisted queries, price and limits as an HTTP request, checked
                // before anything runs.
                let prepared = match self.state.persisted.prepare(request_of(payload)) {
                    Ok(prepared) => prepared,
                    Err(refusal) => {
                        let errors = serde_json::to_value([refusal]).unwrap_or(Value::Null);
                        refuse_with(outbox, &id, errors).await;
                        return Ok(());
                    }
                };
                let max_root_mutations = self.state.config.graphql.max_root_mutations;
                let checks = prepared.checks.as_ref().ok();
                let cost = match super::graphql::price(checks, max_root_mutations) {
                    Ok(cost) => cost,
                    Err(message) => {
                        refuse(outbox, &id, VALIDATION, &message).await;
                        return Ok(());
                    }
                };
                if self.state.limits.check_subject(&actor, cost).is_err() {
                    ::metrics::counter!("http_rate_limited_total", "limit" => "subject")
                        .increment(1);
                    let message = "too many requests for this caller";
                    refuse(outbox, &id, RATE_LIMITED, message).await;
                    return Ok(());
                }
                let task = tokio::spawn(execute(
                    self.state.clone(),
                    actor,
                    self.request_id.clone(),
                    id.clone(),
                    prepared.request,
                    outbox.clone(),
                ));
                self.subscriptions.insert(id, task);
            }
            ClientMessage::Complete { id } => {
                if let Some(task) = self.subscriptions.remove(&id) {
                    task.abort();
                }
            }
        }
        Ok(())
    }
}

fn request_of(payload: SubscribePayload) -> GqlRequest {
    let mut request = GqlRequest::new(payload.query);
    if let Some(name) = payload.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = payload.variables {
        request = request.variables(Variables::from_json(variables));
    }
    request.extensions = payload.extensions;
    request
}

/// An `error` message for one operation: refused before it runs; the socket stays open.
async fn refuse(outbox: &mpsc::Sender<Message>, id: &str, code: &str, message: &str) {
    let errors = json!([{"message": message, "extensions": {"code": code}}]);
    refuse_with(outbox, id, errors).await;
}

async fn refuse_with(outbox: &mpsc::Sender<Message>, id: &str, errors: Value) {
    send(
        outbox,
        json!({"type": "error", "id": id, "payload": errors}),
    )
    .await;
}

/// Runs one operation, sending `next` per result and `complete` at the end, or `error` when the
/// operation is refused before it runs.
async fn execute(
    state: AppState,
    actor: Actor,
    request_id: String,
    id: String,
    request: GqlRequest,
    outbox: mpsc::Sender<Message>,
) {
    let request = request.data(actor).data(RequestId(request_id.clone()));
    let mut responses = state.schema.execute_stream(request);
    let mut first = true;
    while let Some(mut response) = responses.next().await {
        mask_errors(&mut response, &request_id);
        if first && response.data == async_graphql::Value::Null && !response.errors.is_empty() {
            let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            send(
                &outbox,
                json!({"type": "error", "id": id, "payload": errors}),
            )
            .await;
            return;
        }
        first = false;
        let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
        if !send(
            &outbox,
            json!({"type": "next", "id": id, "payload": payload}),
        )
        .await
        {
            return;
        }
    }
    send(&outbox, json!({"type": "complete", "id": id})).await;
}

async fn send(outbox: &mpsc::Sender<Message>, message: Value) -> bool {
    outbox
        .send(Message::Text(Utf8Bytes::from(message.to_string())))
        .await
        .is_ok()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a read failed because the client sent a frame or message over `MAX_MESSAGE_BYTES`
/// (tungstenite refuses it without closing; the protocol wants 1009).
fn too_big(err: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        std::error::Error::source(err).and_then(|inner| inner.downcast_ref::<Error>()),
        Some(Error::Capacity(_))
    )
}

/// The monotonic instant of a UNIX `exp`.
fn instant_of(exp: u64) -> Instant {
    let now = crate::auth::unix_now();
    Instant::now() + Duration::from_secs(exp.saturating_sub(now))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
