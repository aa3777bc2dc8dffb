//! `--webhooks`: what outbound webhooks cost the posting path, and how fast they are delivered.
//!
//! Starts a local receiver (answers 204 to every POST, counts deliveries), creates one endpoint
//! subscribed to every event type, then for each concurrency runs the mixed workload in rounds,
//! alternating the endpoint disabled (no outbox row is written) and enabled (every posting also
//! writes its events to the outbox). After each enabled phase it waits until the outbox has no
//! pending event, so the next disabled phase does not compete with deliveries; the events
//! delivered over the phase and that drain give the delivery rate. With
//! `--webhook-drain-timeout-secs 0` it does not wait: run against a server that delivers nothing
//! (`WEBHOOK_POLL_INTERVAL_MS=0`), that isolates what writing the outbox costs a posting.
//!
//! Then the backlog (`--webhook-backlog`, unless 0 or the server delivers nothing): that many
//! events are inserted into the outbox in one statement, spread over the members (each member's
//! events in order, so a member's next one waits for its previous one), due at once, and timed
//! until the receiver got them all: the worker's rate with nothing else running.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::Row;

use crate::http::{self, HttpConfig, Load, Mix};
use crate::stats::{fmt_ms, table_header, table_row, Summary};

pub struct WebhookConfig<'a> {
    pub http: HttpConfig,
    pub admin_token: String,
    pub database_url: &'a str,
    pub concurrencies: Vec<usize>,
    pub mix: Mix,
    pub rounds: usize,
    pub backlog: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain_timeout: Duration,
}

/// Deliveries the receiver answered.
#[derive(Default)]
struct Received {
    count: AtomicU64,
}

async fn receiver() -> Result<(SocketAddr, Arc<Received>)> {
    let received = Arc::new(Received::default());
    let state = received.clone();
    let router =
        axum::Router::new().fallback(axum::routing::post(move |_body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                state.count.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the webhook receiver")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("webhook receiver stopped: {e}");
        }
    });
    Ok((addr, received))
}

async fn admin(cfg: &WebhookConfig<'_>, query: &str, variables: Value) -> Result<Value> {
    let url = format!("{}/graphql", cfg.http.server.trim_end_matches('/'));
    let body: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(&cfg.admin_token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    if !body["errors"].is_null() {
        bail!("{query}: {}", body["errors"]);
    }
    Ok(body["data"].clone())
}

async fn set_enabled(cfg: &WebhookConfig<'_>, endpoint: &str, enabled: bool) -> Result<()> {
    admin(
        cfg,
        "mutation($e: ID!, $on: Boolean!) { updateWebhookEndpoint(id: $e, input: {enabled: $on}) { enabled } }",
        json!({ "e": endpoint, "on": enabled }),
    )
    .await?;
    // Each instance drops its cached endpoint list when endpoints change (over the bus); give
    // that a moment before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

struct Cell {
    concurrency: usize,
    off: Vec<Summary>,
    on: Vec<Summary>,
    /// (events delivered, seconds from the phase's start until the outbox was drained).
    delivered: Vec<(u64, f64)>,
}

pub async fn run(cfg: &WebhookConfig<'_>) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(cfg.database_url)
        .await
        .context("connecting to the server's database")?;
    let (addr, received) = receiver().await?;
    eprintln!("[1/3] receiver on {addr}; registering members ...");
    let prepared = http::prepare(&cfg.http).await?;
    eprintln!("  {}", prepared.apq_note);
    let types = admin(cfg, "{ webhookEventTypes }", json!({})).await?["webhookEventTypes"].clone();
    let created = admin(
        cfg,
        "mutation($i: WebhookEndpointInput!) { createWebhookEndpoint(input: $i) { endpoint { id } } }",
        json!({ "i": { "url": format!("http://{addr}/hooks"), "eventTypes": types, "enabled": false } }),
    )
    .await
    .context("creating the endpoint (the server needs WEBHOOK_ALLOW_PRIVATE_URLS=true)")?;
    let endpoint = created["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .context("no endpoint id")?
        .to_owned();
    let pending = || async {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'PENDING'")
            .fetch_one(&pool)
            .await?
            .get(0);
        anyhow::Ok(n)
    };

    let load = Load::Mix(cfg.mix);
    let mut cells = Vec::new();
    eprintln!(
        "[2/3] {} rounds of off/on per concurrency, {}s each (+{}s warm-up) ...",
        cfg.rounds,
        cfg.duration.as_secs(),
        cfg.warmup.as_secs()
    );
    for &concurrency in &cfg.concurrencies {
        let mut cell = Cell {
            concurrency,
            off: Vec::new(),
            on: Vec::new(),
            delivered: Vec::new(),
        };
        for round in 0..cfg.rounds {
            for enabled in [false, true] {
                set_enabled(cfg, &endpoint, enabled).await?;
                http::warm_up(&prepared, load, concurrency, cfg.warmup).await?;
                let before = received.count.load(Ordering::Relaxed);
                let started = Instant::now();
                let phase = http::measure_load(&prepared, load, concurrency, cfg.duration).await?;
                let label = if enabled { "on" } else { "off" };
                eprintln!(
                    "  c={concurrency} round {round} endpoint {label}: {:.1} ops/s, p99 {} ms",
                    phase.total.ops_per_sec,
                    fmt_ms(phase.total.p99_ms)
                );
                if enabled && cfg.drain_timeout.is_zero() {
                    // Deliveries off (WEBHOOK_POLL_INTERVAL_MS=0 on the server): the posting
                    // path's own cost, the events left pending.
                    cell.on.push(phase.total);
                } else if enabled {
                    cell.on.push(phase.total);
                    let deadline = Instant::now() + cfg.drain_timeout;
                    while pending().await? > 0 {
                        if Instant::now() > deadline {
                            bail!("the outbox did not drain within {:?}", cfg.drain_timeout);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    let delivered = received.count.load(Ordering::Relaxed) - before;
                    cell.delivered
                        .push((delivered, started.elapsed().as_secs_f64()));
                } else {
                    cell.off.push(phase.total);
                }
            }
        }
        if cfg.rounds > 0 {
            cells.push(cell);
        }
    }
    let backlog = if cfg.backlog > 0 && !cfg.drain_timeout.is_zero() {
        set_enabled(cfg, &endpoint, true).await?;
        let rate = backlog(cfg, &pool, &endpoint, &received).await?;
        Some(rate)
    } else {
        None
    };
    set_enabled(cfg, &endpoint, false).await?;

    println!();
    println!(
        "loyalty-bench --webhooks: mix {}, {} members, {} rounds of {}s per side, one endpoint on every event type",
        cfg.mix,
        cfg.http.members,
        cfg.rounds,
        cfg.duration.as_secs()
    );
    println!();
    println!("{}", table_header());
    for cell in &cells {
        for (off, on) in cell.off.iter().zip(&cell.on) {
            let mut off = off.clone();
            off.label = "mixed, no endpoint".into();
            let mut on = on.clone();
            on.label = "mixed, endpoint on every event".into();
            println!("{}", table_row(&off));
            println!("{}", table_row(&on));
        }
    }
    println!();
    println!("| concurrency | ops/s off | ops/s on | on ÷ off | p99 off ms | p99 on ms | events delivered | delivered/s (phase + drain) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cell in &cells {
        let mean = |rows: &[Summary], f: fn(&Summary) -> f64| {
            rows.iter().map(f).sum::<f64>() / rows.len().max(1) as f64
        };
        let off = mean(&cell.off, |s| s.ops_per_sec);
        let on = mean(&cell.on, |s| s.ops_per_sec);
        let p99 = |s: &Summary| s.p99_ms.unwrap_or(0.0);
        let events: u64 = cell.delivered.iter().map(|d| d.0).sum();
        let seconds: f64 = cell.delivered.iter().map(|d| d.1).sum();
        println!(
            "| {} | {off:.1} | {on:.1} | {:.3} | {:.2} | {:.2} | {events} | {:.1} |",
            cell.concurrency,
            if off > 0.0 { on / off } else { 0.0 },
            mean(&cell.off, p99),
            mean(&cell.on, p99),
            if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
        );
    }
    if let Some((events, seconds)) = backlog {
        println!();
        println!(
            "backlog: {events} events over {} members delivered in {seconds:.2} s: **{:.1} events/s** (no posting load)",
            cfg.http.members,
            events as f64 / seconds
        );
    }
    eprintln!("[3/3] done; endpoint {endpoint} left disabled");
    Ok(())
}

/// Writes `cfg.backlog` due events for the endpoint (member `n % members`, so each member's
/// events wait in order) and waits until the receiver got them; (events, seconds).
async fn backlog(
    cfg: &WebhookConfig<'_>,
    pool: &sqlx::PgPool,
    endpoint: &str,
    received: &Received,
) -> Result<(u64, f64)> {
    eprintln!("  backlog: {} events ...", cfg.backlog);
    let before = received.count.load(Ordering::Relaxed);
    let members = i64::try_from(cfg.http.members.max(1))?;
    let endpoint_id: i64 = endpoint.parse().context("endpoint id")?;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO webhook_outbox (program_id, endpoint_id, event_id, event_type, member_id, \
           member_version, payload, status, attempts, next_attempt_at, retry_from, created_at) \
         SELECT e.program_id, e.id, 'evt_backlog_' || g, 'webhook.test', 1000000 + g % $3, g, \
           '{\"type\":\"webhook.test\",\"data\":{\"n\":' || g || '}}', 'PENDING', 0, \
           now(), now(), now() \
         FROM webhook_endpoints e, generate_series(1, $2::bigint) g WHERE e.id = $1 \
         ORDER BY g",
    )
    .bind(endpoint_id)
    .bind(i64::try_from(cfg.backlog)?)
    .bind(members)
    .execute(pool)
    .await
    .context("writing the backlog")?;
    let deadline = started + cfg.drain_timeout;
    let target = before + cfg.backlog as u64;
    while received.count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "the backlog was not delivered within {:?}",
                cfg.drain_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((cfg.backlog as u64, started.elapsed().as_secs_f64()))
}
