//! Draft → publish ("apply changes") → live, and test mode.

use crate::e2e;
use crate::helpers::*;

const CREATE: &str = "mutation($i: RuleInput!) { createRule(input: $i) { id action source } }";
const TEST: &str = "mutation($i: TestRulesInput!) { testRules(input: $i) { rulesetVersion wouldAward points reason postings { source points } } }";

e2e!(
    draft_changes_apply_only_when_published,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        let rule = j!({"i": {"name": "Quiz", "action": "quiz_done", "rewardKind": "FIXED", "points": "7.5", "limit": {"count": 2, "period": "DAY"}}});
        let created = app.gql(Some(&admin), CREATE, rule).await;
        assert_eq!(created.data()["createRule"]["source"], "quiz_done");
        let act = "mutation($k: String) { recordAction(input: {action: \"quiz_done\", idempotencyKey: $k}) { awarded points reason } }";
        // Not live yet.
        assert_eq!(
            app.gql(Some(&token), act, j!({"k": "q0"})).await.data()["recordAction"]["reason"],
            "NO_RULE"
        );
        // Test mode against the draft pays, and writes nothing.
        let rows = app.ledger_rows(&id).await;
        let dry = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": id, "action": "quiz_done", "target": "DRAFT"}}),
            )
            .await;
        assert_eq!(dry.data()["testRules"]["wouldAward"], true);
        assert_eq!(dry.data()["testRules"]["points"], "7.50");
        let live = app
            .gql(
                Some(&admin),
                TEST,
                j!({"i": {"memberId": id, "action": "quiz_done", "target": "LIVE"}}),
            )
            .await;
        assert_eq!(live.data()["testRules"]["reason"], "NO_RULE");
        assert_eq!(app.ledger_rows(&id).await, rows);
        // Apply changes.
        let published = app
            .gql(
                Some(&admin),
                "mutation { publishRules { version } }",
                j!({}),
            )
            .await;
        assert_eq!(published.data()["publishRules"]["version"], 2);
        let paid = app.gql(Some(&token), act, j!({"k": "q1"})).await;
        assert_eq!(paid.data()["recordAction"]["points"], "7.50");
        app.gql(Some(&token), act, j!({"k": "q2"})).await.data();
        let third = app.gql(Some(&token), act, j!({"k": "q3"})).await;
        assert_eq!(third.data()["recordAction"]["reason"], "LIMIT_REACHED");
        // Without a key, an unlimited repeatable action is refused; limited ones derive keys.
        assert_eq!(app.balance(&token).await, "85.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    disabling_a_rule_makes_it_inactive,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let admin = app.admin();
        let rules = app
            .gql(Some(&admin), "{ rules { id action } }", j!({}))
            .await;
        let login = rules.data()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "daily_login")
            .unwrap()["id"]
            .clone();
        let update =
            "mutation($id: ID!, $i: RuleInput!) { updateRule(id: $id, input: $i) { enabled } }";
        let input = j!({"name": "Daily login", "action": "daily_login", "rewardKind": "FIXED", "points": "5", "limit": {"count": 1, "period": "DAY"}, "enabled": false});
        app.gql(Some(&admin), update, j!({"id": login, "i": input}))
            .await
            .data();
        app.gql(
            Some(&admin),
            "mutation { publishRules { version } }",
            j!({}),
        )
        .await
        .data();
        let r = app.daily_login(&token, "x").await;
        assert_eq!(r.data()["recordAction"]["reason"], "RULE_INACTIVE");
        assert_eq!(app.balance(&token).await, "70.00");
    }
);

e2e!(invalid_rules_are_refused, |app: TestApp| async move {
    app.demo().await;
    let admin = app.admin();
    for input in [
        j!({"name": "", "action": "a", "rewardKind": "FIXED", "points": "1"}),
        j!({"name": "x", "action": "Bad Key", "rewardKind": "FIXED", "points": "1"}),
        j!({"name": "x", "action": "a", "rewardKind": "FIXED", "points": "-1"}),
        j!({"name": "x", "action": "a", "rewardKind": "FIXED", "percent": "5"}),
        j!({"name": "x", "action": "a", "rewardKind": "PERCENT", "percent": "5000"}),
        j!({"name": "x", "action": "a", "rewardKind": "FIXED", "points": "1", "limit": {"count": 0, "period": "DAY"}}),
        j!({"name": "x", "action": "a", "rewardKind": "FIXED", "points": "1.001"}),
    ] {
        let r = app.gql(Some(&admin), CREATE, j!({"i": input})).await;
        assert_eq!(r.code(), "VALIDATION", "{input}");
    }
    let r = app
        .gql(
            Some(&admin),
            "mutation { deleteRule(id: \"999999\") { id } }",
            j!({}),
        )
        .await;
    assert_eq!(r.code(), "NOT_FOUND");
});

e2e!(
    a_publish_on_one_instance_is_live_on_another,
    |app: TestApp| async move {
        app.demo().await;
        let other = spawn_app_at(app.backend, Some(&app), None).await;
        let (token, _) = other.register("m1").await;
        let act = "mutation { recordAction(input: {action: \"quiz_done\", idempotencyKey: \"q\"}) { awarded points reason } }";
        let admin = app.admin();
        let rule = j!({"i": {"name": "Quiz", "action": "quiz_done", "rewardKind": "FIXED", "points": "3"}});
        app.gql(Some(&admin), CREATE, rule).await.data();
        app.gql(
            Some(&admin),
            "mutation { publishRules { version } }",
            j!({}),
        )
        .await
        .data();
        // Published on instance A, recorded on instance B right away.
        let paid = other.gql(Some(&token), act, j!({})).await;
        assert_eq!(paid.data()["recordAction"]["points"], "3.00");
        let live = other
            .gql(Some(&other.admin()), "{ liveRules { version } }", j!({}))
            .await;
        assert_eq!(live.data()["liveRules"]["version"], 2);
        other.assert_ledger_invariants().await;
    }
);
