//! The one binary's subcommands (SPEC §9): `serve` (default), `migrate`, `program create`,
//! `token`, `demo`, `rebuild-leaderboards`, `schema`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use loyalty_domain::clock::SystemClock;
use loyalty_domain::program::{NewProgram, Program};
use loyalty_domain::{DomainError, Role};
use rust_decimal::Decimal;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseTarget};
use crate::JwtAuth;

const MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Parser)]
#[command(
    name = "loyalty-server",
    version,
    about = "Gamified loyalty backend for mini-apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage programs (tenants).
    Program {
        #[command(subcommand)]
        command: ProgramCommand,
    },
    /// Print a JWT signed with the configured key.
    Token(TokenArgs),
    /// Create the `demo` program (rules for every built-in action, gifts, a wheel) with four weeks of
    /// members' activity (idempotent), and print tokens.
    Demo,
    /// Recompute leaderboards from the ledger (all programs, or one); safe while servers run.
    RebuildLeaderboards(RebuildArgs),
    /// Print the GraphQL schema (SDL); `schema.graphql` at the repository root is its output.
    Schema,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// Program external id (omit: every program).
    #[arg(long)]
    pub program: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProgramCommand {
    /// Create a program; an existing external id returns the existing program.
    Create(ProgramCreateArgs),
}

#[derive(Debug, Args)]
pub struct ProgramCreateArgs {
    #[arg(long)]
    pub external_id: String,
    #[arg(long)]
    pub name: String,
    /// IANA timezone that defines "a day", e.g. Asia/Ho_Chi_Minh.
    #[arg(long)]
    pub timezone: String,
    /// ISO 4217 code, e.g. VND.
    #[arg(long)]
    pub currency: String,
    /// Points worth one unit of money.
    #[arg(long, default_value = "1")]
    pub points_per_currency: Decimal,
    /// Days an earned point stays spendable (omit: never expires).
    #[arg(long)]
    pub validity_days: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Program external id.
    #[arg(long)]
    pub program: String,
    /// member, service or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Subject: the member's external id, or the service/admin name.
    #[arg(long)]
    pub sub: String,
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| format!("`{value}` is not one of member, service, admin"))
}

/// Runs `command` (default `serve`) with `config`.
pub async fn execute(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config.database_target()).await,
        Command::Program {
            command: ProgramCommand::Create(args),
        } => create_program(config, args).await,
        Command::Token(args) => token(&config, &args),
        Command::Demo => demo(config).await,
        Command::Schema => schema(),
        Command::RebuildLeaderboards(args) => {
            for (program, members) in rebuild_leaderboards(config, args.program.as_deref()).await? {
                println!("{}", json!({ "program": program, "members": members }));
            }
            Ok(())
        }
    }
}

/// `schema` needs no configuration, database or key: the SDL is the code's.
pub fn schema() -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(loyalty_graphql::sdl().as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the schema to stdout")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let address = config.listen_addr;
    let app = crate::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on LISTEN_ADDR {address}"))?;
    let token = CancellationToken::new();
    tokio::spawn(crate::shutdown_signal(token.clone()));
    crate::run(app, listener, token).await
}

/// `migrate` reads only [`DatabaseTarget`], so a migration job needs no JWT key.
pub async fn migrate(target: &DatabaseTarget) -> anyhow::Result<()> {
    let url = target.resolved_url()?;
    let db = loyalty_domain::ledger::db::connect(&url, 1)
        .await
        .with_context(|| format!("cannot connect to the database ({})", target.describe()))?;
    loyalty_domain::ledger::db::migrate(&db)
        .await
        .context("database migration failed")?;
    tracing::info!(database = %target.describe(), "migrations applied");
    println!("migrations applied");
    Ok(())
}

async fn create_program(config: Config, args: ProgramCreateArgs) -> anyhow::Result<()> {
    let app = crate::build(config, Arc::new(SystemClock)).await?;
    let result = app
        .loyalty()
        .create_program(NewProgram {
            external_id: args.external_id,
            name: args.name,
            timezone: args.timezone,
            currency: args.currency,
            points_per_currency: args.points_per_currency,
            validity_days: args.validity_days,
        })
        .await;
    app.shutdown_token().cancel();
    let program = result.map_err(domain_error)?;
    println!("{}", serde_json::to_string_pretty(&program_json(&program))?);
    Ok(())
}

fn token(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_TOKEN_TTL_SECS).contains(&args.ttl_secs),
        "--ttl-secs must be between 1 and {MAX_TOKEN_TTL_SECS}"
    );
    let auth = JwtAuth::new(&config.jwt)?;
    let token = auth.mint(
        &args.program,
        args.role,
        &args.sub,
        Duration::from_secs(args.ttl_secs),
    )?;
    // Check it the way the server will, so a bad --program or --sub fails here, not later.
    auth.verify(&token)
        .map_err(|err| anyhow::anyhow!("the minted token does not verify: {err}"))?;
    println!("{token}");
    Ok(())
}

async fn demo(config: Config) -> anyhow::Result<()> {
    let base_url = base_url(config.listen_addr);
    let app = crate::build(config, Arc::new(SystemClock)).await?;
    let result = match seed_demo(app.loyalty()).await {
        Ok((program, telegram)) => app
            .loyalty()
            .seed_demo_activity(&program)
            .await
            .map(|activity| (program, telegram, activity)),
        Err(err) => Err(err),
    };
    app.shutdown_token().cancel();
    let (program, telegram, activity) = result.map_err(domain_error)?;

    let mint = |role, sub: &str| {
        app.auth()
            .mint(&program.external_id, role, sub, DEMO_TOKEN_TTL)
    };
    let admin = mint(Role::Admin, "demo-admin")?;
    let service = mint(Role::Service, "demo-pos")?;
    let member = mint(Role::Member, "demo-member-1")?;

    println!(
        "Demo program ready (a published rule for every built-in action, three campaigns, gifts and a lucky wheel):"
    );
    println!("{}", serde_json::to_string_pretty(&program_json(&program))?);
    if activity.created {
        println!(
            "Activity: {} members over {} to {} ({} operations).",
            activity.members, activity.first_day, activity.last_day, activity.operations
        );
    } else {
        println!("Activity: already there (nothing added).");
    }
    println!();
    println!("Tokens (valid 24 hours):");
    println!("ADMIN_TOKEN={admin}");
    println!("SERVICE_TOKEN={service}");
    println!("MEMBER_TOKEN={member}");
    println!();
    println!("Start the server with `loyalty-server serve`, then register the member and claim");
    println!("today's login reward:");
    println!(
        "curl -s {base_url}/graphql -H 'content-type: application/json' \
         -H \"authorization: Bearer $MEMBER_TOKEN\" \
         -d '{{\"query\":\"mutation {{ register(input: {{displayName: \\\"Demo Member\\\"}}) {{ __typename }} }}\"}}'"
    );
    println!(
        "curl -s {base_url}/graphql -H 'content-type: application/json' \
         -H \"authorization: Bearer $MEMBER_TOKEN\" \
         -d '{{\"query\":\"mutation {{ recordAction(input: {{action: \\\"daily_login\\\", idempotencyKey: \\\"demo-1\\\"}}) {{ awarded balance }} }}\"}}'"
    );
    if telegram {
        println!(
            "Telegram sign-in is on (bot token from TELEGRAM_BOT_TOKEN): mini-apps POST their \
             initData to {base_url}/auth/telegram with {{\"program\": \"demo\"}}"
        );
    }
    println!("GraphiQL (when GRAPHIQL is on): {base_url}/graphql");
    Ok(())
}

/// The demo program, plus its Telegram bot token when `TELEGRAM_BOT_TOKEN` is set (then
/// `true`).
async fn seed_demo(
    loyalty: &loyalty_domain::Loyalty,
) -> loyalty_domain::DomainResult<(loyalty_domain::program::Program, bool)> {
    let program = loyalty.seed_demo().await?;
    loyalty.seed_demo_campaigns(&program).await?;
    loyalty.seed_demo_challenges(&program).await?;
    let token = std::env::var("TELEGRAM_BOT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if let Some(token) = &token {
        loyalty
            .set_launch_secret(&program, "tg", Some(token))
            .await?;
    }
    Ok((program, token.is_some()))
}

/// Rebuilds leaderboards from the ledger; returns (program, members on the boards' ledger).
/// Only meaningful with `REDIS_URL`: in-process boards live in each server, which rebuilds
/// them itself.
pub async fn rebuild_leaderboards(
    config: Config,
    program: Option<&str>,
) -> anyhow::Result<Vec<(String, usize)>> {
    let app = crate::build(config, Arc::new(SystemClock)).await?;
    if app.loyalty().leaderboard_backend() != "redis" {
        eprintln!("note: no REDIS_URL: leaderboards are in process; each server rebuilds its own");
    }
    let result = app.loyalty().rebuild_all_leaderboards(program).await;
    app.shutdown_token().cancel();
    result.map_err(domain_error)
}

/// Where a local client reaches the server.
fn base_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

fn program_json(program: &Program) -> serde_json::Value {
    json!({
        "id": program.id,
        "externalId": program.external_id,
        "name": program.name,
        "timezone": program.tz.name(),
        "currency": program.currency,
        "pointsPerCurrency": program.points_per_currency.to_string(),
        "validityDays": program.validity_days,
    })
}

/// Operators see the internal detail (it never reaches API clients).
fn domain_error(err: DomainError) -> anyhow::Error {
    match err {
        DomainError::Internal(detail) => anyhow::anyhow!("internal error: {detail}"),
        other => anyhow::anyhow!("{}: {other}", other.code()),
    }
}
