//! `loyalty-server`: parses the command line and the configuration, then hands over to the
//! library.

use std::process::ExitCode;

use clap::Parser as _;
use loyalty_server::cli::{self, Cli, Command};
use loyalty_server::config::{self, Config, DatabaseTarget};

/// mimalloc instead of the system allocator: a posting allocates a few hundred small objects
/// (GraphQL values, statements, rows), and glibc's malloc and free were about a tenth of the
/// server's CPU under load (BENCHMARKS.md, "session 25").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match config::log_format_from_env() {
        Ok(format) => format,
        Err(err) => return fail(&err),
    };
    loyalty_server::telemetry::init(log_format);
    let result = match cli.command {
        // A migration job needs only the database, not a JWT key.
        Some(Command::Migrate) => match DatabaseTarget::from_env() {
            Ok(target) => cli::migrate(&target).await,
            Err(err) => Err(err),
        },
        // Nor does printing the schema.
        Some(Command::Schema) => cli::schema(),
        command => match Config::from_env() {
            Ok(config) => cli::execute(command, config).await,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}
