//! Real database errors are classified the way the retry loop needs: a PostgreSQL deadlock is
//! retryable, a unique violation is not, and the retry loop retries only what it should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};

use loyalty_domain::ledger::db::{classify, retry, DbErrorKind, TxError};
use sea_orm::{ConnectionTrait, Database, DbErr, TransactionTrait};

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[tokio::test]
async fn a_postgres_deadlock_is_retryable_and_a_duplicate_is_not() {
    let db = Database::connect(admin_url()).await.unwrap();
    let table = format!("deadlock_{}", uuid::Uuid::new_v4().simple());
    db.execute_unprepared(&format!("CREATE TABLE {table} (id int primary key, v int)"))
        .await
        .unwrap();
    db.execute_unprepared(&format!("INSERT INTO {table} VALUES (1, 0), (2, 0)"))
        .await
        .unwrap();

    let duplicate = db
        .execute_unprepared(&format!("INSERT INTO {table} VALUES (1, 0)"))
        .await
        .unwrap_err();
    assert_eq!(classify(&duplicate), DbErrorKind::UniqueViolation);

    let a = db.begin().await.unwrap();
    let b = db.begin().await.unwrap();
    a.execute_unprepared(&format!("UPDATE {table} SET v = 1 WHERE id = 1"))
        .await
        .unwrap();
    b.execute_unprepared(&format!("UPDATE {table} SET v = 1 WHERE id = 2"))
        .await
        .unwrap();
    // Each side rolls back when it is the victim, which releases the other.
    let finish = |txn: sea_orm::DatabaseTransaction, sql: String| {
        tokio::spawn(async move {
            let result = txn.execute_unprepared(&sql).await;
            match &result {
                Ok(_) => txn.commit().await.unwrap(),
                Err(_) => txn.rollback().await.unwrap(),
            }
            result.map(|_| ())
        })
    };
    let ha = finish(a, format!("UPDATE {table} SET v = 2 WHERE id = 2"));
    let hb = finish(b, format!("UPDATE {table} SET v = 2 WHERE id = 1"));
    let (ra, rb) = (ha.await.unwrap(), hb.await.unwrap());
    let err = match (ra, rb) {
        (Err(e), Ok(())) | (Ok(()), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    assert_eq!(classify(&err), DbErrorKind::Retryable, "{err}");
    db.execute_unprepared(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn retry_repeats_transient_failures_only() {
    let calls = AtomicU32::new(0);
    let value = retry("test", || async {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(TxError::Db(DbErr::Custom("database is locked".into())))
        } else {
            Ok(7)
        }
    })
    .await
    .unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (7, 3));

    let calls = AtomicU32::new(0);
    let err = retry("test", || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(TxError::Db(DbErr::Custom("boom".into())))
    })
    .await
    .unwrap_err();
    assert_eq!((err.code(), calls.load(Ordering::SeqCst)), ("INTERNAL", 1));
}
