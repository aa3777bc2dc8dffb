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

use loyalty_entities::{balances, members};
use loyalty_migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Func, SimpleExpr};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, DbErr, EntityTrait, FromQueryResult, RuntimeErr, SqlErr,
    SqlxSqliteConnector, Statement,
};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::DomainError;
use crate::ledger::affinity;

/// Where the data lives when no `DATABASE_URL` is given.
pub const DEFAULT_SQLITE_PATH: &str = "./data/loyalty.db";

const MAX_ATTEMPTS: u32 = 8;

/// Who copies SQLite's write-ahead log back into the database file (a *checkpoint*). On
/// PostgreSQL this means nothing.
#[derive(Clone, Debug)]
pub enum Checkpoints {
    /// SQLite's own way: the connection whose commit takes the log past 1,000 pages copies the
    /// log before that commit returns (a command-line run).
    Inline,
    /// A task of its own, every `interval` until `shutdown` (the server): a commit never waits
    /// for a checkpoint. Under load SQLite's own way had the posting lane's commit copy ~1,000
    /// pages and sync the file a few times a second, a pause of several milliseconds for every
    /// posting of that batch and about a fifth of the lane's time.
    Background {
        interval: Duration,
        shutdown: CancellationToken,
    },
}

/// How often the server's checkpointer runs ([`Checkpoints::Background`]).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// The size the SQLite log file is cut back to once it has been copied back entirely.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Opens the database: PostgreSQL for a `postgres://` URL, otherwise an SQLite file, with
/// SQLite's own checkpoints.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    connect_with(url, max_connections, Checkpoints::Inline).await
}

/// [`connect`], choosing who checkpoints an SQLite database.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    checkpoints: Checkpoints,
) -> anyhow::Result<DatabaseConnection> {
    let background = matches!(checkpoints, Checkpoints::Background { .. });
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                .create_if_missing(true)
                .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
            if background {
                opts.pragma("wal_autocheckpoint", "0")
            } else {
                opts
            }
        });
    let db = Database::connect(options).await?;
    if let Checkpoints::Background { interval, shutdown } = checkpoints {
        if in_wal_mode(&db).await? {
            spawn_checkpointer(db.clone(), interval, shutdown);
        }
    }
    Ok(db)
}

/// A connection of its own for SQLite's posting lane: the same file and settings as `db`, one
/// connection, kept open, whose sqlx thread is named `thread` and kept on `cpu` (pinned as sqlx
/// opens it, so also should it ever open it again). `None` unless `db` is an SQLite file in WAL
/// mode (a second connection to an in-memory database would open another database).
pub(crate) async fn lane_connection(
    db: &DatabaseConnection,
    thread: String,
    cpu: Option<usize>,
) -> Result<Option<DatabaseConnection>, DbErr> {
    if !matches!(db, DatabaseConnection::SqlxSqlitePoolConnection(_)) || !in_wal_mode(db).await? {
        return Ok(None);
    }
    let name = thread.clone();
    let options = (*db.get_sqlite_connection_pool().connect_options())
        .clone()
        .thread_name(move |_| name.clone());
    let pool = SqlitePoolOptions::new()
        .after_connect(move |_, _| {
            if let Some(cpu) = cpu {
                let pinned = affinity::pin_threads_named(&thread, cpu);
                tracing::info!(
                    cpu,
                    pinned,
                    "posting lane's connection kept on the lane's CPU"
                );
            }
            Box::pin(async { Ok(()) })
        })
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|err| DbErr::Custom(format!("lane connection: {err}")))?;
    Ok(Some(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)))
}

/// Whether `db` is an SQLite database with a write-ahead log (not PostgreSQL, not in memory).
async fn in_wal_mode(db: &DatabaseConnection) -> Result<bool, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(false);
    }
    let mode: Option<String> = db
        .query_one(Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await?
        .map(|row| row.try_get_by_index(0))
        .transpose()?;
    Ok(mode.is_some_and(|mode| mode.eq_ignore_ascii_case("wal")))
}

/// Copies the log back into the database file every `interval` (`PASSIVE`: it waits for no
/// reader and no writer, and copies what no reader still needs). What is left is the next
/// pass's work; a log copied back entirely is restarted by the next commit.
fn spawn_checkpointer(db: DatabaseConnection, interval: Duration, shutdown: CancellationToken) {
    crate::jobs::every_from(
        "sqlite checkpoint",
        tokio::time::Instant::now() + interval,
        interval,
        shutdown,
        move || {
            let db = db.clone();
            async move { Ok(checkpoint(&db).await?) }
        },
        |_: &i64| {},
    );
}

/// One passive checkpoint; the frames the log held.
async fn checkpoint(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one(Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?;
    let frames: i64 = match row {
        Some(row) => row.try_get_by_index(1)?,
        None => 0,
    };
    metrics::gauge!("loyalty_sqlite_wal_frames").set(frames as f64);
    Ok(frames)
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
        // PostgreSQL: serialization_failure, deadlock_detected, lock_not_available (a batch's
        // lock wait ran out, see `batch::LOCK_TIMEOUT`).
        Some("40001" | "40P01" | "55P03") => DbErrorKind::Retryable,
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
    /// Nothing of it committed and it may simply run again (a posting a batch gave back).
    Again,
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

impl From<TxError> for DomainError {
    /// Outside the retry loop a database error is simply internal.
    fn from(err: TxError) -> Self {
        match err {
            TxError::Domain(err) => err,
            TxError::Db(err) => err.into(),
            TxError::Again => DomainError::internal("transaction gave up"),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `MAX_ATTEMPTS` retryable failures
/// happened (bounded exponential backoff with jitter). The client never sees a transient
/// serialization failure, nor a batch's lock wait that ran out.
pub async fn retry<T, F, Fut>(operation: &'static str, mut attempt: F) -> Result<T, DomainError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TxResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let err = match attempt().await {
            Ok(value) => return Ok(value),
            Err(TxError::Domain(err)) => return Err(err),
            Err(TxError::Again) if tries < MAX_ATTEMPTS => "run again".to_owned(),
            Err(TxError::Again) => {
                return Err(DomainError::internal(format!(
                    "{operation}: gave up after {tries} attempts"
                )))
            }
            Err(TxError::Db(err)) => {
                if classify(&err) != DbErrorKind::Retryable || tries >= MAX_ATTEMPTS {
                    return Err(DomainError::internal(format!("{operation}: {err}")));
                }
                err.to_string()
            }
        };
        metrics::counter!("loyalty_tx_retries_total", "operation" => operation).increment(1);
        let base_ms = 2u64 << tries.min(7);
        let jitter_ms = rand::random_range(0..=base_ms);
        tracing::debug!(operation, tries, error = %err, "retrying transaction");
        tokio::time::sleep(Duration::from_millis(base_ms + jitter_ms)).await;
    }
}

/// Runs `work`, a whole transaction from `BEGIN` to its commit or rollback, on a task of its
/// own, so a caller that goes away (a client hanging up, the request timeout) only drops the
/// answer. Dropping a transaction's future half-way through would hand its pooled connection back
/// in an unknown state: sqlx counts a `BEGIN` only once the server has answered it and forgets a
/// `COMMIT` it did not see answered, so the next user of the connection would either run inside
/// the stranger's transaction ("there is already a transaction in progress") or roll back one
/// that had committed ("there is no transaction in progress"). Every transaction in this crate
/// goes through here.
pub(crate) async fn run_detached<T, E, Fut>(work: Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<DomainError> + Send + 'static,
{
    match tokio::spawn(work.in_current_span()).await {
        Ok(result) => result,
        Err(err) => Err(DomainError::internal(format!("transaction task failed: {err}")).into()),
    }
}

/// A statement written with `$1, $2, …` placeholders, as the backend wants them. SQLite gets bare
/// `?` in the order they appear, with the values in that order (a value whose `$n` repeats is
/// bound once per appearance): sqlx asks SQLite the name of every parameter it binds, and
/// SQLite finds a numbered parameter's name by a linear scan, so `?NNN` made a statement of a
/// few hundred parameters (the report folder's multi-row writes) quadratic to bind.
pub(crate) fn stmt(backend: DatabaseBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    match backend {
        DatabaseBackend::Sqlite => {
            let (sql, values) = positional(sql, values);
            Statement::from_sql_and_values(backend, sql, values)
        }
        DatabaseBackend::Postgres | DatabaseBackend::MySql => {
            Statement::from_sql_and_values(backend, sql, values)
        }
    }
}

/// `sql`'s `$n` placeholders outside quotes as bare `?`, and `values` in their order. A `$n`
/// past the values leaves the statement numbered (`?n`, which SQLite binds as NULL, as before).
fn positional(sql: &str, values: Vec<sea_orm::Value>) -> (String, Vec<sea_orm::Value>) {
    let mut order = Vec::new();
    let bare = placeholders(sql, |out, n| {
        out.push('?');
        order.push(n);
    });
    if order.iter().any(|&n| n == 0 || n > values.len()) {
        return (
            placeholders(sql, |out, n| out.push_str(&format!("?{n}"))),
            values,
        );
    }
    if order.iter().enumerate().all(|(at, &n)| n == at + 1) && order.len() == values.len() {
        return (bare, values);
    }
    let values = order.into_iter().map(|n| values[n - 1].clone()).collect();
    (bare, values)
}

/// One PostgreSQL statement that runs `parts` (data-modifying statements nothing reads back) as
/// `WITH` parts beside `main`: `WITH w0 AS (part 0), w1 AS (part 1) … main`. Each statement's
/// `$n` placeholders are renumbered after the ones before it. PostgreSQL runs every part to
/// completion with the main statement, in its snapshot (the parts must touch different rows);
/// the result (rows affected, rows returned) is the main statement's.
pub(crate) fn with_parts(parts: Vec<Statement>, main: Statement) -> Statement {
    if parts.is_empty() {
        return main;
    }
    let mut sql = String::from("WITH ");
    let mut values: Vec<sea_orm::Value> = Vec::new();
    for (n, part) in parts.into_iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{n} AS ("));
        sql.push_str(&renumbered(&part.sql, values.len()));
        sql.push(')');
        values.extend(part.values.map(|v| v.0).unwrap_or_default());
    }
    sql.push(' ');
    sql.push_str(&renumbered(&main.sql, values.len()));
    values.extend(main.values.map(|v| v.0).unwrap_or_default());
    Statement::from_sql_and_values(main.db_backend, sql, values)
}

/// `sql` with every `$n` placeholder outside quotes moved up by `offset`.
fn renumbered(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    placeholders(sql, |out, n| {
        out.push('$');
        out.push_str(&(n + offset).to_string());
    })
}

/// `sql` with every `$n` placeholder outside quotes replaced by what `write` puts in its place.
fn placeholders(sql: &str, mut write: impl FnMut(&mut String, usize)) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                write(&mut out, n);
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// `CAST(SUM(expr) AS BIGINT)`: PostgreSQL sums BIGINT into NUMERIC, SQLite into INTEGER.
pub(crate) fn sum_of(expr: impl Into<SimpleExpr>) -> SimpleExpr {
    Func::cast_as(Func::sum(expr.into()), Alias::new("BIGINT")).into()
}

/// Which member an operation changes: by id, or by the mini-app user id (member tokens), so the
/// lookup and the lock are one statement; or a member the program has not seen yet, created
/// (with its zero balances) as the transaction's first statement, which locks it like any other.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MemberRef {
    Id(i64),
    External(String),
    New(NewMember),
}

/// A member to create: the caller chose every value (the referral code too).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NewMember {
    pub external_id: String,
    pub display_name: Option<String>,
    pub referral_code: String,
}

/// The refusal when a [`MemberRef::New`] collides with an existing member (its external id, or
/// by chance its referral code): the caller looks the member up, or tries another code.
pub const MEMBER_TAKEN: &str = "this member already exists";

/// A locked member with what every posting needs, read in the same statement.
#[derive(Clone, Debug)]
pub struct Locked {
    pub member: members::Model,
    /// The program's live ruleset version.
    pub live_version: i64,
    /// The program's live challenge set version (0: none published).
    pub challenge_version: i64,
    /// The spendable balance.
    pub points_minor: i64,
    /// The member's posting counter (highest `member_version` in the ledger).
    pub version: i64,
    /// The member's tier earn multiplier in hundredths (100 without a tier).
    pub multiplier_minor: i64,
    /// The earn history asked for with the lock, when it was read with it (PostgreSQL).
    pub history: Option<(HistoryQuery, Vec<RuleHistory>)>,
}

/// What an earning posting asks to be read with its member's lock: how often each of `rules`
/// (ids from ruleset `ruleset_version`) paid the member, ever and since each window's start, and
/// for `object_id`. The ledger counts its own rows for it; what a rule is, it does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    pub day_start: chrono::DateTime<chrono::Utc>,
    pub week_start: chrono::DateTime<chrono::Utc>,
    pub month_start: chrono::DateTime<chrono::Utc>,
    pub object_id: Option<String>,
    pub rules: Vec<i64>,
    pub ruleset_version: i64,
}

/// One rule's EARN rows of one member (QUALIFICATION credits not counted: a qualifying award
/// is one award), as a [`HistoryQuery`] asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RuleHistory {
    pub rule_id: i64,
    pub lifetime: i64,
    pub in_day: i64,
    pub in_week: i64,
    pub in_month: i64,
    pub on_object: i64,
    pub lifetime_points: i64,
}

#[derive(FromQueryResult)]
struct LockedRow {
    id: i64,
    program_id: i64,
    external_id: String,
    display_name: Option<String>,
    referral_code: String,
    referrer_id: Option<i64>,
    registered_at: Option<chrono::DateTime<chrono::Utc>>,
    joined_at: chrono::DateTime<chrono::Utc>,
    login_streak: i32,
    last_login_date: Option<String>,
    tier_id: Option<i64>,
    attributes: String,
    multiplier_minor: i64,
    live_version: i64,
    challenge_version: i64,
    points_minor: i64,
    version: i64,
    /// JSON: the [`RuleHistory`] rows asked for, on PostgreSQL only.
    history: Option<String>,
}

const LOCKED_COLUMNS: &str = "SELECT m.id, m.program_id, m.external_id, m.display_name, \
     m.referral_code, m.referrer_id, m.registered_at, m.joined_at, m.login_streak, \
     m.last_login_date, m.tier_id, m.attributes, COALESCE(t.multiplier_minor, 100) AS multiplier_minor, \
     p.ruleset_version AS live_version, \
     COALESCE((SELECT MAX(s.version) FROM challenge_sets s WHERE s.program_id = m.program_id), 0) \
     AS challenge_version, b.balance_minor AS points_minor, \
     COALESCE((SELECT MAX(l.member_version) FROM ledger_entries l WHERE l.member_id = m.id), 0) \
     AS version, NULL AS history \
     FROM members m JOIN programs p ON p.id = m.program_id \
     JOIN balances b ON b.member_id = m.id AND b.account = 'POINTS' \
     LEFT JOIN tiers t ON t.id = m.tier_id";

/// Locks one member row for the rest of the transaction, then reads it with the program's live
/// ruleset and challenge set versions, the balance and the posting counter. Two statements on
/// purpose: at READ COMMITTED a statement that waited for a row lock still reads every other
/// table with the snapshot it started with, so the read must come after the lock, in a statement
/// of its own. Both still take one round trip: on PostgreSQL they run inside the function
/// `loyalty_lock_member` (each statement of a volatile function takes a fresh snapshot), on SQLite
/// they go as one script (a write lock is the whole database's).
/// `NOT_FOUND` when the member does not exist in this program. A [`MemberRef::New`] is created
/// at `now` instead (the insert is its lock).
pub async fn lock_member<C: ConnectionTrait>(
    txn: &C,
    program_id: i64,
    member: &MemberRef,
    now: chrono::DateTime<chrono::Utc>,
) -> TxResult<Locked> {
    lock_member_with(txn, program_id, member, now, None).await
}

/// [`lock_member`], reading `history` with the lock where that saves a round trip (PostgreSQL,
/// an existing member); elsewhere [`Locked::history`] is `None` and the caller reads it itself.
pub async fn lock_member_with<C: ConnectionTrait>(
    txn: &C,
    program_id: i64,
    member: &MemberRef,
    now: chrono::DateTime<chrono::Utc>,
    history: Option<&HistoryQuery>,
) -> TxResult<Locked> {
    let backend = txn.get_database_backend();
    let (column, value): (&str, sea_orm::Value) = match member {
        MemberRef::Id(id) => ("id", (*id).into()),
        MemberRef::External(external_id) => ("external_id", external_id.clone().into()),
        MemberRef::New(new) => {
            let member_id = insert_member(txn, program_id, new, now).await?;
            return read_locked(txn, member_id).await;
        }
    };
    if backend == DatabaseBackend::Sqlite {
        // A no-op write takes SQLite's write lock before anything is read; the read follows in
        // the same script (one hand-over to the connection's thread instead of two).
        let script = format!(
            "UPDATE members SET login_streak = login_streak WHERE program_id = $1 AND {column} = $2; \
             {LOCKED_COLUMNS} WHERE m.program_id = $1 AND m.{column} = $2"
        );
        let row =
            LockedRow::find_by_statement(stmt(backend, &script, vec![program_id.into(), value]))
                .one(txn)
                .await?;
        return row.map(Locked::from).ok_or_else(|| not_found(member));
    }
    // The function takes the member by id or by external id, the other one NULL.
    let (id, external_id) = match member {
        MemberRef::Id(id) => (Some(*id), None),
        MemberRef::External(_) | MemberRef::New(_) => (None, Some(value)),
    };
    let no_time = || sea_orm::Value::ChronoDateTimeUtc(None);
    let window = |at: Option<chrono::DateTime<chrono::Utc>>| at.map_or_else(no_time, Into::into);
    let row = LockedRow::find_by_statement(stmt(
        backend,
        "SELECT * FROM loyalty_lock_member($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            program_id.into(),
            id.into(),
            external_id.unwrap_or(sea_orm::Value::String(None)),
            window(history.map(|h| h.day_start)),
            window(history.map(|h| h.week_start)),
            window(history.map(|h| h.month_start)),
            history.and_then(|h| h.object_id.clone()).into(),
            history
                .map(|h| {
                    h.rules
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .into(),
        ],
    ))
    .one(txn)
    .await?
    .ok_or_else(|| not_found(member))?;
    let rows = match (history, row.history.as_deref()) {
        (Some(query), Some(json)) => Some((
            query.clone(),
            serde_json::from_str::<Vec<RuleHistory>>(json).map_err(DomainError::internal)?,
        )),
        _ => None,
    };
    let mut locked = Locked::from(row);
    locked.history = rows;
    Ok(locked)
}

/// The refusal when the member to lock does not exist.
fn not_found(member: &MemberRef) -> TxError {
    TxError::Domain(match member {
        MemberRef::Id(_) | MemberRef::New(_) => DomainError::not_found("member not found"),
        MemberRef::External(_) => {
            DomainError::not_found("member is not registered: call register first")
        }
    })
}

/// Creates a member with zero balances (both accounts); `MEMBER_TAKEN` on a collision.
async fn insert_member<C: ConnectionTrait>(
    txn: &C,
    program_id: i64,
    new: &NewMember,
    now: chrono::DateTime<chrono::Utc>,
) -> TxResult<i64> {
    let inserted = members::Entity::insert(members::ActiveModel {
        program_id: Set(program_id),
        external_id: Set(new.external_id.clone()),
        display_name: Set(new.display_name.clone()),
        referral_code: Set(new.referral_code.clone()),
        referrer_id: Set(None),
        registered_at: Set(None),
        joined_at: Set(now),
        login_streak: Set(0),
        last_login_date: Set(None),
        attributes: Set("{}".to_owned()),
        ..Default::default()
    })
    .exec_with_returning(txn)
    .await;
    let member = match inserted {
        Ok(member) => member,
        Err(err) if classify(&err) == DbErrorKind::UniqueViolation => {
            return Err(TxError::Domain(DomainError::Conflict(MEMBER_TAKEN.into())))
        }
        Err(err) => return Err(err.into()),
    };
    balances::Entity::insert_many(
        [
            crate::ledger::Account::Points,
            crate::ledger::Account::Qualification,
        ]
        .map(|account| balances::ActiveModel {
            program_id: Set(program_id),
            member_id: Set(member.id),
            account: Set(account.as_str().to_owned()),
            balance_minor: Set(0),
            earned_minor: Set(0),
            spent_minor: Set(0),
            updated_at: Set(now),
            ..Default::default()
        }),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(member.id)
}

/// Reads a member locked in this transaction with the program's live ruleset version, the
/// balance, the posting counter and the tier multiplier: one statement.
pub(super) async fn read_locked<C: ConnectionTrait>(txn: &C, member_id: i64) -> TxResult<Locked> {
    let read = format!("{LOCKED_COLUMNS} WHERE m.id = $1");
    let row = LockedRow::find_by_statement(stmt(
        txn.get_database_backend(),
        &read,
        vec![member_id.into()],
    ))
    .one(txn)
    .await?
    .ok_or_else(|| TxError::Domain(DomainError::internal("locked member vanished")))?;
    Ok(row.into())
}

impl From<LockedRow> for Locked {
    fn from(row: LockedRow) -> Self {
        Locked {
            member: members::Model {
                id: row.id,
                program_id: row.program_id,
                external_id: row.external_id,
                display_name: row.display_name,
                referral_code: row.referral_code,
                referrer_id: row.referrer_id,
                registered_at: row.registered_at,
                joined_at: row.joined_at,
                login_streak: row.login_streak,
                last_login_date: row.last_login_date,
                tier_id: row.tier_id,
                attributes: row.attributes,
            },
            live_version: row.live_version,
            challenge_version: row.challenge_version,
            points_minor: row.points_minor,
            version: row.version,
            multiplier_minor: row.multiplier_minor,
            history: None,
        }
    }
}

#[cfg(test)]
mod placeholder_tests {
    use super::*;

    fn pg(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
    }

    #[test]
    fn parts_go_first_and_every_placeholder_moves_past_the_ones_before_it() {
        let combined = with_parts(
            vec![
                pg(
                    "UPDATE members SET a = $1 WHERE id = $2",
                    vec![1.into(), 2.into()],
                ),
                pg("INSERT INTO e (x) VALUES ($1)", vec!["x".into()]),
            ],
            pg(
                "INSERT INTO r (k, v) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec!["k".into(), "v".into()],
            ),
        );
        assert_eq!(
            combined.sql,
            "WITH w0 AS (UPDATE members SET a = $1 WHERE id = $2), \
             w1 AS (INSERT INTO e (x) VALUES ($3)) \
             INSERT INTO r (k, v) VALUES ($4, $5) ON CONFLICT DO NOTHING"
        );
        let values = combined.values.unwrap().0;
        assert_eq!(
            values,
            vec![1.into(), 2.into(), "x".into(), "k".into(), "v".into()]
        );
    }

    #[test]
    fn no_parts_is_the_main_statement_itself() {
        let main = pg("SELECT $1", vec![1.into()]);
        assert_eq!(with_parts(Vec::new(), main.clone()).sql, main.sql);
    }

    #[test]
    fn quoted_dollars_stay_as_they_are() {
        assert_eq!(
            renumbered(r#"SELECT '$1', "$2", $3, $10, 'it''s $4'"#, 5),
            r#"SELECT '$1', "$2", $8, $15, 'it''s $4'"#
        );
    }

    #[test]
    fn sqlite_gets_bare_placeholders_with_values_in_their_order() {
        let st = stmt(
            DatabaseBackend::Sqlite,
            "SELECT $2, '$1', $1, $2 WHERE x = \"$3\"",
            vec![1.into(), "two".into()],
        );
        assert_eq!(st.sql, "SELECT ?, '$1', ?, ? WHERE x = \"$3\"");
        assert_eq!(
            st.values.unwrap().0,
            vec!["two".into(), 1.into(), "two".into()]
        );
    }

    #[test]
    fn sqlite_placeholders_in_order_keep_their_values() {
        let st = stmt(
            DatabaseBackend::Sqlite,
            "INSERT INTO t VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8), ($9, $10), ($11, $12)",
            (1..=12i64).map(Into::into).collect(),
        );
        assert_eq!(
            st.sql,
            "INSERT INTO t VALUES (?, ?), (?, ?), (?, ?), (?, ?), (?, ?), (?, ?)"
        );
        let expected: Vec<sea_orm::Value> = (1..=12i64).map(Into::into).collect();
        assert_eq!(st.values.unwrap().0, expected);
    }

    #[test]
    fn a_placeholder_past_the_values_stays_numbered() {
        let st = stmt(DatabaseBackend::Sqlite, "SELECT $1, $3", vec![1.into()]);
        assert_eq!(st.sql, "SELECT ?1, ?3");
        assert_eq!(st.values.unwrap().0, vec![1.into()]);
    }

    #[test]
    fn postgres_keeps_its_numbered_placeholders() {
        let st = stmt(
            DatabaseBackend::Postgres,
            "SELECT $2, $1",
            vec![1.into(), 2.into()],
        );
        assert_eq!(st.sql, "SELECT $2, $1");
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    const PAGE: u64 = 4096;

    /// A fresh SQLite file connected with a checkpointer every `interval`; its log is
    /// `<path>-wal`. Dropped: the checkpointer stops and the files go.
    struct Fresh {
        path: std::path::PathBuf,
        db: DatabaseConnection,
        shutdown: CancellationToken,
    }

    impl Fresh {
        async fn open(name: &str, interval: Duration) -> Fresh {
            let path = std::env::temp_dir().join(format!(
                "loyalty-checkpoint-{}-{name}.db",
                std::process::id()
            ));
            remove(&path);
            let shutdown = CancellationToken::new();
            let checkpoints = Checkpoints::Background {
                interval,
                shutdown: shutdown.clone(),
            };
            let db = connect_with(&sqlite_url(&path).unwrap(), 2, checkpoints)
                .await
                .unwrap();
            Fresh { path, db, shutdown }
        }

        fn log_size(&self) -> u64 {
            std::fs::metadata(format!("{}-wal", self.path.display()))
                .map(|m| m.len())
                .unwrap_or(0)
        }

        /// 2,000 commits of a row each (at least one 4 KiB page each), in rounds of 100 with a
        /// pause after each round; the largest the log file grew.
        async fn write(&self, pause: Duration) -> u64 {
            self.db
                .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
                .await
                .unwrap();
            let mut largest = 0;
            for round in 0..20 {
                for n in 0..100 {
                    self.db
                        .execute(Statement::from_sql_and_values(
                            DatabaseBackend::Sqlite,
                            "INSERT INTO t (body) VALUES (?)",
                            [format!("{round}-{n}-{}", "x".repeat(3000)).into()],
                        ))
                        .await
                        .unwrap();
                    largest = largest.max(self.log_size());
                }
                tokio::time::sleep(pause).await;
            }
            largest
        }
    }

    impl Drop for Fresh {
        fn drop(&mut self) {
            self.shutdown.cancel();
            remove(&self.path);
        }
    }

    fn remove(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn with_background_checkpoints_no_commit_copies_the_log() {
        let fresh = Fresh::open("off", Duration::from_secs(3600)).await;
        let largest = fresh.write(Duration::ZERO).await;
        // SQLite's own checkpoint would have restarted the log at about 1,000 pages.
        assert!(
            largest > 2_000 * PAGE,
            "the log grew to only {largest} bytes: a commit checkpointed"
        );
        assert!(checkpoint(&fresh.db).await.unwrap() >= 2_000);
    }

    #[tokio::test]
    async fn the_checkpointer_keeps_the_log_short() {
        let fresh = Fresh::open("on", Duration::from_millis(10)).await;
        let largest = fresh.write(Duration::from_millis(50)).await;
        // A round of 100 commits writes about 300 pages (6,000 in all); each pause lets a
        // checkpoint copy them back, and the next commit starts the log over.
        assert!(
            largest < 1_000 * PAGE,
            "the log grew to {largest} bytes: the checkpointer did not keep up"
        );
        let rows: i64 = fresh
            .db
            .query_one(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT COUNT(*) FROM t",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert_eq!(rows, 2_000);
    }

    #[tokio::test]
    async fn an_in_memory_database_gets_no_checkpointer() {
        let db = connect_with(
            "sqlite::memory:",
            1,
            Checkpoints::Background {
                interval: Duration::from_millis(1),
                shutdown: CancellationToken::new(),
            },
        )
        .await
        .unwrap();
        assert!(!in_wal_mode(&db).await.unwrap());
    }
}
