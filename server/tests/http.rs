//! The HTTP surface of the real server on port 0 with the embedded SQLite default: transport
//! hardening, auth at the door, request ids, health, metrics, rate limits and shutdown. The
//! business API is tested end to end in the workspace `tests/` crate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loyalty_domain::clock::SystemClock;
use loyalty_domain::Role;
use loyalty_server::config::{Config, JwtKey, Secret};
use reqwest::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct TestServer {
    url: String,
    config: Config,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    data_dir: PathBuf,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir =
            std::env::temp_dir().join(format!("loyalty-server-http-{}", uuid::Uuid::new_v4()));
        let mut config = Config::for_tests(None, None, "test:".into(), data_dir.clone());
        adjust(&mut config);
        let app = loyalty_server::build(config.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(loyalty_server::run(app, listener, shutdown.clone()));
        TestServer {
            url,
            config,
            client: reqwest::Client::new(),
            shutdown,
            handle,
            data_dir,
        }
    }

    fn token(&self, role: Role, sub: &str) -> String {
        loyalty_server::mint(&self.config, "demo", role, sub, Duration::from_secs(600)).unwrap()
    }

    fn post(&self) -> reqwest::RequestBuilder {
        self.client.post(format!("{}/graphql", self.url))
    }

    fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path_and_query}", self.url))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
        result.expect("the server stops promptly").unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn error_code(response: reqwest::Response) -> (String, String) {
    let body: Value = response.json().await.unwrap();
    let error = &body["errors"][0];
    (
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

const TYPENAME: &str = r#"{"query":"{ __typename }"}"#;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;

    let response = server.get("/healthz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");

    let response = server.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "database": "ok", "redis": "memory" }));

    let response = server.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("http_requests_total{path=\"/healthz\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );

    server.stop().await;
}

#[tokio::test]
async fn post_accepts_json_only() {
    let server = TestServer::start().await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/graphql",
    ] {
        let response = server
            .post()
            .header(CONTENT_TYPE, content_type)
            .body(TYPENAME)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_eq!(error_code(response).await.0, "VALIDATION");
    }
    let response = server.post().body(TYPENAME).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type"
    );

    let response = server
        .post()
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(TYPENAME)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "__typename": "Query" } }));
    server.stop().await;
}

#[tokio::test]
async fn invalid_tokens_are_refused_before_execution() {
    let server = TestServer::start().await;
    let other = {
        let mut config = server.config.clone();
        config.jwt.key = JwtKey::Hs256 {
            secret: Secret::new("x".repeat(40)),
        };
        loyalty_server::mint(&config, "demo", Role::Admin, "eve", Duration::from_secs(60)).unwrap()
    };
    let expired = loyalty_server::sign(
        &server.config,
        &json!({
            "sub": "alice", "program": "demo", "role": "member",
            "iss": "loyalty", "aud": "loyalty-api", "exp": 1_000_000_000u64,
        }),
    )
    .unwrap();
    let cases = [
        (format!("Bearer {other}"), "bad signature"),
        (format!("Bearer {expired}"), "token expired"),
        ("Bearer not-a-token".to_owned(), "malformed token"),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned(), "Bearer"),
    ];
    for (header, expected) in cases {
        let response = server
            .post()
            .header(CONTENT_TYPE, "application/json")
            .header("authorization", header)
            .body(TYPENAME)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let (code, message) = error_code(response).await;
        assert_eq!(code, "UNAUTHENTICATED");
        assert!(message.contains(expected), "{message}");
    }

    let response = server
        .post()
        .header(CONTENT_TYPE, "application/json")
        .bearer_auth(server.token(Role::Member, "alice"))
        .body(TYPENAME)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn get_runs_queries_only() {
    let server = TestServer::start().await;

    let response = server
        .get("/graphql?query=mutation%20%7B%20__typename%20%7D")
        .send()
        .await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[ALLOW], "POST");

    // The operation that would run decides, not the first one in the document.
    let both = "query%20Q%20%7B%20__typename%20%7D%20mutation%20M%20%7B%20__typename%20%7D";
    let response = server
        .get(&format!("/graphql?query={both}&operationName=M"))
        .send()
        .await;
    assert_eq!(response.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = server
        .get(&format!("/graphql?query={both}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "ambiguous"
    );
    let response = server
        .get(&format!("/graphql?query={both}&operationName=Q"))
        .send()
        .await;
    let body: Value = response.unwrap().json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");

    let response = server.get("/graphql?query=%7B").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = server
        .get("/graphql?query=%7B%20__typename%20%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = server.get("/graphql").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("graphiql"));
    server.stop().await;

    let server = TestServer::start_with(|config| config.graphql.graphiql = false).await;
    let response = server.get("/graphql").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[ALLOW], "POST");
    server.stop().await;
}

#[tokio::test]
async fn batches_are_capped_and_bodies_limited() {
    let server = TestServer::start_with(|config| config.graphql.max_batch = 3).await;
    let batch = |n: usize| format!("[{}]", vec![TYPENAME; n].join(","));

    let response = server
        .post()
        .header(CONTENT_TYPE, "application/json")
        .body(batch(3))
        .send()
        .await;
    let body: Value = response.unwrap().json().await.unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(3));

    let response = server
        .post()
        .header(CONTENT_TYPE, "application/json")
        .body(batch(4))
        .send()
        .await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await.0, "VALIDATION");

    for body in ["[]", "{", "\"query\""] {
        let response = server
            .post()
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        assert_eq!(
            response.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }

    let huge = json!({ "query": format!("{{ __typename }} #{}", "x".repeat(70_000)) });
    let response = server.post().json(&huge).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(response).await.0, "VALIDATION");
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_kept_or_generated() {
    let server = TestServer::start().await;
    let response = server
        .get("/healthz")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");

    let response = server.get("/healthz").send().await.unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // Ids that could pollute logs are replaced.
    let long = "a".repeat(500);
    let response = server
        .get("/healthz")
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"].to_str().unwrap(), long);
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429() {
    let server = TestServer::start_with(|config| config.rate_limit_ip_per_sec = 2).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = server
            .post()
            .header(CONTENT_TYPE, "application/json")
            .body(TYPENAME)
            .send()
            .await;
        statuses.push(response.unwrap());
    }
    let limited = statuses
        .into_iter()
        .find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS);
    let limited = limited.expect("the per-IP limit refuses a burst above 2x the rate");
    assert!(limited.headers().contains_key(RETRY_AFTER));
    assert_eq!(error_code(limited).await.0, "RATE_LIMITED");
    // Health checks are not limited.
    let response = server.get("/healthz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;

    let server = TestServer::start_with(|config| config.rate_limit_subject_per_sec = 1).await;
    let alice = server.token(Role::Member, "alice");
    let bob = server.token(Role::Member, "bob");
    let send = |token: &str| {
        server
            .post()
            .header(CONTENT_TYPE, "application/json")
            .bearer_auth(token)
            .body(TYPENAME)
    };
    assert_eq!(send(&alice).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(send(&alice).send().await.unwrap().status(), StatusCode::OK);
    let response = send(&alice).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(response).await.0, "RATE_LIMITED");
    assert_eq!(
        send(&bob).send().await.unwrap().status(),
        StatusCode::OK,
        "per subject"
    );
    server.stop().await;
}

#[tokio::test]
async fn build_fails_on_a_key_pair_that_does_not_match() {
    let data_dir =
        std::env::temp_dir().join(format!("loyalty-server-http-{}", uuid::Uuid::new_v4()));
    let mut config = Config::for_tests(None, None, "test:".into(), data_dir.clone());
    config.jwt.key = JwtKey::Rs256 {
        public_key_pem: include_str!("fixtures/rs256-public.pem").into(),
        private_key_pem: Some(Secret::new(include_str!(
            "fixtures/rs256-other-private.pem"
        ))),
    };
    let err = loyalty_server::build(config, Arc::new(SystemClock))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("self-check"), "{err:#}");
    assert!(
        !data_dir.exists(),
        "nothing is touched before the self-check"
    );
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let server = TestServer::start().await;
    let url = server.url.clone();
    server.stop().await;
    let result = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .send()
        .await;
    assert!(result.is_err(), "the port is closed after shutdown");
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let server = TestServer::start_with(|config| {
        config.cors =
            loyalty_server::config::CorsOrigins::List(vec!["https://shop.example".into()]);
    })
    .await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(allowed
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    server.stop().await;

    let closed = TestServer::start().await;
    let response = closed
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", closed.url))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    closed.stop().await;
}

/// Bounds every wait on the server, so a broken limit fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection (EOF or reset); `Err` if it stays open.
async fn server_closes_within(
    stream: &mut tokio::net::TcpStream,
    patience: Duration,
) -> Result<Vec<u8>, &'static str> {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| "the server kept the connection open")?;
    Ok(seen)
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let server = TestServer::start_with(|config| config.http.header_read_timeout_secs = 1).await;
    // Cut off well before the 10 s default would: the setting, not the default, is what acts.
    let patience = Duration::from_secs(6);
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answered = server_closes_within(&mut slow, patience).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&answered).contains("200 OK"),
        "an incomplete request is never served"
    );
    // A complete request on a fresh connection is still served; kept alive and then idle, the
    // connection is closed after the same timeout, so idle sockets do not pile up.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = server_closes_within(&mut idle, patience).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_over_max_connections_wait_for_a_free_slot() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start_with(|config| config.http.max_connections = 1).await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // One keep-alive connection that has been served and stays open holds the only slot.
    let mut first = tokio::net::TcpStream::connect(&address).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let second = tokio::spawn({
        let url = format!("{}/healthz", server.url);
        async move { reqwest::Client::new().get(url).send().await }
    });
    // Not a timing assertion on the server's speed: the request must not be served at all
    // while the slot is taken, and half a second is ample for a /healthz on loopback.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "served while the only slot was taken"
    );
    drop(first);
    let response = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("served once the slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn readyz_is_rate_limited_per_address() {
    let server = TestServer::start_with(|config| config.rate_limit_ip_per_sec = 2).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(server.get("/readyz").send().await.unwrap().status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        server.get("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let token = "metrics-token-0123456789";
    let server = TestServer::start_with(|config| {
        config.metrics.token = Some(Secret::new(token));
    })
    .await;
    let response = server.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await.0, "UNAUTHENTICATED");
    let response = server
        .get("/metrics")
        .bearer_auth("metrics-token-0123456788")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .get("/metrics")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("http_requests_total"));
    server.stop().await;
}

/// `DATABASE_URL` set (the production shape; a SQLite file here, so no PostgreSQL is needed)
/// and nothing else opened: no introspection, no GraphiQL, no `/metrics` on the main listener,
/// which `METRICS_ADDR` serves instead.
#[tokio::test]
async fn production_defaults_publish_no_schema_and_no_open_metrics() {
    let data_dir =
        std::env::temp_dir().join(format!("loyalty-server-prod-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", data_dir.join("prod.db").display());
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "JWT_SECRET" => Some("a-production-secret-0123456789abcdef".into()),
        "EXPIRY_INTERVAL_SECS" => Some("0".into()),
        "REPORT_FOLD_INTERVAL_SECS" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let app = loyalty_server::build(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(loyalty_server::run_with_metrics(
        app,
        listener,
        Some(metrics),
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();

    let body: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "{ __schema { types { name } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["data"]["__schema"].is_null(),
        "introspection answered: {body}"
    );
    // Null because introspection is off (async-graphql answers it with no error), not because
    // the request failed for some other reason.
    assert!(body["errors"].is_null(), "{body}");

    let graphiql = client.get(format!("{base}/graphql")).send().await.unwrap();
    assert_eq!(graphiql.status(), StatusCode::METHOD_NOT_ALLOWED);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND);

    let metrics = client
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("http_requests_total"));
    let other = client
        .get(format!("{metrics_base}/graphql"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "/metrics only");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}
