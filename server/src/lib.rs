//! The loyalty server: configuration, authentication, HTTP wiring and the command line. The
//! schema lives in `loyalty_graphql`, the business logic in `loyalty_domain`.
//!
//! Tests start the real server on port 0:
//! `let app = build(config, clock).await?; let listener = TcpListener::bind("127.0.0.1:0")`,
//! then `tokio::spawn(run(app, listener, token.clone()))` and `token.cancel()` to stop it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use loyalty_domain::clock::Clock;
use loyalty_domain::deployment;
use loyalty_domain::ledger::db::{connect_with, Checkpoints, CHECKPOINT_INTERVAL};
use loyalty_domain::store::{FastStore, MemoryStore};
use loyalty_domain::Loyalty;
use loyalty_graphql::{build_schema, LoyaltySchema, SchemaOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod serve;
pub mod telemetry;

pub use auth::{mint, sign, AuthError, Claims, JwtAuth};
pub use config::{Config, TEST_JWT_SECRET};

/// After shutdown starts, connections still open this long are dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle rate-limit keys are forgotten.
const RATE_LIMIT_SWEEP: Duration = Duration::from_secs(60);

/// A built server, ready to [`run`].
pub struct App {
    config: Arc<Config>,
    loyalty: Loyalty,
    schema: LoyaltySchema,
    persisted: Arc<http::graphql::PersistedQueries>,
    auth: Arc<JwtAuth>,
    limits: Arc<http::RateLimits>,
    sockets: Arc<http::SocketsPerIp>,
    /// Shared by the HTTP server and the domain's background tasks.
    shutdown: CancellationToken,
}

impl App {
    pub fn loyalty(&self) -> &Loyalty {
        &self.loyalty
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn schema(&self) -> &LoyaltySchema {
        &self.schema
    }

    pub fn auth(&self) -> &JwtAuth {
        &self.auth
    }

    /// Cancelling it stops the server started by [`run`] and the background tasks.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The state handlers see (for routes added outside this crate, e.g. in tests).
    pub fn state(&self) -> http::AppState {
        http::AppState {
            config: self.config.clone(),
            loyalty: self.loyalty.clone(),
            schema: self.schema.clone(),
            persisted: self.persisted.clone(),
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            sockets: self.sockets.clone(),
            metrics: http::metrics::handle(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// The full router, for in-process tests (`tower::ServiceExt::oneshot`). Handlers read the
    /// client address from `ConnectInfo` when present.
    pub fn router(&self) -> axum::Router {
        http::router(self.state())
    }
}

/// Connects the database (creating the SQLite directory in the embedded default), applies
/// migrations, connects Redis or the in-process store, and wires the service and schema. The JWT
/// self-check runs first, so a bad key fails before anything is touched.
pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let auth = JwtAuth::new(&config.jwt)?;
    auth.self_check()?;

    let url = config.resolved_database_url()?;
    let shutdown = CancellationToken::new();
    // The server's commits never copy SQLite's log back themselves: a task does, off the
    // posting lane's path.
    let checkpoints = Checkpoints::Background {
        interval: CHECKPOINT_INTERVAL,
        shutdown: shutdown.clone(),
    };
    let db = connect_with(&url, config.database_max_connections, checkpoints)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database ({})",
                config.describe_storage()
            )
        })?;
    loyalty_domain::ledger::db::migrate(&db)
        .await
        .context("database migration failed")?;

    let (store, deployment): (Arc<dyn FastStore>, String) = match &config.redis_url {
        Some(url) => deployment::connect_redis(url, &config.redis_prefix, &db, &shutdown)
            .await
            .with_context(|| format!("cannot connect to REDIS_URL {}", config::redact_url(url)))?,
        None => (
            Arc::new(MemoryStore::new()),
            deployment::deployment_id(&db)
                .await
                .context("cannot read the deployment id")?,
        ),
    };
    let batching = config.posting.batching();
    let loyalty = Loyalty::with_batching(db, store, clock, shutdown.clone(), batching);
    if config.expiry_interval_secs > 0 {
        loyalty.spawn_expiry(
            Duration::from_secs(config.expiry_interval_secs),
            shutdown.clone(),
        );
    }
    if config.report_fold_interval_secs > 0 {
        loyalty.spawn_report_folder(
            Duration::from_secs(config.report_fold_interval_secs),
            shutdown.clone(),
        );
    }
    loyalty.start_webhooks(config.webhooks.options(), shutdown.clone());
    loyalty.start_work(config.posting.work_poll_interval(), shutdown.clone());
    if config.leaderboard_catch_up_interval_secs > 0 {
        // Awaits the first pass: a server restarted after a crash opens its listener only once
        // its boards hold what the crash lost.
        loyalty
            .start_leaderboard_catch_up(
                Duration::from_secs(config.leaderboard_catch_up_interval_secs),
                shutdown.clone(),
            )
            .await;
    }
    let schema = build_schema(
        loyalty.clone(),
        SchemaOptions {
            introspection: config.graphql.introspection,
            max_depth: config.graphql.max_depth,
            max_complexity: config.graphql.max_complexity,
        },
    );
    let persisted = Arc::new(http::graphql::PersistedQueries::new(
        config.graphql.persisted_query_cache_size,
        config.graphql.persisted_query_cache_bytes,
    ));
    let limits = Arc::new(http::RateLimits::new(
        config.rate_limit_ip_per_sec,
        config.rate_limit_subject_per_sec,
    ));
    let sockets = http::SocketsPerIp::new(config.http.ws_max_sockets_per_ip);
    if !config.metrics.on_main_listener && config.metrics.addr.is_none() {
        tracing::warn!(
            "/metrics is not served: set METRICS_ADDR (a private listener) or METRICS_TOKEN"
        );
    }
    if let config::KeyOrigin::DevelopmentFile(path) = &config.jwt.origin {
        tracing::warn!(
            path = %path.display(),
            "using the generated development JWT secret; set JWT_SECRET or JWT_PUBLIC_KEY_PEM \
             in production"
        );
    }
    // Install the recorder before traffic, so the first requests are counted.
    let _ = http::metrics::handle();
    tracing::info!(
        storage = %config.describe_storage(),
        deployment = %deployment,
        jwt_algorithm = ?auth.algorithm(),
        jwt_key = ?config.jwt.origin,
        "server built"
    );
    Ok(App {
        config: Arc::new(config),
        loyalty,
        schema,
        persisted,
        auth: Arc::new(auth),
        limits,
        sockets,
        shutdown,
    })
}

/// Serves `app` on `listener` (and `/metrics` on `METRICS_ADDR` when it is set) until
/// `shutdown` (or the app's own token) is cancelled, then drains: in-flight requests finish,
/// idle connections close, and whatever is still open after [`DRAIN_TIMEOUT`] is dropped.
/// Background tasks stop with it.
pub async fn run(
    app: App,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = match app.config.metrics.addr {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on METRICS_ADDR {address}"))?,
        ),
        None => None,
    };
    run_with_metrics(app, listener, metrics, shutdown).await
}

/// [`run`] with the `/metrics` listener given (tests bind it on port 0).
pub async fn run_with_metrics(
    app: App,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = app.shutdown.clone();
    tokio::spawn({
        let token = token.clone();
        async move {
            tokio::select! {
                () = shutdown.cancelled() => token.cancel(),
                () = token.cancelled() => {}
            }
        }
    });
    tokio::spawn({
        let token = token.clone();
        let limits = app.limits.clone();
        async move {
            let mut every = tokio::time::interval(RATE_LIMIT_SWEEP);
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = every.tick() => limits.sweep(),
                }
            }
        }
    });

    let address = listener
        .local_addr()
        .context("the listener has no local address")?;
    let limits = serve::ServeLimits {
        header_read_timeout: Duration::from_secs(app.config.http.header_read_timeout_secs),
        max_connections: app.config.http.max_connections,
    };
    if let Some(metrics) = metrics {
        let address = metrics
            .local_addr()
            .context("the metrics listener has no local address")?;
        tracing::info!(%address, "serving /metrics");
        let router = http::metrics::listener_router(app.state());
        tokio::spawn(serve::serve(metrics, router, limits, token.clone()));
    }
    let router = app.router();
    tracing::info!(%address, "listening");
    let served = serve::serve(listener, router, limits, token.clone());
    let drained = async {
        token.cancelled().await;
        tracing::info!("shutting down: draining connections");
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        () = served => {}
        () = drained => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
    token.cancel();
    tracing::info!("server stopped");
    Ok(())
}

/// Cancels `token` on ctrl-c or SIGTERM (or returns when it is cancelled elsewhere).
pub async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
        () = token.cancelled() => return,
    }
    token.cancel();
}
