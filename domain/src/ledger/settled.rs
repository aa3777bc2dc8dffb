//! "Every row up to id `M` is final": the ids background jobs may move a watermark to (the
//! report folder, the leaderboard catch-up).
//!
//! "The largest id seen" is not enough on PostgreSQL: ids come from a sequence when a row is
//! inserted, not when its transaction commits, so a transaction holding id 100 may commit after
//! one holding 101. So a pass first reads, in one statement, `M = max(id)` of each table and the
//! virtual transaction ids of every session holding a write lock (`RowExclusiveLock`) on those
//! tables. Row `M` was committed when the statement's snapshot was taken, so every id `<= M` had
//! been drawn from the sequence (`CACHE 1`, ids handed out in order) before that moment, by a
//! transaction that had already locked the table for its `INSERT` and keeps that lock until it
//! ends. Such a transaction has either finished by the time we read the locks (then its rows are
//! committed, or never will be) or is in the list. The pass waits until every listed transaction
//! is gone, so afterwards every row with `id <= M` that will ever exist is committed, and any
//! statement started after the wait (READ COMMITTED) sees all of them. Unlike a check on the
//! snapshot's in-progress xids, this also covers a transaction that drew an id but had no xid
//! yet. A long transaction only delays the watermark.
//!
//! On SQLite write transactions are serial and an uncommitted writer's ids lie above every
//! committed one, so the committed `max(id)` is final.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult};

use crate::error::{DomainError, DomainResult};
use crate::ledger::db::stmt;

/// Longest a pass waits for in-flight writers before giving up until its next pass.
const WRITER_WAIT: Duration = Duration::from_secs(5);

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

#[derive(FromQueryResult)]
struct Writers {
    writers: Option<String>,
}

fn max_ids_sql(tables: &[&str]) -> String {
    tables
        .iter()
        .map(|t| format!("(SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM {t}) AS {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For each of `tables` (fixed names, never user input), the id up to which every row that will
/// ever exist is committed; `None` when writers are still in flight after [`WRITER_WAIT`] (try
/// again on the next pass). Without writers in flight this is one statement.
pub(crate) async fn settled_max_ids<C: ConnectionTrait>(
    db: &C,
    tables: &[&str],
) -> DomainResult<Option<BTreeMap<String, i64>>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            let relations = tables
                .iter()
                .map(|t| format!("'{t}'::regclass"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {}, (SELECT string_agg(DISTINCT l.virtualtransaction, ',') FROM pg_locks l \
                 WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.relation IN ({relations}) AND l.pid IS DISTINCT FROM pg_backend_pid()) \
                 AS writers",
                max_ids_sql(tables)
            )
        }
        DatabaseBackend::Sqlite | DatabaseBackend::MySql => {
            format!("SELECT {}, NULL AS writers", max_ids_sql(tables))
        }
    };
    let row = db
        .query_one(stmt(backend, &sql, vec![]))
        .await?
        .ok_or_else(|| DomainError::internal("no max ids"))?;
    let mut ids = BTreeMap::new();
    for table in tables {
        ids.insert((*table).to_owned(), row.try_get::<i64>("", table)?);
    }
    let writers = Writers::from_query_result(&row, "")?.writers;
    if let Some(writers) = writers.filter(|w| !w.is_empty()) {
        let started = tokio::time::Instant::now();
        loop {
            let left = Count::find_by_statement(stmt(
                backend,
                "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'virtualxid' \
                 AND virtualxid = ANY(string_to_array($1, ','))",
                vec![writers.clone().into()],
            ))
            .one(db)
            .await?
            .map(|c| c.n)
            .unwrap_or_default();
            if left == 0 {
                break;
            }
            if started.elapsed() > WRITER_WAIT {
                tracing::debug!(writers, "writers still in flight; next pass");
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(Some(ids))
}
