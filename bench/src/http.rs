//! End-to-end phase: many members doing daily logins, product views and
//! purchases against a running loyalty-server over GraphQL/HTTP.

use std::error::Error as _;
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

use crate::stats::{Recorder, Summary};

const REGISTER_LABEL: &str = "register (setup, not in mixed)";
const MIXED_LABEL: &str = "all HTTP (mixed)";
const SERVICE_SUBJECT: &str = "bench-service";

const DAILY_LOGIN: &str = "mutation($k: String) { recordAction(input: {action: \"daily_login\", idempotencyKey: $k}) { awarded balance reason } }";
const PRODUCT_VIEW: &str = "mutation($o: String, $k: String) { recordAction(input: {action: \"product_view\", objectId: $o, idempotencyKey: $k}) { awarded balance reason } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance pointsAwarded } }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    DailyLogin,
    ProductView,
    Purchase,
}

impl Workload {
    pub const ALL: [Workload; 3] = [
        Workload::DailyLogin,
        Workload::ProductView,
        Workload::Purchase,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::DailyLogin => "daily_login",
            Workload::ProductView => "product_view",
            Workload::Purchase => "purchase",
        }
    }

    fn index(self) -> usize {
        match self {
            Workload::DailyLogin => 0,
            Workload::ProductView => 1,
            Workload::Purchase => 2,
        }
    }
}

/// Relative weights of daily_login : product_view : purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

impl Mix {
    fn total(&self) -> u32 {
        self.weights.iter().sum()
    }

    fn pick(&self, rng: &mut impl Rng) -> Workload {
        let mut roll = rng.random_range(0..self.total());
        for w in Workload::ALL {
            let weight = self.weights[w.index()];
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
        let [a, b, c] = self.weights;
        write!(f, "daily_login:product_view:purchase = {a}:{b}:{c}")
    }
}

/// clap value parser for `--mix`, e.g. `1:1:1` or `2:5:1`.
pub fn parse_mix(s: &str) -> Result<Mix, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err("expected three weights DAILY_LOGIN:PRODUCT_VIEW:PURCHASE, e.g. 1:1:1".into());
    };
    let mut weights = [0_u32; 3];
    for (slot, part) in weights.iter_mut().zip([a, b, c]) {
        *slot = part
            .trim()
            .parse()
            .map_err(|e| format!("bad weight {part:?}: {e}"))?;
    }
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
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub request_timeout: Duration,
    pub run_id: String,
    pub mix: Mix,
    pub jwt: JwtConfig,
}

struct Member {
    external_id: String,
    auth: HeaderValue,
}

struct Ctx {
    client: Client,
    url: String,
    members: Vec<Member>,
    service_auth: HeaderValue,
    mix: Mix,
}

/// Everything the HTTP side can be set up with before the raw SQL phase runs.
pub struct Prepared {
    ctx: Arc<Ctx>,
    pub register: Summary,
}

pub struct HttpResults {
    /// daily_login, product_view, purchase, then the mixed total.
    pub rows: Vec<Summary>,
}

/// Build the client, mint tokens, check the server is reachable and
/// register the members (measured as its own row).
pub async fn prepare(cfg: &HttpConfig) -> Result<Prepared> {
    let client = Client::builder()
        .pool_max_idle_per_host(cfg.concurrency)
        .tcp_nodelay(true)
        .timeout(cfg.request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building HTTP client")?;
    let url = format!("{}/graphql", cfg.server.trim_end_matches('/'));

    // Tokens must outlive set-up, warm-up and the measurement itself.
    let lifetime = cfg.warmup + cfg.duration + Duration::from_secs(3600);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .saturating_add(lifetime)
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
        mix: cfg.mix,
    });
    let register = register_all(&ctx, cfg.concurrency).await?;
    Ok(Prepared { ctx, register })
}

/// Warm up, then measure the mixed workload.
pub async fn run(prepared: &Prepared, cfg: &HttpConfig) -> Result<HttpResults> {
    if !cfg.warmup.is_zero() {
        let (warm, _) = measure(&prepared.ctx, cfg.concurrency, cfg.warmup).await?;
        let ops: u64 = warm.iter().map(Recorder::ops).sum();
        let errors: u64 = warm.iter().map(|r| r.errors).sum();
        eprintln!("  warm-up: {ops} ok, {errors} errors (discarded)");
    }
    let (recs, elapsed) = measure(&prepared.ctx, cfg.concurrency, cfg.duration).await?;

    let mut mixed = Recorder::default();
    let mut rows = Vec::with_capacity(4);
    for (w, rec) in Workload::ALL.into_iter().zip(recs) {
        mixed.merge(rec.clone());
        rows.push(rec.summarize(w.label(), cfg.concurrency, elapsed));
    }
    rows.push(mixed.summarize(MIXED_LABEL, cfg.concurrency, elapsed));
    Ok(HttpResults { rows })
}

/// Fail fast, with a useful message, when nothing is listening or the
/// server rejects our tokens.
async fn preflight(client: &Client, url: &str, service_auth: &HeaderValue) -> Result<()> {
    let resp = client
        .post(url)
        .header(AUTHORIZATION, service_auth.clone())
        .json(&json!({ "query": "{ __typename }" }))
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
            eprintln!("warning: preflight `{{ __typename }}` returned a GraphQL error: {msg}");
        }
    } else {
        eprintln!(
            "warning: preflight got a non-JSON answer (HTTP {status}): {}",
            snippet(body.as_bytes())
        );
    }
    Ok(())
}

async fn register_all(ctx: &Arc<Ctx>, concurrency: usize) -> Result<Summary> {
    let start = Instant::now();
    let results: Vec<Result<Duration, String>> = stream::iter(ctx.members.iter().enumerate())
        .map(|(n, m)| {
            let ctx = Arc::clone(ctx);
            async move {
                let body = json!({
                    "query": format!(
                        "mutation {{ register(input: {{displayName: \"Bench {n}\"}}) {{ member {{ id balance }} }} }}"
                    )
                });
                let t0 = Instant::now();
                let data = graphql(&ctx.client, &ctx.url, &m.auth, &body).await?;
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
    concurrency: usize,
    duration: Duration,
) -> Result<([Recorder; 3], Duration)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let ctx = Arc::clone(ctx);
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::from_os_rng();
            let mut recs: [Recorder; 3] = Default::default();
            while Instant::now() < deadline {
                let Some(member) = ctx.members.get(rng.random_range(0..ctx.members.len())) else {
                    break;
                };
                let workload = ctx.mix.pick(&mut rng);
                let body = request_body(workload, member, &mut rng);
                let auth = match workload {
                    Workload::Purchase => &ctx.service_auth,
                    Workload::DailyLogin | Workload::ProductView => &member.auth,
                };
                let t0 = Instant::now();
                let result = graphql(&ctx.client, &ctx.url, auth, &body).await;
                let latency = t0.elapsed();
                let rec = &mut recs[workload.index()];
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
    let mut total: [Recorder; 3] = Default::default();
    for h in handles {
        let recs = h.await.context("HTTP worker task failed")?;
        for (t, r) in total.iter_mut().zip(recs) {
            t.merge(r);
        }
    }
    Ok((total, start.elapsed()))
}

fn request_body(workload: Workload, member: &Member, rng: &mut impl Rng) -> Value {
    let key = uuid::Uuid::new_v4().to_string();
    match workload {
        Workload::DailyLogin => json!({ "query": DAILY_LOGIN, "variables": { "k": key } }),
        Workload::ProductView => {
            let product = format!("p-{}", rng.random_range(0..100_000_u32));
            json!({ "query": PRODUCT_VIEW, "variables": { "o": product, "k": key } })
        }
        Workload::Purchase => {
            let cents = rng.random_range(100..=50_000_u32);
            json!({
                "query": PURCHASE,
                "variables": { "i": {
                    "memberExternalId": member.external_id,
                    "orderId": uuid::Uuid::new_v4().to_string(),
                    "amount": format!("{}.{:02}", cents / 100, cents % 100),
                    "idempotencyKey": key,
                }}
            })
        }
    }
}

/// Did a successful response award points? Also validates the shape.
fn awarded(workload: Workload, data: &Value) -> Result<bool, String> {
    match workload {
        Workload::DailyLogin | Workload::ProductView => {
            Ok(positive(field(data, "recordAction")?.get("awarded")))
        }
        Workload::Purchase => Ok(positive(
            field(data, "recordPurchase")?.get("pointsAwarded"),
        )),
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

/// POST one GraphQL request. `Ok` carries `data`; every failure — transport,
/// HTTP status, non-JSON, a non-empty `errors` array, missing `data` — is an
/// `Err` with a short message suitable for grouping.
async fn graphql(
    client: &Client,
    url: &str,
    auth: &HeaderValue,
    body: &Value,
) -> Result<Value, String> {
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
        .map_err(|e| format!("reading body: {}", error_chain(e)))?;
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if let Some(msg) = parsed.as_ref().and_then(first_graphql_error) {
        return Err(msg);
    }
    if !status.is_success() {
        return Err(format!("HTTP {}: {}", status.as_u16(), snippet(&bytes)));
    }
    let Some(mut v) = parsed else {
        return Err(format!("non-JSON response: {}", snippet(&bytes)));
    };
    match v.get_mut("data").map(Value::take) {
        Some(data) if !data.is_null() => Ok(data),
        _ => Err("response without data".to_string()),
    }
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
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("a:1:1").is_err());
        let only_purchase = parse_mix("0:0:3").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(only_purchase.pick(&mut rng), Workload::Purchase);
        }
        let even = parse_mix("1:1:1").unwrap();
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[even.pick(&mut rng).index()] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
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
        let d = json!({"recordPurchase": {"balance": "5", "pointsAwarded": "12.5"}});
        assert_eq!(awarded(Workload::Purchase, &d), Ok(true));
        assert!(awarded(Workload::Purchase, &json!({"recordPurchase": null})).is_err());
    }

    #[test]
    fn purchase_body_shape() {
        let member = Member {
            external_id: "bench-x-1".into(),
            auth: HeaderValue::from_static("Bearer t"),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let body = request_body(Workload::Purchase, &member, &mut rng);
        let i = &body["variables"]["i"];
        assert_eq!(i["memberExternalId"], "bench-x-1");
        let amount = i["amount"].as_str().unwrap();
        let (whole, cents) = amount.split_once('.').unwrap();
        assert!(whole.parse::<u32>().unwrap() >= 1);
        assert_eq!(cents.len(), 2);
        assert!(uuid::Uuid::parse_str(i["orderId"].as_str().unwrap()).is_ok());
    }
}
