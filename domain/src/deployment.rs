//! The deployment id: a random UUID the migration `deployment` stores once per database. It
//! names the database in every Redis key and channel (`{REDIS_PREFIX}{deployment}:…`), so what
//! Redis holds about one database is never read as if it described another.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio_util::sync::CancellationToken;

use crate::error::{DomainError, DomainResult};
use crate::live::leaderboard::Leaderboards;
use crate::store::{FastStore, RedisStore};

/// Reads the database's deployment id (after migrations).
pub async fn deployment_id<C: ConnectionTrait>(db: &C) -> DomainResult<String> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM deployment ORDER BY created_at, id",
        ))
        .await?
        .ok_or_else(|| DomainError::internal("the deployment table is empty"))?;
    let id: String = row.try_get("", "id")?;
    // The id goes into Redis key names: refuse anything that could reach outside its namespace.
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(DomainError::internal(format!("bad deployment id `{id}`")));
    }
    Ok(id)
}

/// Gives the database a new deployment id, unless another instance already replaced `from`;
/// returns the id now in force. For a database whose Redis turned out to hold the state of a
/// copy of it (see [`crate::live::leaderboard::Leaderboards::ahead_of_ledger`]).
pub async fn rotate<C: ConnectionTrait>(db: &C, from: &str) -> DomainResult<String> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => "UPDATE deployment SET id = ? WHERE id = ?",
        sea_orm::DatabaseBackend::Postgres | sea_orm::DatabaseBackend::MySql => {
            "UPDATE deployment SET id = $1 WHERE id = $2"
        }
    };
    db.execute(Statement::from_sql_and_values(
        backend,
        sql,
        [uuid::Uuid::new_v4().to_string().into(), from.into()],
    ))
    .await?;
    deployment_id(db).await
}

/// Connects Redis under this database's deployment id. When the boards there have seen more
/// ledger rows than this database has, that namespace belongs to a copy of this database (a
/// restored backup started beside the original, or in its place): the database gets a new
/// deployment id, so neither reads the other's keys. Returns the store and the id in force.
pub async fn connect_redis(
    url: &str,
    prefix: &str,
    db: &DatabaseConnection,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<dyn FastStore>, String)> {
    let id = deployment_id(db).await?;
    let first = shutdown.child_token();
    let store = RedisStore::connect(url, prefix, &id, first.clone()).await?;
    let ahead = match Leaderboards::ahead_of_ledger(db, store.as_ref()).await {
        Ok(ahead) => ahead,
        Err(err) => {
            tracing::warn!(error = %err, "cannot compare Redis with the database; trusting the deployment id");
            false
        }
    };
    if !ahead {
        return Ok((store, id));
    }
    first.cancel();
    let fresh = rotate(db, &id).await?;
    tracing::warn!(
        old = %id,
        new = %fresh,
        "Redis holds the state of a copy of this database with more ledger rows (a restored \
         backup?); this database now has a new deployment id and starts with a cold cache"
    );
    let store = RedisStore::connect(url, prefix, &fresh, shutdown.child_token()).await?;
    Ok((store, fresh))
}
