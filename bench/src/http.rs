//! End-to-end phases over GraphQL/HTTP against a running loyalty-server: members doing daily
//! logins, product views, news reads, shares and purchases (mixed, or one action alone), and
//! the `me { balance }` read beside a trivial `{ __typename }`.
//!
//! Requests speak Automatic Persisted Queries (Apollo's protocol) unless `--no-apq`: the
//! body carries only `extensions.persistedQuery.sha256Hash`; a `PERSISTED_QUERY_NOT_FOUND`
//! answer is resent once with the text, and later requests send the hash alone again. A probe
//! before any measurement finds out whether the server supports it; if not, the whole run
//! sends query text (and says so).

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::stats::{Recorder, Summary};

const REGISTER_LABEL: &str = "register (setup, not in mixed)";
pub const MIXED_LABEL: &str = "all HTTP (mixed)";
const SERVICE_SUBJECT: &str = "bench-service";

const DAILY_LOGIN: &str = "mutation($k: String) { recordAction(input: {action: \"daily_login\", idempotencyKey: $k}) { awarded balance reason } }";
const PRODUCT_VIEW: &str = "mutation($o: String, $k: String) { recordAction(input: {action: \"product_view\", objectId: $o, idempotencyKey: $k}) { awarded balance reason } }";
const NEWS_READ: &str = "mutation($o: String, $k: String) { recordAction(input: {action: \"news_read\", objectId: $o, idempotencyKey: $k}) { awarded balance reason } }";
const PRODUCT_SHARE: &str = "mutation($o: String, $k: String) { recordAction(input: {action: \"product_share\", objectId: $o, idempotencyKey: $k}) { awarded balance reason } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance pointsAwarded } }";
const ME_BALANCE: &str = "{ me { balance } }";
const TYPENAME: &str = "{ __typename }";

/// The Apollo APQ miss: `extensions.code` as the protocol names it, or async-graphql's
/// bare message.
const PQ_NOT_FOUND_CODE: &str = "PERSISTED_QUERY_NOT_FOUND";
const PQ_NOT_FOUND_MESSAGE: &str = "PersistedQueryNotFound";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    DailyLogin,
    ProductView,
    NewsRead,
    ProductShare,
    Purchase,
    MeBalance,
    Typename,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::DailyLogin,
        Workload::ProductView,
        Workload::NewsRead,
        Workload::ProductShare,
        Workload::Purchase,
        Workload::MeBalance,
        Workload::Typename,
    ];

    /// The earning operations, in `--mix` order.
    pub const EARNING: [Workload; 5] = [
        Workload::DailyLogin,
        Workload::ProductView,
        Workload::NewsRead,
        Workload::ProductShare,
        Workload::Purchase,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::DailyLogin => "daily_login",
            Workload::ProductView => "product_view",
            Workload::NewsRead => "news_read",
            Workload::ProductShare => "product_share",
            Workload::Purchase => "purchase",
            Workload::MeBalance => "me { balance }",
            Workload::Typename => "{ __typename }",
        }
    }

    /// The name `--workloads` accepts.
    pub fn key(self) -> &'static str {
        match self {
            Workload::MeBalance => "me_balance",
            Workload::Typename => "typename",
            other => other.label(),
        }
    }

    pub fn from_key(key: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.key() == key)
    }

    fn index(self) -> usize {
        match self {
            Workload::DailyLogin => 0,
            Workload::ProductView => 1,
            Workload::NewsRead => 2,
            Workload::ProductShare => 3,
            Workload::Purchase => 4,
            Workload::MeBalance => 5,
            Workload::Typename => 6,
        }
    }

    fn query(self) -> &'static str {
        match self {
            Workload::DailyLogin => DAILY_LOGIN,
            Workload::ProductView => PRODUCT_VIEW,
            Workload::NewsRead => NEWS_READ,
            Workload::ProductShare => PRODUCT_SHARE,
            Workload::Purchase => PURCHASE,
            Workload::MeBalance => ME_BALANCE,
            Workload::Typename => TYPENAME,
        }
    }
}

/// Relative weights of daily_login : product_view : news_read : product_share : purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
}

impl Mix {
    fn total(&self) -> u32 {
        self.weights.iter().sum()
    }

    fn weight(&self, w: Workload) -> u32 {
        self.weights.get(w.index()).copied().unwrap_or(0)
    }

    fn pick(&self, rng: &mut impl Rng) -> Workload {
        let mut roll = rng.random_range(0..self.total());
        for w in Workload::EARNING {
            let weight = self.weight(w);
            if roll < weight {
                return w;
            }
            roll -= weight;
        }
        Workload::Purchase
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e] = self.weights;
        if c == 0 && d == 0 {
            write!(f, "daily_login:product_view:purchase = {a}:{b}:{e}")
        } else {
            write!(
                f,
                "daily_login:product_view:news_read:product_share:purchase = {a}:{b}:{c}:{d}:{e}"
            )
        }
    }
}

/// clap value parser for `--mix`: three weights DAILY_LOGIN:PRODUCT_VIEW:PURCHASE (e.g.
/// `1:1:1`, as before news reads and shares were driven) or five
/// DAILY_LOGIN:PRODUCT_VIEW:NEWS_READ:PRODUCT_SHARE:PURCHASE.
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let parse = |part: &&str| -> Result<u32, String> {
        part.trim()
            .parse()
            .map_err(|e| format!("bad weight {part:?}: {e}"))
    };
    let weights = match parts.as_slice() {
        [a, b, e] => [parse(a)?, parse(b)?, 0, 0, parse(e)?],
        [a, b, c, d, e] => [parse(a)?, parse(b)?, parse(c)?, parse(d)?, parse(e)?],
        _ => {
            return Err(
                "expected three weights DAILY_LOGIN:PRODUCT_VIEW:PURCHASE (e.g. 1:1:1) \
                        or five DAILY_LOGIN:PRODUCT_VIEW:NEWS_READ:PRODUCT_SHARE:PURCHASE"
                    .into(),
            )
        }
    };
    let mix = Mix { weights };
    match mix
        .weights
        .iter()
        .try_fold(0_u32, |acc, w| acc.checked_add(*w))
    {
        None => Err("weights too large".into()),
        Some(0) => Err("at least one weight must be positive".into()),
        Some(_) => Ok(mix),
    }
}

/// What the workers of one phase send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Each request picks its operation by the weights.
    Mix(Mix),
    /// Every request is this operation.
    Only(Workload),
}

impl Load {
    fn pick(&self, rng: &mut impl Rng) -> Workload {
        match self {
            Load::Mix(mix) => mix.pick(rng),
            Load::Only(w) => *w,
        }
    }

    /// The label of the phase's total row.
    pub fn label(&self) -> &'static str {
        match self {
            Load::Mix(_) => MIXED_LABEL,
            Load::Only(w) => w.label(),
        }
    }
}

pub struct JwtConfig {
    pub secret: String,
    pub issuer: String,
    pub audience: String,
    pub program: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    program: &'a str,
    role: &'a str,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
}

pub struct HttpConfig {
    pub server: String,
    pub members: usize,
    /// The most workers any phase of the run uses (sizes the connection pool).
    pub max_concurrency: usize,
    /// Concurrent `register` calls during set-up.
    pub register_concurrency: usize,
    pub request_timeout: Duration,
    /// How long the minted tokens must stay valid.
    pub token_lifetime: Duration,
    pub run_id: String,
    pub jwt: JwtConfig,
    /// Try Automatic Persisted Queries (falls back to text when the server has none).
    pub apq: bool,
}

struct Member {
    external_id: String,
    auth: HeaderValue,
}

/// One operation's text, its APQ hash and the `extensions` object that names it.
struct Query {
    text: &'static str,
    extensions: Value,
}

impl Query {
    fn new(text: &'static str) -> Query {
        Query {
            text,
            extensions: json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(text) } }),
        }
    }
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A GraphQL request body: text, hash, or both.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "is_null")]
    variables: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a Value>,
}

fn is_null(v: &&Value) -> bool {
    v.is_null()
}

struct Ctx {
    client: Client,
    url: String,
    members: Vec<Member>,
    service_auth: HeaderValue,
    /// Indexed by [`Workload::index`].
    queries: Vec<Query>,
    /// Send hashes (APQ) rather than text.
    apq: AtomicBool,
    /// Requests answered PERSISTED_QUERY_NOT_FOUND and resent with their text.
    apq_resends: AtomicU64,
}

impl Ctx {
    fn query(&self, w: Workload) -> Result<&Query, String> {
        self.queries
            .get(w.index())
            .ok_or_else(|| format!("no query for {}", w.label()))
    }

    /// One operation, as APQ (hash first, text on a miss) or as text.
    async fn call(
        &self,
        w: Workload,
        auth: &HeaderValue,
        variables: &Value,
    ) -> Result<Value, String> {
        let q = self.query(w)?;
        if self.apq.load(Ordering::Relaxed) {
            let hash_only = Body {
                query: None,
                variables,
                extensions: Some(&q.extensions),
            };
            let reply = post(&self.client, &self.url, auth, &hash_only).await?;
            if !reply.persisted_query_not_found() {
                return reply.into_data();
            }
            self.apq_resends.fetch_add(1, Ordering::Relaxed);
            let with_text = Body {
                query: Some(q.text),
                variables,
                extensions: Some(&q.extensions),
            };
            return post(&self.client, &self.url, auth, &with_text)
                .await?
                .into_data();
        }
        let text = Body {
            query: Some(q.text),
            variables,
            extensions: None,
        };
        post(&self.client, &self.url, auth, &text)
            .await?
            .into_data()
    }
}

/// Everything the HTTP side can be set up with before any measurement.
pub struct Prepared {
    ctx: Arc<Ctx>,
    pub register: Summary,
    /// One line on whether requests send hashes or text, and why.
    pub apq_note: String,
}

impl Prepared {
    /// Requests resent with their text after PERSISTED_QUERY_NOT_FOUND so far.
    pub fn apq_resends(&self) -> u64 {
        self.ctx.apq_resends.load(Ordering::Relaxed)
    }
}

/// One measured phase: a row per workload that ran, and the phase's total.
pub struct Phase {
    pub rows: Vec<Summary>,
    pub total: Summary,
}

/// Build the client, mint tokens, check the server is reachable, find out whether it speaks
/// APQ and register the members (measured as its own row).
pub async fn prepare(cfg: &HttpConfig) -> Result<Prepared> {
    let client = Client::builder()
        .pool_max_idle_per_host(cfg.max_concurrency)
        .tcp_nodelay(true)
        .timeout(cfg.request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building HTTP client")?;
    let url = format!("{}/graphql", cfg.server.trim_end_matches('/'));

    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .saturating_add(cfg.token_lifetime)
        .as_secs();
    let key = EncodingKey::from_secret(cfg.jwt.secret.as_bytes());
    let mint = |sub: &str, role: &str| -> Result<HeaderValue> {
        let claims = Claims {
            sub,
            program: &cfg.jwt.program,
            role,
            exp,
            iss: &cfg.jwt.issuer,
            aud: &cfg.jwt.audience,
        };
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &key).context("signing JWT")?;
        HeaderValue::from_str(&format!("Bearer {token}")).context("JWT is not a valid header")
    };

    let service_auth = mint(SERVICE_SUBJECT, "service")?;
    let members = (0..cfg.members)
        .map(|n| {
            let external_id = format!("bench-{}-{n}", cfg.run_id);
            let auth = mint(&external_id, "member")?;
            Ok(Member { external_id, auth })
        })
        .collect::<Result<Vec<_>>>()?;

    preflight(&client, &url, &service_auth).await?;

    let ctx = Arc::new(Ctx {
        client,
        url,
        members,
        service_auth,
        queries: Workload::ALL
            .into_iter()
            .map(|w| Query::new(w.query()))
            .collect(),
        apq: AtomicBool::new(false),
        apq_resends: AtomicU64::new(0),
    });
    let apq_note = if cfg.apq {
        let (on, note) = probe_apq(&ctx).await?;
        ctx.apq.store(on, Ordering::Relaxed);
        note
    } else {
        "APQ off (--no-apq): every request sends its query text".to_string()
    };
    let register = register_all(&ctx, cfg.register_concurrency.max(1)).await?;
    Ok(Prepared {
        ctx,
        register,
        apq_note,
    })
}

/// Run `load` for `duration` and discard the results (fills pools and caches).
pub async fn warm_up(
    prepared: &Prepared,
    load: Load,
    concurrency: usize,
    duration: Duration,
) -> Result<()> {
    if duration.is_zero() {
        return Ok(());
    }
    let (warm, _) = measure(&prepared.ctx, load, concurrency, duration).await?;
    let ops: u64 = warm.iter().map(Recorder::ops).sum();
    let errors: u64 = warm.iter().map(|r| r.errors).sum();
    eprintln!("  warm-up: {ops} ok, {errors} errors (discarded)");
    Ok(())
}

/// Measure `load` for `duration`: a row per workload that ran (for a mix, every workload
/// with a positive weight) and the total.
pub async fn measure_load(
    prepared: &Prepared,
    load: Load,
    concurrency: usize,
    duration: Duration,
) -> Result<Phase> {
    let (recs, elapsed) = measure(&prepared.ctx, load, concurrency, duration).await?;
    let mut total = Recorder::default();
    let mut rows = Vec::new();
    for (w, rec) in Workload::ALL.into_iter().zip(recs) {
        let in_load = match load {
            Load::Mix(mix) => mix.weight(w) > 0,
            Load::Only(only) => only == w,
        };
        if !in_load {
            continue;
        }
        total.merge(rec.clone());
        rows.push(rec.summarize(w.label(), concurrency, elapsed));
    }
    Ok(Phase {
        rows,
        total: total.summarize(load.label(), concurrency, elapsed),
    })
}

/// Fail fast, with a useful message, when nothing is listening or the
/// server rejects our tokens.
async fn preflight(client: &Client, url: &str, service_auth: &HeaderValue) -> Result<()> {
    let resp = client
        .post(url)
        .header(AUTHORIZATION, service_auth.clone())
        .json(&json!({ "query": TYPENAME }))
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => bail!(
            "cannot reach loyalty-server at {url}: {}\n\
             Is it running? `bench/run.sh` builds, prepares (migrate + demo) and starts one, \
             or pass --server for an already running instance (or use --raw-only).",
            error_chain(e)
        ),
    };
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            bail!("{url} answered HTTP {status}: no GraphQL endpoint there (check --server)")
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
            "{url} rejected the bench's service token (HTTP {status}): check --jwt-secret / \
             JWT_SECRET, --jwt-issuer and --jwt-audience match the server. Body: {}",
            snippet(body.as_bytes())
        ),
        s if s.is_server_error() => bail!(
            "{url} answered HTTP {status} to a trivial query: {}",
            snippet(body.as_bytes())
        ),
        _ => {}
    }
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        if let Some(msg) = first_graphql_error(&v) {
            eprintln!("warning: preflight `{TYPENAME}` returned a GraphQL error: {msg}");
        }
    } else {
        eprintln!(
            "warning: preflight got a non-JSON answer (HTTP {status}): {}",
            snippet(body.as_bytes())
        );
    }
    Ok(())
}

/// Does the server speak APQ? `{ __typename }` by hash alone: a success (already known) or
/// PERSISTED_QUERY_NOT_FOUND followed by a success with the text and then by hash alone means
/// yes; anything else (a server without APQ sees a request without a query) means no, and
/// the run sends text.
async fn probe_apq(ctx: &Ctx) -> Result<(bool, String)> {
    let q = ctx.query(Workload::Typename).map_err(anyhow::Error::msg)?;
    let auth = &ctx.service_auth;
    let hash_only = Body {
        query: None,
        variables: &Value::Null,
        extensions: Some(&q.extensions),
    };
    let first = post(&ctx.client, &ctx.url, auth, &hash_only)
        .await
        .map_err(|e| anyhow::anyhow!("APQ probe: {e}"))?;
    if !first.persisted_query_not_found() {
        return Ok(match first.into_data() {
            Ok(_) => (
                true,
                "APQ on (the probe's hash was already known)".to_string(),
            ),
            Err(e) => (
                false,
                format!(
                    "APQ off: the server answered a hash-only request with `{}` (no APQ \
                     there); every request sends its query text",
                    one_line(&e)
                ),
            ),
        });
    }
    let with_text = Body {
        query: Some(q.text),
        variables: &Value::Null,
        extensions: Some(&q.extensions),
    };
    let registered = post(&ctx.client, &ctx.url, auth, &with_text)
        .await
        .map_err(|e| anyhow::anyhow!("APQ probe: {e}"))?;
    if let Err(e) = registered.into_data() {
        return Ok((
            false,
            format!(
                "APQ off: PERSISTED_QUERY_NOT_FOUND, but the resend with text failed: {}; \
                 every request sends its query text",
                one_line(&e)
            ),
        ));
    }
    let again = post(&ctx.client, &ctx.url, auth, &hash_only)
        .await
        .map_err(|e| anyhow::anyhow!("APQ probe: {e}"))?;
    Ok(match again.into_data() {
        Ok(_) => (
            true,
            "APQ on: hash alone, PERSISTED_QUERY_NOT_FOUND, text + hash, then hash alone hits"
                .to_string(),
        ),
        Err(e) => (
            false,
            format!(
                "APQ off: the server did not keep the query after PERSISTED_QUERY_NOT_FOUND \
                 and a resend with text (next hash-only answer: {}); every request sends its \
                 query text",
                one_line(&e)
            ),
        ),
    })
}

async fn register_all(ctx: &Arc<Ctx>, concurrency: usize) -> Result<Summary> {
    let start = Instant::now();
    let results: Vec<Result<Duration, String>> = stream::iter(ctx.members.iter().enumerate())
        .map(|(n, m)| {
            let ctx = Arc::clone(ctx);
            async move {
                // Set-up only, and a different text per member: always sent as text.
                let query = format!(
                    "mutation {{ register(input: {{displayName: \"Bench {n}\"}}) {{ member {{ id balance }} }} }}"
                );
                let body = Body {
                    query: Some(&query),
                    variables: &Value::Null,
                    extensions: None,
                };
                let t0 = Instant::now();
                let data = post(&ctx.client, &ctx.url, &m.auth, &body)
                    .await?
                    .into_data()?;
                field(&data, "register")?;
                Ok(t0.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();

    let mut rec = Recorder::default();
    for r in results {
        match r {
            Ok(d) => rec.ok(d),
            Err(e) => rec.err(&e),
        }
    }
    if rec.ops() == 0 {
        let first = rec.messages.first().map(|(m, _)| m.as_str()).unwrap_or("?");
        bail!(
            "registering members failed for all {} members; first error: {first}\n\
             (was the server prepared with `loyalty-server demo`, and does --program match?)",
            ctx.members.len()
        );
    }
    Ok(rec.summarize(REGISTER_LABEL, concurrency, elapsed))
}

async fn measure(
    ctx: &Arc<Ctx>,
    load: Load,
    concurrency: usize,
    duration: Duration,
) -> Result<([Recorder; 7], Duration)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let ctx = Arc::clone(ctx);
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::from_os_rng();
            let mut recs: [Recorder; 7] = Default::default();
            while Instant::now() < deadline {
                let Some(member) = ctx.members.get(rng.random_range(0..ctx.members.len())) else {
                    break;
                };
                let workload = load.pick(&mut rng);
                let variables = variables(workload, member, &mut rng);
                let auth = match workload {
                    Workload::Purchase => &ctx.service_auth,
                    _ => &member.auth,
                };
                let t0 = Instant::now();
                let result = ctx.call(workload, auth, &variables).await;
                let latency = t0.elapsed();
                let Some(rec) = recs.get_mut(workload.index()) else {
                    break;
                };
                match result.and_then(|data| awarded(workload, &data)) {
                    Ok(was_awarded) => {
                        rec.ok(latency);
                        if was_awarded {
                            rec.awarded += 1;
                        }
                    }
                    Err(e) => rec.err(&e),
                }
            }
            recs
        }));
    }
    let mut total: [Recorder; 7] = Default::default();
    for h in handles {
        let recs = h.await.context("HTTP worker task failed")?;
        for (t, r) in total.iter_mut().zip(recs) {
            t.merge(r);
        }
    }
    Ok((total, start.elapsed()))
}

/// The variables of one request; every write gets a fresh idempotency key.
fn variables(workload: Workload, member: &Member, rng: &mut impl Rng) -> Value {
    let key = || uuid::Uuid::new_v4().to_string();
    match workload {
        Workload::DailyLogin => json!({ "k": key() }),
        Workload::ProductView | Workload::ProductShare => {
            let product = format!("p-{}", rng.random_range(0..100_000_u32));
            json!({ "o": product, "k": key() })
        }
        Workload::NewsRead => {
            let article = format!("n-{}", rng.random_range(0..100_000_u32));
            json!({ "o": article, "k": key() })
        }
        Workload::Purchase => {
            let cents = rng.random_range(100..=50_000_u32);
            json!({ "i": {
                "memberExternalId": member.external_id,
                "orderId": uuid::Uuid::new_v4().to_string(),
                "amount": format!("{}.{:02}", cents / 100, cents % 100),
                "idempotencyKey": key(),
            }})
        }
        Workload::MeBalance | Workload::Typename => Value::Null,
    }
}

/// Did a successful response award points? Also validates the shape.
fn awarded(workload: Workload, data: &Value) -> Result<bool, String> {
    match workload {
        Workload::DailyLogin
        | Workload::ProductView
        | Workload::NewsRead
        | Workload::ProductShare => Ok(positive(field(data, "recordAction")?.get("awarded"))),
        Workload::Purchase => Ok(positive(
            field(data, "recordPurchase")?.get("pointsAwarded"),
        )),
        Workload::MeBalance => {
            field(field(data, "me")?, "balance")?;
            Ok(false)
        }
        Workload::Typename => {
            field(data, "__typename")?;
            Ok(false)
        }
    }
}

fn field<'a>(data: &'a Value, name: &str) -> Result<&'a Value, String> {
    match data.get(name) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(format!("response has no data.{name}")),
    }
}

/// `awarded` / `pointsAwarded` may be a bool, a number or a decimal string.
fn positive(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x > 0.0),
        Some(Value::String(s)) => s.parse::<f64>().is_ok_and(|x| x > 0.0),
        _ => false,
    }
}

/// One HTTP answer, parsed as JSON when it is.
struct Reply {
    status: StatusCode,
    bytes: Vec<u8>,
    parsed: Option<Value>,
}

impl Reply {
    fn persisted_query_not_found(&self) -> bool {
        let Some(errors) = self
            .parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(Value::as_array)
        else {
            return false;
        };
        errors.iter().any(|e| {
            e.pointer("/extensions/code").and_then(Value::as_str) == Some(PQ_NOT_FOUND_CODE)
                || e.get("message").and_then(Value::as_str) == Some(PQ_NOT_FOUND_MESSAGE)
        })
    }

    /// `Ok` carries `data`; every failure — HTTP status, non-JSON, a non-empty `errors`
    /// array, missing `data` — is an `Err` with a short message suitable for grouping.
    fn into_data(self) -> Result<Value, String> {
        if let Some(msg) = self.parsed.as_ref().and_then(first_graphql_error) {
            return Err(msg);
        }
        if !self.status.is_success() {
            return Err(format!(
                "HTTP {}: {}",
                self.status.as_u16(),
                snippet(&self.bytes)
            ));
        }
        let Some(mut v) = self.parsed else {
            return Err(format!("non-JSON response: {}", snippet(&self.bytes)));
        };
        match v.get_mut("data").map(Value::take) {
            Some(data) if !data.is_null() => Ok(data),
            _ => Err("response without data".to_string()),
        }
    }
}

/// POST one GraphQL body; `Err` only for transport failures.
async fn post(
    client: &Client,
    url: &str,
    auth: &HeaderValue,
    body: &Body<'_>,
) -> Result<Reply, String> {
    let resp = client
        .post(url)
        .header(AUTHORIZATION, auth.clone())
        .json(body)
        .send()
        .await
        .map_err(|e| format!("transport: {}", error_chain(e)))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("reading body: {}", error_chain(e)))?
        .to_vec();
    let parsed = serde_json::from_slice(&bytes).ok();
    Ok(Reply {
        status,
        bytes,
        parsed,
    })
}

fn first_graphql_error(v: &Value) -> Option<String> {
    let first = v.get("errors")?.as_array()?.first()?;
    let message = first
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| first.to_string(), str::to_string);
    match first.pointer("/extensions/code").and_then(Value::as_str) {
        Some(code) => Some(format!("{message} [{code}]")),
        None => Some(message),
    }
}

fn error_chain(e: reqwest::Error) -> String {
    // The URL is the same for every request; leave it out so messages group.
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A message on one line, whitespace runs collapsed (parser errors come with ASCII art).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parsing_and_picking() {
        assert!(parse_mix("1:1").is_err());
        assert!(parse_mix("1:1:1:1").is_err());
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("0:0:0:0:0").is_err());
        assert!(parse_mix("a:1:1").is_err());
        let only_purchase = parse_mix("0:0:3").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(only_purchase.pick(&mut rng), Workload::Purchase);
        }
        let even = parse_mix("1:1:1").unwrap();
        assert_eq!(
            even.to_string(),
            "daily_login:product_view:purchase = 1:1:1"
        );
        let mut counts = [0; 5];
        for _ in 0..3000 {
            counts[even.pick(&mut rng).index()] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        assert!(
            [counts[0], counts[1], counts[4]].iter().all(|c| *c > 800),
            "{counts:?}"
        );

        let five = parse_mix("0:0:1:1:0").unwrap();
        assert_eq!(
            five.to_string(),
            "daily_login:product_view:news_read:product_share:purchase = 0:0:1:1:0"
        );
        for _ in 0..100 {
            assert!(matches!(
                five.pick(&mut rng),
                Workload::NewsRead | Workload::ProductShare
            ));
        }
    }

    #[test]
    fn workload_keys_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_key(w.key()), Some(w));
        }
        assert_eq!(Workload::from_key("mixed"), None);
        assert_eq!(Workload::from_key("me_balance"), Some(Workload::MeBalance));
    }

    #[test]
    fn graphql_errors_and_awards() {
        let v = json!({"data": null, "errors": [{"message": "nope", "extensions": {"code": "FORBIDDEN"}}]});
        assert_eq!(first_graphql_error(&v).as_deref(), Some("nope [FORBIDDEN]"));
        assert_eq!(first_graphql_error(&json!({"errors": []})), None);
        assert_eq!(first_graphql_error(&json!({"data": {}})), None);

        let d = json!({"recordAction": {"awarded": 10, "balance": 10, "reason": null}});
        assert_eq!(awarded(Workload::DailyLogin, &d), Ok(true));
        let d = json!({"recordAction": {"awarded": false, "balance": 10, "reason": "cap"}});
        assert_eq!(awarded(Workload::ProductView, &d), Ok(false));
        assert_eq!(awarded(Workload::NewsRead, &d), Ok(false));
        let d = json!({"recordPurchase": {"balance": "5", "pointsAwarded": "12.5"}});
        assert_eq!(awarded(Workload::Purchase, &d), Ok(true));
        assert!(awarded(Workload::Purchase, &json!({"recordPurchase": null})).is_err());
        assert_eq!(
            awarded(Workload::MeBalance, &json!({"me": {"balance": "0.00"}})),
            Ok(false)
        );
        assert!(awarded(Workload::MeBalance, &json!({"me": null})).is_err());
        assert_eq!(
            awarded(Workload::Typename, &json!({"__typename": "Query"})),
            Ok(false)
        );
    }

    #[test]
    fn purchase_variables_shape() {
        let member = Member {
            external_id: "bench-x-1".into(),
            auth: HeaderValue::from_static("Bearer t"),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let vars = variables(Workload::Purchase, &member, &mut rng);
        let i = &vars["i"];
        assert_eq!(i["memberExternalId"], "bench-x-1");
        let amount = i["amount"].as_str().unwrap();
        let (whole, cents) = amount.split_once('.').unwrap();
        assert!(whole.parse::<u32>().unwrap() >= 1);
        assert_eq!(cents.len(), 2);
        assert!(uuid::Uuid::parse_str(i["orderId"].as_str().unwrap()).is_ok());
        assert!(variables(Workload::MeBalance, &member, &mut rng).is_null());
        assert!(variables(Workload::NewsRead, &member, &mut rng)["o"]
            .as_str()
            .unwrap()
            .starts_with("n-"));
    }

    #[test]
    fn apq_bodies() {
        // The hash is the lowercase hex SHA-256 of the exact text (Apollo's protocol).
        assert_eq!(
            sha256_hex(TYPENAME),
            "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b"
        );
        let q = Query::new(TYPENAME);
        let hash_only = Body {
            query: None,
            variables: &Value::Null,
            extensions: Some(&q.extensions),
        };
        assert_eq!(
            serde_json::to_value(&hash_only).unwrap(),
            json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(TYPENAME)}}})
        );
        let vars = json!({"k": "x"});
        let text = Body {
            query: Some(TYPENAME),
            variables: &vars,
            extensions: None,
        };
        assert_eq!(
            serde_json::to_value(&text).unwrap(),
            json!({"query": TYPENAME, "variables": {"k": "x"}})
        );
    }

    fn reply(status: u16, body: Value) -> Reply {
        let bytes = body.to_string().into_bytes();
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            parsed: serde_json::from_slice(&bytes).ok(),
            bytes,
        }
    }

    #[test]
    fn apq_miss_is_recognised_by_code_or_message() {
        let by_code = reply(
            200,
            json!({"errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}),
        );
        assert!(by_code.persisted_query_not_found());
        let by_message = reply(
            200,
            json!({"errors": [{"message": "PersistedQueryNotFound"}]}),
        );
        assert!(by_message.persisted_query_not_found());
        // A server without APQ sees a request without a query: some other error.
        let no_apq = reply(
            400,
            json!({"errors": [{"message": "query: expected selection set", "extensions": {"code": "VALIDATION"}}]}),
        );
        assert!(!no_apq.persisted_query_not_found());
        assert_eq!(
            no_apq.into_data(),
            Err("query: expected selection set [VALIDATION]".to_string())
        );
        let ok = reply(200, json!({"data": {"__typename": "Query"}}));
        assert!(!ok.persisted_query_not_found());
        assert_eq!(ok.into_data(), Ok(json!({"__typename": "Query"})));
        let html = Reply {
            status: StatusCode::BAD_GATEWAY,
            bytes: b"<html>".to_vec(),
            parsed: None,
        };
        assert!(!html.persisted_query_not_found());
        assert_eq!(html.into_data(), Err("HTTP 502: <html>".to_string()));
    }
}
