//! Connecting, migrating, classifying database errors and retrying transactions.
//!
//! PostgreSQL runs at READ COMMITTED; every balance-changing transaction first locks the one
//! member row it changes, so postings of one member are serialised while different members run
//! in parallel. SQLite has no row locks: there the first statement of the transaction is a write,
//! which takes the database's write lock up front (waiting on `busy_timeout`) instead of failing
//! later on a lock upgrade.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use loyalty_entities::members;
use loyalty_migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::ColumnTrait;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QuerySelect, RuntimeErr, SqlErr,
};

use crate::error::DomainError;

/// Where the data lives when no `DATABASE_URL` is given.
pub const DEFAULT_SQLITE_PATH: &str = "./data/loyalty.db";

const MAX_ATTEMPTS: u32 = 8;

/// Opens the database: PostgreSQL for a `postgres://` URL, otherwise an SQLite file.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                .create_if_missing(true)
        });
    Ok(Database::connect(options).await?)
}

/// The URL of the embedded database file, creating its directory.
pub fn sqlite_url(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(format!("sqlite://{}?mode=rwc", path.display()))
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// What a database error means to the code above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// Serialization failure, deadlock or a busy SQLite database: try the transaction again.
    Retryable,
    UniqueViolation,
    CheckViolation,
    Other,
}

pub fn classify(err: &DbErr) -> DbErrorKind {
    if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
        return DbErrorKind::UniqueViolation;
    }
    let code = match err {
        DbErr::Exec(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e)))
        | DbErr::Query(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e))) => {
            e.code().map(|c| c.into_owned())
        }
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => return DbErrorKind::Other,
        _ => None,
    };
    match code.as_deref() {
        // PostgreSQL: serialization_failure, deadlock_detected.
        Some("40001" | "40P01") => DbErrorKind::Retryable,
        // SQLite extended codes: BUSY, LOCKED, BUSY_RECOVERY, LOCKED_SHAREDCACHE, BUSY_SNAPSHOT,
        // BUSY_TIMEOUT.
        Some("5" | "6" | "261" | "262" | "517" | "773") => DbErrorKind::Retryable,
        Some("23514" | "275") => DbErrorKind::CheckViolation,
        Some("23505" | "2067" | "1555") => DbErrorKind::UniqueViolation,
        _ if err.to_string().contains("database is locked") => DbErrorKind::Retryable,
        _ => DbErrorKind::Other,
    }
}

/// An error inside a transaction: a business refusal, or a database error the retry loop
/// classifies.
#[derive(Debug)]
pub enum TxError {
    Domain(DomainError),
    Db(DbErr),
}

impl From<DbErr> for TxError {
    fn from(err: DbErr) -> Self {
        TxError::Db(err)
    }
}

impl From<DomainError> for TxError {
    fn from(err: DomainError) -> Self {
        TxError::Domain(err)
    }
}

pub type TxResult<T> = Result<T, TxError>;

/// Runs `attempt` until it succeeds, fails for good, or `MAX_ATTEMPTS` retryable failures
/// happened (bounded exponential backoff with jitter). The client never sees a transient
/// serialization failure.
pub async fn retry<T, F, Fut>(operation: &'static str, mut attempt: F) -> Result<T, DomainError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TxResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(TxError::Domain(err)) => return Err(err),
            Err(TxError::Db(err)) => {
                if classify(&err) == DbErrorKind::Retryable && tries < MAX_ATTEMPTS {
                    metrics::counter!("loyalty_tx_retries_total", "operation" => operation)
                        .increment(1);
                    let base_ms = 2u64 << tries.min(7);
                    let jitter_ms = rand::random_range(0..=base_ms);
                    tracing::debug!(operation, tries, error = %err, "retrying transaction");
                    tokio::time::sleep(Duration::from_millis(base_ms + jitter_ms)).await;
                    continue;
                }
                return Err(DomainError::internal(format!("{operation}: {err}")));
            }
        }
    }
}

/// Locks one member row for the rest of the transaction and returns it. `NOT_FOUND` when the
/// member does not exist in this program.
pub async fn lock_member<C: ConnectionTrait>(
    txn: &C,
    program_id: i64,
    member_id: i64,
) -> TxResult<members::Model> {
    let scope = members::Column::Id
        .eq(member_id)
        .and(members::Column::ProgramId.eq(program_id));
    let found = match txn.get_database_backend() {
        DatabaseBackend::Sqlite => {
            // A no-op write takes SQLite's write lock before anything is read.
            members::Entity::update_many()
                .col_expr(
                    members::Column::Version,
                    Expr::col(members::Column::Version).into(),
                )
                .filter(scope.clone())
                .exec(txn)
                .await?;
            members::Entity::find().filter(scope).one(txn).await?
        }
        DatabaseBackend::Postgres | DatabaseBackend::MySql => {
            members::Entity::find()
                .filter(scope)
                .lock_exclusive()
                .one(txn)
                .await?
        }
    };
    found.ok_or_else(|| TxError::Domain(DomainError::not_found("member not found")))
}
