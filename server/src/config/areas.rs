//! One small parser per area of the configuration, called by [`Config::from_lookup`] in the
//! order the variables are listed, so problems are reported in that order.

use std::net::SocketAddr;

use loyalty_domain::ledger::batch::LaneCpu;

use super::{
    is_postgres_url, DatabaseTarget, GraphqlConfig, HttpLimits, JwtKey, Reader, BOOL,
    DEFAULT_MAX_COMPLEXITY, DEFAULT_MAX_CONNECTIONS, MAX_LEEWAY_SECS,
};

/// The database to open and how many connections to pool.
pub(super) struct Database {
    pub target: DatabaseTarget,
    pub max_connections: u32,
}

pub(super) struct Redis {
    pub url: Option<String>,
    pub prefix: String,
}

/// The token settings; `key` is `None` when the development secret should be used.
pub(super) struct Jwt {
    pub key: Option<JwtKey>,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

/// Per-request limits: body size and the two rate limits.
pub(super) struct RequestLimits {
    pub body_limit_bytes: usize,
    pub ip_per_sec: u32,
    pub subject_per_sec: u32,
}

/// CPU numbers Linux can pin to (`CPU_SETSIZE`).
const MAX_CPU: usize = 1024;

/// Group commit of postings (`POSTING_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// `None`: the backend's default (four lanes on PostgreSQL; SQLite always has one).
    pub lanes: Option<usize>,
    pub batch_max: usize,
    pub batch_window_ms: u64,
    /// Where SQLite's posting lane runs (`SQLITE_LANE_CPU`).
    pub lane_cpu: LaneCpu,
    /// How often an idle cross-member work runner looks for due work (`WORK_POLL_INTERVAL_MS`);
    /// 0: this instance runs none.
    pub work_poll_interval_ms: u64,
}

impl Posting {
    /// How often this instance's cross-member work runner polls; `None`: it runs none.
    pub fn work_poll_interval(&self) -> Option<std::time::Duration> {
        (self.work_poll_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(self.work_poll_interval_ms))
    }

    /// The batching these settings ask for.
    pub fn batching(&self) -> loyalty_domain::ledger::batch::BatchOptions {
        loyalty_domain::ledger::batch::BatchOptions {
            lanes: self.lanes,
            max: self.batch_max,
            window: std::time::Duration::from_millis(self.batch_window_ms),
            cpu: self.lane_cpu,
        }
    }
}

/// Outbound webhooks (`WEBHOOK_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Webhooks {
    /// Endpoints may point at loopback, private and link-local addresses.
    pub allow_private_urls: bool,
    /// The most one delivery attempt may take.
    pub timeout_secs: u64,
    /// How often an idle worker looks for due events; 0: this instance delivers nothing.
    pub poll_interval_ms: u64,
}

impl Webhooks {
    /// The domain's options for these settings.
    pub fn options(&self) -> loyalty_domain::webhooks::WebhookOptions {
        loyalty_domain::webhooks::WebhookOptions {
            allow_private_urls: self.allow_private_urls,
            timeout: std::time::Duration::from_secs(self.timeout_secs),
            poll_interval: (self.poll_interval_ms > 0)
                .then(|| std::time::Duration::from_millis(self.poll_interval_ms)),
        }
    }
}

/// Job intervals, token lifetimes and socket timeouts.
pub(super) struct Timings {
    pub expiry_interval_secs: u64,
    pub telegram_max_age_secs: u64,
    pub ws_init_timeout_secs: u64,
    pub member_token_ttl_secs: u64,
    pub report_fold_interval_secs: u64,
}

impl Reader<'_> {
    pub(super) fn listen_addr(&mut self) -> SocketAddr {
        self.parse(
            "LISTEN_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            |_| true,
            "an IP address and port like 127.0.0.1:8080",
        )
    }

    pub(super) fn database(&mut self) -> Database {
        let target = self.database_target();
        let default_connections = match &target.database_url {
            Some(url) if is_postgres_url(url) => 20,
            _ => 4,
        };
        let max_connections = self.parse(
            "DATABASE_MAX_CONNECTIONS",
            default_connections,
            |n| (1..=1000).contains(n),
            "a whole number from 1 to 1000",
        );
        Database {
            target,
            max_connections,
        }
    }

    pub(super) fn redis(&mut self) -> Redis {
        let url = self.get("REDIS_URL");
        if let Some(url) = &url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                self.problem(
                    "REDIS_URL must start with redis:// or rediss:// (leave it unset for the \
                     in-process store)",
                );
            }
        }
        let prefix = self
            .get("REDIS_PREFIX")
            .unwrap_or_else(|| "loyalty:".to_owned());
        if prefix.len() > 64 || prefix.chars().any(char::is_whitespace) {
            self.problem("REDIS_PREFIX must be at most 64 characters without whitespace");
        }
        Redis { url, prefix }
    }

    pub(super) fn jwt(&mut self, embedded: bool) -> Jwt {
        let issuer = self
            .get("JWT_ISSUER")
            .unwrap_or_else(|| "loyalty".to_owned());
        let audience = self
            .get("JWT_AUDIENCE")
            .unwrap_or_else(|| "loyalty-api".to_owned());
        let leeway_secs = self.parse(
            "JWT_LEEWAY_SECS",
            30,
            |n| *n <= MAX_LEEWAY_SECS,
            "a number of seconds from 0 to 300",
        );
        let key = self.jwt_key(embedded);
        Jwt {
            key,
            issuer,
            audience,
            leeway_secs,
        }
    }

    pub(super) fn graphql(&mut self, embedded: bool) -> GraphqlConfig {
        GraphqlConfig {
            // Production schemas are not published by default (OWASP GraphQL cheat sheet).
            introspection: self.parse("GRAPHQL_INTROSPECTION", embedded, |_| true, BOOL),
            graphiql: self.parse("GRAPHIQL", embedded, |_| true, BOOL),
            max_depth: self.parse(
                "GRAPHQL_MAX_DEPTH",
                12,
                |n| (1..=100).contains(n),
                "1 to 100",
            ),
            max_complexity: self.parse(
                "GRAPHQL_MAX_COMPLEXITY",
                DEFAULT_MAX_COMPLEXITY,
                |n| (1..=1_000_000).contains(n),
                "1 to 1000000",
            ),
            max_batch: self.parse(
                "GRAPHQL_MAX_BATCH",
                10,
                |n| (1..=100).contains(n),
                "1 to 100",
            ),
            max_root_mutations: self.parse(
                "GRAPHQL_MAX_ROOT_MUTATIONS",
                10,
                |n| (1..=100).contains(n),
                "1 to 100",
            ),
            persisted_query_cache_size: self.parse(
                "PERSISTED_QUERY_CACHE_SIZE",
                1_000,
                |n| *n <= 1_000_000,
                "a number of documents from 0 (off) to 1000000",
            ),
            persisted_query_cache_bytes: self.parse(
                "PERSISTED_QUERY_CACHE_BYTES",
                1024 * 1024,
                |n| (1024..=1024 * 1024 * 1024).contains(n),
                "a number of bytes from 1024 to 1073741824",
            ),
        }
    }

    pub(super) fn request_limits(&mut self) -> RequestLimits {
        RequestLimits {
            body_limit_bytes: self.parse(
                "BODY_LIMIT_BYTES",
                65_536,
                |n| (1024..=16 * 1024 * 1024).contains(n),
                "a number of bytes from 1024 to 16777216",
            ),
            ip_per_sec: self.parse(
                "RATE_LIMIT_IP_PER_SEC",
                200,
                |n| (1..=1_000_000).contains(n),
                "requests per second from 1 to 1000000",
            ),
            subject_per_sec: self.parse(
                "RATE_LIMIT_SUBJECT_PER_SEC",
                100,
                |n| (1..=1_000_000).contains(n),
                "requests per second from 1 to 1000000",
            ),
        }
    }

    pub(super) fn timings(&mut self) -> Timings {
        Timings {
            expiry_interval_secs: self.parse(
                "EXPIRY_INTERVAL_SECS",
                60,
                |n| *n <= 86_400,
                "seconds from 0 (off) to 86400",
            ),
            telegram_max_age_secs: self.parse(
                "TELEGRAM_AUTH_MAX_AGE_SECS",
                3_600,
                |n| (60..=2_592_000).contains(n),
                "seconds from 60 to 2592000 (30 days)",
            ),
            ws_init_timeout_secs: self.parse(
                "WS_INIT_TIMEOUT_SECS",
                10,
                |n| (1..=300).contains(n),
                "seconds from 1 to 300",
            ),
            member_token_ttl_secs: self.parse(
                "MEMBER_TOKEN_TTL_SECS",
                3_600,
                |n| (60..=2_592_000).contains(n),
                "seconds from 60 to 2592000 (30 days)",
            ),
            report_fold_interval_secs: self.parse(
                "REPORT_FOLD_INTERVAL_SECS",
                5,
                |n| *n <= 86_400,
                "seconds from 0 (off) to 86400",
            ),
        }
    }

    pub(super) fn http_limits(&mut self) -> HttpLimits {
        HttpLimits {
            header_read_timeout_secs: self.parse(
                "HEADER_READ_TIMEOUT_SECS",
                10,
                |n| (1..=300).contains(n),
                "seconds from 1 to 300",
            ),
            max_connections: self.parse(
                "MAX_CONNECTIONS",
                DEFAULT_MAX_CONNECTIONS,
                |n| (1..=1_000_000).contains(n),
                "a whole number from 1 to 1000000",
            ),
            ws_max_sockets_per_ip: self.parse(
                "WS_MAX_SOCKETS_PER_IP",
                1_000,
                |n| (1..=1_000_000).contains(n),
                "a whole number from 1 to 1000000",
            ),
            trusted_proxies: self.trusted_proxies(),
        }
    }

    pub(super) fn leaderboard_catch_up_interval_secs(&mut self) -> u64 {
        self.parse(
            "LEADERBOARD_CATCH_UP_INTERVAL_SECS",
            10,
            |n| *n <= 86_400,
            "seconds from 0 (off) to 86400",
        )
    }

    pub(super) fn posting(&mut self) -> Posting {
        let lanes = self.parse(
            "POSTING_LANES",
            usize::MAX,
            |n| *n <= 64 || *n == usize::MAX,
            "a whole number from 0 (no batching) to 64",
        );
        Posting {
            lanes: (lanes != usize::MAX).then_some(lanes),
            batch_max: self.parse(
                "POSTING_BATCH_MAX",
                32,
                |n| (1..=loyalty_domain::ledger::batch::MAX_BATCH).contains(n),
                "a whole number from 1 to 64",
            ),
            batch_window_ms: self.parse(
                "POSTING_BATCH_WINDOW_MS",
                0,
                |n| *n <= 1_000,
                "milliseconds from 0 to 1000",
            ),
            lane_cpu: self.lane_cpu(),
            work_poll_interval_ms: self.parse(
                "WORK_POLL_INTERVAL_MS",
                1_000,
                |n| *n <= 60_000,
                "milliseconds from 0 (this instance runs no cross-member work) to 60000",
            ),
        }
    }

    fn lane_cpu(&mut self) -> LaneCpu {
        let raw = self.get("SQLITE_LANE_CPU").map(|v| v.to_ascii_lowercase());
        match raw.as_deref() {
            None | Some("auto") => LaneCpu::Auto,
            Some("off") => LaneCpu::Off,
            Some(cpu) => match cpu.parse::<usize>() {
                Ok(cpu) if cpu < MAX_CPU => LaneCpu::Cpu(cpu),
                _ => {
                    self.problem(
                        "SQLITE_LANE_CPU must be auto, off or a CPU number from 0 to 1023",
                    );
                    LaneCpu::Auto
                }
            },
        }
    }

    pub(super) fn webhooks(&mut self) -> Webhooks {
        Webhooks {
            allow_private_urls: self.parse("WEBHOOK_ALLOW_PRIVATE_URLS", false, |_| true, BOOL),
            timeout_secs: self.parse(
                "WEBHOOK_TIMEOUT_SECS",
                10,
                |n| (1..=60).contains(n),
                "seconds from 1 to 60",
            ),
            poll_interval_ms: self.parse(
                "WEBHOOK_POLL_INTERVAL_MS",
                1_000,
                |n| *n <= 60_000,
                "milliseconds from 0 (this instance delivers nothing) to 60000",
            ),
        }
    }
}
