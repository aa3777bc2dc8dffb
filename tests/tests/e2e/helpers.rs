use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_domain::clock::ManualClock;
use loyalty_domain::program::Program;
use loyalty_domain::Loyalty;
use loyalty_server::config::{Config, TEST_JWT_SECRET};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use serde_json::json as j;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs a test body against PostgreSQL + Redis and against the embedded default.
#[macro_export]
macro_rules! e2e {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await;
                ($body)(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                ($body)(app).await;
            }
        }
    };
    // The same with the test configuration changed first by `$tweak(&mut Config)`.
    ($name:ident, $body:expr, $tweak:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let backend = $crate::helpers::Backend::Postgres;
                let app = $crate::helpers::spawn_app_with(backend, $tweak).await;
                ($body)(app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let backend = $crate::helpers::Backend::Sqlite;
                let app = $crate::helpers::spawn_app_with(backend, $tweak).await;
                ($body)(app).await;
            }
        }
    };
}

pub struct TestApp {
    pub backend: Backend,
    pub url: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub loyalty: Loyalty,
    pub redis_prefix: Option<String>,
    shutdown: CancellationToken,
    database: Option<String>,
    data_dir: PathBuf,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn with_database(url: &str, database: &str) -> String {
    let base = url.rsplit_once('/').map(|(base, _)| base).unwrap_or(url);
    format!("{base}/{database}")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_at(backend, None, None).await
}

/// A fresh app whose test configuration `adjust` changes first (limits, proxies, ...).
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Config) + Send + 'static,
) -> TestApp {
    spawn(backend, None, None, None, adjust).await
}

/// A PostgreSQL app whose Redis is `redis_url` (a private Redis a test may stop).
pub async fn spawn_app_with_redis(redis_url: String) -> TestApp {
    spawn(Backend::Postgres, None, None, Some(redis_url), |_| {}).await
}

/// A second instance of `shared`'s deployment (same database) whose Redis is `redis_url`.
pub async fn spawn_second_with_redis(shared: &TestApp, redis_url: String) -> TestApp {
    spawn(
        Backend::Postgres,
        Some(shared),
        None,
        Some(redis_url),
        |_| {},
    )
    .await
}

/// Starts a server; `shared` reuses another test app's database and Redis prefix (a second
/// instance of the same deployment).
pub async fn spawn_app_at(
    backend: Backend,
    shared: Option<&TestApp>,
    start: Option<DateTime<Utc>>,
) -> TestApp {
    spawn(backend, shared, start, None, |_| {}).await
}

/// A PostgreSQL app on a fresh database of its own whose Redis keys use `prefix` (so several
/// apps can share one Redis and one prefix, as deployments that should not meet there).
pub async fn spawn_fresh_with_prefix(prefix: &str) -> TestApp {
    let options = Options {
        prefix: Some(prefix.to_owned()),
        ..Options::default()
    };
    spawn_with(Backend::Postgres, None, options).await
}

/// A change to a test app's configuration, applied last.
pub type Configure = Box<dyn FnOnce(&mut Config) + Send>;

/// What [`spawn_with`] may change about a test app.
#[derive(Default)]
pub struct Options {
    pub start: Option<DateTime<Utc>>,
    /// Another Redis than the shared test Redis.
    pub redis: Option<String>,
    /// The Redis prefix of a fresh PostgreSQL app (default: one of its own).
    pub prefix: Option<String>,
    /// Applied to the configuration last.
    pub configure: Option<Configure>,
}

async fn spawn(
    backend: Backend,
    shared: Option<&TestApp>,
    start: Option<DateTime<Utc>>,
    redis_override: Option<String>,
    adjust: impl FnOnce(&mut Config) + Send + 'static,
) -> TestApp {
    let options = Options {
        start,
        redis: redis_override,
        configure: Some(Box::new(adjust)),
        ..Options::default()
    };
    spawn_with(backend, shared, options).await
}

/// Starts a server like [`spawn_app_at`], with [`Options`].
pub async fn spawn_with(backend: Backend, shared: Option<&TestApp>, options: Options) -> TestApp {
    let Options {
        start,
        redis: redis_override,
        prefix: prefix_override,
        configure,
    } = options;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let data_dir = std::env::temp_dir().join(format!("loyalty-test-{id}"));
    std::fs::create_dir_all(&data_dir).unwrap();
    let (database_url, database, redis, prefix) = match (backend, shared) {
        (Backend::Postgres, Some(other)) => (
            Some(with_database(
                &admin_url(),
                other.database.as_deref().unwrap(),
            )),
            None,
            Some(redis_url()),
            other.redis_prefix.clone(),
        ),
        (Backend::Postgres, None) => {
            let name = format!("loyalty_test_{id}");
            let admin = Database::connect(admin_url())
                .await
                .expect("PostgreSQL at TEST_DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
            admin.close().await.ok();
            (
                Some(with_database(&admin_url(), &name)),
                Some(name),
                Some(redis_url()),
                Some(prefix_override.unwrap_or_else(|| format!("test:{id}:"))),
            )
        }
        (Backend::Sqlite, _) => (None, None, None, None),
    };
    let redis = redis_override.or(redis);
    let mut config = Config::for_tests(
        database_url,
        redis,
        prefix.clone().unwrap_or_else(|| "unused:".into()),
        shared
            .map(|o| o.data_dir.clone())
            .unwrap_or_else(|| data_dir.clone()),
    );
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    if let Some(configure) = configure {
        configure(&mut config);
    }
    let start = start.unwrap_or_else(Utc::now);
    let clock = ManualClock::new(start);
    let shutdown = CancellationToken::new();
    let app = loyalty_server::build(config, Arc::new(clock.clone()))
        .await
        .expect("server builds");
    let loyalty = app.loyalty().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        loyalty_server::run(app, listener, token)
            .await
            .expect("server runs");
    });
    TestApp {
        backend,
        url: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        clock,
        loyalty,
        redis_prefix: prefix,
        shutdown,
        database,
        data_dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(name) = self.database.take() {
            // Best effort: a fresh runtime on a plain thread, since Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = Database::connect(admin_url()).await.ok()?;
                    admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await
                        .ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
        }
    }
}

/// A GraphQL response.
#[derive(Debug, Clone)]
pub struct Gql {
    pub status: u16,
    pub body: Value,
}

impl Gql {
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    /// The `extensions.code` of the first error.
    pub fn code(&self) -> String {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
}

impl TestApp {
    /// Stops this instance (server and background jobs) as a crash would leave it: nothing more
    /// runs, the database and Redis keep what it wrote. The database is still dropped with it.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Where this app's Redis keys live: `{REDIS_PREFIX}{deployment id}:`.
    pub fn redis_namespace(&self) -> Option<String> {
        self.loyalty.store().redis().map(|redis| redis.prefix)
    }

    /// The configuration this app was started with (for running CLI subcommands against it).
    pub fn config(&self) -> Config {
        Config::for_tests(
            self.database
                .as_ref()
                .map(|name| with_database(&admin_url(), name)),
            self.redis_prefix.as_ref().map(|_| redis_url()),
            self.redis_prefix
                .clone()
                .unwrap_or_else(|| "unused:".into()),
            self.data_dir.clone(),
        )
    }

    pub fn token(&self, program: &str, role: &str, sub: &str) -> String {
        token_with(json!({
            "sub": sub, "program": program, "role": role,
            "iss": "loyalty", "aud": "loyalty-api",
            "exp": Utc::now().timestamp() + 3600,
        }))
    }

    pub fn member(&self, sub: &str) -> String {
        self.token("demo", "member", sub)
    }

    pub fn service(&self) -> String {
        self.token("demo", "service", "shop-backend")
    }

    pub fn admin(&self) -> String {
        self.token("demo", "admin", "alice")
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        send_gql(&self.client, &self.url, token, query, variables).await
    }

    /// [`TestApp::gql`] on a task of its own (requests that must be in flight together).
    pub fn spawn_gql(
        &self,
        token: &str,
        query: &'static str,
        variables: Value,
    ) -> tokio::task::JoinHandle<Gql> {
        let (client, url, token) = (self.client.clone(), self.url.clone(), token.to_owned());
        tokio::spawn(async move { send_gql(&client, &url, Some(&token), query, variables).await })
    }

    pub async fn demo(&self) -> Arc<Program> {
        self.loyalty.seed_demo().await.unwrap();
        self.loyalty.program("demo").await.unwrap()
    }

    /// Registers a member of `demo` and returns (token, member id).
    pub async fn register(&self, sub: &str) -> (String, String) {
        let token = self.member(sub);
        let res = self
            .gql(
                Some(&token),
                "mutation { register(input: {displayName: \"Test\"}) { member { id } } }",
                json!({}),
            )
            .await;
        let id = res.data()["register"]["member"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (token, id)
    }

    /// The text of `/metrics` (process-wide: other tests' servers add to the counters).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series on `/metrics` (`name` or `name{label="value"}`, exactly as
    /// printed), 0 when it is not there yet (a counter appears at its first increment).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Waits (at most 10 s) until the cross-member work queued so far has run: a referral
    /// inviter's reward follows the friend's commit on the runner's task.
    pub async fn settle_work(&self) {
        for _ in 0..1_000 {
            if self.loyalty.pending_work().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("cross-member work still pending after 10 s");
    }

    pub async fn balance(&self, token: &str) -> String {
        let res = self.gql(Some(token), "{ me { balance } }", json!({})).await;
        res.data()["me"]["balance"].as_str().unwrap().to_owned()
    }

    pub async fn daily_login(&self, token: &str, key: &str) -> Gql {
        self.gql(
            Some(token),
            "mutation($k: String) { recordAction(input: {action: \"daily_login\", idempotencyKey: $k}) { awarded points balance reason transaction { id amount kind source } } }",
            json!({ "k": key }),
        )
        .await
    }

    /// Asserts SPEC §4.3 for every member of `demo`.
    pub async fn assert_ledger_invariants(&self) {
        let program = self.loyalty.program("demo").await.unwrap();
        let report = self.loyalty.audit(&program).await.unwrap();
        assert!(
            report.violations.is_empty(),
            "ledger invariants broken: {:?}",
            report.violations
        );
    }

    /// Number of ledger rows of one member id.
    pub async fn ledger_rows(&self, member_id: &str) -> i64 {
        let row = self
            .loyalty
            .db()
            .query_one(sea_orm::Statement::from_string(
                self.loyalty.db().get_database_backend(),
                format!(
                    "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {}",
                    member_id.parse::<i64>().unwrap()
                ),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// One integer a query returns as column `n` (both backends).
    pub async fn sql_i64(&self, query: &str) -> i64 {
        let row = self
            .loyalty
            .db()
            .query_one(sea_orm::Statement::from_string(
                self.loyalty.db().get_database_backend(),
                query.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// Deletes this test's Redis keys (the "Redis flushed" fault).
    pub async fn flush_redis(&self) {
        let Some(prefix) = &self.redis_prefix else {
            return;
        };
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn send_gql(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Gql {
    let mut request = client
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Gql { status, body }
}

pub fn token_with(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// An instant given in a timezone's local time.
pub fn local(tz: &str, at: &str) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    let naive = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").unwrap();
    tz.from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}
