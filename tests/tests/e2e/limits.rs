//! Cost limits that count what a request costs: paginated fields cost `first` × their
//! children, root mutation fields are capped per request and each is charged to the caller's
//! rate limit, over HTTP and over WebSocket alike; the standard introspection query fits the
//! depth limit; balances stop at the documented maximum.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::e2e;
use crate::helpers::*;
use crate::live::Ws;

/// graphql-js 16's `getIntrospectionQuery()` with its default options, verbatim (GraphiQL's
/// docs explorer and client code generators send it).
const STANDARD_INTROSPECTION: &str = include_str!("fixtures/introspection-graphql-js-16.graphql");

/// The largest balance (README: 100,000,000,000.00 points).
const MAX_MINOR: i128 = 10_000_000_000_000;

fn adjustments(count: usize, amount: &str, key: &str) -> String {
    (0..count)
        .map(|i| {
            format!(
                "a{i}: adjustPoints(memberId: $m, amount: \"{amount}\", reason: \"r\", \
                 idempotencyKey: \"{key}-{i}\") {{ balance }} "
            )
        })
        .collect()
}

fn minor_of(points: &str) -> i128 {
    let (units, cents) = points.split_once('.').unwrap();
    units.parse::<i128>().unwrap() * 100 + cents.parse::<i128>().unwrap()
}

fn points_of(minor: i128) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::test]
async fn paginated_fields_cost_first_times_their_children() {
    let app = spawn_app(Backend::Sqlite).await;
    app.demo().await;
    app.register("m1").await;
    let admin = app.admin();
    let nested = "members(first: 100) { edges { node { transactions(first: 100) { edges { node { id amount } } } } } }";
    let aliased: String = (0..27).map(|i| format!("m{i}: {nested} ")).collect();
    for query in [format!("{{ {aliased} }}"), format!("{{ {nested} }}")] {
        let r = app.gql(Some(&admin), &query, j!({})).await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        assert_eq!(r.body["errors"][0]["message"], "Query is too complex.");
        assert_eq!(r.body["data"], Value::Null, "nothing ran: {}", r.body);
    }
    // `first` given by a variable is priced the same way.
    let r = app
        .gql(
            Some(&admin),
            "query($n: Int) { members(first: $n) { edges { node { transactions(first: $n) { edges { node { id } } } } } } }",
            j!({"n": 100}),
        )
        .await;
    assert_eq!(r.code(), "VALIDATION", "{}", r.body);
    // A full page of members with their profile passes, and so does a short history per member.
    let page = "{ members(first: 100) { pageInfo { hasNextPage endCursor } edges { cursor node { id externalId displayName balance qualificationBalance lifetimeEarned lifetimeSpent loginStreak referralCode version } } } }";
    let r = app.gql(Some(&admin), page, j!({})).await;
    assert_eq!(r.data()["members"]["edges"].as_array().unwrap().len(), 1);
    let history = "{ members(first: 20) { edges { node { id transactions(first: 5) { edges { node { id amount kind source createdAt } } } } } } }";
    app.gql(Some(&admin), history, j!({})).await.data();
}

/// A report reads up to 366 days of buckets: aliases cannot multiply it past two per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aliased_reports_are_priced_as_reports() {
    let app = spawn_app(Backend::Sqlite).await;
    app.demo().await;
    let admin = app.admin();
    let report = r#"loyaltyReport(from: "2026-01-01", to: "2026-12-31", granularity: DAY, compareFrom: "2025-01-01", compareTo: "2025-12-31") {
        asOf pointsIssued { total count bySource { source label points count share } }
        pointsUsed { total count byPurpose { purpose label points count share } }
        pointsExpired outstandingBalance redemptionRate members { total new active }
        revenue averageOrderValue series { bucketStart issued used expired newMembers }
        comparison { pointsIssued { total } pointsUsed { total } members { total new active } } }"#;
    let two: String = (0..2).map(|i| format!("r{i}: {report} ")).collect();
    let r = app.gql(Some(&admin), &format!("{{ {two} }}"), j!({})).await;
    assert_eq!(
        r.data()["r1"]["pointsIssued"],
        r.data()["r0"]["pointsIssued"]
    );
    let three: String = (0..3).map(|i| format!("r{i}: {report} ")).collect();
    let r = app
        .gql(Some(&admin), &format!("{{ {three} }}"), j!({}))
        .await;
    assert_eq!(r.code(), "VALIDATION", "{}", r.body);
    assert_eq!(r.body["errors"][0]["message"], "Query is too complex.");
    assert_eq!(r.body["data"], Value::Null, "nothing ran: {}", r.body);
}

e2e!(
    root_mutation_fields_are_capped_per_request,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        let rows = app.ledger_rows(&id).await;
        let eleven = format!("mutation($m: ID!) {{ {} }}", adjustments(11, "1", "eleven"));
        let r = app.gql(Some(&admin), &eleven, j!({"m": id})).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.code(), "VALIDATION");
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("at most 10 mutation fields"), "{message}");
        // Fragments and inline fragments on Mutation count too.
        let hidden = format!(
            "mutation($m: ID!) {{ ...F ... on Mutation {{ {} }} }} fragment F on Mutation {{ {} }}",
            adjustments(5, "1", "inline"),
            adjustments(6, "1", "fragment")
        );
        let r = app.gql(Some(&admin), &hidden, j!({"m": id})).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "VALIDATION"),
            "{}",
            r.body
        );
        // In a batch, one request over the cap refuses the batch before anything runs.
        let batch = j!([
            {"query": format!("mutation($m: ID!) {{ {} }}", adjustments(1, "1", "ok")), "variables": {"m": id}},
            {"query": eleven, "variables": {"m": id}},
        ]);
        let res = app
            .client
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&admin)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400);
        assert_eq!(app.ledger_rows(&id).await, rows, "nothing was posted");
        assert_eq!(app.balance(&token).await, "70.00");
        // Ten is allowed.
        let ten = format!("mutation($m: ID!) {{ {} }}", adjustments(10, "1", "ten"));
        app.gql(Some(&admin), &ten, j!({"m": id})).await.data();
        assert_eq!(app.ledger_rows(&id).await, rows + 10);
        assert_eq!(app.balance(&token).await, "80.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    every_root_mutation_field_is_charged_to_the_rate_limit,
    |app: TestApp| async move {
        app.demo().await;
        let (_, id) = app.register("m1").await;
        let admin = app.admin();
        let rows = app.ledger_rows(&id).await;
        // Two requests of ten fields each, sent together so the bucket (burst 10, refilling in
        // 2 s) cannot refill between them however slow the machine: one spends the whole burst,
        // the other is refused, though they are only two requests.
        let first = format!("mutation($m: ID!) {{ {} }}", adjustments(10, "1", "first"));
        let second = format!("mutation($m: ID!) {{ {} }}", adjustments(10, "1", "second"));
        let (a, b) = tokio::join!(
            app.gql(Some(&admin), &first, j!({"m": id})),
            app.gql(Some(&admin), &second, j!({"m": id})),
        );
        let (ran, refused) = if a.status == 200 { (a, b) } else { (b, a) };
        assert_eq!(ran.status, 200, "{}", ran.body);
        assert_eq!(ran.body["errors"], Value::Null, "{}", ran.body);
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert_eq!(refused.code(), "RATE_LIMITED");
        assert_eq!(app.ledger_rows(&id).await, rows + 10);
        app.assert_ledger_invariants().await;
    },
    |config: &mut loyalty_server::config::Config| config.rate_limit_subject_per_sec = 5
);

e2e!(
    websocket_operations_pay_the_same_rate_limit,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let rows = app.ledger_rows(&id).await;
        let mut ws = Ws::ready(&app, &token).await;
        let burst = 10;
        for i in 0..burst {
            let query = format!(
                "mutation {{ recordAction(input: {{action: \"product_view\", objectId: \"p{i}\", idempotencyKey: \"ws-{i}\"}}) {{ awarded }} }}"
            );
            ws.subscribe(&format!("v{i}"), &query).await;
        }
        // Every operation ends with `complete` (it ran) or `error` (refused before running).
        let mut outcome: HashMap<String, String> = HashMap::new();
        let mut awarded = 0;
        while outcome.len() < burst {
            let message = ws.recv().await;
            let id = message["id"].as_str().unwrap().to_owned();
            match message["type"].as_str().unwrap() {
                "next" => {
                    assert_eq!(message["payload"]["errors"], Value::Null, "{message}");
                    awarded +=
                        usize::from(message["payload"]["data"]["recordAction"]["awarded"] == true);
                }
                "complete" => {
                    outcome.insert(id, "ran".into());
                }
                "error" => {
                    assert_eq!(message["payload"][0]["extensions"]["code"], "RATE_LIMITED");
                    outcome.insert(id, "refused".into());
                }
                other => panic!("unexpected {other}: {message}"),
            }
        }
        let ran = outcome.values().filter(|o| *o == "ran").count();
        // Burst 4 (2 a second), one spent on `register`; a slow machine may refill one or two.
        assert!((1..=5).contains(&ran), "{ran} ran: {outcome:?}");
        assert_eq!(awarded, ran);
        assert_eq!(
            app.ledger_rows(&id).await,
            rows + ran as i64,
            "nothing refused was posted"
        );
        // The socket stays open: it answers a ping at once and operations once the bucket refills.
        ws.send(j!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");
        let mut answered = false;
        for attempt in 0..40 {
            let id = format!("me{attempt}");
            ws.subscribe(&id, "{ me { balance } }").await;
            let message = ws.recv().await;
            if message["type"] == "next" {
                assert_eq!(message["id"], id.as_str());
                answered = true;
                break;
            }
            assert_eq!(message["payload"][0]["extensions"]["code"], "RATE_LIMITED");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(answered, "the socket never answered again");
        // A subscribe is priced by its root mutation fields, as over HTTP: five fields cost more
        // than the burst (4) and never pass; eleven pass the cap of ten and are VALIDATION.
        let rows = app.ledger_rows(&id).await;
        // Let the bucket refill whole (4 at 2 a second): a refusal below is the price, not an
        // empty bucket (the `me` query after it still runs).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for (fields, code) in [(5, "RATE_LIMITED"), (11, "VALIDATION")] {
            let aliases: String = (0..fields)
                .map(|i| format!("a{i}: recordAction(input: {{action: \"product_view\", objectId: \"q{fields}-{i}\", idempotencyKey: \"q{fields}-{i}\"}}) {{ awarded }} "))
                .collect();
            let op = format!("many{fields}");
            ws.subscribe(&op, &format!("mutation {{ {aliases} }}"))
                .await;
            let mut message = ws.recv().await;
            while message["type"] == "complete" {
                // The end of the `me` query above.
                message = ws.recv().await;
            }
            assert_eq!(message["type"], "error", "{message}");
            assert_eq!(message["id"], op.as_str());
            assert_eq!(
                message["payload"][0]["extensions"]["code"], code,
                "{message}"
            );
        }
        assert_eq!(
            app.ledger_rows(&id).await,
            rows,
            "a refused subscribe posted"
        );
        ws.subscribe("after", "{ me { balance } }").await;
        assert_eq!(ws.recv().await["type"], "next", "the bucket was not empty");
        app.assert_ledger_invariants().await;
    },
    |config: &mut loyalty_server::config::Config| config.rate_limit_subject_per_sec = 2
);

#[tokio::test]
async fn the_standard_introspection_query_is_answered() {
    let app = spawn_app(Backend::Sqlite).await;
    let r = app.gql(None, STANDARD_INTROSPECTION, j!({})).await;
    let types = r.data()["__schema"]["types"].as_array().unwrap();
    let names: HashSet<&str> = types.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(
        names.contains("Member") && names.contains("Query"),
        "{names:?}"
    );
    // Depth still counts everything that branches.
    let deep = "{ __schema { types { fields { type { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } } } }";
    let r = app.gql(None, deep, j!({})).await;
    assert_eq!(r.code(), "VALIDATION", "{}", r.body);
    assert_eq!(r.body["errors"][0]["message"], "Query is nested too deep.");
}

e2e!(
    balances_stop_at_the_documented_maximum,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let admin = app.admin();
        let adjust = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"bound\", idempotencyKey: $k) { balance } }";
        let start = minor_of(&app.balance(&token).await);
        // Up to the maximum exactly.
        let fill = points_of(MAX_MINOR - start - 100);
        app.gql(Some(&admin), adjust, j!({"m": id, "a": fill, "k": "fill"}))
            .await
            .data();
        let r = app
            .gql(Some(&admin), adjust, j!({"m": id, "a": "1", "k": "top"}))
            .await;
        assert_eq!(r.data()["adjustPoints"]["balance"], "100000000000.00");
        let rows = app.ledger_rows(&id).await;
        // One hundredth more, an earn, or an amount past the bound: VALIDATION, nothing posted.
        let r = app
            .gql(
                Some(&admin),
                adjust,
                j!({"m": id, "a": "0.01", "k": "over"}),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("100000000000.00"), "{message}");
        let r = app.daily_login(&token, "login").await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        let r = app
            .gql(
                Some(&admin),
                adjust,
                j!({"m": id, "a": "100000000000.01", "k": "huge"}),
            )
            .await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        assert_eq!(app.ledger_rows(&id).await, rows);
        assert_eq!(app.balance(&token).await, "100000000000.00");
        // Spending from the top still works.
        let r = app
            .gql(Some(&admin), adjust, j!({"m": id, "a": "-5", "k": "down"}))
            .await;
        assert_eq!(r.data()["adjustPoints"]["balance"], "99999999995.00");
        app.assert_ledger_invariants().await;
    }
);
