//! `loyalty-bench`: drives a running loyalty-server over HTTP with many
//! members doing daily logins, product views, news reads, shares and
//! purchases, and prints throughput and p50/p99/p99.9 beside the same
//! machine's ceiling measured in the same run: a raw SQL transaction that
//! inserts one ledger row and updates one balance at the same concurrency.
//! `--matrix` is the one run: every workload at several concurrencies, reads,
//! the embedded SQLite default and CPU per operation (see `matrix.rs`).
//!
//! Usually started through `bench/run.sh`, which builds everything, prepares
//! a fresh database and a server, and passes its arguments through.

mod cpu;
mod http;
mod matrix;
mod raw;
mod report;
mod stats;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::http::{HttpConfig, JwtConfig, Load, Mix};
use crate::matrix::{MatrixConfig, MatrixWorkload, SqliteTarget};
use crate::raw::RawConfig;
use crate::stats::{error_lines, table_header, table_row, Summary};

/// `--members` unless given: enough that 128 workers are not mostly waiting on each other's
/// member locks in `--matrix`.
const DEFAULT_MEMBERS: usize = 200;
const DEFAULT_MATRIX_MEMBERS: usize = 1000;

/// Load generator for loyalty-server, with the raw SQL ceiling measured in the same run.
///
/// Phases: (1) register --members members over GraphQL, (2) raw SQL ceiling:
/// --concurrency tasks doing BEGIN; INSERT ledger; UPDATE balance; COMMIT in
/// bench_raw_* tables of --database-url, (3) --concurrency tasks doing a mix
/// of daily_login / product_view / purchase (--mix) over HTTP. Each measured
/// phase is preceded by --warmup-secs of discarded warm-up.
///
/// --matrix instead: for each of --concurrencies the raw SQL transaction and
/// each of --workloads; `me { balance }` and `{ __typename }` at
/// --reads-concurrency; the mix on --sqlite-server at --sqlite-concurrencies;
/// CPU per operation of --server-pid, PostgreSQL and this client per cell.
///
/// Requests use Automatic Persisted Queries (hash first, text on
/// PERSISTED_QUERY_NOT_FOUND) unless --no-apq or the server has none.
#[derive(Debug, Parser)]
#[command(name = "loyalty-bench", version, args_override_self = true)]
struct Args {
    /// Base URL of the running loyalty-server (GraphQL at {server}/graphql).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,

    /// PostgreSQL for the raw SQL ceiling (bench_raw_* tables are created there).
    /// Use the server's own database so both numbers come from the same Postgres.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/loyalty_bench"
    )]
    database_url: String,

    /// Number of distinct members (registered over HTTP; seeded as raw balance rows).
    /// Default 200, and 1000 with --matrix.
    #[arg(long)]
    members: Option<usize>,

    /// Concurrent workers in both measured phases (also the raw SQL pool size, up to
    /// --raw-max-connections).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,

    /// Length of each measured phase (each cell of --matrix), in seconds.
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,

    /// Discarded warm-up before each measured phase, in seconds (0 disables).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,

    /// Workload weights DAILY_LOGIN:PRODUCT_VIEW:PURCHASE, or five
    /// DAILY_LOGIN:PRODUCT_VIEW:NEWS_READ:PRODUCT_SHARE:PURCHASE.
    #[arg(long, default_value = "1:1:1", value_parser = http::parse_mix)]
    mix: Mix,

    /// Send query text instead of Automatic Persisted Queries (hash first).
    #[arg(long)]
    no_apq: bool,

    /// Most PostgreSQL connections the raw SQL phase opens; more workers share them.
    #[arg(long, default_value_t = 64)]
    raw_max_connections: usize,

    /// The one run: every workload at every concurrency, reads, SQLite, CPU per operation.
    #[arg(long)]
    matrix: bool,

    /// --matrix: the concurrencies, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    concurrencies: Vec<usize>,

    /// --matrix: the rows, comma-separated: `mixed` (--mix) and any of daily_login,
    /// product_view, news_read, product_share, purchase, me_balance, typename.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mixed,daily_login,product_view,news_read,product_share,purchase",
        value_parser = matrix::parse_matrix_workload
    )]
    workloads: Vec<MatrixWorkload>,

    /// --matrix: concurrency of the `me { balance }` vs `{ __typename }` reads (0 skips them).
    #[arg(long, default_value_t = 32)]
    reads_concurrency: usize,

    /// --matrix: pid of the server behind --server, for its CPU time per operation.
    #[arg(long)]
    server_pid: Option<u32>,

    /// --matrix: base URL of a second server on the embedded SQLite default, for its earn
    /// rate (--mix) at --sqlite-concurrencies.
    #[arg(long)]
    sqlite_server: Option<String>,

    /// --matrix: pid of the --sqlite-server process (CPU per operation).
    #[arg(long)]
    sqlite_server_pid: Option<u32>,

    /// --matrix: the HS256 secret of --sqlite-server (its `DATA_DIR/jwt-secret`).
    #[arg(long, env = "BENCH_SQLITE_JWT_SECRET", hide_env_values = true)]
    sqlite_jwt_secret: Option<String>,

    /// --matrix: concurrencies of the SQLite earn rate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    sqlite_concurrencies: Vec<usize>,

    /// HS256 secret shared with the server (needed unless --raw-only).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// JWT `iss` claim.
    #[arg(long, default_value = "loyalty")]
    jwt_issuer: String,

    /// JWT `aud` claim.
    #[arg(long, default_value = "loyalty-api")]
    jwt_audience: String,

    /// Program external id put in the JWT `program` claim.
    #[arg(long, default_value = "demo")]
    program: String,

    /// Run id used in member ids `bench-<run-id>-<n>` (random by default).
    #[arg(long)]
    run_id: Option<String>,

    /// Per-request HTTP timeout, in seconds (a timeout counts as an error).
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,

    /// Only measure the raw SQL ceiling; no server needed.
    #[arg(long)]
    raw_only: bool,

    /// Keep the bench_raw_* tables instead of dropping them at the end.
    #[arg(long)]
    keep_tables: bool,

    /// Instead of the earning mix: seed --report-rows ledger rows into `demo`, wait for the
    /// server's report folder, then time a 30-day loyaltyReport against a naive GROUP BY.
    #[arg(long)]
    report: bool,

    /// Ledger rows the report benchmark seeds.
    #[arg(long, default_value_t = 5_000_000)]
    report_rows: i64,

    /// Members the report benchmark seeds.
    #[arg(long, default_value_t = 50_000)]
    report_members: i64,

    /// Measured reports (and naive queries).
    #[arg(long, default_value_t = 200)]
    report_iterations: usize,

    /// Longest wait for the server's folder to catch up, in seconds.
    #[arg(long, default_value_t = 1800)]
    report_fold_timeout_secs: u64,

    /// Instead of the earning mix: the mix at each of --concurrencies with one webhook
    /// endpoint (on every event type, to a local receiver) disabled and enabled in turn, and
    /// the delivery rate. The server needs WEBHOOK_ALLOW_PRIVATE_URLS=true.
    #[arg(long)]
    webhooks: bool,

    /// --webhooks: off/on rounds per concurrency (0: only the backlog).
    #[arg(long, default_value_t = 2)]
    webhook_rounds: usize,

    /// --webhooks: after the rounds, this many events are written to the outbox at once (over
    /// --members members, in order per member) and timed until delivered, with no posting
    /// load: the worker's own rate (0: skipped; needs a server that delivers).
    #[arg(long, default_value_t = 20_000)]
    webhook_backlog: usize,

    /// --webhooks: longest wait for the outbox to drain after an enabled phase, in seconds (0:
    /// no wait, for a server that delivers nothing: WEBHOOK_POLL_INTERVAL_MS=0).
    #[arg(long, default_value_t = 600)]
    webhook_drain_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.report {
        let secret = args
            .jwt_secret
            .clone()
            .filter(|s| !s.is_empty())
            .context("--jwt-secret (or env JWT_SECRET) is required")?;
        let token =
            report::admin_token(&secret, &args.jwt_issuer, &args.jwt_audience, &args.program)?;
        return report::run(&report::ReportConfig {
            server: &args.server,
            database_url: &args.database_url,
            token,
            rows: args.report_rows,
            members: args.report_members,
            iterations: args.report_iterations.max(1),
            fold_timeout: Duration::from_secs(args.report_fold_timeout_secs),
        })
        .await;
    }
    if args.matrix {
        return run_matrix(&args).await;
    }
    if args.webhooks {
        let secret = jwt_secret(&args, "for --webhooks")?;
        let members = args.members.unwrap_or(DEFAULT_MATRIX_MEMBERS);
        let max_concurrency = args.concurrencies.iter().copied().max().unwrap_or(1);
        if members == 0 || args.duration_secs == 0 || args.concurrencies.contains(&0) {
            bail!("--members, --duration-secs and every concurrency must be at least 1");
        }
        let admin_token =
            report::admin_token(&secret, &args.jwt_issuer, &args.jwt_audience, &args.program)?;
        return webhooks::run(&webhooks::WebhookConfig {
            http: http_config(
                &args,
                args.server.clone(),
                secret,
                members,
                max_concurrency,
                Duration::ZERO,
            ),
            admin_token,
            database_url: &args.database_url,
            concurrencies: args.concurrencies.clone(),
            mix: args.mix,
            rounds: args.webhook_rounds,
            backlog: args.webhook_backlog,
            duration: Duration::from_secs(args.duration_secs),
            warmup: Duration::from_secs(args.warmup_secs),
            drain_timeout: Duration::from_secs(args.webhook_drain_timeout_secs),
        })
        .await;
    }
    let members = args.members.unwrap_or(DEFAULT_MEMBERS);
    if members == 0 || args.concurrency == 0 || args.duration_secs == 0 {
        bail!("--members, --concurrency and --duration-secs must be at least 1");
    }
    let duration = Duration::from_secs(args.duration_secs);
    let warmup = Duration::from_secs(args.warmup_secs);

    let http_cfg = if args.raw_only {
        None
    } else {
        let secret = jwt_secret(&args, "unless --raw-only")?;
        Some(http_config(
            &args,
            args.server.clone(),
            secret,
            members,
            args.concurrency,
            warmup + duration,
        ))
    };

    // (1) Set-up over HTTP first: fails fast if the server is not there.
    let prepared = match &http_cfg {
        Some(cfg) => {
            eprintln!(
                "[1/3] registering {} members at {} (run id {}) ...",
                cfg.members, cfg.server, cfg.run_id
            );
            let prepared = http::prepare(cfg).await?;
            eprintln!("  {}", prepared.apq_note);
            Some(prepared)
        }
        None => None,
    };

    // (2) Raw SQL ceiling.
    eprintln!(
        "[2/3] raw SQL ceiling: {} workers over {} connections for {}s (+{}s warm-up) ...",
        args.concurrency,
        args.concurrency.min(args.raw_max_connections.max(1)),
        args.duration_secs,
        args.warmup_secs
    );
    let raw = raw::run(&RawConfig {
        database_url: &args.database_url,
        members,
        concurrency: args.concurrency,
        max_connections: args.raw_max_connections.max(1),
        duration,
        warmup,
        keep_tables: args.keep_tables,
    })
    .await?;

    // (3) End-to-end over HTTP.
    let http_rows = match (&http_cfg, &prepared) {
        (Some(_), Some(prepared)) => {
            eprintln!(
                "[3/3] HTTP mixed workload ({}): {} workers for {}s (+{}s warm-up) ...",
                args.mix, args.concurrency, args.duration_secs, args.warmup_secs
            );
            let load = Load::Mix(args.mix);
            http::warm_up(prepared, load, args.concurrency, warmup).await?;
            let phase = http::measure_load(prepared, load, args.concurrency, duration).await?;
            let mut rows = phase.rows;
            rows.push(phase.total);
            rows
        }
        _ => {
            eprintln!("[3/3] skipped (--raw-only)");
            Vec::new()
        }
    };

    report(
        &args,
        members,
        &raw,
        prepared.as_ref().map(|p| &p.register),
        prepared.as_ref().map(|p| {
            format!(
                "{}; {} resends with text after PERSISTED_QUERY_NOT_FOUND",
                p.apq_note,
                p.apq_resends()
            )
        }),
        &http_rows,
    );
    verdict(&raw, http_rows.last())
}

/// The table is printed either way; the exit status says whether the numbers
/// mean anything.
fn verdict(raw: &Summary, mixed: Option<&Summary>) -> Result<()> {
    if raw.ops == 0 {
        bail!("the raw SQL phase completed no transactions");
    }
    if let Some(m) = mixed {
        if m.ops == 0 {
            bail!("every HTTP request failed (see the errors above); the HTTP numbers are meaningless");
        }
        let total = m.ops + m.errors;
        if m.errors * 100 > total {
            eprintln!(
                "warning: {:.1}% of HTTP requests failed; treat the HTTP numbers with care",
                100.0 * m.errors as f64 / total as f64
            );
        }
    }
    Ok(())
}

fn report(
    args: &Args,
    members: usize,
    raw: &Summary,
    register: Option<&Summary>,
    apq: Option<String>,
    http_rows: &[Summary],
) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "loyalty-bench: {} members, concurrency {}, {}s per phase (after {}s warm-up), {} CPU cores, mix {}",
        members, args.concurrency, args.duration_secs, args.warmup_secs, cores, args.mix
    );
    if let Some(reg) = register {
        println!(
            "setup: registered {} members ({} errors) at {:.1}/s, p50 {} ms, p99 {} ms",
            reg.ops,
            reg.errors,
            reg.ops_per_sec,
            reg.p50_ms.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            reg.p99_ms.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
        );
    }
    if let Some(apq) = apq {
        println!("requests: {apq}");
    }
    println!();
    println!("{}", table_header());
    println!("{}", table_row(raw));
    for row in http_rows {
        println!("{}", table_row(row));
    }
    println!();

    let mixed = http_rows.last();
    match mixed {
        Some(m) if raw.ops_per_sec > 0.0 => println!(
            "HTTP mixed / raw SQL ceiling: {:.3} ({:.1} vs {:.1} ops/s; {:.1}% of the ceiling)",
            m.ops_per_sec / raw.ops_per_sec,
            m.ops_per_sec,
            raw.ops_per_sec,
            100.0 * m.ops_per_sec / raw.ops_per_sec
        ),
        Some(_) => {
            println!("HTTP mixed / raw SQL ceiling: n/a (raw SQL completed no transactions)")
        }
        None => println!("HTTP mixed / raw SQL ceiling: n/a (--raw-only)"),
    }

    // Points-awarded share: a no-op daily_login (already claimed today) is
    // much cheaper than an award, which matters when reading the numbers.
    let per_workload = http_rows.split_last().map_or(&[][..], |(_, rows)| rows);
    let award_notes: Vec<String> = per_workload
        .iter()
        .filter(|r| r.ops > 0)
        .map(|r| {
            format!(
                "{} {:.0}%",
                r.label,
                100.0 * r.awarded as f64 / r.ops as f64
            )
        })
        .collect();
    if !award_notes.is_empty() {
        println!(
            "successful ops that awarded points: {}",
            award_notes.join(", ")
        );
    }

    let mut errors: Vec<String> = Vec::new();
    for row in register
        .into_iter()
        .chain(std::iter::once(raw))
        .chain(per_workload.iter())
    {
        errors.extend(error_lines(row, 5));
    }
    if !errors.is_empty() {
        println!();
        println!("first distinct errors (count × message):");
        for line in errors {
            println!("{line}");
        }
    }
}

fn jwt_secret(args: &Args, unless: &str) -> Result<String> {
    args.jwt_secret
        .clone()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("--jwt-secret (or env JWT_SECRET) is required {unless}"))
}

fn http_config(
    args: &Args,
    server: String,
    secret: String,
    members: usize,
    max_concurrency: usize,
    measured: Duration,
) -> HttpConfig {
    HttpConfig {
        server,
        members,
        max_concurrency,
        register_concurrency: max_concurrency.min(32),
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        // Tokens must outlive set-up, warm-up and the measurements themselves.
        token_lifetime: measured + Duration::from_secs(3600),
        run_id: args
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_string()),
        jwt: JwtConfig {
            secret,
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            program: args.program.clone(),
        },
        apq: !args.no_apq,
    }
}

async fn run_matrix(args: &Args) -> Result<()> {
    let members = args.members.unwrap_or(DEFAULT_MATRIX_MEMBERS);
    if members == 0 || args.duration_secs == 0 {
        bail!("--members and --duration-secs must be at least 1");
    }
    if args.concurrencies.contains(&0) || args.sqlite_concurrencies.contains(&0) {
        bail!("every concurrency must be at least 1");
    }
    let secret = jwt_secret(args, "for --matrix")?;
    let duration = Duration::from_secs(args.duration_secs);
    let warmup = Duration::from_secs(args.warmup_secs);
    let max_concurrency = args
        .concurrencies
        .iter()
        .copied()
        .chain([args.reads_concurrency, 1])
        .max()
        .unwrap_or(1);

    let mut cfg = MatrixConfig {
        http: http_config(
            args,
            args.server.clone(),
            secret,
            members,
            max_concurrency,
            Duration::ZERO,
        ),
        server_pid: args.server_pid,
        database_url: &args.database_url,
        raw_max_connections: args.raw_max_connections.max(1),
        keep_tables: args.keep_tables,
        concurrencies: args.concurrencies.clone(),
        workloads: args.workloads.clone(),
        mix: args.mix,
        reads_concurrency: args.reads_concurrency,
        duration,
        warmup,
        sqlite: None,
    };
    if let Some(server) = &args.sqlite_server {
        let secret = args
            .sqlite_jwt_secret
            .clone()
            .filter(|s| !s.is_empty())
            .context(
                "--sqlite-jwt-secret (or env BENCH_SQLITE_JWT_SECRET) is required with \
                 --sqlite-server: the server's DATA_DIR/jwt-secret",
            )?;
        let sqlite_max = args.sqlite_concurrencies.iter().copied().max().unwrap_or(1);
        let mut http = http_config(
            args,
            server.clone(),
            secret,
            members,
            sqlite_max,
            Duration::ZERO,
        );
        http.run_id.clone_from(&cfg.http.run_id);
        cfg.sqlite = Some(SqliteTarget {
            http,
            pid: args.sqlite_server_pid,
            concurrencies: args.sqlite_concurrencies.clone(),
        });
    }
    // Tokens must outlive the whole matrix.
    let whole = cfg.estimate() + Duration::from_secs(3600);
    cfg.http.token_lifetime = whole;
    if let Some(s) = &mut cfg.sqlite {
        s.http.token_lifetime = whole;
    }
    matrix::run(cfg).await
}
