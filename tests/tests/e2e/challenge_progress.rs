//! Challenge progress moved by the events that cause it (issue 14): weekly windows in the
//! program's timezone, a retried key counted once, concurrent events completing once and
//! paying once, refunds taking a purchase's contribution back, mission steps in order, and a
//! badge held once whoever grants it.

use crate::e2e;
use crate::helpers::*;

const TZ: &str = "Asia/Ho_Chi_Minh";
const CREATE: &str = "mutation($i: ChallengeInput!) { createChallenge(input: $i) { id } }";
const PUBLISH: &str = "mutation { publishChallenges { version } }";
const ACTION: &str = "mutation($a: String!, $o: String, $k: String) { recordAction(input: {action: $a, objectId: $o, idempotencyKey: $k}) { awarded balance } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";
const REFUND: &str = "mutation($o: String!, $a: Decimal!, $k: String) { refundPurchase(orderId: $o, amount: $a, idempotencyKey: $k) { totalRefunded } }";
const GRANT: &str =
    "mutation($m: ID!, $b: ID!) { grantBadge(memberId: $m, badgeId: $b) { newlyGranted badge { source } } }";

/// Creates the challenge, publishes the draft, returns the challenge's id.
async fn publish(app: &TestApp, input: serde_json::Value) -> i64 {
    let admin = app.admin();
    let created = app.gql(Some(&admin), CREATE, j!({"i": input})).await;
    let id = created.data()["createChallenge"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let published = app.gql(Some(&admin), PUBLISH, j!({})).await;
    assert!(
        published.data()["publishChallenges"]["version"]
            .as_i64()
            .unwrap()
            > 0
    );
    id
}

async fn badge(app: &TestApp, code: &str) -> String {
    let res = app
        .gql(
            Some(&app.admin()),
            "mutation($i: BadgeInput!) { createBadge(input: $i) { id } }",
            j!({"i": {"code": code, "name": code, "imageUrl": "https://cdn.example/b.png"}}),
        )
        .await;
    res.data()["createBadge"]["id"].as_str().unwrap().to_owned()
}

/// A goal's stored value in one window (0 when no row: nothing counted yet).
async fn value(app: &TestApp, member: &str, challenge: i64, window: &str, goal: i32) -> i64 {
    app.sql_i64(&format!(
        "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) AS n FROM challenge_progress WHERE member_id = {member} \
         AND challenge_id = {challenge} AND window_key = '{window}' AND goal = {goal}"
    ))
    .await
}

async fn completions(app: &TestApp, member: &str, challenge: i64) -> i64 {
    app.sql_i64(&format!(
        "SELECT COUNT(*) AS n FROM challenge_completions WHERE member_id = {member} \
         AND challenge_id = {challenge}"
    ))
    .await
}

/// The ledger rows a challenge's reward posted for a member (its source).
async fn reward_rows(app: &TestApp, member: &str, source: &str) -> (i64, i64) {
    let n = app
        .sql_i64(&format!(
            "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {member} AND source = '{source}'"
        ))
        .await;
    let sum = app
        .sql_i64(&format!(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS n FROM ledger_entries \
             WHERE member_id = {member} AND source = '{source}' AND account = 'POINTS'"
        ))
        .await;
    (n, sum)
}

/// A service refund of part of an order, with its idempotency key.
async fn refund(app: &TestApp, order: &str, amount: &str, key: &str) {
    app.gql(
        Some(&app.service()),
        REFUND,
        j!({"o": order, "a": amount, "k": key}),
    )
    .await
    .data();
}

async fn read(app: &TestApp, token: &str, object: &str, key: &str) {
    let res = app
        .gql(
            Some(token),
            ACTION,
            j!({"a": "news_read", "o": object, "k": key}),
        )
        .await;
    res.data();
}

fn weekly_reads(target: &str) -> serde_json::Value {
    j!({
        "name": "Weekly reader",
        "window": {"kind": "WEEKLY"},
        "goals": [{"action": "news_read", "measure": "COUNT", "target": target}],
        "reward": {"points": "50"}
    })
}

e2e!(
    a_weekly_window_ends_sunday_23_59_local_and_restarts_monday_00_00,
    |app: TestApp| async move {
        app.demo().await;
        let challenge = publish(&app, weekly_reads("2")).await;
        let (token, member) = app.register("reader").await;

        // Sunday 2026-12-06 23:59 local counts for the week of Monday 2026-11-30.
        app.clock.set(local(TZ, "2026-12-06 23:59:00"));
        read(&app, &token, "news/1", "k1").await;
        assert_eq!(
            value(&app, &member, challenge, "week:2026-11-30", 0).await,
            1
        );

        // Monday 00:00 local starts a new week from zero: one read there does not complete.
        app.clock.set(local(TZ, "2026-12-07 00:00:00"));
        read(&app, &token, "news/2", "k2").await;
        assert_eq!(
            value(&app, &member, challenge, "week:2026-11-30", 0).await,
            1
        );
        assert_eq!(
            value(&app, &member, challenge, "week:2026-12-07", 0).await,
            1
        );
        assert_eq!(completions(&app, &member, challenge).await, 0);

        read(&app, &token, "news/3", "k3").await;
        assert_eq!(
            value(&app, &member, challenge, "week:2026-12-07", 0).await,
            2
        );
        assert_eq!(completions(&app, &member, challenge).await, 1);
        let (rows, points) = reward_rows(&app, &member, "challenge_weekly_reader").await;
        assert_eq!((rows, points), (1, 5_000));

        // The next week can be completed (and paid) again.
        app.clock.set(local(TZ, "2026-12-14 09:00:00"));
        read(&app, &token, "news/4", "k4").await;
        read(&app, &token, "news/5", "k5").await;
        assert_eq!(completions(&app, &member, challenge).await, 2);
        assert_eq!(
            reward_rows(&app, &member, "challenge_weekly_reader").await,
            (2, 10_000)
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(a_retried_event_counts_once, |app: TestApp| async move {
    app.demo().await;
    let challenge = publish(&app, weekly_reads("3")).await;
    let spend = publish(
        &app,
        j!({
            "name": "Spender",
            "window": {"kind": "MONTHLY"},
            "goals": [{"action": "purchase", "measure": "SUM_AMOUNT", "target": "500.00"}],
            "reward": {"freeSpins": 2}
        }),
    )
    .await;
    let (token, member) = app.register("m1").await;
    app.clock.set(local(TZ, "2026-12-02 10:00:00"));
    for _ in 0..3 {
        read(&app, &token, "news/1", "same-key").await;
    }
    assert_eq!(
        value(&app, &member, challenge, "week:2026-11-30", 0).await,
        1
    );

    let service = app.service();
    let order = j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "120.00", "idempotencyKey": "buy-1"}});
    for _ in 0..3 {
        app.gql(Some(&service), PURCHASE, order.clone())
            .await
            .data();
    }
    assert_eq!(
        value(&app, &member, spend, "month:2026-12", 0).await,
        12_000
    );
    // The same order under another key is refused and counts nothing either.
    let again = j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "120.00", "idempotencyKey": "buy-2"}});
    let refused = app.gql(Some(&service), PURCHASE, again).await;
    assert_eq!(refused.code(), "ALREADY_CLAIMED");
    assert_eq!(
        value(&app, &member, spend, "month:2026-12", 0).await,
        12_000
    );
    app.assert_ledger_invariants().await;
});

e2e!(
    twenty_concurrent_events_crossing_the_goal_complete_and_pay_once,
    |app: TestApp| async move {
        app.demo().await;
        let spins_badge = badge(&app, "bookworm").await;
        let challenge = publish(
            &app,
            j!({
                "name": "Bookworm",
                "window": {"kind": "WEEKLY"},
                "goals": [{"action": "news_read", "measure": "COUNT", "target": "10"}],
                "reward": {"points": "40", "freeSpins": 1, "badgeId": spins_badge}
            }),
        )
        .await;
        let (token, member) = app.register("racer").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));
        let before = app.balance(&token).await;
        let reads: Vec<_> = (0..20)
            .map(|n| {
                app.spawn_gql(
                    &token,
                    ACTION,
                    j!({"a": "news_read", "o": format!("news/{n}"), "k": format!("k{n}")}),
                )
            })
            .collect();
        for read in reads {
            read.await.unwrap().data();
        }
        assert_eq!(
            value(&app, &member, challenge, "week:2026-11-30", 0).await,
            20
        );
        assert_eq!(completions(&app, &member, challenge).await, 1);
        let points = app
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {member} \
                 AND source = 'challenge_bookworm' AND account = 'POINTS'"
            ))
            .await;
        let spins = app
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {member} \
                 AND source = 'challenge_bookworm' AND account = 'SPINS'"
            ))
            .await;
        assert_eq!((points, spins), (1, 1));
        let held = app
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM member_badges WHERE member_id = {member}"
            ))
            .await;
        assert_eq!(held, 1);
        // The balance moved by the rules' earns (5 first reads a day at 3) and the reward once.
        let before: rust_decimal::Decimal = before.parse().unwrap();
        let after: rust_decimal::Decimal = app.balance(&token).await.parse().unwrap();
        assert_eq!(after - before, rust_decimal::Decimal::new(15 + 40, 0));
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_refunded_purchase_lowers_spend_progress,
    |app: TestApp| async move {
        app.demo().await;
        let spend = publish(
            &app,
            j!({
                "name": "December spender",
                "window": {"kind": "FIXED", "from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
                "goals": [
                    {"action": "purchase", "measure": "SUM_AMOUNT", "target": "200.00"},
                    {"action": "purchase", "measure": "COUNT", "target": "3"}
                ],
                "reward": {"points": "100"}
            }),
        )
        .await;
        let (_, member) = app.register("m1").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));
        let service = app.service();
        for (order, amount) in [("o-1", "120.00"), ("o-2", "30.00")] {
            app.gql(
                Some(&service),
                PURCHASE,
                j!({"i": {"memberExternalId": "m1", "orderId": order, "amount": amount, "idempotencyKey": order}}),
            )
            .await
            .data();
        }
        assert_eq!(value(&app, &member, spend, "fixed", 0).await, 15_000);
        assert_eq!(value(&app, &member, spend, "fixed", 1).await, 2);

        // Half of o-1 back: its 120.00 counts 60.00; the order still counts as a purchase.
        refund(&app, "o-1", "60.00", "r1").await;
        assert_eq!(value(&app, &member, spend, "fixed", 0).await, 9_000);
        assert_eq!(value(&app, &member, spend, "fixed", 1).await, 2);
        // A retried refund takes nothing more.
        refund(&app, "o-1", "60.00", "r1").await;
        assert_eq!(value(&app, &member, spend, "fixed", 0).await, 9_000);
        // The rest: nothing of o-1 counts any more.
        refund(&app, "o-1", "60.00", "r2").await;
        assert_eq!(value(&app, &member, spend, "fixed", 0).await, 3_000);
        assert_eq!(value(&app, &member, spend, "fixed", 1).await, 1);
        assert_eq!(completions(&app, &member, spend).await, 0);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_mission_step_waits_for_the_one_before,
    |app: TestApp| async move {
        app.demo().await;
        let explorer = badge(&app, "explorer").await;
        let mission = publish(
            &app,
            j!({
                "name": "Explorer",
                "mission": true,
                "window": {"kind": "WEEKLY"},
                "goals": [
                    {"action": "news_read", "measure": "DISTINCT_OBJECTS", "target": "2"},
                    {"action": "product_share", "measure": "COUNT", "target": "1"}
                ],
                "reward": {"badgeId": explorer}
            }),
        )
        .await;
        let (token, member) = app.register("m1").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));
        let share = |key: &'static str| {
            app.gql(
                Some(&token),
                ACTION,
                j!({"a": "product_share", "o": key, "k": key}),
            )
        };
        share("p1").await.data();
        assert_eq!(value(&app, &member, mission, "week:2026-11-30", 1).await, 0);
        read(&app, &token, "news/1", "r1").await;
        read(&app, &token, "news/1", "r2").await;
        assert_eq!(value(&app, &member, mission, "week:2026-11-30", 0).await, 1);
        share("p2").await.data();
        assert_eq!(value(&app, &member, mission, "week:2026-11-30", 1).await, 0);
        read(&app, &token, "news/2", "r3").await;
        assert_eq!(value(&app, &member, mission, "week:2026-11-30", 0).await, 2);
        assert_eq!(completions(&app, &member, mission).await, 0);
        share("p3").await.data();
        assert_eq!(value(&app, &member, mission, "week:2026-11-30", 1).await, 1);
        assert_eq!(completions(&app, &member, mission).await, 1);

        // The admin grants the badge the mission gave: still held once, the first grant stands.
        let admin = app.admin();
        let grant = app
            .gql(Some(&admin), GRANT, j!({"m": member, "b": explorer}))
            .await;
        assert_eq!(grant.data()["grantBadge"]["newlyGranted"], false);
        assert_eq!(grant.data()["grantBadge"]["badge"]["source"], "CHALLENGE");
        let held = app
            .sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM member_badges WHERE member_id = {member}"
            ))
            .await;
        assert_eq!(held, 1);
        app.assert_ledger_invariants().await;
    }
);

const ME: &str = "{ me { challenges { id name mission windowKind windowStartsAt windowEndsAt completed goals { position action measure progress target left completed unlocked } reward { points } } badges { code } lockedBadges { code } } }";
const PROGRESS: &str =
    "subscription { challengeProgress { challengeId windowKey goals completed } }";

e2e!(
    members_see_progress_and_locked_badges_and_hear_it_live,
    |app: TestApp| async move {
        app.demo().await;
        let star = badge(&app, "star").await;
        badge(&app, "later").await;
        let mission = publish(
            &app,
            j!({
                "name": "Two steps",
                "mission": true,
                "window": {"kind": "WEEKLY"},
                "goals": [
                    {"action": "news_read", "measure": "COUNT", "target": "2"},
                    {"action": "purchase", "measure": "SUM_AMOUNT", "target": "50.00"}
                ],
                "reward": {"points": "10", "badgeId": star}
            }),
        )
        .await;
        let (token, _) = app.register("m1").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));

        let me = app.gql(Some(&token), ME, j!({})).await;
        let me = &me.data()["me"];
        assert_eq!(me["badges"], j!([]));
        assert_eq!(
            me["lockedBadges"],
            j!([{"code": "star"}, {"code": "later"}])
        );
        assert_eq!(
            me["challenges"],
            j!([{
                "id": mission.to_string(), "name": "Two steps", "mission": true,
                "windowKind": "WEEKLY",
                "windowStartsAt": "2026-11-29T17:00:00+00:00",
                "windowEndsAt": "2026-12-06T17:00:00+00:00",
                "completed": false,
                "goals": [
                    {"position": 0, "action": "news_read", "measure": "COUNT", "progress": "0",
                     "target": "2", "left": "2", "completed": false, "unlocked": true},
                    {"position": 1, "action": "purchase", "measure": "SUM_AMOUNT",
                     "progress": "0.00", "target": "50.00", "left": "50.00", "completed": false,
                     "unlocked": false}
                ],
                "reward": {"points": "10.00"}
            }])
        );

        let mut ws = crate::live::Ws::ready(&app, &token).await;
        ws.subscribe("p", PROGRESS).await;
        ws.send(j!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");

        read(&app, &token, "news/1", "r1").await;
        let event = ws.next("p").await;
        assert_eq!(
            event["challengeProgress"],
            j!({"challengeId": mission.to_string(), "windowKey": "week:2026-11-30", "goals": [0], "completed": false})
        );
        read(&app, &token, "news/2", "r2").await;
        assert_eq!(ws.next("p").await["challengeProgress"]["goals"], j!([0]));
        let service = app.service();
        app.gql(
            Some(&service),
            PURCHASE,
            j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "80.00", "idempotencyKey": "o-1"}}),
        )
        .await
        .data();
        let done = ws.next("p").await;
        assert_eq!(done["challengeProgress"]["goals"], j!([1]));
        assert_eq!(done["challengeProgress"]["completed"], true);

        let me = app.gql(Some(&token), ME, j!({})).await;
        let me = &me.data()["me"];
        let challenge = &me["challenges"][0];
        assert_eq!(challenge["completed"], true);
        assert_eq!(challenge["goals"][0]["left"], "0");
        assert_eq!(challenge["goals"][1]["progress"], "80.00");
        assert_eq!(challenge["goals"][1]["left"], "0.00");
        assert_eq!(challenge["goals"][1]["completed"], true);
        assert_eq!(me["badges"], j!([{"code": "star"}]));
        assert_eq!(me["lockedBadges"], j!([{"code": "later"}]));

        // A retried purchase (same key) is answered from the first result: no second event.
        app.gql(
            Some(&service),
            PURCHASE,
            j!({"i": {"memberExternalId": "m1", "orderId": "o-1", "amount": "80.00", "idempotencyKey": "o-1"}}),
        )
        .await
        .data();
        assert_eq!(
            ws.next_within("p", std::time::Duration::from_millis(300))
                .await,
            None
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_campaign_conditioned_on_a_badge_pays_only_its_holders,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let vip = badge(&app, "vip").await;
        let rule = |condition: serde_json::Value| {
            j!({"i": {
                "name": "VIP purchase bonus", "action": "purchase", "source": "vip_bonus",
                "effect": {"kind": "FIXED", "points": "25"},
                "conditions": [condition]
            }})
        };
        let create = "mutation($i: RuleInput!) { createRule(input: $i) { id } }";
        // A badge the program does not have is refused, naming the field.
        let unknown = app
            .gql(
                Some(&admin),
                create,
                rule(j!({"kind": "hasBadge", "code": "nobody"})),
            )
            .await;
        assert_eq!(unknown.code(), "VALIDATION");
        assert!(unknown.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("conditions[0].code: no badge `nobody`"));
        app.gql(
            Some(&admin),
            create,
            rule(j!({"kind": "hasBadge", "code": "vip"})),
        )
        .await
        .data();
        // A campaign that grants a badge: sharing a product makes a "sharer".
        let sharer = badge(&app, "sharer").await;
        app.gql(
            Some(&admin),
            create,
            j!({"i": {"name": "Sharers", "action": "product_share", "source": "sharer_badge",
                      "effect": {"kind": "GRANT_BADGE", "badgeId": sharer}}}),
        )
        .await
        .data();
        app.gql(
            Some(&admin),
            "mutation { publishRules { version } }",
            j!({}),
        )
        .await
        .data();

        let (holder_token, holder) = app.register("holder").await;
        for key in ["s1", "s2"] {
            app.gql(
                Some(&holder_token),
                ACTION,
                j!({"a": "product_share", "o": key, "k": key}),
            )
            .await
            .data();
        }
        let sharers = app
            .gql(Some(&admin), GRANT, j!({"m": holder, "b": sharer}))
            .await;
        assert_eq!(sharers.data()["grantBadge"]["newlyGranted"], false);
        assert_eq!(sharers.data()["grantBadge"]["badge"]["source"], "CAMPAIGN");
        assert_eq!(
            app.sql_i64(&format!(
                "SELECT COUNT(*) AS n FROM member_badges WHERE member_id = {holder}"
            ))
            .await,
            1
        );
        app.register("other").await;
        app.gql(Some(&admin), GRANT, j!({"m": holder, "b": vip}))
            .await
            .data();
        let service = app.service();
        let buy = |member: &str, order: &str| j!({"i": {"memberExternalId": member, "orderId": order, "amount": "10.00", "idempotencyKey": order}});
        let pays = "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { rules { source points } } }";
        let held = app.gql(Some(&service), pays, buy("holder", "o-1")).await;
        let sources: Vec<_> = held.data()["recordPurchase"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["source"].as_str().unwrap().to_owned())
            .collect();
        assert!(sources.contains(&"vip_bonus".to_owned()), "{sources:?}");
        let not_held = app.gql(Some(&service), pays, buy("other", "o-2")).await;
        assert!(not_held.data()["recordPurchase"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] != "vip_bonus"));
        let vip_rows = app
            .sql_i64("SELECT COUNT(*) AS n FROM ledger_entries WHERE source = 'vip_bonus'")
            .await;
        assert_eq!(vip_rows, 1);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    the_challenge_report_shows_the_funnel_and_issued_points,
    |app: TestApp| async move {
        app.demo().await;
        let funnel = publish(
            &app,
            j!({
                "name": "Funnel",
                "mission": true,
                "window": {"kind": "WEEKLY"},
                "goals": [
                    {"action": "news_read", "measure": "COUNT", "target": "2"},
                    {"action": "product_share", "measure": "COUNT", "target": "1"}
                ],
                "reward": {"points": "10"}
            }),
        )
        .await;
        let (a, _) = app.register("a").await;
        let (b, _) = app.register("b").await;
        app.register("c").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));
        read(&app, &a, "news/1", "a1").await;
        read(&app, &a, "news/2", "a2").await;
        app.gql(
            Some(&a),
            ACTION,
            j!({"a": "product_share", "o": "p1", "k": "a3"}),
        )
        .await
        .data();
        read(&app, &b, "news/1", "b1").await;

        let admin = app.admin();
        let report = app
            .gql(
                Some(&admin),
                "query($id: ID!) { challengeReport(id: $id) { challengeId name membersStarted membersCompleted completions pointsIssued steps { position action membersStarted membersCompleted } } }",
                j!({"id": funnel.to_string()}),
            )
            .await;
        assert_eq!(
            report.data()["challengeReport"],
            j!({
                "challengeId": funnel.to_string(), "name": "Funnel",
                "membersStarted": 2, "membersCompleted": 1, "completions": 1,
                "pointsIssued": "10.00",
                "steps": [
                    {"position": 0, "action": "news_read", "membersStarted": 2, "membersCompleted": 1},
                    {"position": 1, "action": "product_share", "membersStarted": 1, "membersCompleted": 1}
                ]
            })
        );
        let missing = app
            .gql(
                Some(&admin),
                "query { challengeReport(id: \"999999\") { name } }",
                j!({}),
            )
            .await;
        assert_eq!(missing.code(), "NOT_FOUND");

        // The reward shows in issued-by-source under the challenge's label.
        let issued = app
            .gql(
                Some(&admin),
                "{ loyaltyReport(from: \"2026-11-01\", to: \"2026-12-31\") { pointsIssued { bySource { source label points } } } }",
                j!({}),
            )
            .await;
        let sources = issued.data()["loyaltyReport"]["pointsIssued"]["bySource"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            sources.contains(
                &j!({"source": "challenge_funnel", "label": "Challenge funnel", "points": "10.00"})
            ),
            "{sources:?}"
        );
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    the_demo_program_has_its_challenges_and_badges,
    |app: TestApp| async move {
        let program = app.demo().await;
        app.loyalty.seed_demo_challenges(&program).await.unwrap();
        // Seeding again adds nothing.
        app.loyalty.seed_demo_challenges(&program).await.unwrap();
        let admin = app.admin();
        let live = app
            .gql(
                Some(&admin),
                "{ liveChallenges { version challenges { name mission window { kind } goals { action measure target } } } badges { code } }",
                j!({}),
            )
            .await;
        let data = live.data();
        assert_eq!(data["liveChallenges"]["version"], 1);
        let names: Vec<_> = data["liveChallenges"]["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["News explorer", "7-day streak", "Shopper mission"]);
        assert_eq!(
            data["liveChallenges"]["challenges"][2]["goals"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            data["badges"],
            j!([{"code": "news_explorer"}, {"code": "seven_day_streak"}, {"code": "mission_shopper"}])
        );

        // Three different articles in a week: the news explorer badge and its 30 points.
        let (token, _) = app.register("demo-reader").await;
        app.clock.set(local(TZ, "2026-12-02 10:00:00"));
        for n in 0..3 {
            read(&app, &token, &format!("news/{n}"), &format!("k{n}")).await;
        }
        let me = app
            .gql(
                Some(&token),
                "{ me { badges { code } challenges { name completed } } }",
                j!({}),
            )
            .await;
        assert_eq!(me.data()["me"]["badges"], j!([{"code": "news_explorer"}]));
        assert_eq!(me.data()["me"]["challenges"][0]["completed"], true);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    a_streak_counts_consecutive_local_days,
    |app: TestApp| async move {
        app.demo().await;
        let streak = publish(
            &app,
            j!({
                "name": "Three days",
                "window": {"kind": "MONTHLY"},
                "goals": [{"action": "daily_login", "measure": "STREAK_DAYS", "target": "3"}],
                "reward": {"points": "20"}
            }),
        )
        .await;
        let (token, member) = app.register("m1").await;
        // Local days Dec 1 (23:59), Dec 2 (00:00 and again at noon), then a gap, then 3 in a row.
        for (at, key) in [
            ("2026-12-01 23:59:00", "d1"),
            ("2026-12-02 00:00:00", "d2"),
            ("2026-12-02 12:00:00", "d2b"),
        ] {
            app.clock.set(local(TZ, at));
            app.daily_login(&token, key).await.data();
        }
        assert_eq!(value(&app, &member, streak, "month:2026-12", 0).await, 2);
        for (at, key) in [("2026-12-04 09:00:00", "d4"), ("2026-12-05 09:00:00", "d5")] {
            app.clock.set(local(TZ, at));
            app.daily_login(&token, key).await.data();
        }
        // The gap on Dec 3 restarted the run.
        assert_eq!(value(&app, &member, streak, "month:2026-12", 0).await, 2);
        assert_eq!(completions(&app, &member, streak).await, 0);
        app.clock.set(local(TZ, "2026-12-06 09:00:00"));
        app.daily_login(&token, "d6").await.data();
        assert_eq!(value(&app, &member, streak, "month:2026-12", 0).await, 3);
        assert_eq!(completions(&app, &member, streak).await, 1);
        assert_eq!(
            reward_rows(&app, &member, "challenge_three_days").await,
            (1, 2_000)
        );
        app.assert_ledger_invariants().await;
    }
);

// One transaction can carry several events: a new member's `register` is the join, the
// registration (and a referral's friend reward) in one posting. A challenge with a goal on
// each completes in that posting, and pays once: the second event reads the progress the
// first one wrote in the same transaction.
e2e!(
    a_challenge_completed_by_two_events_of_one_posting_pays_once,
    |app: TestApp| async move {
        app.demo().await;
        let id = publish(
            &app,
            j!({
                "name": "Welcome aboard",
                "window": {"kind": "WEEKLY"},
                "goals": [
                    {"action": "join", "measure": "COUNT", "target": "1"},
                    {"action": "registration", "measure": "COUNT", "target": "1"}
                ],
                "reward": {"points": "40"}
            }),
        )
        .await;
        let (_, member) = app.register("newcomer").await;
        assert_eq!(completions(&app, &member, id).await, 1);
        assert_eq!(
            reward_rows(&app, &member, "challenge_welcome_aboard").await,
            (1, 4000)
        );
        app.assert_ledger_invariants().await;
    }
);
