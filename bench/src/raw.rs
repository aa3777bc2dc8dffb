//! The machine's ceiling: the cheapest possible "earn points" write done
//! directly in PostgreSQL — one transaction that inserts one ledger row and
//! updates one balance row — at the same concurrency as the HTTP phase.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::stats::{Recorder, Summary};

pub const LABEL: &str = "raw SQL txn (insert ledger + update balance)";

const CREATE_BALANCE: &str = "CREATE TABLE IF NOT EXISTS bench_raw_balance (
    member_id bigint PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
)";
const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS bench_raw_ledger (
    id bigserial PRIMARY KEY,
    member_id bigint NOT NULL,
    amount bigint NOT NULL,
    kind text NOT NULL,
    idempotency_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
)";
const TRUNCATE: &str = "TRUNCATE bench_raw_ledger, bench_raw_balance RESTART IDENTITY";
const SEED: &str = "INSERT INTO bench_raw_balance (member_id, balance)
    SELECT g, 0 FROM generate_series(1, $1::bigint) AS g";
const INSERT_LEDGER: &str =
    "INSERT INTO bench_raw_ledger (member_id, amount, kind, idempotency_key)
    VALUES ($1, $2, $3, $4)";
const UPDATE_BALANCE: &str =
    "UPDATE bench_raw_balance SET balance = balance + $2 WHERE member_id = $1";
const DROP: &str = "DROP TABLE IF EXISTS bench_raw_ledger, bench_raw_balance";

pub struct RawConfig<'a> {
    pub database_url: &'a str,
    pub members: usize,
    pub concurrency: usize,
    /// The pool's size: workers beyond it wait for a connection (PostgreSQL's
    /// `max_connections`, 100 by default, is shared with the server's pool).
    pub max_connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub keep_tables: bool,
}

/// Connect, prepare tables, warm up, measure, and (unless asked to keep
/// them) drop the tables again — also when the measurement failed.
pub async fn run(cfg: &RawConfig<'_>) -> Result<Summary> {
    let bench = RawBench::setup(
        cfg.database_url,
        cfg.members,
        cfg.concurrency.min(cfg.max_connections),
        cfg.keep_tables,
    )
    .await?;
    let result = async {
        bench.warm_up(cfg.concurrency, cfg.warmup).await?;
        bench.measure(cfg.concurrency, cfg.duration).await
    }
    .await;
    bench.finish().await;
    result
}

/// The raw SQL tables, seeded, with a warm pool: measured at several concurrencies in turn.
pub struct RawBench {
    pool: PgPool,
    members: i64,
    connections: usize,
    keep_tables: bool,
}

impl RawBench {
    /// Connect `connections` connections, create and seed the tables.
    pub async fn setup(
        database_url: &str,
        members: usize,
        connections: usize,
        keep_tables: bool,
    ) -> Result<RawBench> {
        let connections = connections.max(1);
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(connections).context("too many raw SQL connections")?)
            .acquire_timeout(Duration::from_secs(30))
            // The bare transaction: no ping before each one (sqlx's default), which is a round
            // trip the server's pool does not make either for a connection in use.
            .test_before_acquire(false)
            .connect(database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to PostgreSQL at {} (raw SQL ceiling phase)",
                    redact(database_url)
                )
            })?;
        let bench = RawBench {
            pool,
            members: i64::try_from(members).context("--members too large")?,
            connections,
            keep_tables,
        };
        if let Err(e) = bench.prepare().await {
            bench.finish().await;
            return Err(e);
        }
        Ok(bench)
    }

    /// The pool's size (workers beyond it queue for a connection).
    pub fn connections(&self) -> usize {
        self.connections
    }

    async fn prepare(&self) -> Result<()> {
        let pool = &self.pool;
        sqlx::query(CREATE_BALANCE)
            .execute(pool)
            .await
            .context("creating bench_raw_balance")?;
        sqlx::query(CREATE_LEDGER)
            .execute(pool)
            .await
            .context("creating bench_raw_ledger")?;
        sqlx::query(TRUNCATE)
            .execute(pool)
            .await
            .context("truncating bench_raw_* tables")?;
        sqlx::query(SEED)
            .bind(self.members)
            .execute(pool)
            .await
            .context("seeding bench_raw_balance")?;
        // Planner statistics for the freshly seeded table.
        sqlx::query("ANALYZE bench_raw_balance")
            .execute(pool)
            .await
            .context("analyzing bench_raw_balance")?;
        warm_connections(pool, self.connections).await
    }

    /// Run for `duration` and discard the results; fails when every transaction failed.
    pub async fn warm_up(&self, concurrency: usize, duration: Duration) -> Result<()> {
        if duration.is_zero() {
            return Ok(());
        }
        let (warm, _) = measure(&self.pool, self.members, concurrency, duration).await?;
        if warm.ops() == 0 && warm.errors > 0 {
            let first = warm
                .messages
                .first()
                .map(|(m, _)| m.as_str())
                .unwrap_or("?");
            anyhow::bail!("raw SQL warm-up failed on every transaction: {first}");
        }
        Ok(())
    }

    pub async fn measure(&self, concurrency: usize, duration: Duration) -> Result<Summary> {
        let (rec, elapsed) = measure(&self.pool, self.members, concurrency, duration).await?;
        Ok(rec.summarize(LABEL, concurrency, elapsed))
    }

    /// Drop the tables (unless kept) and close the pool.
    pub async fn finish(self) {
        if !self.keep_tables {
            if let Err(e) = sqlx::query(DROP).execute(&self.pool).await {
                eprintln!("warning: could not drop bench_raw_* tables: {e}");
            }
        }
        self.pool.close().await;
    }
}

/// Open every pool connection up front so connection setup is not measured.
async fn warm_connections(pool: &PgPool, n: usize) -> Result<()> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(
            pool.acquire()
                .await
                .context("opening PostgreSQL connections")?,
        );
    }
    for conn in &mut conns {
        sqlx::query("SELECT 1")
            .execute(&mut **conn)
            .await
            .context("SELECT 1 on a fresh connection")?;
    }
    Ok(())
}

async fn measure(
    pool: &PgPool,
    members: i64,
    concurrency: usize,
    duration: Duration,
) -> Result<(Recorder, Duration)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = StdRng::from_os_rng();
            let mut rec = Recorder::default();
            while Instant::now() < deadline {
                let member_id = rng.random_range(1..=members);
                let amount = rng.random_range(1..=100_i64);
                let key = uuid::Uuid::new_v4().to_string();
                let t0 = Instant::now();
                match txn(&pool, member_id, amount, &key).await {
                    Ok(()) => rec.ok(t0.elapsed()),
                    Err(e) => rec.err(&e.to_string()),
                }
            }
            rec
        }));
    }
    let mut total = Recorder::default();
    for h in handles {
        total.merge(h.await.context("raw SQL worker task failed")?);
    }
    Ok((total, start.elapsed()))
}

async fn txn(pool: &PgPool, member_id: i64, amount: i64, key: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(INSERT_LEDGER)
        .bind(member_id)
        .bind(amount)
        .bind("earn")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    let updated = sqlx::query(UPDATE_BALANCE)
        .bind(member_id)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    tx.commit().await
}

/// Hide a password in a connection URL for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
