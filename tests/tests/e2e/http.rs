//! GraphQL over HTTP hardening and the operational endpoints.

use crate::e2e;
use crate::helpers::*;

e2e!(mutations_over_get_are_refused, |app: TestApp| async move {
    app.demo().await;
    let (token, _) = app.register("m1").await;
    let res = app
        .client
        .get(format!("{}/graphql", app.url))
        .query(&[(
            "query",
            "mutation { recordAction(input: {action: \"daily_login\"}) { awarded } }",
        )])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    assert_eq!(app.balance(&token).await, "70.00");
    // A query over GET runs.
    let res = app
        .client
        .get(format!("{}/graphql", app.url))
        .query(&[("query", "{ me { balance } }")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
});

e2e!(non_json_posts_are_refused, |app: TestApp| async move {
    app.demo().await;
    let (token, _) = app.register("m1").await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let res = app
            .client
            .post(format!("{}/graphql", app.url))
            .header("content-type", content_type)
            .bearer_auth(&token)
            .body(r#"{"query":"mutation { recordAction(input: {action: \"daily_login\"}) { awarded } }"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 415, "{content_type}");
    }
    assert_eq!(app.balance(&token).await, "70.00");
});

e2e!(
    oversized_operations_are_rejected_before_resolvers,
    |app: TestApp| async move {
        app.demo().await;
        let (token, id) = app.register("m1").await;
        let aliases: String = (0..1000)
        .map(|i| format!("a{i}: recordAction(input: {{action: \"news_read\", objectId: \"n{i}\"}}) {{ awarded }} "))
        .collect();
        let r = app
            .gql(Some(&token), &format!("mutation {{ {aliases} }}"), j!({}))
            .await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        assert_eq!(app.ledger_rows(&id).await, 2);
        let deep = format!(
            "{{ __schema {{ types {{ fields {{ type {} }} }} }} }}",
            nest(12)
        );
        let r = app.gql(Some(&token), &deep, j!({})).await;
        assert_eq!(r.code(), "VALIDATION", "{}", r.body);
        assert_eq!(r.body["errors"][0]["message"], "Query is nested too deep.");
        // Batches over the cap run nothing; within the cap they run.
        assert_eq!(news_batch(&app, &token, 11).await, 400);
        assert_eq!(app.ledger_rows(&id).await, 2);
        assert_eq!(news_batch(&app, &token, 2).await, 200);
        assert_eq!(app.ledger_rows(&id).await, 4);
    }
);

e2e!(health_ready_and_metrics_answer, |app: TestApp| async move {
    let get = |path: &'static str| app.client.get(format!("{}{path}", app.url)).send();
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    app.demo().await;
    app.register("m1").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
});

/// `levels` of `fields { type { … } }`: introspection that branches at every other level (a
/// chain of `ofType` does not count towards the depth, see `limits.rs`).
fn nest(levels: usize) -> String {
    (0..levels).fold("{ name }".to_owned(), |inner, level| {
        let field = if level % 2 == 0 { "type" } else { "fields" };
        format!("{{ {field} {inner} }}")
    })
}

/// POSTs an array of `size` news-read mutations; returns the HTTP status.
async fn news_batch(app: &TestApp, token: &str, size: usize) -> u16 {
    let batch: Vec<_> = (0..size)
        .map(|i| j!({"query": format!("mutation {{ recordAction(input: {{action: \"news_read\", objectId: \"b{i}\"}}) {{ awarded }} }}")}))
        .collect();
    let res = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

e2e!(
    database_errors_reach_clients_as_internal_with_a_request_id,
    |app: TestApp| async move {
        app.demo().await;
        app.register("m1").await;
        use sea_orm::ConnectionTrait;
        app.loyalty
            .db()
            .execute_unprepared("DROP TABLE refunds")
            .await
            .unwrap();
        let service = app.service();
        let purchase = j!({"i": {"memberExternalId": "m1", "orderId": "o1", "amount": "10", "idempotencyKey": "p"}});
        app.gql(
            Some(&service),
            "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance } }",
            purchase,
        )
        .await
        .data();
        let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&service)
        .json(&j!({"query": "mutation { refundPurchase(orderId: \"o1\", amount: \"1\") { balance } }"}))
        .send()
        .await
        .unwrap();
        let header_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = response.json().await.unwrap();
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "INTERNAL");
        assert_eq!(error["extensions"]["requestId"], header_id.as_str());
        let text = body.to_string().to_lowercase();
        for leak in ["refunds", "sql", "relation", "table", "select", "insert"] {
            assert!(!text.contains(leak), "`{leak}` leaked: {body}");
        }
    }
);
