//! Challenges and badges through the admin API (issue 14, foundation slice): the draft →
//! publish cycle, refusals that store nothing, and a badge held once however often granted.
//! Progress from events: `challenge_progress.rs`.

use crate::e2e;
use crate::helpers::*;

const FIELDS: &str = "id name description mission window { kind from to } goals { position action conditions measure target } reward { points freeSpins giftId badgeId } enabled";

fn create() -> String {
    format!("mutation($i: ChallengeInput!) {{ createChallenge(input: $i) {{ {FIELDS} }} }}")
}

fn update() -> String {
    format!(
        "mutation($id: ID!, $i: ChallengeInput!) {{ updateChallenge(id: $id, input: $i) {{ {FIELDS} }} }}"
    )
}

const CREATE_BADGE: &str =
    "mutation($i: BadgeInput!) { createBadge(input: $i) { id code name imageUrl } }";
const GRANT: &str = "mutation($m: ID!, $b: ID!) { grantBadge(memberId: $m, badgeId: $b) { newlyGranted badge { id code name imageUrl earnedAt source } } }";

async fn badge(app: &TestApp, code: &str) -> String {
    let res = app
        .gql(
            Some(&app.admin()),
            CREATE_BADGE,
            j!({"i": {"code": code, "name": "News explorer", "imageUrl": "https://cdn.example/news.png"}}),
        )
        .await;
    res.data()["createBadge"]["id"].as_str().unwrap().to_owned()
}

/// "Read 3 sport news and share 1 product this week", as a two-step mission.
fn news_explorer(badge_id: &str) -> serde_json::Value {
    j!({
        "name": "News explorer",
        "description": "Read 3 sport articles, then share a product",
        "mission": true,
        "window": {"kind": "WEEKLY"},
        "goals": [
            {"action": "news_read", "measure": "COUNT", "target": "3",
             "conditions": [{"kind": "objectIdPrefix", "prefix": "news/sport/"}]},
            {"action": "product_share", "measure": "COUNT", "target": "1"}
        ],
        "reward": {"points": "50", "badgeId": badge_id}
    })
}

fn december_spender() -> serde_json::Value {
    j!({
        "name": "December spender",
        "window": {"kind": "FIXED", "from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"},
        "goals": [{"action": "purchase", "measure": "SUM_AMOUNT", "target": "200.00",
                   "conditions": [{"kind": "linesInCategory", "categories": ["coffee"]}]}],
        "reward": {"freeSpins": 3}
    })
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.sql_i64(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .await
}

e2e!(
    challenges_round_trip_through_draft_and_publish,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let badge_id = badge(&app, "news_explorer").await;

        let created = app
            .gql(Some(&admin), &create(), j!({"i": news_explorer(&badge_id)}))
            .await;
        let news = created.data()["createChallenge"].clone();
        assert_eq!(news["mission"], true);
        assert_eq!(
            news["window"],
            j!({"kind": "WEEKLY", "from": null, "to": null})
        );
        assert_eq!(news["goals"][0]["position"], 0);
        assert_eq!(news["goals"][0]["target"], "3");
        assert_eq!(
            news["goals"][0]["conditions"],
            j!([{"kind": "objectIdPrefix", "prefix": "news/sport/"}])
        );
        assert_eq!(news["goals"][1]["action"], "product_share");
        assert_eq!(news["reward"]["points"], "50.00");
        assert_eq!(news["reward"]["badgeId"], badge_id.as_str());
        assert_eq!(news["reward"]["freeSpins"], 0);

        let spender = app
            .gql(Some(&admin), &create(), j!({"i": december_spender()}))
            .await
            .data()["createChallenge"]
            .clone();
        assert_eq!(spender["goals"][0]["measure"], "SUM_AMOUNT");
        assert_eq!(spender["goals"][0]["target"], "200.00");
        assert_eq!(spender["window"]["from"], "2026-12-01T00:00:00+00:00");
        assert_eq!(spender["reward"]["points"], serde_json::Value::Null);
        assert_eq!(spender["reward"]["freeSpins"], 3);

        // An edit keeps the id and replaces the goals.
        let mut edit = news_explorer(&badge_id);
        edit["goals"] = j!([{"action": "news_read", "measure": "DISTINCT_OBJECTS", "target": "5"}]);
        let updated = app
            .gql(Some(&admin), &update(), j!({"id": news["id"], "i": edit}))
            .await
            .data()["updateChallenge"]
            .clone();
        assert_eq!(updated["id"], news["id"]);
        assert_eq!(updated["goals"].as_array().unwrap().len(), 1);
        assert_eq!(updated["goals"][0]["measure"], "DISTINCT_OBJECTS");
        assert_eq!(count(&app, "challenge_goals").await, 2);

        let draft = app
            .gql(
                Some(&admin),
                &format!("{{ challenges {{ {FIELDS} }} }}"),
                j!({}),
            )
            .await;
        assert_eq!(
            draft.data()["challenges"],
            j!([updated.clone(), spender.clone()])
        );

        let live = format!("{{ liveChallenges {{ version challenges {{ {FIELDS} }} }} }}");
        let before = app.gql(Some(&admin), &live, j!({})).await;
        assert_eq!(
            before.data()["liveChallenges"],
            j!({"version": 0, "challenges": []})
        );
        let publish =
            format!("mutation {{ publishChallenges {{ version challenges {{ {FIELDS} }} }} }}");
        let first = app.gql(Some(&admin), &publish, j!({})).await;
        assert_eq!(
            first.data()["publishChallenges"],
            j!({"version": 1, "challenges": [updated.clone(), spender.clone()]})
        );

        // Deleting from the draft leaves the published version as it was.
        let deleted = app
            .gql(
                Some(&admin),
                "mutation($id: ID!) { deleteChallenge(id: $id) { id } }",
                j!({"id": spender["id"]}),
            )
            .await;
        assert_eq!(deleted.data()["deleteChallenge"]["id"], spender["id"]);
        let draft = app.gql(Some(&admin), "{ challenges { id } }", j!({})).await;
        assert_eq!(draft.data()["challenges"], j!([{"id": updated["id"]}]));
        let still = app.gql(Some(&admin), &live, j!({})).await;
        assert_eq!(
            still.data()["liveChallenges"],
            first.data()["publishChallenges"]
        );

        let second = app.gql(Some(&admin), &publish, j!({})).await;
        assert_eq!(
            second.data()["publishChallenges"],
            j!({"version": 2, "challenges": [updated.clone()]})
        );
        let gone = app
            .gql(
                Some(&admin),
                "mutation($id: ID!) { deleteChallenge(id: $id) { id } }",
                j!({"id": spender["id"]}),
            )
            .await;
        assert_eq!(gone.code(), "NOT_FOUND");

        // Admins only.
        let (member, _) = app.register("challenge-member").await;
        for query in ["{ challenges { id } }", "{ badges { id } }"] {
            assert_eq!(
                app.gql(Some(&member), query, j!({})).await.code(),
                "FORBIDDEN"
            );
        }
        let as_member = app
            .gql(Some(&member), &create(), j!({"i": december_spender()}))
            .await;
        assert_eq!(as_member.code(), "FORBIDDEN");
    }
);

e2e!(
    bad_challenges_answer_validation_and_store_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let mut empty = december_spender();
        empty["goals"] = j!([]);
        let mut zero = december_spender();
        zero["goals"][0]["target"] = j!("0");
        let mut backwards = december_spender();
        backwards["window"] =
            j!({"kind": "FIXED", "from": "2026-12-31T00:00:00Z", "to": "2026-12-01T00:00:00Z"});
        let mut unknown = december_spender();
        unknown["goals"][0]["action"] = j!("moon_walk");
        let mut bad_condition = december_spender();
        bad_condition["goals"][0]["conditions"] =
            j!([{"kind": "orderTotalAtLeast", "amount": "0"}]);
        let mut no_tier = december_spender();
        no_tier["goals"][0]["conditions"] = j!([{"kind": "tierIn", "tierIds": [999999]}]);
        let mut no_badge = december_spender();
        no_badge["reward"] = j!({"badgeId": "999999"});
        let cases = [
            (empty, "goals: at least one goal is required"),
            (zero, "goals[0].target must be greater than 0"),
            (backwards, "window.to must be after window.from"),
            (unknown, "goals[0].action: unknown action \"moon_walk\""),
            (bad_condition, "goals[0].conditions[0].amount"),
            (
                no_tier,
                "goals[0].conditions[0].tierIds: no tier 999999 in this program",
            ),
            (no_badge, "reward.badgeId: no badge 999999 in this program"),
        ];
        for (input, message) in &cases {
            let res = app.gql(Some(&admin), &create(), j!({"i": input})).await;
            assert_eq!(res.code(), "VALIDATION", "{input}");
            let text = res.body["errors"][0]["message"].as_str().unwrap();
            assert!(
                text.starts_with(message),
                "{text:?} should start with {message:?}"
            );
        }
        assert_eq!(count(&app, "challenges").await, 0);
        assert_eq!(count(&app, "challenge_goals").await, 0);

        // A refused edit leaves the stored challenge as it was.
        let created = app
            .gql(Some(&admin), &create(), j!({"i": december_spender()}))
            .await
            .data()["createChallenge"]
            .clone();
        for (input, _) in cases {
            let res = app
                .gql(
                    Some(&admin),
                    &update(),
                    j!({"id": created["id"], "i": input}),
                )
                .await;
            assert_eq!(res.code(), "VALIDATION");
        }
        let draft = app
            .gql(
                Some(&admin),
                &format!("{{ challenges {{ {FIELDS} }} }}"),
                j!({}),
            )
            .await;
        assert_eq!(draft.data()["challenges"], j!([created]));
        assert_eq!(count(&app, "challenge_goals").await, 1);
        // Nothing published, nothing to publish by accident.
        assert_eq!(count(&app, "challenge_sets").await, 0);
    }
);

e2e!(
    a_badge_granted_twice_is_held_once,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        let badge_id = badge(&app, "early_bird").await;
        let (member, member_id) = app.register("badge-holder").await;

        let first = app
            .gql(Some(&admin), GRANT, j!({"m": member_id, "b": badge_id}))
            .await;
        let first = first.data()["grantBadge"].clone();
        assert_eq!(first["newlyGranted"], true);
        assert_eq!(first["badge"]["code"], "early_bird");
        assert_eq!(first["badge"]["source"], "ADMIN");
        let second = app
            .gql(Some(&admin), GRANT, j!({"m": member_id, "b": badge_id}))
            .await;
        let second = second.data()["grantBadge"].clone();
        assert_eq!(second["newlyGranted"], false);
        // The first grant stands.
        assert_eq!(second["badge"], first["badge"]);

        let me = app
            .gql(
                Some(&member),
                "{ me { badges { code name imageUrl earnedAt } } }",
                j!({}),
            )
            .await;
        assert_eq!(
            me.data()["me"]["badges"],
            j!([{
                "code": "early_bird",
                "name": "News explorer",
                "imageUrl": "https://cdn.example/news.png",
                "earnedAt": first["badge"]["earnedAt"],
            }])
        );
        assert_eq!(count(&app, "member_badges").await, 1);

        // Grants racing each other: the database keeps one, and exactly one grant says it gave it.
        let raced = badge(&app, "racer").await;
        let grants: Vec<_> = (0..8)
            .map(|_| app.spawn_gql(&admin, GRANT, j!({"m": member_id, "b": raced})))
            .collect();
        let mut newly = 0;
        for grant in grants {
            let grant = grant.await.unwrap();
            if grant.data()["grantBadge"]["newlyGranted"] == true {
                newly += 1;
            }
        }
        assert_eq!(newly, 1);
        assert_eq!(count(&app, "member_badges").await, 2);

        // Codes are unique per program and checked.
        let taken = app
        .gql(
            Some(&admin),
            CREATE_BADGE,
            j!({"i": {"code": "early_bird", "name": "Again", "imageUrl": "https://cdn.example/a.png"}}),
        )
        .await;
        assert_eq!(taken.code(), "CONFLICT");
        let bad = app
        .gql(
            Some(&admin),
            CREATE_BADGE,
            j!({"i": {"code": "Early Bird", "name": "Bad", "imageUrl": "https://cdn.example/a.png"}}),
        )
        .await;
        assert_eq!(bad.code(), "VALIDATION");
        assert_eq!(count(&app, "badges").await, 2);

        // Unknown member or badge.
        let nobody = app
            .gql(Some(&admin), GRANT, j!({"m": "999999", "b": badge_id}))
            .await;
        assert_eq!(nobody.code(), "NOT_FOUND");
        let no_badge = app
            .gql(Some(&admin), GRANT, j!({"m": member_id, "b": "999999"}))
            .await;
        assert_eq!(no_badge.code(), "NOT_FOUND");
        let badges = app.gql(Some(&admin), "{ badges { code } }", j!({})).await;
        assert_eq!(
            badges.data()["badges"],
            j!([{"code": "early_bird"}, {"code": "racer"}])
        );
    }
);
