//! Group commit (`domain/src/ledger/batch.rs`): postings that arrive together share one
//! transaction, each in its own savepoint. These tests make a batch on purpose: one lane, held
//! up by a posting that waits for a lock the test holds, while the postings under test queue
//! behind it; when the test lets go, the lane takes all of them as one batch.

use std::time::Duration;

use loyalty_domain::ledger::batch::BatchCounts;
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, TransactionTrait};

use crate::e2e;
use crate::helpers::*;

const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"batch test\", idempotencyKey: $k) { balance transaction { id } } }";

/// One lane, so every posting of the test meets in it.
fn one_lane(config: &mut loyalty_server::config::Config) {
    config.posting.lanes = Some(1);
}

/// Waits (bounded) until the lanes' counters satisfy `done`.
async fn until(app: &TestApp, what: &str, done: impl Fn(BatchCounts) -> bool) {
    for _ in 0..600 {
        if done(app.loyalty.batcher().stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "lanes never reached: {what} ({:?})",
        app.loyalty.batcher().stats()
    );
}

/// Holds the lane: locks `member_id`'s row in a transaction of the test's own (on SQLite that
/// takes the database's write lock), then sends a posting for that member, which the lane
/// starts and which waits for the lock. Returns the lock (commit it to let go) and the posting.
async fn hold_the_lane(
    app: &TestApp,
) -> (
    DatabaseTransaction,
    tokio::task::JoinHandle<Gql>,
    BatchCounts,
) {
    let (_, member_id) = app.register("plug").await;
    let db = app.loyalty.db();
    let lock = db.begin().await.unwrap();
    lock.execute(Statement::from_string(
        db.get_database_backend(),
        format!("UPDATE members SET login_streak = login_streak WHERE id = {member_id}"),
    ))
    .await
    .unwrap();
    let before = app.loyalty.batcher().stats();
    let plug = app.spawn_gql(&app.member("plug"), DAILY, j!({"k": "plug"}));
    until(app, "the plug started", |now| {
        now.postings > before.postings && now.queued == 0
    })
    .await;
    (lock, plug, app.loyalty.batcher().stats())
}

const DAILY: &str = "mutation($k: String) { recordAction(input: {action: \"daily_login\", idempotencyKey: $k}) { awarded points balance } }";

/// Raises an error on any ledger row of `member_id`: the injected failure.
async fn fail_postings_of(app: &TestApp, member_id: &str) {
    let db = app.loyalty.db();
    let statements: Vec<String> = match app.backend {
        Backend::Postgres => vec![
            "CREATE FUNCTION injected_failure() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                .into(),
            format!(
                "CREATE TRIGGER injected_failure BEFORE INSERT ON ledger_entries FOR EACH ROW \
                 WHEN (NEW.member_id = {member_id}) EXECUTE FUNCTION injected_failure()"
            ),
        ],
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER injected_failure BEFORE INSERT ON ledger_entries \
             WHEN NEW.member_id = {member_id} BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )],
    };
    for sql in statements {
        db.execute_unprepared(&sql).await.unwrap();
    }
}

e2e!(
    one_refusal_and_one_failure_in_a_batch_touch_only_their_own_postings,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let mut fine = Vec::new();
        for n in 0..5 {
            fine.push(app.register(&format!("fine-{n}")).await);
        }
        let (_, poor) = app.register("poor").await;
        let (boom_token, boom) = app.register("boom").await;
        fail_postings_of(&app, &boom).await;

        let (lock, plug, held) = hold_the_lane(&app).await;
        let calls: Vec<_> = fine
            .iter()
            .map(|(token, _)| app.spawn_gql(token, DAILY, j!({"k": "today"})))
            .collect();
        let refused = app.spawn_gql(
            &admin,
            ADJUST,
            j!({"m": poor, "a": "-1000", "k": "too-much"}),
        );
        let failed = app.spawn_gql(&boom_token, DAILY, j!({"k": "today"}));
        let batch = fine.len() as u64 + 2;
        until(&app, "every posting queued", |now| now.queued == batch).await;
        lock.commit().await.unwrap();

        assert!(plug.await.unwrap().data()["recordAction"]["awarded"] == true);
        for call in calls {
            let res = call.await.unwrap();
            let action = &res.data()["recordAction"];
            assert_eq!(action["awarded"], true, "{}", res.body);
            assert_eq!(
                action["balance"], "75.00",
                "registration's 70 and 5: {}",
                res.body
            );
        }
        assert_eq!(refused.await.unwrap().code(), "INSUFFICIENT_POINTS");
        assert_eq!(failed.await.unwrap().code(), "INTERNAL");

        // They were one batch: the plug's, then this one.
        let after = app.loyalty.batcher().stats();
        assert_eq!(after.batches, held.batches + 1, "{after:?}");
        assert_eq!(after.postings, held.postings + batch, "{after:?}");
        assert!(after.largest >= batch, "{after:?}");

        // The refused and the failed member have nothing; the others have their points once.
        let registered = app.ledger_rows(&app.register("bystander").await.1).await;
        assert_eq!(app.ledger_rows(&poor).await, registered);
        assert_eq!(app.ledger_rows(&boom).await, registered);
        for (token, id) in &fine {
            let rows = app.ledger_rows(id).await;
            let again = app.daily_login(token, "today").await;
            assert_eq!(again.data()["recordAction"]["balance"], "75.00");
            assert_eq!(app.balance(token).await, "75.00");
            assert_eq!(app.ledger_rows(id).await, rows);
        }
        // The refusal was stored under its key inside the batch: a retry sees it again, even
        // with the points it lacked now there.
        let topped = app
            .gql(
                Some(&admin),
                ADJUST,
                j!({"m": poor, "a": "2000", "k": "top-up"}),
            )
            .await;
        assert_eq!(topped.data()["adjustPoints"]["balance"], "2070.00");
        let retried = app
            .gql(
                Some(&admin),
                ADJUST,
                j!({"m": poor, "a": "-1000", "k": "too-much"}),
            )
            .await;
        assert_eq!(retried.code(), "INSUFFICIENT_POINTS");
        assert_eq!(app.ledger_rows(&poor).await, registered + 1);
        app.assert_ledger_invariants().await;
    },
    one_lane
);

e2e!(
    one_key_sent_many_times_into_one_batch_posts_once,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let (token, member) = app.register("twelve-times").await;
        let (lock, plug, held) = hold_the_lane(&app).await;
        let copies = 12u64;
        let calls: Vec<_> = (0..copies)
            .map(|_| app.spawn_gql(&admin, ADJUST, j!({"m": member, "a": "7", "k": "same"})))
            .collect();
        until(&app, "every copy queued", |now| now.queued == copies).await;
        lock.commit().await.unwrap();
        plug.await.unwrap().data();

        let mut ids = std::collections::BTreeSet::new();
        for call in calls {
            let res = call.await.unwrap();
            assert_eq!(
                res.data()["adjustPoints"]["balance"],
                "77.00",
                "{}",
                res.body
            );
            ids.insert(
                res.data()["adjustPoints"]["transaction"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(ids.len(), 1, "every copy answers the one posting: {ids:?}");
        let after = app.loyalty.batcher().stats();
        assert_eq!(after.batches, held.batches + 1, "{after:?}");
        assert_eq!(after.postings, held.postings + copies, "{after:?}");
        let registered = app.ledger_rows(&app.register("bystander").await.1).await;
        assert_eq!(app.ledger_rows(&member).await, registered + 1);
        assert_eq!(app.balance(&token).await, "77.00");
        app.assert_ledger_invariants().await;
    },
    one_lane
);

const PURCHASE: &str = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded rules { source points } } }";

/// A lock that is not a member's (a campaign's budget row) held elsewhere: the batch does not
/// wait for it. The posting that needs it gives up its place after the batch's lock timeout,
/// the rest of the batch commits, and the posting runs again alone once the lock is free.
/// PostgreSQL only: SQLite has one writer and no row locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_does_not_wait_for_a_lock_another_transaction_holds() {
    let app = spawn_app_with(Backend::Postgres, one_lane).await;
    let program = app.demo().await;
    app.loyalty.seed_demo_campaigns(&program).await.unwrap();
    let service = app.service();
    let purchase = |member: &str, order: &str| {
        let input = j!({"i": {"memberExternalId": member, "orderId": order, "amount": "60.00", "idempotencyKey": order}});
        app.spawn_gql(&service, PURCHASE, input)
    };
    for member in ["first", "second", "logs-in"] {
        app.register(member).await;
    }
    // The first big basket creates the budget row.
    let first = purchase("first", "o-1").await.unwrap();
    assert_eq!(
        first.data()["recordPurchase"]["rules"][1]["source"],
        "big_basket"
    );

    let db = app.loyalty.db();
    let budget = db.begin().await.unwrap();
    budget
        .execute_unprepared("UPDATE rule_budgets SET awards = awards")
        .await
        .unwrap();
    let (lock, plug, _) = hold_the_lane(&app).await;
    let blocked = purchase("second", "o-2");
    let login = app.spawn_gql(&app.member("logs-in"), DAILY, j!({"k": "today"}));
    until(&app, "both queued", |now| now.queued == 2).await;
    lock.commit().await.unwrap();
    plug.await.unwrap().data();

    // The daily login commits while the budget row is still locked...
    let login = tokio::time::timeout(Duration::from_secs(60), login)
        .await
        .expect("the batch waited for a lock its other posting needed")
        .unwrap();
    assert_eq!(login.data()["recordAction"]["awarded"], true);
    // ...and the purchase that needs it waits, alone, for the lock, then pays in full.
    assert!(!blocked.is_finished());
    budget.commit().await.unwrap();
    let second = blocked.await.unwrap();
    let rules = &second.data()["recordPurchase"]["rules"];
    assert_eq!(rules[1]["source"], "big_basket", "{}", second.body);
    assert_eq!(rules[1]["points"], "100.00");
    assert_eq!(
        app.sql_i64("SELECT awards AS n FROM rule_budgets").await,
        2,
        "the budget counts each award once"
    );
    app.assert_ledger_invariants().await;
}
