//! Runtime configuration: compiled-in defaults, then environment variables, validated at start
//! with messages that name the variable. Secrets never reach `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context as _;

pub use crate::http::client_addr::TrustedProxies;

mod areas;

pub use areas::{Posting, Webhooks};
pub use loyalty_domain::ledger::batch::LaneCpu;
mod dev_secret;

/// The HS256 secret [`Config::for_tests`] uses, so tests can mint their own tokens.
pub const TEST_JWT_SECRET: &str = "loyalty-test-secret-never-use-in-production-0123456789";

/// The file name of the embedded database inside `DATA_DIR`.
pub const SQLITE_FILE_NAME: &str = "loyalty.db";

/// Every variable the server reads (README documents each).
pub const VARIABLES: &[&str] = &[
    "LISTEN_ADDR",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "REDIS_URL",
    "REDIS_PREFIX",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY_PEM",
    "JWT_PRIVATE_KEY_PEM",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_LEEWAY_SECS",
    "GRAPHQL_INTROSPECTION",
    "GRAPHIQL",
    "GRAPHQL_MAX_DEPTH",
    "GRAPHQL_MAX_COMPLEXITY",
    "GRAPHQL_MAX_BATCH",
    "GRAPHQL_MAX_ROOT_MUTATIONS",
    "PERSISTED_QUERY_CACHE_SIZE",
    "PERSISTED_QUERY_CACHE_BYTES",
    "BODY_LIMIT_BYTES",
    "RATE_LIMIT_IP_PER_SEC",
    "RATE_LIMIT_SUBJECT_PER_SEC",
    "LOG_FORMAT",
    "CORS_ALLOWED_ORIGINS",
    "EXPIRY_INTERVAL_SECS",
    "TELEGRAM_AUTH_MAX_AGE_SECS",
    "MEMBER_TOKEN_TTL_SECS",
    "TELEGRAM_BOT_TOKEN",
    "WS_INIT_TIMEOUT_SECS",
    "REPORT_FOLD_INTERVAL_SECS",
    "HEADER_READ_TIMEOUT_SECS",
    "MAX_CONNECTIONS",
    "WS_MAX_SOCKETS_PER_IP",
    "TRUSTED_PROXIES",
    "METRICS_TOKEN",
    "METRICS_ADDR",
    "LEADERBOARD_CATCH_UP_INTERVAL_SECS",
    "POSTING_LANES",
    "POSTING_BATCH_MAX",
    "POSTING_BATCH_WINDOW_MS",
    "SQLITE_LANE_CPU",
    "WORK_POLL_INTERVAL_MS",
    "WEBHOOK_ALLOW_PRIVATE_URLS",
    "WEBHOOK_TIMEOUT_SECS",
    "WEBHOOK_POLL_INTERVAL_MS",
];

const MAX_LEEWAY_SECS: u64 = 300;
/// A paginated field costs `first` × its children, so this is about the number of values an
/// answer may hold: a full page of 100 rows of 20 fields passes, pages nested in pages do not.
const DEFAULT_MAX_COMPLEXITY: usize = 2_500;
const MIN_SECRET_BYTES: usize = 32;
/// RS256 keys shorter than this are refused (NIST SP 800-131A; RFC 7518 §3.3 requires 2048).
pub const MIN_RSA_BITS: usize = 2048;
const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The key that signs and verifies tokens; the algorithm follows from it and is never taken
/// from a token's header.
#[derive(Clone, Debug)]
pub enum JwtKey {
    Hs256 {
        secret: Secret,
    },
    Rs256 {
        public_key_pem: String,
        private_key_pem: Option<Secret>,
    },
}

/// Where the JWT key came from (logged at start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Environment,
    /// The development secret generated once in the embedded default and kept on disk.
    DevelopmentFile(PathBuf),
    Code,
}

#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub origin: KeyOrigin,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

#[derive(Clone, Debug)]
pub struct GraphqlConfig {
    pub introspection: bool,
    pub graphiql: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_batch: usize,
    /// Root mutation fields one request (one operation of a batch, one WebSocket `subscribe`)
    /// may hold; each is charged to the caller's rate limit.
    pub max_root_mutations: usize,
    /// Automatic persisted queries: documents kept by hash (least recently used go first); 0
    /// turns the protocol off (`PERSISTED_QUERY_NOT_SUPPORTED`).
    pub persisted_query_cache_size: usize,
    /// The most query text, summed over the kept documents, so a few large documents cannot
    /// hold much memory; a document longer than this is run but not kept.
    pub persisted_query_cache_bytes: usize,
}

/// Which browser origins may call the API (mini-app web views are often on the merchant's
/// domain). Bearer tokens, never cookies, so no credentials are allowed either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: same-origin browsers only (the default).
    None,
    /// `*`: any origin.
    Any,
    /// Exactly these origins (`https://shop.example`).
    List(Vec<String>),
}

/// Limits of the HTTP server itself, below routing.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// A connection that has not sent a complete request head by then is closed.
    pub header_read_timeout_secs: u64,
    /// Open TCP connections (WebSockets included); further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Open WebSockets per client address; the one over it gets 429 before the upgrade.
    pub ws_max_sockets_per_ip: usize,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// Who may read `/metrics`.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// When set, every `/metrics` answer needs `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// A second listener that serves `/metrics` only.
    pub addr: Option<SocketAddr>,
    /// Whether the main listener serves `/metrics`: with a token, or in the embedded default.
    pub on_main_listener: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Holds the embedded SQLite file and the development JWT secret.
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite file `$DATA_DIR/loyalty.db`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// `None`: the in-process store (single instance).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub jwt: JwtConfig,
    pub graphql: GraphqlConfig,
    pub body_limit_bytes: usize,
    pub rate_limit_ip_per_sec: u32,
    pub rate_limit_subject_per_sec: u32,
    pub log_format: LogFormat,
    pub cors: CorsOrigins,
    /// How often the expiry job runs; 0 turns it off on this instance.
    pub expiry_interval_secs: u64,
    /// How old a mini-app launch payload (`auth_date`) may be at `POST /auth/telegram`.
    pub telegram_max_age_secs: u64,
    /// Lifetime of the member tokens that `/auth/telegram` issues.
    pub member_token_ttl_secs: u64,
    /// How long a WebSocket may stay open without `connection_init` (then 4408).
    pub ws_init_timeout_secs: u64,
    /// How often the report folder adds new ledger rows to the report's sums; 0 turns it off on
    /// this instance (reports stay exact, they just read a longer tail).
    pub report_fold_interval_secs: u64,
    pub http: HttpLimits,
    pub metrics: MetricsConfig,
    /// How often the leaderboards catch up with ledger rows whose board update was lost (a crash
    /// between commit and update); the first pass runs at start. 0 turns it off on this instance.
    pub leaderboard_catch_up_interval_secs: u64,
    /// Group commit of postings: lanes, batch size and gathering window.
    pub posting: Posting,
    /// Outbound webhooks: which addresses, the attempt timeout, the worker's poll.
    pub webhooks: Webhooks,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("jwt", &self.jwt)
            .field("graphql", &self.graphql)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("rate_limit_ip_per_sec", &self.rate_limit_ip_per_sec)
            .field(
                "rate_limit_subject_per_sec",
                &self.rate_limit_subject_per_sec,
            )
            .field("log_format", &self.log_format)
            .field("http", &self.http)
            .field("metrics", &self.metrics)
            .field("posting", &self.posting)
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Config> {
        for name in VARIABLES {
            if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(name) {
                anyhow::bail!("configuration error: {name} is not valid UTF-8");
            }
        }
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map). Unset and blank mean "default".
    /// In the embedded default without a JWT key this creates or reuses
    /// `$DATA_DIR/jwt-secret`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut env = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let listen_addr = env.listen_addr();
        let database = env.database();
        let redis = env.redis();
        let embedded = database.target.database_url.is_none();
        let jwt = env.jwt(embedded);
        let graphql = env.graphql(embedded);
        let requests = env.request_limits();
        let log_format = env.log_format();
        let cors = env.cors();
        let timings = env.timings();
        let http = env.http_limits();
        let metrics = env.metrics(embedded);
        let leaderboard_catch_up_interval_secs = env.leaderboard_catch_up_interval_secs();
        let posting = env.posting();
        let webhooks = env.webhooks();

        if !env.problems.is_empty() {
            anyhow::bail!("configuration error:\n  - {}", env.problems.join("\n  - "));
        }
        let DatabaseTarget {
            data_dir,
            database_url,
        } = database.target;
        // Only now touch the disk: a bad configuration must not leave a secret file behind.
        let (key, origin) = match jwt.key {
            Some(key) => (key, KeyOrigin::Environment),
            None => {
                let path = data_dir.join(dev_secret::FILE_NAME);
                let secret = dev_secret::load_or_create(&path)?;
                (JwtKey::Hs256 { secret }, KeyOrigin::DevelopmentFile(path))
            }
        };

        Ok(Config {
            listen_addr,
            data_dir,
            database_url,
            database_max_connections: database.max_connections,
            redis_url: redis.url,
            redis_prefix: redis.prefix,
            jwt: JwtConfig {
                key,
                origin,
                issuer: jwt.issuer,
                audience: jwt.audience,
                leeway_secs: jwt.leeway_secs,
            },
            graphql,
            body_limit_bytes: requests.body_limit_bytes,
            rate_limit_ip_per_sec: requests.ip_per_sec,
            rate_limit_subject_per_sec: requests.subject_per_sec,
            log_format,
            cors,
            expiry_interval_secs: timings.expiry_interval_secs,
            telegram_max_age_secs: timings.telegram_max_age_secs,
            member_token_ttl_secs: timings.member_token_ttl_secs,
            ws_init_timeout_secs: timings.ws_init_timeout_secs,
            report_fold_interval_secs: timings.report_fold_interval_secs,
            http,
            metrics,
            leaderboard_catch_up_interval_secs,
            posting,
            webhooks,
        })
    }

    /// A configuration for tests: port 0, HS256 with [`TEST_JWT_SECRET`], GraphiQL,
    /// introspection and `/metrics` on, rate limits high enough not to interfere (lower them to
    /// test them).
    pub fn for_tests(
        database_url: Option<String>,
        redis_url: Option<String>,
        redis_prefix: String,
        data_dir: PathBuf,
    ) -> Config {
        let database_max_connections = match &database_url {
            Some(url) if is_postgres_url(url) => 10,
            _ => 4,
        };
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            database_url,
            database_max_connections,
            redis_url,
            redis_prefix,
            jwt: JwtConfig {
                key: JwtKey::Hs256 {
                    secret: Secret::new(TEST_JWT_SECRET),
                },
                origin: KeyOrigin::Code,
                issuer: "loyalty".to_owned(),
                audience: "loyalty-api".to_owned(),
                leeway_secs: 30,
            },
            graphql: GraphqlConfig {
                introspection: true,
                graphiql: true,
                max_depth: 12,
                max_complexity: DEFAULT_MAX_COMPLEXITY,
                max_batch: 10,
                max_root_mutations: 10,
                persisted_query_cache_size: 1_000,
                persisted_query_cache_bytes: 1024 * 1024,
            },
            body_limit_bytes: 65_536,
            rate_limit_ip_per_sec: 100_000,
            rate_limit_subject_per_sec: 100_000,
            log_format: LogFormat::Text,
            cors: CorsOrigins::None,
            // Tests run expiry explicitly with their clock.
            expiry_interval_secs: 0,
            telegram_max_age_secs: 86_400,
            member_token_ttl_secs: 3_600,
            ws_init_timeout_secs: 3,
            // Tests fold explicitly, to control how far the sums lag.
            report_fold_interval_secs: 0,
            http: HttpLimits {
                header_read_timeout_secs: 10,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                ws_max_sockets_per_ip: 1_000,
                trusted_proxies: TrustedProxies::default(),
            },
            metrics: MetricsConfig {
                token: None,
                addr: None,
                on_main_listener: true,
            },
            // Tests that need the catch-up turn it on; the others see boards move only through
            // the code under test.
            leaderboard_catch_up_interval_secs: 0,
            posting: Posting {
                lanes: None,
                batch_max: 32,
                batch_window_ms: 0,
                lane_cpu: LaneCpu::Auto,
                work_poll_interval_ms: 100,
            },
            // Receivers in tests listen on loopback: the tests that need them allow it.
            webhooks: Webhooks {
                allow_private_urls: false,
                timeout_secs: 5,
                poll_interval_ms: 100,
            },
        }
    }

    /// Where the database is (what `migrate` needs).
    pub fn database_target(&self) -> DatabaseTarget {
        DatabaseTarget {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }

    /// Whether this is the embedded default (SQLite file, no `DATABASE_URL`).
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    /// Where the embedded database lives.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(SQLITE_FILE_NAME)
    }

    /// The URL to connect to; for the embedded file this creates `DATA_DIR`.
    pub fn resolved_database_url(&self) -> anyhow::Result<String> {
        self.database_target().resolved_url()
    }

    /// A one-line description of where data lives, safe to log.
    pub fn describe_storage(&self) -> String {
        let database = self.database_target().describe();
        let store = match &self.redis_url {
            Some(url) => format!("{} (prefix {})", redact_url(url), self.redis_prefix),
            None => "in-process store".to_owned(),
        };
        format!("database: {database}; fast store: {store}")
    }
}

/// Only where the database is: `migrate` needs nothing else (no JWT key in particular).
#[derive(Clone, Debug)]
pub struct DatabaseTarget {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
}

impl DatabaseTarget {
    pub fn from_env() -> anyhow::Result<DatabaseTarget> {
        DatabaseTarget::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<DatabaseTarget> {
        let mut env = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let target = env.database_target();
        match env.problems.pop() {
            Some(problem) => anyhow::bail!("configuration error: {problem}"),
            None => Ok(target),
        }
    }

    /// The URL to connect to; for the embedded file this creates `DATA_DIR`.
    pub fn resolved_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => loyalty_domain::ledger::db::sqlite_url(&self.data_dir.join(SQLITE_FILE_NAME))
                .with_context(|| format!("cannot create DATA_DIR {}", self.data_dir.display())),
        }
    }

    /// Safe to log: passwords are redacted.
    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => redact_url(url),
            None => format!(
                "sqlite file {}",
                self.data_dir.join(SQLITE_FILE_NAME).display()
            ),
        }
    }
}

/// Reads `LOG_FORMAT` alone, so logging can start before the rest of the configuration is read.
pub fn log_format_from_env() -> anyhow::Result<LogFormat> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut env = Reader {
        lookup: &lookup,
        problems: Vec::new(),
    };
    let format = env.log_format();
    match env.problems.pop() {
        Some(problem) => anyhow::bail!("configuration error: {problem}"),
        None => Ok(format),
    }
}

const BOOL: &str = "true or false";

/// Above the 10,000 WebSockets one instance is measured with (BENCHMARKS.md).
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparseable url]".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let user = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".into()
            };
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn cors(&mut self) -> CorsOrigins {
        let Some(raw) = self.get("CORS_ALLOWED_ORIGINS") else {
            return CorsOrigins::None;
        };
        if raw == "*" {
            return CorsOrigins::Any;
        }
        let origins: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        let valid = |o: &String| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && !o[o.find("//").map_or(0, |i| i + 2)..].contains('/')
                && axum::http::HeaderValue::from_str(o).is_ok()
        };
        if origins.is_empty() || !origins.iter().all(valid) {
            self.problem(
                "CORS_ALLOWED_ORIGINS must be `*` or a comma-separated list of origins like \
                 https://shop.example",
            );
            return CorsOrigins::None;
        }
        CorsOrigins::List(origins)
    }

    fn trusted_proxies(&mut self) -> TrustedProxies {
        let Some(raw) = self.get("TRUSTED_PROXIES") else {
            return TrustedProxies::default();
        };
        match TrustedProxies::parse(&raw) {
            Ok(proxies) => proxies,
            Err(entry) => {
                self.problem(format!(
                    "TRUSTED_PROXIES must be a comma-separated list of CIDRs or addresses like \
                     10.0.0.0/8,2001:db8::/32 (`{entry}` is neither)"
                ));
                TrustedProxies::default()
            }
        }
    }

    fn metrics(&mut self, embedded: bool) -> MetricsConfig {
        let token = self.get("METRICS_TOKEN");
        if token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_METRICS_TOKEN_BYTES || t.contains(char::is_whitespace))
        {
            self.problem(format!(
                "METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_BYTES} bytes without whitespace"
            ));
        }
        let addr = self.get("METRICS_ADDR");
        let addr = addr.and_then(|raw| match raw.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem("METRICS_ADDR must be an IP address and port like 127.0.0.1:9090");
                None
            }
        });
        MetricsConfig {
            on_main_listener: token.is_some() || embedded,
            token: token.map(Secret),
            addr,
        }
    }

    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn parse<T: FromStrLoose>(
        &mut self,
        name: &str,
        default: T,
        valid: impl Fn(&T) -> bool,
        expected: &str,
    ) -> T {
        let Some(raw) = self.get(name) else {
            return default;
        };
        match T::from_str_loose(&raw) {
            Some(value) if valid(&value) => value,
            // The raw value is not echoed: it might be a secret pasted into the wrong variable.
            _ => {
                self.problem(format!("{name} must be {expected}"));
                default
            }
        }
    }

    fn database_target(&mut self) -> DatabaseTarget {
        let data_dir = PathBuf::from(self.get("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let database_url = self.get("DATABASE_URL");
        if let Some(url) = &database_url {
            if !is_postgres_url(url) && !url.starts_with("sqlite:") {
                self.problem(
                    "DATABASE_URL must start with postgres://, postgresql:// or sqlite: \
                     (leave it unset for the embedded SQLite file)",
                );
            }
        }
        DatabaseTarget {
            data_dir,
            database_url,
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self
            .get("LOG_FORMAT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => {
                self.problem("LOG_FORMAT must be text or json");
                LogFormat::Text
            }
        }
    }

    /// The key from the environment; `None` when the development secret should be used.
    fn jwt_key(&mut self, embedded: bool) -> Option<JwtKey> {
        let secret = self.get("JWT_SECRET");
        let public = self.get("JWT_PUBLIC_KEY_PEM").map(|pem| unescape_pem(&pem));
        let private = self
            .get("JWT_PRIVATE_KEY_PEM")
            .map(|pem| unescape_pem(&pem));
        match (secret, public, private) {
            (Some(_), Some(_), _) => {
                self.problem(
                    "set either JWT_SECRET (HS256) or JWT_PUBLIC_KEY_PEM (RS256), not both",
                );
                None
            }
            (Some(_), None, Some(_)) => {
                self.problem("JWT_PRIVATE_KEY_PEM is only used with JWT_PUBLIC_KEY_PEM (RS256)");
                None
            }
            (Some(secret), None, None) => {
                if secret.len() < MIN_SECRET_BYTES {
                    self.problem(format!(
                        "JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl \
                         rand -hex 32`)"
                    ));
                }
                Some(JwtKey::Hs256 {
                    secret: Secret::new(secret),
                })
            }
            (None, Some(public), private) => {
                if let Err(err) = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()) {
                    self.problem(format!(
                        "JWT_PUBLIC_KEY_PEM must be an RSA public key in PEM form \
                         (-----BEGIN PUBLIC KEY-----): {err}"
                    ));
                } else if let Some(bits) = rsa_bits(&public).filter(|b| *b < MIN_RSA_BITS) {
                    self.problem(format!(
                        "JWT_PUBLIC_KEY_PEM is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits \
                         are required"
                    ));
                }
                if let Some(private) = &private {
                    if let Err(err) = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()) {
                        self.problem(format!(
                            "JWT_PRIVATE_KEY_PEM must be an RSA private key in PEM form: {err}"
                        ));
                    }
                }
                Some(JwtKey::Rs256 {
                    public_key_pem: public,
                    private_key_pem: private.map(Secret),
                })
            }
            (None, None, Some(_)) => {
                self.problem("JWT_PRIVATE_KEY_PEM needs JWT_PUBLIC_KEY_PEM (RS256)");
                None
            }
            (None, None, None) if embedded => None,
            (None, None, None) => {
                self.problem(
                    "JWT_SECRET (HS256, at least 32 bytes) or JWT_PUBLIC_KEY_PEM (RS256) is \
                     required when DATABASE_URL is set; a development secret is only generated \
                     for the embedded SQLite default",
                );
                None
            }
        }
    }
}

/// The modulus size of an RSA public key in SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
/// (`BEGIN RSA PUBLIC KEY`) PEM; `None` when it is neither.
pub fn rsa_bits(pem: &str) -> Option<usize> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;
    let pem = pem.trim();
    rsa::RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
        .ok()
        .map(|key| key.n().bits())
}

/// PEM pasted into one-line environment values often carries literal `\n`.
fn unescape_pem(value: &str) -> String {
    value.replace("\\n", "\n")
}

/// `FromStr`, plus the spellings of booleans operators actually type.
trait FromStrLoose: Sized {
    fn from_str_loose(raw: &str) -> Option<Self>;
}

macro_rules! loose_via_from_str {
    ($($t:ty),*) => {$(
        impl FromStrLoose for $t {
            fn from_str_loose(raw: &str) -> Option<Self> {
                <$t as FromStr>::from_str(raw).ok()
            }
        }
    )*};
}

loose_via_from_str!(u32, u64, usize, SocketAddr);

impl FromStrLoose for bool {
    fn from_str_loose(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

/// Exposed for the `Path`-taking helpers in tests.
pub fn dev_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(dev_secret::FILE_NAME)
}

#[cfg(test)]
mod tests;
