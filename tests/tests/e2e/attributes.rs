//! Member attributes: `setMemberAttributes` (service only, bounded, a null value removes a key)
//! and a `memberAttributeEquals` campaign condition reading them.

use serde_json::Value;

use crate::e2e;
use crate::free_spins::{publish_raw_rules, raw_rule};
use crate::helpers::*;

const SET: &str = "mutation($m: String!, $a: [MemberAttributeInput!]!) { setMemberAttributes(memberExternalId: $m, attributes: $a) { key value } }";
const MEMBERS: &str = "query($s: String) { members(search: $s) { edges { node { externalId } } } }";

async fn set(app: &TestApp, token: &str, member: &str, attributes: Value) -> Gql {
    app.gql(Some(token), SET, j!({"m": member, "a": attributes}))
        .await
}

fn message(answer: &Gql) -> String {
    answer.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn member_count(app: &TestApp, search: &str) -> usize {
    let answer = app
        .gql(Some(&app.admin()), MEMBERS, j!({"s": search}))
        .await;
    answer.data()["members"]["edges"].as_array().unwrap().len()
}

e2e!(
    the_service_sets_replaces_and_removes_attributes,
    |app: TestApp| async move {
        app.demo().await;
        app.register("m1").await;
        let service = app.service();
        let first = set(
            &app,
            &service,
            "m1",
            j!([{"key": "segment", "value": "gold"}, {"key": "city", "value": "Hà Nội"}]),
        )
        .await;
        assert_eq!(
            first.data()["setMemberAttributes"],
            j!([{"key": "city", "value": "Hà Nội"}, {"key": "segment", "value": "gold"}])
        );
        let second = set(
            &app,
            &service,
            "m1",
            j!([{"key": "city", "value": null}, {"key": "segment", "value": "silver"}, {"key": "gone", "value": null}]),
        )
        .await;
        assert_eq!(
            second.data()["setMemberAttributes"],
            j!([{"key": "segment", "value": "silver"}])
        );
        // An empty change list answers the attributes as they are.
        let read = set(&app, &service, "m1", j!([])).await;
        assert_eq!(read.data(), second.data());

        // An unknown member joins first, as with recordPurchase.
        assert_eq!(member_count(&app, "crm-42").await, 0);
        let joined = set(
            &app,
            &service,
            "crm-42",
            j!([{"key": "vip", "value": "yes"}]),
        )
        .await;
        assert_eq!(
            joined.data()["setMemberAttributes"],
            j!([{"key": "vip", "value": "yes"}])
        );
        assert_eq!(member_count(&app, "crm-42").await, 1);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    bad_attributes_and_wrong_roles_are_refused_and_change_nothing,
    |app: TestApp| async move {
        app.demo().await;
        let (member_token, _) = app.register("m1").await;
        let service = app.service();
        let ok = j!([{"key": "city", "value": "hanoi"}]);
        for token in [member_token.as_str(), app.admin().as_str()] {
            let refused = set(&app, token, "m1", ok.clone()).await;
            assert_eq!(refused.code(), "FORBIDDEN");
        }

        let twenty: Vec<Value> = (0..20)
            .map(|n| j!({"key": format!("k{n:02}"), "value": "v"}))
            .collect();
        let full = set(&app, &service, "m1", Value::Array(twenty.clone())).await;
        assert_eq!(
            full.data()["setMemberAttributes"].as_array().unwrap().len(),
            20
        );

        let long_value = "v".repeat(257);
        let cases: Vec<(Value, &str)> = vec![
            (
                j!([{"key": "ok", "value": null}, {"key": "City", "value": "x"}]),
                "attributes[1].key: must be 1 to 64 characters of a-z, 0-9 and _",
            ),
            (
                j!([{"key": "", "value": "x"}]),
                "attributes[0].key: must be 1 to 64 characters of a-z, 0-9 and _",
            ),
            (
                j!([{"key": "k".repeat(65), "value": "x"}]),
                "attributes[0].key: must be 1 to 64 characters of a-z, 0-9 and _",
            ),
            (
                j!([{"key": "k00", "value": ""}]),
                "attributes[0].value: must be 1 to 256 characters (null removes the key)",
            ),
            (
                j!([{"key": "k00", "value": long_value}]),
                "attributes[0].value: must be 1 to 256 characters (null removes the key)",
            ),
            (
                j!([{"key": "k00", "value": "a"}, {"key": "k00", "value": null}]),
                "attributes[1].key: \"k00\" is changed twice in this call",
            ),
            (
                j!([{"key": "one_more", "value": "x"}]),
                "attributes: a member has at most 20 attributes (this would make 21)",
            ),
            (
                Value::Array(
                    (0..21)
                        .map(|n| j!({"key": format!("n{n}"), "value": "v"}))
                        .collect(),
                ),
                "attributes: a member has at most 20 attributes (this call sets 21)",
            ),
            (
                Value::Array(
                    (0..41)
                        .map(|n| j!({"key": format!("n{n}"), "value": null}))
                        .collect(),
                ),
                "attributes: at most 40 changes in one call",
            ),
        ];
        for (attributes, expected) in cases {
            let refused = set(&app, &service, "m1", attributes.clone()).await;
            assert_eq!(refused.code(), "VALIDATION", "{attributes}");
            assert_eq!(message(&refused), expected, "{attributes}");
        }
        // Nothing changed: the twenty attributes are as set.
        let now = set(&app, &service, "m1", j!([])).await;
        assert_eq!(now.data(), full.data());
        // A refused call for an unknown member does not create it.
        let refused = set(&app, &service, "crm-7", j!([{"key": "Bad", "value": "x"}])).await;
        assert_eq!(refused.code(), "VALIDATION");
        assert_eq!(member_count(&app, "crm-7").await, 0);
    }
);

e2e!(
    an_attribute_condition_pays_only_members_with_that_attribute,
    |app: TestApp| async move {
        app.demo().await;
        let service = app.service();
        publish_raw_rules(
            &app.loyalty,
            vec![raw_rule(
                9201,
                "store_visit",
                j!({"kind": "FIXED", "value": 1500}),
                Value::Null,
                j!([{"kind": "memberAttributeEquals", "key": "segment", "value": "gold"}]),
            )],
        )
        .await;
        let visit = |member: &'static str, key: &'static str| {
            let (app, service) = (&app, service.clone());
            async move {
                app.gql(
                    Some(&service),
                    "mutation($m: String!, $k: String!) { recordAction(input: {action: \"store_visit\", memberExternalId: $m, idempotencyKey: $k}) { awarded points reason } }",
                    j!({"m": member, "k": key}),
                )
                .await
                .data()["recordAction"]
                    .clone()
            }
        };
        set(
            &app,
            &service,
            "gold-1",
            j!([{"key": "segment", "value": "gold"}]),
        )
        .await
        .data();
        set(
            &app,
            &service,
            "silver-1",
            j!([{"key": "segment", "value": "silver"}]),
        )
        .await
        .data();
        assert_eq!(
            visit("gold-1", "g1").await,
            j!({"awarded": true, "points": "15.00", "reason": null})
        );
        assert_eq!(
            visit("silver-1", "s1").await,
            j!({"awarded": false, "points": "0.00", "reason": "CONDITIONS_NOT_MET"})
        );
        assert_eq!(
            visit("plain-1", "p1").await,
            j!({"awarded": false, "points": "0.00", "reason": "CONDITIONS_NOT_MET"})
        );
        // The next event sees a change at once.
        set(
            &app,
            &service,
            "silver-1",
            j!([{"key": "segment", "value": "gold"}]),
        )
        .await
        .data();
        assert_eq!(
            visit("silver-1", "s2").await,
            j!({"awarded": true, "points": "15.00", "reason": null})
        );
        app.assert_ledger_invariants().await;
    }
);
