//! `loyalty-ws-bench`: opens N `balanceChanged` subscriptions (graphql-transport-ws) on a
//! running loyalty-server, then posts points one at a time and measures how long each event
//! takes to reach every socket of its member, plus the server's memory per connection.
//!
//! Usually started through `bench/run.sh ws`, which builds everything, prepares a fresh
//! database and a server (PostgreSQL + Redis, so events go through Redis pub/sub), and passes
//! its arguments through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// WebSocket fan-out benchmark for loyalty-server.
#[derive(Debug, Parser)]
#[command(name = "loyalty-ws-bench", version)]
struct Args {
    /// Base URL of the running loyalty-server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Subscriptions to open (one WebSocket each).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Distinct members; connections are spread evenly over them (several devices each).
    #[arg(long, default_value_t = 1_000)]
    members: usize,
    /// Postings to make, one at a time, each to a random member.
    #[arg(long, default_value_t = 300)]
    events: usize,
    /// Sockets opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// The server's process id, to read its resident memory (VmRSS) before and after.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Program external id (the demo program has a product_view rule).
    #[arg(long, default_value = "demo")]
    program: String,
}

struct Jwt {
    key: EncodingKey,
    program: String,
}

impl Jwt {
    fn member(&self, sub: &str) -> Result<String> {
        let exp = chrono_like_now() + 24 * 3600;
        let claims = json!({"sub": sub, "program": self.program, "role": "member",
            "iss": std::env::var("JWT_ISSUER").unwrap_or_else(|_| "loyalty".into()),
            "aud": std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "loyalty-api".into()),
            "exp": exp});
        jsonwebtoken::encode(&Header::default(), &claims, &self.key).context("signing JWT")
    }
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Arrival times of events, by transaction id.
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

async fn gql(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value> {
    let body: Value = client
        .post(format!("{server}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await?;
    if body.get("errors").is_some() {
        bail!("GraphQL errors: {body}");
    }
    Ok(body["data"].clone())
}

/// Opens one subscription and records every event's arrival until `done`.
async fn subscriber(
    ws_url: String,
    token: String,
    arrivals: Arrivals,
    ready: tokio::sync::mpsc::Sender<Result<()>>,
    done: tokio_util::sync::CancellationToken,
) {
    let connect = async {
        let mut request = ws_url.into_client_request()?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
        let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
        ws.send(Message::Text(init.to_string().into())).await?;
        let subscribe = json!({"type": "subscribe", "id": "1", "payload": {"query":
            "subscription { balanceChanged { version snapshot transaction { id } } }"}});
        ws.send(Message::Text(subscribe.to_string().into())).await?;
        // Wait for the snapshot: the subscription is live from then on.
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message? {
                let v: Value = serde_json::from_str(&text)?;
                if v["type"] == "next" {
                    return Ok::<_, anyhow::Error>(ws);
                }
                if v["type"] == "error" {
                    bail!("subscription refused: {v}");
                }
            }
        }
        bail!("closed before the snapshot")
    };
    let mut ws = match connect.await {
        Ok(ws) => {
            let _ = ready.send(Ok(())).await;
            ws
        }
        Err(err) => {
            let _ = ready.send(Err(err)).await;
            return;
        }
    };
    drop(ready);
    loop {
        tokio::select! {
            () = done.cancelled() => break,
            message = ws.next() => {
                let Some(Ok(Message::Text(text))) = message else { break };
                let at = Instant::now();
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(id) = v["payload"]["data"]["balanceChanged"]["transaction"]["id"].as_str() {
                    if let Ok(mut map) = arrivals.lock() {
                        map.entry(id.to_owned()).or_default().push(at);
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET must be set (the server's)")?;
    let jwt = Jwt {
        key: EncodingKey::from_secret(secret.as_bytes()),
        program: args.program.clone(),
    };
    let client = reqwest::Client::new();
    let server = args.server.trim_end_matches('/').to_owned();
    let ws_url = format!("{}/graphql/ws", server.replacen("http", "ws", 1));
    let members = args.members.max(1).min(args.connections.max(1));

    eprintln!("registering {members} members");
    let mut tokens = Vec::with_capacity(members);
    for i in 0..members {
        let token = jwt.member(&format!("ws-bench-{i}"))?;
        gql(
            &client,
            &server,
            &token,
            "mutation { register(input: {displayName: \"Bench\"}) { created } }",
            json!({}),
        )
        .await?;
        tokens.push(token);
    }

    let rss_before = args.server_pid.and_then(rss_kib);
    eprintln!("opening {} subscriptions", args.connections);
    let arrivals: Arrivals = Arc::default();
    let done = tokio_util::sync::CancellationToken::new();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(args.connections);
    let mut failures = 0usize;
    for c in 0..args.connections {
        let permit = gate.clone().acquire_owned().await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        handles.push(tokio::spawn(subscriber(
            ws_url.clone(),
            tokens[c % members].clone(),
            arrivals.clone(),
            tx,
            done.clone(),
        )));
        tokio::spawn(async move {
            let _ = rx.recv().await;
            drop(permit);
        });
        if c % 1000 == 999 {
            eprintln!("  {} open", c + 1);
        }
    }
    // Wait for every socket to be live (each released its permit after its snapshot).
    let _all = gate
        .acquire_many(args.connect_concurrency.max(1) as u32)
        .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let alive = handles.iter().filter(|h| !h.is_finished()).count();
    failures += args.connections - alive;
    if alive == 0 {
        bail!("no subscription could be opened");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = args.server_pid.and_then(rss_kib);

    eprintln!("posting {} events, one at a time", args.events);
    let mut sent: HashMap<String, (Instant, usize)> = HashMap::new();
    let mut http_times = Vec::new();
    let mut rng = rand::rng();
    for e in 0..args.events {
        let m = rng.random_range(0..members);
        let t0 = Instant::now();
        let data = gql(
            &client,
            &server,
            &tokens[m],
            "mutation($o: String) { recordAction(input: {action: \"product_view\", objectId: $o, idempotencyKey: $o}) { transaction { id } } }",
            json!({"o": format!("ws-bench-{e}")}),
        )
        .await?;
        http_times.push(t0.elapsed());
        if let Some(id) = data["recordAction"]["transaction"]["id"].as_str() {
            let sockets = (0..args.connections).filter(|c| c % members == m).count();
            sent.insert(id.to_owned(), (t0, sockets));
        }
        // Spaced out so each event's latency is its own, not a queue's.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.cancel();

    let arrivals = arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let mut latencies = Vec::new();
    let (mut expected, mut received) = (0usize, 0usize);
    for (id, (t0, sockets)) in &sent {
        expected += sockets;
        if let Some(times) = arrivals.get(id) {
            received += times.len();
            latencies.extend(times.iter().map(|t| t.duration_since(*t0)));
        }
    }
    latencies.sort();
    http_times.sort();

    println!();
    println!("| metric | value |");
    println!("|---|---:|");
    println!("| subscriptions open | {alive} (failed: {failures}) |");
    println!(
        "| members (sockets each) | {members} ({}) |",
        args.connections / members
    );
    println!("| time to open all | {connect_secs:.1} s |");
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per = (after.saturating_sub(before) as f64 * 1024.0) / alive as f64;
        println!(
            "| server RSS before / after | {:.1} MiB / {:.1} MiB |",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
        println!("| server memory per connection | {:.1} KiB |", per / 1024.0);
    }
    println!("| postings | {} |", sent.len());
    println!("| events delivered / expected | {received} / {expected} |");
    println!(
        "| posting HTTP round trip p50 / p99 | {} / {} ms |",
        ms(percentile(&http_times, 50.0)),
        ms(percentile(&http_times, 99.0))
    );
    println!(
        "| request sent → event received p50 | {} ms |",
        ms(percentile(&latencies, 50.0))
    );
    println!(
        "| request sent → event received p99 | {} ms |",
        ms(percentile(&latencies, 99.0))
    );
    println!(
        "| request sent → event received max | {} ms |",
        ms(latencies.last().copied().unwrap_or_default())
    );
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}
