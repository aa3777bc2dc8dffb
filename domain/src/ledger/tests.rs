//! The ledger stands on its own: it posts, and runs the whole idempotent skeleton, with no
//! service above it (a test [`Host`] on an in-memory SQLite database), and its sources import
//! nothing above it; nothing outside it writes a balance or a ledger row.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::DomainError;
use crate::ledger::affinity;
use crate::ledger::batch::{BatchOptions, Batcher, LaneCpu};
use crate::ledger::db::{
    connect, lock_member, lock_member_with, migrate, read_locked, sqlite_url, HistoryQuery, Locked,
    MemberRef, NewMember, RuleHistory, TxError, TxResult,
};
use crate::ledger::ops::{execute, Host, IdempotencyKey, Operation};
use crate::ledger::{spins_amount, spins_of, Account, Entry, Kind, Posting, Tx, ONE_SPIN};
use crate::money::Points;
use crate::store::{FastStore, MemoryStore};
use crate::tenant::{Program, ReferralPolicy};

/// The crate modules the ledger may use: its own, and the shared vocabulary below it (`jobs`,
/// the timer of background passes, which uses only `error`).
const BELOW_THE_LEDGER: &[&str] = &[
    "ledger", "error", "money", "tenant", "store", "stored", "actor", "jobs",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `crate::x` paths in a source file, grouped imports (`use crate::{a, b::c}`) included.
fn crate_modules(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push(item);
        } else {
            found.push(rest.to_owned());
        }
    }
    found
        .iter()
        .map(|path| {
            path.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|module| !module.is_empty())
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn the_ledger_imports_nothing_above_it() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger"),
        &mut files,
    );
    assert!(files.len() >= 7, "ledger sources not found");
    let mut reaching_up = Vec::new();
    // This file names the forbidden modules to test the scan itself.
    for (path, text) in files
        .iter()
        .filter(|(path, _)| !path.ends_with("ledger/tests.rs"))
    {
        for module in crate_modules(text) {
            if !BELOW_THE_LEDGER.contains(&module.as_str()) {
                reaching_up.push(format!("{path}: crate::{module}"));
            }
        }
    }
    assert!(
        reaching_up.is_empty(),
        "the ledger must not import what stands on it:\n{}",
        reaching_up.join("\n")
    );
}

#[test]
fn only_the_ledger_writes_balances_and_ledger_rows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let ledger = src.join("ledger").display().to_string();
    let writes = [
        "balances::Entity::insert",
        "balances::Entity::update",
        "balances::Entity::delete",
        "ledger_entries::Entity::insert",
        "ledger_entries::Entity::update",
        "ledger_entries::Entity::delete",
        "UPDATE balances",
        "INSERT INTO balances",
        "INSERT INTO ledger_entries",
        "UPDATE ledger_entries",
    ];
    let outside: Vec<String> = files
        .iter()
        .filter(|(path, _)| !path.starts_with(&ledger))
        .flat_map(|(path, text)| {
            writes
                .iter()
                .filter(|write| text.contains(*write))
                .map(move |write| format!("{path}: {write}"))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "balances and ledger rows change only through the ledger's Tx:\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_import_scan_sees_grouped_and_inline_paths() {
    let found = crate_modules(
        "use crate::{error::X, service::{Loyalty, Y}};\nlet a = crate::program::tiers::f();\n\
         // crate::live is only mentioned\n",
    );
    assert_eq!(found, ["error", "service", "program"]);
}

async fn database() -> (DatabaseConnection, Program) {
    database_at("sqlite::memory:").await
}

async fn database_at(url: &str) -> (DatabaseConnection, Program) {
    // One connection to SQLite (in memory a second one would be another database); a few to
    // PostgreSQL, where a test holds two transactions at once.
    let connections = if url.starts_with("postgres") { 4 } else { 1 };
    let db = connect(url, connections).await.unwrap();
    migrate(&db).await.unwrap();
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "INSERT INTO programs (external_id, name, timezone, currency, \
         points_per_currency_minor, validity_days, ruleset_version, created_at) \
         VALUES ('p', 'P', 'UTC', 'USD', 100, 30, 0, '2026-03-01T00:00:00Z')",
    ))
    .await
    .unwrap();
    let program = Program {
        id: 1,
        external_id: "p".into(),
        name: "P".into(),
        tz: chrono_tz::UTC,
        currency: "USD".into(),
        points_per_currency: rust_decimal::Decimal::ONE,
        validity_days: Some(30),
        referral_link_template: None,
        referrals: ReferralPolicy {
            on_first_purchase: false,
            daily_cap: None,
            lifetime_cap: None,
        },
    };
    (db, program)
}

fn new_member(external_id: &str) -> MemberRef {
    MemberRef::New(NewMember {
        external_id: external_id.into(),
        display_name: None,
        referral_code: format!("CODE{external_id}"),
    })
}

fn points(minor: i64) -> Points {
    Points::from_minor(minor)
}

#[tokio::test]
async fn a_tx_posts_without_a_service() {
    let (db, program) = database().await;
    let txn = db.begin().await.unwrap();
    let locked = lock_member(&txn, program.id, &new_member("m1"), now())
        .await
        .unwrap();
    let mut tx = Tx::new(&txn, &program, locked, now());
    tx.credit(Entry::new(Account::Points, Kind::Earn, points(1000)))
        .await
        .unwrap();
    tx.credit(Entry::new(Account::Qualification, Kind::Earn, points(500)))
        .await
        .unwrap();
    let spent = tx
        .debit_in_full(Entry::new(Account::Points, Kind::Spend, points(400)))
        .await
        .unwrap();
    assert_eq!(spent.amount, points(-400));
    assert_eq!(spent.balance_after, Some(points(600)));
    let refused = tx
        .debit_in_full(Entry::new(Account::Points, Kind::Spend, points(601)))
        .await;
    assert!(matches!(
        refused,
        Err(crate::ledger::db::TxError::Domain(
            crate::error::DomainError::InsufficientPoints(_)
        ))
    ));
    // The tier is decided above the ledger; the ledger only says when to ask.
    assert!(tx.qualification_changed());
    tx.place_in_tier(None);
    tx.flush_member().await.unwrap();
    assert_eq!(tx.posted.len(), 3);
    drop(tx);
    txn.commit().await.unwrap();

    let report = crate::ledger::audit::audit(&db, program.id).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(report.members, 1);
    assert_eq!(report.outstanding_minor, 600);
}

#[tokio::test]
async fn spins_are_an_account_of_their_own_that_the_audit_checks() {
    let (db, program) = database().await;
    let txn = db.begin().await.unwrap();
    let locked = lock_member(&txn, program.id, &new_member("m1"), now())
        .await
        .unwrap();
    let mut tx = Tx::new(&txn, &program, locked, now());
    // No SPINS balance row yet: it reads as zero and refuses a debit.
    assert_eq!(tx.balance(Account::Spins).await.unwrap(), Points::ZERO);
    let refused = tx
        .debit_in_full(Entry::new(Account::Spins, Kind::Spend, ONE_SPIN))
        .await;
    assert!(matches!(
        refused,
        Err(crate::ledger::db::TxError::Domain(
            crate::error::DomainError::InsufficientPoints(_)
        ))
    ));
    // The first credit creates the row; a spin is never a lot and never expires.
    let credit = tx
        .credit(Entry::new(Account::Spins, Kind::Earn, spins_amount(3)))
        .await
        .unwrap();
    assert_eq!(
        (credit.amount, credit.expires_at, credit.balance_after),
        (points(300), None, Some(points(300)))
    );
    let spent = tx
        .debit_in_full(Entry::new(Account::Spins, Kind::Spend, ONE_SPIN))
        .await
        .unwrap();
    assert_eq!(spent.balance_after, Some(points(200)));
    assert_eq!(spins_of(tx.balance(Account::Spins).await.unwrap()), 2);
    assert_eq!(tx.balance(Account::Points).await.unwrap(), Points::ZERO);
    assert!(!tx.qualification_changed());
    drop(tx);
    txn.commit().await.unwrap();

    let report = crate::ledger::audit::audit(&db, program.id).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(report.outstanding_minor, 0);
    let lots: Option<i64> = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(remaining_minor) AS n FROM ledger_entries WHERE account = 'SPINS'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .ok();
    assert_eq!(lots, Some(0));

    // A SPINS balance that is not the sum of its rows, or not whole spins, is reported.
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "UPDATE balances SET balance_minor = 250 WHERE account = 'SPINS'",
    ))
    .await
    .unwrap();
    let report = crate::ledger::audit::audit(&db, program.id).await.unwrap();
    assert_eq!(
        report.violations,
        [
            "member 1 SPINS: balance 250 is not a whole number of spins",
            "member 1 SPINS: balance 250 != ledger sum 200",
        ]
    );
}

/// A host with no service behind it: it records what the skeleton asks of it.
#[derive(Clone)]
struct TestHost {
    db: DatabaseConnection,
    store: Arc<dyn FastStore>,
    placed: Arc<Mutex<u32>>,
    /// How many postings each `before_commit` saw.
    before: Arc<Mutex<Vec<usize>>>,
    committed: Arc<Mutex<Vec<Vec<Posting>>>>,
    batcher: Arc<Batcher>,
}

impl Host for TestHost {
    fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    fn now(&self) -> DateTime<Utc> {
        now()
    }

    fn fast_path(&self) -> &Arc<dyn FastStore> {
        &self.store
    }

    fn fast_path_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    async fn place_in_tier(&self, tx: &mut Tx<'_>) -> TxResult<()> {
        *self.placed.lock().unwrap() += 1;
        tx.place_in_tier(None);
        Ok(())
    }

    async fn before_commit(&self, tx: &mut Tx<'_>, posted: &[Posting]) -> TxResult<()> {
        assert!(posted.iter().all(|p| p.member_id == tx.member.id));
        self.before.lock().unwrap().push(posted.len());
        Ok(())
    }

    async fn after_commit(
        &self,
        _program: &Program,
        posted: Vec<Posting>,
        _notes: Vec<crate::ledger::Note>,
    ) {
        self.committed.lock().unwrap().push(posted);
    }
}

#[derive(Clone, Serialize)]
struct EarnOp {
    member: MemberRef,
    minor: i64,
    #[serde(skip)]
    key: Option<IdempotencyKey>,
}

#[async_trait::async_trait]
impl Operation for EarnOp {
    type Output = Points;
    const NAME: &'static str = "testEarn";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<Points> {
        let entry = Entry::new(Account::Points, Kind::Earn, points(self.minor));
        let mut qualification = entry.clone();
        qualification.account = Account::Qualification;
        tx.credit(entry).await?;
        tx.credit(qualification).await?;
        tx.balance(Account::Points).await
    }
}

#[tokio::test]
async fn execute_runs_the_skeleton_without_a_service() {
    let (db, program) = database().await;
    let batcher = Batcher::start(&db, BatchOptions::default(), CancellationToken::new());
    let host = TestHost {
        db,
        store: Arc::new(MemoryStore::new()),
        placed: Arc::default(),
        before: Arc::default(),
        committed: Arc::default(),
        batcher: Arc::new(batcher),
    };
    let join = EarnOp {
        member: new_member("m1"),
        minor: 100,
        key: None,
    };
    assert_eq!(execute(&host, &program, &join).await.unwrap(), points(100));
    let key = IdempotencyKey {
        scope: "service:test".into(),
        key: "k1".into(),
    };
    let earn = EarnOp {
        member: MemberRef::External("m1".into()),
        minor: 250,
        key: Some(key),
    };
    assert_eq!(execute(&host, &program, &earn).await.unwrap(), points(350));
    // The same key answers from its database record (an empty fast path, as after a Redis
    // flush): nothing is posted twice; other arguments under it are refused.
    let cold = TestHost {
        db: host.db.clone(),
        store: Arc::new(MemoryStore::new()),
        // Shared: a replay commits nothing (its work is rolled back when the claim fails).
        committed: host.committed.clone(),
        placed: Arc::default(),
        before: host.before.clone(),
        batcher: host.batcher.clone(),
    };
    assert_eq!(execute(&cold, &program, &earn).await.unwrap(), points(350));
    let other = EarnOp {
        minor: 1,
        ..earn.clone()
    };
    assert!(matches!(
        execute(&cold, &program, &other).await,
        Err(DomainError::IdempotencyKeyReused(_))
    ));

    assert_eq!(*host.placed.lock().unwrap(), 2);
    // Before each commit, with the transaction's postings; the replay's run too (its work,
    // outbox rows included, is then rolled back with the failed claim).
    assert_eq!(*host.before.lock().unwrap(), [2, 2, 2, 2]);
    let committed = host.committed.lock().unwrap().clone();
    assert_eq!(committed.len(), 2);
    assert!(committed.iter().all(|posted| posted.len() == 2));
    let report = crate::ledger::audit::audit(&host.db, program.id)
        .await
        .unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(report.outstanding_minor, 350);
}

/// An earn that notes the name of the thread it ran on.
#[derive(Clone, Serialize)]
struct WhereOp {
    member: MemberRef,
    #[serde(skip)]
    threads: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Operation for WhereOp {
    type Output = ();
    const NAME: &'static str = "testWhere";

    fn member(&self) -> MemberRef {
        self.member.clone()
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        None
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> TxResult<()> {
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        self.threads.lock().unwrap().push(name);
        tx.credit(Entry::new(Account::Points, Kind::Earn, points(100)))
            .await?;
        Ok(())
    }
}

/// Runs one posting through a batcher started with `cpu` on `db`: the name of the thread it ran
/// on, and the host (its lanes end when it is dropped).
async fn lane_thread_of(
    db: &DatabaseConnection,
    program: &Program,
    cpu: LaneCpu,
    member: &str,
) -> (String, TestHost) {
    let options = BatchOptions {
        cpu,
        ..BatchOptions::default()
    };
    let host = TestHost {
        db: db.clone(),
        store: Arc::new(MemoryStore::new()),
        placed: Arc::default(),
        before: Arc::default(),
        committed: Arc::default(),
        batcher: Arc::new(Batcher::start(db, options, CancellationToken::new())),
    };
    let threads = Arc::new(Mutex::new(Vec::new()));
    let op = WhereOp {
        member: new_member(member),
        threads: threads.clone(),
    };
    execute(&host, program, &op).await.unwrap();
    let threads = threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 1, "{threads:?}");
    (threads[0].clone(), host)
}

/// SQLite's lane runs on a thread of its own with a connection of its own (an SQLite file),
/// and the two threads are kept on one CPU; `LaneCpu::Off` runs it as a task of the caller's
/// runtime; an in-memory database keeps its one pool (a second connection would be another
/// database) and nothing is pinned.
#[tokio::test]
async fn the_sqlite_lane_and_its_connection_are_kept_on_one_cpu() {
    let dir = std::env::temp_dir().join(format!("loyalty-lane-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (db, program) = database_at(&sqlite_url(&dir.join("lane.db")).unwrap()).await;

    let (lane, _host) = lane_thread_of(&db, &program, LaneCpu::Auto, "m1").await;
    let n = lane
        .strip_prefix("lane-")
        .expect("a lane thread of its own");
    let lanes = affinity::threads_named(&lane);
    let connections = affinity::threads_named(&format!("lane-db-{n}"));
    assert_eq!((lanes.len(), connections.len()), (1, 1), "{lane}");
    if cfg!(target_os = "linux") {
        let cpu = affinity::default_cpu().unwrap();
        assert_eq!(affinity::cpus_of(lanes[0]), Some(vec![cpu]));
        assert_eq!(affinity::cpus_of(connections[0]), Some(vec![cpu]));
    }

    let (task, _off) = lane_thread_of(&db, &program, LaneCpu::Off, "m2").await;
    assert!(!task.starts_with("lane-"), "{task}");

    let (memory, memory_program) = database().await;
    let (lane, _memory_host) = lane_thread_of(&memory, &memory_program, LaneCpu::Auto, "m3").await;
    let n = lane
        .strip_prefix("lane-")
        .expect("a lane thread of its own");
    assert_eq!(
        affinity::threads_named(&format!("lane-db-{n}")),
        Vec::<i32>::new()
    );
    if cfg!(target_os = "linux") {
        let lanes = affinity::threads_named(&lane);
        assert_eq!(
            affinity::cpus_of(lanes[0]),
            affinity::cpus_of(0),
            "not pinned"
        );
    }

    let report = crate::ledger::audit::audit(&db, program.id).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(report.outstanding_minor, 200);
    db.close().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// The PostgreSQL server of `TEST_DATABASE_URL` (the test suite's), with a `database`.
fn postgres_url(database: &str) -> String {
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

/// Runs `sql` on the PostgreSQL server's `postgres` database.
async fn on_postgres_server(sql: &str) {
    let admin = connect(&postgres_url("postgres"), 1).await.unwrap();
    admin.execute_unprepared(sql).await.unwrap();
    admin.close().await.unwrap();
}

async fn run_sql(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap();
}

/// `Locked` as text, to compare every field of two reads.
fn shown(locked: &Locked) -> String {
    format!("{locked:?}")
}

/// On PostgreSQL the member's lock and the locked read are one call of `loyalty_lock_member`
/// (one round trip), still two statements with a snapshot each: a posting that waited for the
/// lock reads what the lock's holder committed (one statement would read the balance and the
/// posting counter from before its wait), and the function reads exactly what the
/// two-statement read (`read_locked`, a new member's) reads; asked, it also counts the member's
/// earn history by rule in the same read, which a posting takes once, while still current.
#[tokio::test]
async fn the_lock_function_waits_and_reads_what_the_holder_committed() {
    let name = format!("loyalty_ledger_{}", uuid::Uuid::new_v4().simple());
    on_postgres_server(&format!("CREATE DATABASE \"{name}\"")).await;
    let (db, program) = database_at(&postgres_url(&name)).await;

    let txn = db.begin().await.unwrap();
    let created = lock_member(&txn, program.id, &new_member("m1"), now())
        .await
        .unwrap();
    let mut tx = Tx::new(&txn, &program, created, now());
    // Rule 5 paid 1,000 for object sku-1 (and credited QUALIFICATION, one award); rule 6 paid 300.
    let earn = |account, minor, rule| {
        let mut entry = Entry::new(account, Kind::Earn, points(minor)).reference("object", "sku-1");
        entry.rule = Some((rule, 7));
        entry
    };
    tx.credit(earn(Account::Points, 1000, 5)).await.unwrap();
    tx.credit(earn(Account::Qualification, 1000, 5))
        .await
        .unwrap();
    tx.credit(earn(Account::Points, 300, 6)).await.unwrap();
    tx.place_in_tier(None);
    tx.flush_member().await.unwrap();
    let member_id = tx.member.id;
    drop(tx);
    txn.commit().await.unwrap();
    // Every column the read returns away from its default.
    run_sql(&db, "UPDATE programs SET ruleset_version = 7").await;
    run_sql(
        &db,
        "INSERT INTO tiers (program_id, name, min_qualification_minor, multiplier_minor, \
         created_at, updated_at) VALUES (1, 'Gold', 0, 150, now(), now())",
    )
    .await;
    run_sql(
        &db,
        "INSERT INTO challenge_sets (program_id, version, challenges, published_by, \
         published_at) VALUES (1, 3, '[]', 'test', now())",
    )
    .await;
    run_sql(
        &db,
        "UPDATE members SET tier_id = (SELECT id FROM tiers), display_name = 'M', \
         registered_at = now(), login_streak = 4, last_login_date = '2026-03-01', \
         attributes = '{\"city\":\"Hanoi\"}'",
    )
    .await;

    let txn = db.begin().await.unwrap();
    let external = MemberRef::External("m1".into());
    let by_external = lock_member(&txn, program.id, &external, now())
        .await
        .unwrap();
    let by_id = lock_member(&txn, program.id, &MemberRef::Id(member_id), now())
        .await
        .unwrap();
    let read = read_locked(&txn, member_id).await.unwrap();
    assert_eq!(shown(&by_external), shown(&read));
    assert_eq!(shown(&by_id), shown(&read));
    assert_eq!(
        (
            read.live_version,
            read.challenge_version,
            read.points_minor,
            read.version,
            read.multiplier_minor
        ),
        (7, 3, 1300, 3, 150)
    );
    // The earn history asked with the lock: rules 5 and 9 (6 not asked), today from 13:00 (after
    // the rows), the week and the month from yesterday.
    let asked = HistoryQuery {
        day_start: now() + chrono::Duration::hours(1),
        week_start: now() - chrono::Duration::days(1),
        month_start: now() - chrono::Duration::days(1),
        object_id: Some("sku-1".into()),
        rules: vec![5, 9],
        ruleset_version: 7,
    };
    let with_history = lock_member_with(&txn, program.id, &external, now(), Some(&asked))
        .await
        .unwrap();
    let rule_5 = RuleHistory {
        rule_id: 5,
        lifetime: 1,
        in_day: 0,
        in_week: 1,
        in_month: 1,
        on_object: 1,
        lifetime_points: 1000,
    };
    assert_eq!(
        with_history.history,
        Some((asked.clone(), vec![rule_5.clone()]))
    );
    let no_object = HistoryQuery {
        object_id: None,
        rules: vec![],
        ..asked.clone()
    };
    let read = lock_member_with(&txn, program.id, &external, now(), Some(&no_object))
        .await
        .unwrap();
    assert_eq!(read.history, Some((no_object, vec![])));
    // Taken once, only for the query it answers, only while nothing was posted since.
    let mut tx = Tx::new(&txn, &program, with_history.clone(), now());
    assert_eq!(tx.take_history(&asked), Some(vec![rule_5.clone()]));
    assert_eq!(tx.take_history(&asked), None);
    let mut tx = Tx::new(&txn, &program, with_history.clone(), now());
    let other_version = HistoryQuery {
        ruleset_version: 8,
        ..asked.clone()
    };
    assert_eq!(tx.take_history(&other_version), None);
    let mut tx = Tx::new(&txn, &program, with_history, now());
    tx.credit(earn(Account::Points, 1, 5)).await.unwrap();
    assert_eq!(tx.take_history(&asked), None);
    drop(tx);
    assert_eq!(read.member.display_name.as_deref(), Some("M"));
    assert_eq!(read.member.login_streak, 4);
    let nobody = lock_member(&txn, program.id, &MemberRef::External("m2".into()), now()).await;
    assert!(
        matches!(nobody, Err(TxError::Domain(DomainError::NotFound(_)))),
        "{nobody:?}"
    );
    let other_program = lock_member(&txn, program.id + 1, &MemberRef::Id(member_id), now()).await;
    assert!(matches!(
        other_program,
        Err(TxError::Domain(DomainError::NotFound(_)))
    ));
    txn.rollback().await.unwrap();

    // The holder posts 250 and keeps the lock; the waiter locks, waits, and must read 1,550.
    let holder = db.begin().await.unwrap();
    let locked = lock_member(&holder, program.id, &external, now())
        .await
        .unwrap();
    let mut tx = Tx::new(&holder, &program, locked, now());
    tx.credit(Entry::new(Account::Points, Kind::Earn, points(250)))
        .await
        .unwrap();
    tx.flush_member().await.unwrap();
    drop(tx);
    let waiter = {
        let (db, program_id, external) = (db.clone(), program.id, external.clone());
        tokio::spawn(async move {
            let txn = db.begin().await.unwrap();
            let locked = lock_member(&txn, program_id, &external, now())
                .await
                .unwrap();
            txn.commit().await.unwrap();
            (locked.points_minor, locked.version)
        })
    };
    let waiting = format!(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = '{name}' AND wait_event_type = 'Lock'"
    );
    let mut seen = false;
    for _ in 0..1000 {
        let row = db
            .query_one(Statement::from_string(db.get_database_backend(), &waiting))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen, "the second lock never waited for the first");
    holder.commit().await.unwrap();
    assert_eq!(waiter.await.unwrap(), (1550, 4));

    let report = crate::ledger::audit::audit(&db, program.id).await.unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    db.close().await.unwrap();
    on_postgres_server(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await;
}
