//! Enum values read back from the database are checked: a value the code does not know answers
//! `INTERNAL`, never a silent default (a corrupted `ledger_entries.kind` must not read as EARN,
//! a corrupted `wheel_segments.prize_kind` must not read as NOTHING).

use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::e2e;
use crate::helpers::*;

const HISTORY: &str =
    "{ me { transactions(first: 5) { edges { node { kind account amount } } } } }";
const WHEELS: &str = "{ wheels { id segments { label prize { kind } } } }";
const UPSERT: &str = "mutation($i: WheelInput!) { upsertWheel(input: $i) { id } }";

/// Runs `sql` on `table` past its CHECK constraints, which refuse unknown values today: the row
/// stands for one written by a newer release (then rolled back) or by hand.
async fn corrupt(app: &TestApp, table: &str, sql: &str) {
    let db = app.loyalty.db();
    let backend = db.get_database_backend();
    let run = |sql: String| sea_orm::Statement::from_string(backend, sql);
    let txn = db.begin().await.unwrap();
    match app.backend {
        Backend::Postgres => {
            txn.execute(run(format!(
                "DO $$ DECLARE c text; BEGIN \
                 FOR c IN SELECT conname FROM pg_constraint \
                 WHERE conrelid = '{table}'::regclass AND contype = 'c' LOOP \
                 EXECUTE format('ALTER TABLE {table} DROP CONSTRAINT %I', c); \
                 END LOOP; END $$"
            )))
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            txn.execute(run("PRAGMA ignore_check_constraints = ON".into()))
                .await
                .unwrap();
        }
    }
    let done = txn.execute(run(sql.to_owned())).await.unwrap();
    assert!(done.rows_affected() > 0, "{sql} changed nothing");
    if app.backend == Backend::Sqlite {
        txn.execute(run("PRAGMA ignore_check_constraints = OFF".into()))
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
}

e2e!(
    an_unknown_ledger_value_is_internal_not_a_default,
    |app: TestApp| async move {
        app.demo().await;
        let (token, member_id) = app.register("m1").await;
        let before = app.gql(Some(&token), HISTORY, j!({})).await;
        let node = &before.data()["me"]["transactions"]["edges"][0]["node"];
        assert_eq!(node["kind"], "EARN");
        assert_eq!(node["account"], "POINTS");

        corrupt(
            &app,
            "ledger_entries",
            &format!("UPDATE ledger_entries SET kind = 'FOO' WHERE member_id = {member_id}"),
        )
        .await;
        let after = app.gql(Some(&token), HISTORY, j!({})).await;
        assert_eq!(after.code(), "INTERNAL", "{:?}", after.body);
        // The details are logged, not shown.
        assert!(!after.body.to_string().contains("FOO"), "{:?}", after.body);

        corrupt(
            &app,
            "ledger_entries",
            &format!(
                "UPDATE ledger_entries SET kind = 'EARN', account = 'BAR' \
                 WHERE member_id = {member_id}"
            ),
        )
        .await;
        let after = app.gql(Some(&token), HISTORY, j!({})).await;
        assert_eq!(after.code(), "INTERNAL", "{:?}", after.body);
    }
);

e2e!(
    an_unknown_prize_is_internal_not_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let (token, member) = app.register("m1").await;
        let input = j!({"i": {"name": "Lucky", "spinCost": "0", "dailySpinLimit": 5, "segments": [
            {"label": "Ten points", "weight": 1, "prize": "POINTS", "points": "10", "stock": null},
        ]}});
        let created = app.gql(Some(&app.admin()), UPSERT, input).await;
        let id = created.data()["upsertWheel"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = app.gql(Some(&token), WHEELS, j!({})).await;
        assert!(before.body["errors"].is_null(), "{:?}", before.body);

        corrupt(
            &app,
            "wheel_segments",
            &format!(
                "UPDATE wheel_segments SET prize_kind = 'JACKPOT' WHERE wheel_id = {id} \
                 AND archived_at IS NULL"
            ),
        )
        .await;
        let rows = app.ledger_rows(&member).await;
        let after = app.gql(Some(&token), WHEELS, j!({})).await;
        assert_eq!(after.code(), "INTERNAL", "{:?}", after.body);
        // Spinning reads the same row: no prize is paid as NOTHING.
        let spin = app
            .gql(
                Some(&token),
                "mutation($w: ID!) { spinWheel(wheelId: $w, clientSeed: \"c\", idempotencyKey: \"s1\") { spinId } }",
                j!({"w": id}),
            )
            .await;
        assert_eq!(spin.code(), "INTERNAL", "{:?}", spin.body);
        assert_eq!(
            app.ledger_rows(&member).await,
            rows,
            "the refused spin posted"
        );
    }
);
