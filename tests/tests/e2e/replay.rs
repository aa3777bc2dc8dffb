//! The earn event log and "replay before publish": every earn event is logged once, paid or
//! not; `replayRules` runs the draft (or the live rules) over a past week's events and its
//! figures match a recomputation by hand, beside what the ledger says the live rules issued.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

const TZ: &str = "Asia/Ho_Chi_Minh";
const CREATE: &str = "mutation($i: RuleInput!) { createRule(input: $i) { id } }";
const ACT: &str = "mutation($a: String!, $k: String) { recordAction(input: {action: $a, idempotencyKey: $k}) { awarded points reason } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";
const REPLAY: &str = "query($f: DateTime!, $t: DateTime!, $g: RulesTargetInput!) { replayRules(from: $f, to: $t, target: $g) { rulesetVersion rules { ruleId name inRuleset eventsMatched membersReached pointsIssued spins actuallyIssued } totals { events eventsMatched membersReached pointsIssued spins actuallyIssued } } }";
const REPLAY_DEFAULT: &str = "query($f: DateTime!, $t: DateTime!) { replayRules(from: $f, to: $t) { rulesetVersion totals { events } } }";

async fn act(app: &TestApp, token: &str, action: &str, key: &str) -> Value {
    let r = app.gql(Some(token), ACT, j!({"a": action, "k": key})).await;
    r.data()["recordAction"].clone()
}

async fn buy(app: &TestApp, member: &str, order: &str, amount: &str) -> Gql {
    let input = j!({"i": {"memberExternalId": member, "orderId": order, "amount": amount, "idempotencyKey": format!("key-{order}")}});
    app.gql(Some(&app.service()), PURCHASE, input).await
}

async fn query(app: &TestApp, sql: &str) -> Vec<sea_orm::QueryResult> {
    let db = app.loyalty.db();
    db.query_all(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
}

async fn max_ledger_id(app: &TestApp) -> i64 {
    let rows = query(
        app,
        "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS n FROM ledger_entries",
    )
    .await;
    rows[0].try_get::<i64>("", "n").unwrap()
}

/// Σ EARN on POINTS per rule id among the ledger rows with ids in `(after, upto]`, as "minor".
async fn ledger_earned(app: &TestApp, after: i64, upto: i64) -> Vec<(i64, i64)> {
    let rows = query(
        app,
        &format!(
            "SELECT rule_id, CAST(SUM(amount_minor) AS BIGINT) AS s FROM ledger_entries \
             WHERE kind = 'EARN' AND account = 'POINTS' AND rule_id IS NOT NULL \
             AND id > {after} AND id <= {upto} GROUP BY rule_id ORDER BY rule_id"
        ),
    )
    .await;
    rows.iter()
        .map(|row| {
            (
                row.try_get::<i64>("", "rule_id").unwrap(),
                row.try_get::<i64>("", "s").unwrap(),
            )
        })
        .collect()
}

fn by_name<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {result}"))
}

/// Minor units of a decimal string ("135.00" → 13500).
fn minor(value: &Value) -> i64 {
    let text = value.as_str().unwrap();
    let decimal: rust_decimal::Decimal = text.parse().unwrap();
    i64::try_from(
        (decimal * rust_decimal::Decimal::ONE_HUNDRED)
            .trunc()
            .mantissa(),
    )
    .unwrap()
}

async fn replay(app: &TestApp, from: DateTime<Utc>, to: DateTime<Utc>, target: &str) -> Value {
    let r = app
        .gql(
            Some(&app.admin()),
            REPLAY,
            j!({"f": from.to_rfc3339(), "t": to.to_rfc3339(), "g": target}),
        )
        .await;
    r.data()["replayRules"].clone()
}

e2e!(
    replay_of_a_past_week_matches_a_recomputation_and_the_ledger,
    |app: TestApp| async move {
        // Monday 2026-11-02, 08:00 program time.
        let start = local(TZ, "2026-11-02 08:00:00");
        app.clock.set(start);
        app.demo().await;
        let (m1, _) = app.register("m1").await;
        let (m2, _) = app.register("m2").await;
        app.register("m3").await;
        let admin = app.admin();
        // Draft only (not published): the live rules stay the demo's.
        let quiz = j!({"i": {"name": "Quiz", "action": "quiz_done", "rewardKind": "FIXED", "points": "7.5", "limit": {"count": 2, "period": "DAY"}}});
        app.gql(Some(&admin), CREATE, quiz).await.data();
        let bonus = j!({"i": {"name": "Purchase bonus", "action": "purchase", "rewardKind": "PERCENT", "percent": "2"}});
        app.gql(Some(&admin), CREATE, bonus).await.data();

        // Before the period: not replayed.
        app.clock.set(start + Duration::minutes(30));
        assert_eq!(
            act(&app, &m1, "quiz_done", "early").await["reason"],
            "NO_RULE"
        );

        let from = start + Duration::hours(1);
        let before = max_ledger_id(&app).await;
        for day in 0..7_i64 {
            let at = from + Duration::days(day);
            app.clock.set(at);
            // m1 logs in every day (the live streak rule pays 5, 6, … 11).
            let login = act(&app, &m1, "daily_login", &format!("l{day}")).await;
            assert_eq!(minor(&login["points"]), 500 + 100 * day);
            // m1 does three quizzes a day, m2 one every other day: no live rule pays them.
            for n in 0..3 {
                app.clock.set(at + Duration::minutes(1 + n));
                let quiz = act(&app, &m1, "quiz_done", &format!("q{day}-{n}")).await;
                assert_eq!(quiz["reason"], "NO_RULE");
            }
            if day % 2 == 0 {
                app.clock.set(at + Duration::hours(1));
                act(&app, &m2, "quiz_done", &format!("q{day}")).await;
            }
            app.clock.set(at + Duration::hours(2));
            match day {
                1 => assert_eq!(
                    buy(&app, "m1", "o-1", "100.00").await.data()["recordPurchase"]
                        ["pointsAwarded"],
                    "50.00"
                ),
                3 => assert_eq!(
                    buy(&app, "m3", "o-2", "40.00").await.data()["recordPurchase"]["pointsAwarded"],
                    "20.00"
                ),
                5 => {
                    assert_eq!(
                        buy(&app, "m3", "o-3", "60.00").await.data()["recordPurchase"]
                            ["pointsAwarded"],
                        "30.00"
                    );
                    assert_eq!(
                        buy(&app, "m2", "o-4", "12.34").await.data()["recordPurchase"]
                            ["pointsAwarded"],
                        "6.17"
                    );
                }
                _ => {}
            }
        }
        let upto = max_ledger_id(&app).await;
        // At `to` exactly: outside [from, to).
        let to = from + Duration::days(7);
        app.clock.set(to);
        act(&app, &m2, "quiz_done", "late").await;

        let draft = replay(&app, from, to, "DRAFT").await;
        assert_eq!(draft["rulesetVersion"], 0);
        // By hand. Quiz: m1 3 a day, 2 paid × 7 days = 14, m2 4 days × 1 = 4: 18 × 7.50.
        let quiz = by_name(&draft, "Quiz");
        assert_eq!(quiz["eventsMatched"], 18);
        assert_eq!(quiz["membersReached"], 2);
        assert_eq!(quiz["pointsIssued"], "135.00");
        assert_eq!(quiz["actuallyIssued"], "0.00");
        assert_eq!(quiz["inRuleset"], true);
        // Purchase bonus: 2 % × 10 points per unit of 100.00, 40.00, 60.00, 12.34.
        let bonus = by_name(&draft, "Purchase bonus");
        assert_eq!(bonus["eventsMatched"], 4);
        assert_eq!(bonus["membersReached"], 3);
        assert_eq!(minor(&bonus["pointsIssued"]), 2_000 + 800 + 1_200 + 247);
        assert_eq!(bonus["actuallyIssued"], "0.00");
        // The live rules replay to what they paid: 5 % back and the login streak.
        let back = by_name(&draft, "5% back on purchases");
        assert_eq!(back["eventsMatched"], 4);
        assert_eq!(back["membersReached"], 3);
        assert_eq!(minor(&back["pointsIssued"]), 5_000 + 2_000 + 3_000 + 617);
        assert_eq!(back["actuallyIssued"], back["pointsIssued"]);
        let login = by_name(&draft, "Daily login");
        assert_eq!(login["eventsMatched"], 7);
        assert_eq!(login["membersReached"], 1);
        assert_eq!(minor(&login["pointsIssued"]), (5..=11).sum::<i64>() * 100);
        assert_eq!(login["actuallyIssued"], login["pointsIssued"]);
        // Registration and join happened before the period.
        let registration = by_name(&draft, "Account registration");
        assert_eq!(registration["eventsMatched"], 0);
        assert_eq!(registration["actuallyIssued"], "0.00");

        // The "actually issued" column is the ledger's, rule by rule.
        let ledger = ledger_earned(&app, before, upto).await;
        assert_eq!(ledger.len(), 2, "{ledger:?}");
        for (rule_id, earned) in &ledger {
            let rule = draft["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["ruleId"].as_str() == Some(rule_id.to_string().as_str()))
                .unwrap();
            assert_eq!(minor(&rule["actuallyIssued"]), *earned);
        }
        let issued: i64 = ledger.iter().map(|(_, s)| s).sum();
        let totals = &draft["totals"];
        // 7 logins, 21 + 4 quizzes, 4 purchases; 29 paid (14 + 4 quizzes, 7 logins, 4 purchases).
        assert_eq!(totals["events"], 36);
        assert_eq!(totals["eventsMatched"], 29);
        assert_eq!(totals["membersReached"], 3);
        assert_eq!(minor(&totals["actuallyIssued"]), issued);
        assert_eq!(issued, 5_600 + 10_617);
        assert_eq!(
            minor(&totals["pointsIssued"]),
            13_500 + 4_247 + 10_617 + 5_600
        );
        assert_eq!(totals["spins"], 0);

        // Replaying the live rules gives back exactly what they issued.
        let live = replay(&app, from, to, "LIVE").await;
        assert_eq!(live["rulesetVersion"], 1);
        assert_eq!(
            live["totals"]["pointsIssued"],
            live["totals"]["actuallyIssued"]
        );
        assert_eq!(minor(&live["totals"]["pointsIssued"]), issued);
        assert!(live["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "Quiz"));

        // The default target is the draft.
        let r = app
            .gql(
                Some(&admin),
                REPLAY_DEFAULT,
                j!({"f": from.to_rfc3339(), "t": to.to_rfc3339()}),
            )
            .await;
        assert_eq!(r.data()["replayRules"]["rulesetVersion"], 0);
        assert_eq!(r.data()["replayRules"]["totals"]["events"], 36);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    every_earn_event_is_logged_once_paid_or_not,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let member: i64 = id.parse().unwrap();
        // Paid, then the same key again (answered from the record: no second event), then not
        // paid (no rule for the action).
        assert_eq!(
            act(&app, &token, "daily_login", "l1").await["awarded"],
            true
        );
        assert_eq!(
            act(&app, &token, "daily_login", "l1").await["awarded"],
            true
        );
        assert_eq!(
            act(&app, &token, "quiz_done", "q1").await["reason"],
            "NO_RULE"
        );
        buy(&app, "m1", "o-1", "20.00").await.data();
        // The same order again under another key is refused: its event rolls back with it.
        let again = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "20.00", "idempotencyKey": "other"}}),
        )
        .await;
        assert_eq!(again.code(), "ALREADY_CLAIMED");
        let rows = query(
            &app,
            &format!(
                "SELECT action, object_id, amount_minor, order_id, points_minor, tier_id \
             FROM earn_events WHERE member_id = {member} ORDER BY id"
            ),
        )
        .await;
        let seen: Vec<(String, Option<i64>, Option<String>, i64)> = rows
            .iter()
            .map(|row| {
                (
                    row.try_get("", "action").unwrap(),
                    row.try_get("", "amount_minor").unwrap(),
                    row.try_get("", "order_id").unwrap(),
                    row.try_get("", "points_minor").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("join".to_owned(), None, None, 2_000),
                ("registration".to_owned(), None, None, 5_000),
                ("daily_login".to_owned(), None, None, 500),
                ("quiz_done".to_owned(), None, None, 0),
                (
                    "purchase".to_owned(),
                    Some(2_000),
                    Some("o-1".to_owned()),
                    1_000
                ),
            ]
        );
        for row in &rows {
            assert_eq!(row.try_get::<Option<i64>>("", "tier_id").unwrap(), None);
            assert_eq!(
                row.try_get::<Option<String>>("", "object_id").unwrap(),
                None
            );
        }
    }
);

e2e!(replay_refusals, |app: TestApp| async move {
    app.demo().await;
    let now = app.loyalty.now();
    let ask = |token: String, from: DateTime<Utc>, to: DateTime<Utc>| {
        let app = &app;
        async move {
            app.gql(
                Some(&token),
                REPLAY,
                j!({"f": from.to_rfc3339(), "t": to.to_rfc3339(), "g": "DRAFT"}),
            )
            .await
        }
    };
    let admin = app.admin();
    // from ≥ to.
    let r = ask(admin.clone(), now, now).await;
    assert_eq!(r.code(), "VALIDATION");
    assert!(r.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("from must be before to"));
    assert_eq!(
        ask(admin.clone(), now, now - Duration::hours(1))
            .await
            .code(),
        "VALIDATION"
    );
    // More than 93 days; exactly 93 is fine.
    let r = ask(
        admin.clone(),
        now - Duration::days(93) - Duration::seconds(1),
        now,
    )
    .await;
    assert_eq!(r.code(), "VALIDATION");
    assert!(r.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("at most 93 days"));
    let ok = ask(admin.clone(), now - Duration::days(93), now).await;
    assert_eq!(ok.data()["replayRules"]["totals"]["events"], 0);
    // More than 500,000 recorded events in the period: copies of one logged event.
    let (_, id) = app.register("m1").await;
    let seed = query(
        &app,
        &format!("SELECT id FROM earn_events WHERE member_id = {id} ORDER BY id LIMIT 1"),
    )
    .await;
    let seed: i64 = seed[0].try_get("", "id").unwrap();
    let db = app.loyalty.db();
    db.execute_unprepared(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000) \
         INSERT INTO earn_events (program_id, member_id, action, object_id, amount_minor, \
         order_id, chosen_minor, tier_id, points_minor, created_at) \
         SELECT e.program_id, e.member_id, e.action, e.object_id, e.amount_minor, e.order_id, \
         e.chosen_minor, e.tier_id, e.points_minor, e.created_at FROM earn_events e, n \
         WHERE e.id = {seed}"
    ))
    .await
    .unwrap();
    let r = ask(
        admin.clone(),
        now - Duration::hours(1),
        now + Duration::hours(1),
    )
    .await;
    assert_eq!(r.code(), "LIMIT_REACHED");
    assert!(r.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("more than 500000 recorded events"));
    // Down to 4,500 copies: 4,502 events at one instant, read 2,000 a time, ties broken by id.
    db.execute_unprepared(&format!(
        "DELETE FROM earn_events WHERE id > {}",
        seed + 1 + 4_500
    ))
    .await
    .unwrap();
    let r = ask(
        admin.clone(),
        now - Duration::hours(1),
        now + Duration::hours(1),
    )
    .await;
    let totals = &r.data()["replayRules"]["totals"];
    assert_eq!(totals["events"], 4_502);
    // The join and the registration pay once each (both once-per-lifetime rules).
    assert_eq!(totals["eventsMatched"], 2);
    assert_eq!(totals["membersReached"], 1);
    assert_eq!(totals["pointsIssued"], "70.00");
    assert_eq!(totals["actuallyIssued"], "70.00");
    // Admins only.
    assert_eq!(
        ask(app.member("m1"), now - Duration::days(1), now)
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        ask(app.service(), now - Duration::days(1), now)
            .await
            .code(),
        "FORBIDDEN"
    );
});
