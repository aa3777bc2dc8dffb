//! Outbound webhooks (issue 16): a local receiver (axum on a free port) gets every event once,
//! signed the Standard Webhooks way (checked with the same crate), a member's events in order;
//! a failing receiver gets every event once it recovers, duplicates with the same id; nothing
//! rolled back is sent; private addresses are refused by default; a rotated secret signs with
//! both secrets during the overlap.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use standardwebhooks::Webhook;
use tokio_util::sync::CancellationToken;

use crate::e2e;
use crate::helpers::*;

const CREATE: &str = "mutation($i: WebhookEndpointInput!) { createWebhookEndpoint(input: $i) { secret endpoint { id url eventTypes enabled } } }";
const EVENTS: &str = "query($e: ID!, $after: String) { webhookEvents(endpointId: $e, first: 20, after: $after) { pageInfo { hasNextPage } edges { cursor node { id type memberId memberVersion status attempts payload } } } }";
const ATTEMPTS: &str = "query($e: ID!, $id: String!) { webhookAttempts(endpointId: $e, eventId: $id) { success statusCode latencyMs responseBody error } }";
const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { pointsAwarded } }";
const DISCOUNT: &str = "mutation($p: Decimal!, $k: String!) { redeemDiscount(points: $p, idempotencyKey: $k) { balance } }";
const ADJUST: &str = "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"goodwill\", idempotencyKey: $k) { balance } }";
const TIER: &str = "mutation($i: TierInput!) { upsertTier(input: $i) { id } }";

const OK: u8 = 0;
const FAIL: u8 = 1;
const SLOW: u8 = 2;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    headers: HeaderMap,
    body: String,
    answered: u16,
}

/// A local webhook receiver: answers 200, 500 (with a body) or too late, as told; 500 to every
/// event of the member `refuse` names (by external id).
#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Delivery>>>,
    mode: Arc<AtomicU8>,
    refuse: Arc<Mutex<Option<String>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let refused = r.refuse.lock().unwrap().as_ref().is_some_and(|who| {
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        body["data"]["member"]["externalId"] == who.as_str()
    });
    let mode = if refused {
        FAIL
    } else {
        r.mode.load(Ordering::SeqCst)
    };
    let status = match mode {
        OK => StatusCode::OK,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Logged on arrival: a request answered too late is dropped with its connection.
    r.log.lock().unwrap().push(Delivery {
        id,
        headers,
        body,
        answered: if mode == SLOW { 0 } else { status.as_u16() },
    });
    if mode == SLOW {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let answer = if status == StatusCode::OK {
        "thanks"
    } else {
        "boom: receiver down"
    };
    (status, answer.to_owned())
}

impl Receiver {
    /// Serves on `listener` until the token is cancelled; the task ends once the port is free.
    fn serve(
        &self,
        listener: tokio::net::TcpListener,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let router = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(self.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .unwrap();
        });
        (stop, task)
    }

    async fn start(&self) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, task) = self.serve(listener);
        (addr, stop, task)
    }

    /// The answers given to one event, in order.
    fn answers_to(&self, id: &str) -> Vec<u16> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.id == id)
            .map(|d| d.answered)
            .collect()
    }

    fn answered(&self, status: u16) -> Vec<Delivery> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.answered == status)
            .cloned()
            .collect()
    }
}

fn allow_private(config: &mut loyalty_server::Config) {
    config.webhooks.allow_private_urls = true;
    config.webhooks.timeout_secs = 1;
}

/// A second server on `app`'s deployment (same database), allowed to call local receivers.
async fn another_instance(app: &TestApp) -> TestApp {
    spawn_with(
        app.backend,
        Some(app),
        Options {
            configure: Some(Box::new(allow_private)),
            ..Options::default()
        },
    )
    .await
}

/// Creates an endpoint for every event type; returns (endpoint id, secret).
async fn endpoint(app: &TestApp, url: &str) -> (String, String) {
    let admin = app.admin();
    let types = app
        .gql(Some(&admin), "{ webhookEventTypes }", j!({}))
        .await
        .data()["webhookEventTypes"]
        .clone();
    let created = app
        .gql(
            Some(&admin),
            CREATE,
            j!({"i": {"url": url, "eventTypes": types}}),
        )
        .await;
    let data = &created.data()["createWebhookEndpoint"];
    assert_eq!(data["endpoint"]["enabled"], true);
    let secret = data["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (data["endpoint"]["id"].as_str().unwrap().to_owned(), secret)
}

/// The endpoint's events, oldest first (every page).
async fn events(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = Value::Null;
    loop {
        let res = app
            .gql(
                Some(&app.admin()),
                EVENTS,
                j!({"e": endpoint, "after": after}),
            )
            .await;
        let page = &res.data()["webhookEvents"];
        let edges = page["edges"].as_array().unwrap();
        events.extend(edges.iter().map(|e| e["node"].clone()));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = edges.last().unwrap()["cursor"].clone();
    }
    events.reverse();
    events
}

/// Waits (advancing the server's clock by `step` each round, so retries come due) until every
/// event of the endpoint is delivered; returns them, oldest first.
async fn all_delivered(app: &TestApp, endpoint: &str, step: chrono::Duration) -> Vec<Value> {
    for _ in 0..300 {
        let events = events(app, endpoint).await;
        if !events.is_empty() && events.iter().all(|e| e["status"] == "DELIVERED") {
            return events;
        }
        app.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not delivered: {:#?}", events(app, endpoint).await);
}

/// The attempts of one event at one endpoint, oldest first.
async fn attempts_of(app: &TestApp, endpoint: &str, event: &str) -> Vec<Value> {
    let res = app
        .gql(
            Some(&app.admin()),
            ATTEMPTS,
            j!({"e": endpoint, "id": event}),
        )
        .await;
    res.data()["webhookAttempts"].as_array().unwrap().clone()
}

fn verifies(secret: &str, delivery: &Delivery) -> bool {
    Webhook::new(secret)
        .unwrap()
        .verify(delivery.body.as_bytes(), &delivery.headers)
        .is_ok()
}

/// Some activity on two members: registrations, logins, a purchase that moves a tier, a
/// voucher, an adjustment; plus work that rolls back (ten copies of one idempotency key at
/// once, a discount beyond the balance), which must send nothing.
async fn activity(app: &TestApp) -> String {
    let admin = app.admin();
    app.gql(
        Some(&admin),
        TIER,
        j!({"i": {"name": "Silver", "minQualification": "0", "multiplier": "1"}}),
    )
    .await
    .data();
    let gold = app
        .gql(
            Some(&admin),
            TIER,
            j!({"i": {"name": "Gold", "minQualification": "100", "multiplier": "1"}}),
        )
        .await;
    let gold = gold.data()["upsertTier"]["id"].as_str().unwrap().to_owned();
    let (m1, id1) = app.register("hook-m1").await;
    let (m2, _) = app.register("hook-m2").await;
    let logins: Vec<_> = (0..10)
        .map(|_| {
            app.spawn_gql(
                &m1,
                "mutation { recordAction(input: {action: \"daily_login\", idempotencyKey: \"same\"}) { awarded } }",
                j!({}),
            )
        })
        .collect();
    for login in logins {
        login.await.unwrap();
    }
    app.daily_login(&m2, "d2").await.data();
    let service = app.service();
    let order = j!({"i": {"memberExternalId": "hook-m1", "orderId": "o1", "amount": "200.00", "idempotencyKey": "p1"}});
    app.gql(Some(&service), PURCHASE, order).await.data();
    app.gql(Some(&m1), DISCOUNT, j!({"p": "10", "k": "v1"}))
        .await
        .data();
    let refused = app
        .gql(Some(&m2), DISCOUNT, j!({"p": "100000", "k": "v2"}))
        .await;
    assert_eq!(refused.code(), "INSUFFICIENT_POINTS");
    app.gql(Some(&admin), ADJUST, j!({"m": id1, "a": "7", "k": "a1"}))
        .await
        .data();
    gold
}

e2e!(
    every_event_arrives_once_signed_and_in_member_order,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let (endpoint, secret) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        let gold = activity(&app).await;

        let events = all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let received = receiver.answered(200);
        // Once each, signed with the endpoint's secret, the body byte for byte.
        assert_eq!(received.len(), events.len(), "{received:#?}");
        let ids: HashSet<&str> = received.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), received.len());
        for (delivery, event) in received
            .iter()
            .map(|d| (d, events.iter().find(|e| e["id"] == d.id.as_str()).unwrap()))
        {
            assert!(verifies(&secret, delivery), "{delivery:?}");
            assert!(!verifies(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                delivery
            ));
            assert_eq!(delivery.body, event["payload"].as_str().unwrap());
            let body: Value = serde_json::from_str(&delivery.body).unwrap();
            assert_eq!(body["type"], event["type"]);
            assert_eq!(body["data"]["memberVersion"], event["memberVersion"]);
        }
        // A member's events arrive in the order they were written.
        let mut written: HashMap<String, Vec<String>> = HashMap::new();
        for e in &events {
            let member = e["memberId"].as_str().unwrap().to_owned();
            written
                .entry(member)
                .or_default()
                .push(e["id"].as_str().unwrap().to_owned());
        }
        let mut arrived: HashMap<String, Vec<String>> = HashMap::new();
        for d in &received {
            let body: Value = serde_json::from_str(&d.body).unwrap();
            let member = body["data"]["member"]["id"].as_str().unwrap().to_owned();
            arrived.entry(member).or_default().push(d.id.clone());
        }
        assert_eq!(arrived, written);
        // Exactly the committed postings: one points.* event per POINTS ledger row, none for
        // the rolled-back copies of the idempotency key or the refused discount.
        let points_events = events
            .iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("points."))
            .count();
        let rows = app
            .sql_i64("SELECT COUNT(*) AS n FROM ledger_entries WHERE account = 'POINTS'")
            .await;
        assert_eq!(points_events as i64, rows);
        let logins = events
            .iter()
            .filter(|e| e["payload"].as_str().unwrap().contains("\"daily_login\""))
            .count();
        assert_eq!(logins, 2);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        for expected in [
            "points.earned",
            "points.spent",
            "points.adjusted",
            "voucher.issued",
            "member.tier_changed",
        ] {
            assert!(
                types.contains(&expected),
                "{expected} missing from {types:?}"
            );
        }
        // Registration placed the member in Silver, the purchase moved it to Gold.
        let tier = events
            .iter()
            .rfind(|e| e["type"] == "member.tier_changed")
            .unwrap();
        let tier: Value = serde_json::from_str(tier["payload"].as_str().unwrap()).unwrap();
        assert_eq!(tier["data"]["toTier"]["id"], gold.as_str());
        assert_eq!(tier["data"]["toTier"]["name"], "Gold");
        assert_eq!(tier["data"]["fromTier"]["name"], "Silver");
        assert_eq!(tier["data"]["member"]["externalId"], "hook-m1");

        // The attempts are visible, and the metrics count them per endpoint.
        let first = events[0]["id"].as_str().unwrap();
        let attempts = attempts_of(&app, &endpoint, first).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["statusCode"], 200);
        assert_eq!(attempts[0]["responseBody"], "thanks");
        let metrics = app.metrics().await;
        let series =
            format!("loyalty_webhook_attempts_total{{endpoint=\"{endpoint}\",result=\"success\"}}");
        assert!(metrics.contains(&series), "{series} not in /metrics");
        assert!(metrics.contains("loyalty_webhook_delivery_duration_seconds_bucket"));

        // A resend delivers the same event (same id, same body) again.
        let resend = "mutation($e: ID!, $id: String!) { resendWebhookEvent(endpointId: $e, eventId: $id) { status } }";
        app.gql(Some(&app.admin()), resend, j!({"e": endpoint, "id": first}))
            .await
            .data();
        all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let copies: Vec<Delivery> = receiver
            .answered(200)
            .into_iter()
            .filter(|d| d.id == first)
            .collect();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].body, copies[1].body);
        app.assert_ledger_invariants().await;
    },
    allow_private
);

e2e!(
    a_failing_receiver_gets_every_event_once_it_recovers,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        receiver.mode.store(FAIL, Ordering::SeqCst);
        let (addr, stop, task) = receiver.start().await;
        let (endpoint, secret) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        activity(&app).await;
        let written = events(&app, &endpoint).await;
        let first = written[0]["id"].as_str().unwrap().to_owned();

        // 500 with a body, then answers too late (timeout), then nobody listens.
        let wait_for = |n: usize| {
            let receiver = receiver.clone();
            let app = &app;
            async move {
                for _ in 0..200 {
                    if receiver.log.lock().unwrap().len() >= n {
                        return;
                    }
                    app.clock.advance(chrono::Duration::minutes(10));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("the receiver saw fewer than {n} requests");
            }
        };
        wait_for(2).await;
        receiver.mode.store(SLOW, Ordering::SeqCst);
        let seen = receiver.log.lock().unwrap().len();
        wait_for(seen + 1).await;
        stop.cancel();
        task.await.unwrap();
        for _ in 0..3 {
            app.clock.advance(chrono::Duration::minutes(30));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let attempts = attempts_of(&app, &endpoint, &first).await;
        assert!(
            attempts.iter().all(|a| a["success"] == false),
            "{attempts:#?}"
        );
        assert_eq!(attempts[0]["statusCode"], 500);
        assert_eq!(attempts[0]["responseBody"], "boom: receiver down");
        assert!(
            attempts
                .iter()
                .any(|a| a["error"].as_str().is_some_and(|e| e.contains("timed out"))),
            "{attempts:#?}"
        );
        assert!(
            attempts.iter().any(|a| a["statusCode"].is_null()
                && !a["error"].as_str().unwrap().contains("timed out")),
            "{attempts:#?}"
        );
        // Still pending: nothing was given up, and nothing after the first event was sent.
        let pending = events(&app, &endpoint).await;
        assert!(pending.iter().all(|e| e["status"] == "PENDING"));

        // The receiver comes back on the same port.
        receiver.mode.store(OK, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (_stop, _task) = receiver.serve(listener);
        let events = all_delivered(&app, &endpoint, chrono::Duration::minutes(30)).await;
        assert_eq!(events.len(), written.len());
        let delivered = receiver.answered(200);
        let ids: HashSet<&str> = delivered.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "each event delivered once");
        for event in &events {
            assert!(ids.contains(event["id"].as_str().unwrap()));
        }
        // Every copy of an event, failed or not, carries its id, body and a valid signature.
        for d in receiver.log.lock().unwrap().iter() {
            let event = events.iter().find(|e| e["id"] == d.id.as_str()).unwrap();
            assert_eq!(d.body, event["payload"].as_str().unwrap());
            assert!(verifies(&secret, d));
        }
        let attempts = attempts_of(&app, &endpoint, &first).await;
        assert_eq!(attempts.last().unwrap()["statusCode"], 200);
        app.assert_ledger_invariants().await;
    },
    allow_private
);

e2e!(
    private_addresses_are_refused_by_default,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        for url in [
            "http://127.0.0.1:9/hooks",
            "http://localhost/hooks",
            "http://[::1]/hooks",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/hooks",
            "ftp://example.com/hooks",
        ] {
            let refused = app
                .gql(
                    Some(&admin),
                    CREATE,
                    j!({"i": {"url": url, "eventTypes": ["points.earned"]}}),
                )
                .await;
            assert_eq!(refused.code(), "VALIDATION", "{url}: {}", refused.body);
        }
        let unknown = app
            .gql(
                Some(&admin),
                CREATE,
                j!({"i": {"url": "https://example.com", "eventTypes": ["points.stolen"]}}),
            )
            .await;
        assert_eq!(unknown.code(), "VALIDATION");
        let listed = app
            .gql(Some(&admin), "{ webhookEndpoints { id } }", j!({}))
            .await;
        assert_eq!(listed.data()["webhookEndpoints"], j!([]));
        // A member cannot touch endpoints.
        let (member, _) = app.register("not-an-admin").await;
        let forbidden = app
            .gql(Some(&member), "{ webhookEndpoints { id } }", j!({}))
            .await;
        assert_eq!(forbidden.code(), "FORBIDDEN");
    }
);

e2e!(
    a_rotated_secret_signs_with_both_during_the_overlap,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let (endpoint, old) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        let admin = app.admin();
        let rotate = "mutation($e: ID!) { rotateWebhookSecret(id: $e, overlapSecs: 3600) { secret endpoint { previousSecretExpiresAt } } }";
        let rotated = app.gql(Some(&admin), rotate, j!({"e": endpoint})).await;
        let new = rotated.data()["rotateWebhookSecret"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(new, old);
        assert!(
            rotated.data()["rotateWebhookSecret"]["endpoint"]["previousSecretExpiresAt"]
                .is_string()
        );
        let test = "mutation($e: ID!) { sendTestWebhook(endpointId: $e) { id type } }";
        let sent = app.gql(Some(&admin), test, j!({"e": endpoint})).await;
        let during = sent.data()["sendTestWebhook"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(sent.data()["sendTestWebhook"]["type"], "webhook.test");
        all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let delivery = receiver
            .answered(200)
            .into_iter()
            .find(|d| d.id == during)
            .unwrap();
        assert!(
            verifies(&old, &delivery),
            "the old secret still signs during the overlap"
        );
        assert!(verifies(&new, &delivery), "the new secret signs");

        // After the overlap only the new secret signs.
        app.clock.advance(chrono::Duration::hours(2));
        let sent = app.gql(Some(&admin), test, j!({"e": endpoint})).await;
        let after = sent.data()["sendTestWebhook"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let delivery = receiver
            .answered(200)
            .into_iter()
            .find(|d| d.id == after)
            .unwrap();
        assert!(verifies(&new, &delivery));
        assert!(!verifies(&old, &delivery));
    },
    allow_private
);

e2e!(
    two_instances_deliver_each_event_once_between_them,
    |app: TestApp| async move {
        app.demo().await;
        let second = another_instance(&app).await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let (endpoint, _) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        // Postings on both instances; both workers poll.
        activity(&app).await;
        for n in 0..10 {
            second.register(&format!("second-{n}")).await;
        }
        let events = all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let received = receiver.answered(200);
        let ids: HashSet<&str> = received.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(received.len(), events.len(), "each event sent once");
        assert_eq!(ids.len(), events.len());
    },
    allow_private
);

e2e!(
    events_committed_before_a_crash_are_delivered_after_restart,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let (endpoint, _) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        activity(&app).await;
        // This instance delivers nothing: its events wait in the outbox when it dies.
        let written = events(&app, &endpoint).await;
        assert!(written.len() > 5);
        assert!(written.iter().all(|e| e["status"] == "PENDING"));
        app.stop();
        let restarted = another_instance(&app).await;
        let delivered = all_delivered(&restarted, &endpoint, chrono::Duration::seconds(1)).await;
        assert_eq!(delivered.len(), written.len());
        assert_eq!(receiver.answered(200).len(), written.len());

        // Delivered events are purged after the retention, with their attempts.
        restarted.clock.advance(chrono::Duration::days(31));
        let purged = restarted
            .loyalty
            .purge_webhook_events(Duration::from_secs(30 * 24 * 3600))
            .await
            .unwrap();
        assert_eq!(purged as usize, written.len());
        assert!(events(&restarted, &endpoint).await.is_empty());
    },
    |config: &mut loyalty_server::Config| {
        allow_private(config);
        config.webhooks.poll_interval_ms = 0;
    }
);

e2e!(
    redemptions_and_vouchers_send_only_the_subscribed_events,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let admin = app.admin();
        let types = [
            "redemption.created",
            "redemption.fulfilled",
            "voucher.issued",
            "voucher.consumed",
        ];
        let created = app
            .gql(
                Some(&admin),
                CREATE,
                j!({"i": {"url": format!("http://{addr}/hooks"), "eventTypes": types}}),
            )
            .await;
        let endpoint = created.data()["createWebhookEndpoint"]["endpoint"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (member, id) = app.register("shopper").await;
        app.gql(
            Some(&admin),
            ADJUST,
            j!({"m": id, "a": "500", "k": "top-up"}),
        )
        .await
        .data();
        let gift = app
            .gql(
                Some(&admin),
                "mutation { createGift(input: {name: \"Mug\", cost: \"50\"}) { id } }",
                j!({}),
            )
            .await;
        let gift = gift.data()["createGift"]["id"].clone();
        let redeem = "mutation($g: ID!) { redeemGift(giftId: $g, idempotencyKey: \"g1\") { redemption { id } } }";
        let redeemed = app.gql(Some(&member), redeem, j!({"g": gift})).await;
        let redemption = redeemed.data()["redeemGift"]["redemption"]["id"].clone();
        let fulfill = "mutation($id: ID!) { fulfillRedemption(id: $id) { status } }";
        app.gql(Some(&admin), fulfill, j!({"id": redemption}))
            .await
            .data();
        let discount = "mutation { redeemDiscount(points: \"20\", idempotencyKey: \"v1\") { voucher { code } } }";
        let voucher = app.gql(Some(&member), discount, j!({})).await;
        let code = voucher.data()["redeemDiscount"]["voucher"]["code"].clone();
        let consume =
            "mutation($c: String!) { consumeVoucher(code: $c, orderId: \"order-9\") { status } }";
        app.gql(Some(&app.service()), consume, j!({"c": code}))
            .await
            .data();

        let events = all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        let sent: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            sent, types,
            "only the subscribed types, in the member's order"
        );
        let received: Vec<String> = receiver
            .answered(200)
            .iter()
            .map(|d| d.id.clone())
            .collect();
        let written: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(received, written);
        let body = |n: usize| -> Value {
            serde_json::from_str(events[n]["payload"].as_str().unwrap()).unwrap()
        };
        assert_eq!(body(1)["data"]["redemption"]["status"], "FULFILLED");
        assert_eq!(body(1)["data"]["redemption"]["id"], redemption);
        assert_eq!(body(3)["data"]["voucher"]["orderId"], "order-9");
        assert_eq!(body(3)["data"]["member"]["externalId"], "shopper");
        // Events without a posting carry the member's version as it stood.
        assert_eq!(
            body(1)["data"]["memberVersion"],
            body(0)["data"]["memberVersion"]
        );
        assert_eq!(
            body(3)["data"]["memberVersion"],
            body(2)["data"]["memberVersion"]
        );
        app.assert_ledger_invariants().await;
    },
    allow_private
);

e2e!(
    an_endpoint_that_keeps_failing_is_disabled_with_the_reason,
    |app: TestApp| async move {
        app.demo().await;
        // A port nobody listens on: every attempt is refused.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let (endpoint, _) = endpoint(&app, &format!("http://{addr}/hooks")).await;
        app.register("lonely").await;
        let admin = app.admin();
        let list = "{ webhookEndpoints { id enabled disabledReason failingSince } }";
        let mut disabled = Value::Null;
        for _ in 0..200 {
            let listed = app.gql(Some(&admin), list, j!({})).await;
            let found = listed.data()["webhookEndpoints"][0].clone();
            if found["enabled"] == false {
                disabled = found;
                break;
            }
            app.clock.advance(chrono::Duration::hours(2));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(disabled["enabled"], false, "never disabled");
        let reason = disabled["disabledReason"].as_str().unwrap();
        assert!(reason.contains("ran out of retries"), "{reason}");
        assert!(disabled["failingSince"].is_string());
        let written = events(&app, &endpoint).await;
        assert!(
            written.iter().any(|e| e["status"] == "DEAD"),
            "{written:#?}"
        );
        // A disabled endpoint gets no new events.
        app.register("after-disable").await;
        assert_eq!(events(&app, &endpoint).await.len(), written.len());

        // Fixed: the dead events are resent while it is still disabled (so none of them can
        // have been delivered in between and be counted again), then enabled, and every event
        // arrives: the resent ones and those still pending.
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (_stop, _task) = receiver.serve(listener);
        let resend =
            "mutation($e: ID!, $s: DateTime!) { resendWebhookEvents(endpointId: $e, since: $s) }";
        let since = (app.loyalty.now() - chrono::Duration::days(30)).to_rfc3339();
        let resent = app
            .gql(Some(&admin), resend, j!({"e": endpoint, "s": since}))
            .await;
        let dead = written.iter().filter(|e| e["status"] == "DEAD").count();
        assert_eq!(
            resent.data()["resendWebhookEvents"].as_i64().unwrap() as usize,
            dead
        );
        let enable = "mutation($e: ID!) { updateWebhookEndpoint(id: $e, input: {enabled: true}) { enabled disabledReason failingSince } }";
        let enabled = app.gql(Some(&admin), enable, j!({"e": endpoint})).await;
        assert_eq!(
            enabled.data()["updateWebhookEndpoint"],
            j!({"enabled": true, "disabledReason": null, "failingSince": null})
        );
        all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        assert_eq!(receiver.answered(200).len(), written.len());
    },
    allow_private
);

e2e!(
    a_completed_challenge_is_sent_once,
    |app: TestApp| async move {
        app.demo().await;
        let receiver = Receiver::default();
        let (addr, _stop, _task) = receiver.start().await;
        let admin = app.admin();
        let created = app
            .gql(
                Some(&admin),
                CREATE,
                j!({"i": {"url": format!("http://{addr}/hooks"), "eventTypes": ["challenge.completed"]}}),
            )
            .await;
        let endpoint = created.data()["createWebhookEndpoint"]["endpoint"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let challenge = app
            .gql(
                Some(&admin),
                "mutation($i: ChallengeInput!) { createChallenge(input: $i) { id } }",
                j!({"i": {
                    "name": "Weekly reader",
                    "window": {"kind": "WEEKLY"},
                    "goals": [{"action": "news_read", "measure": "COUNT", "target": "2"}],
                    "reward": {"points": "50"}
                }}),
            )
            .await;
        let challenge = challenge.data()["createChallenge"]["id"].clone();
        app.gql(
            Some(&admin),
            "mutation { publishChallenges { version } }",
            j!({}),
        )
        .await
        .data();
        let (token, _) = app.register("reader").await;
        // A retried key, the read that completes it, and one past the target.
        for (object, key) in [
            ("news/1", "r1"),
            ("news/1", "r1"),
            ("news/2", "r2"),
            ("news/3", "r3"),
        ] {
            app.gql(
                Some(&token),
                "mutation($o: String!, $k: String!) { recordAction(input: {action: \"news_read\", objectId: $o, idempotencyKey: $k}) { awarded } }",
                j!({"o": object, "k": key}),
            )
            .await
            .data();
        }

        let events = all_delivered(&app, &endpoint, chrono::Duration::seconds(1)).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0]["type"], "challenge.completed");
        let body: Value = serde_json::from_str(events[0]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(body["data"]["challenge"]["id"], challenge);
        assert!(body["data"]["challenge"]["windowKey"]
            .as_str()
            .unwrap()
            .starts_with("week:"));
        assert_eq!(body["data"]["member"]["externalId"], "reader");
        let received: Vec<String> = receiver
            .answered(200)
            .iter()
            .map(|d| d.id.clone())
            .collect();
        assert_eq!(received, vec![events[0]["id"].as_str().unwrap().to_owned()]);
        app.assert_ledger_invariants().await;
    },
    allow_private
);

/// The ids of a member's events (by external id), oldest first.
fn of_member(events: &[Value], external_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            let body: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            body["data"]["member"]["externalId"] == external_id
        })
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event's attempts as the admin lists them match what its receiver answered, one for
/// one and in order, and its attempt count.
async fn attempts_are_exact(app: &TestApp, endpoint: &str, receiver: &Receiver) {
    for event in events(app, endpoint).await {
        let id = event["id"].as_str().unwrap();
        let listed: Vec<u16> = attempts_of(app, endpoint, id)
            .await
            .iter()
            .map(|a| {
                assert_eq!(a["success"], a["statusCode"] == 200, "{a}");
                a["statusCode"].as_u64().unwrap() as u16
            })
            .collect();
        assert_eq!(listed, receiver.answers_to(id), "event {id}");
        assert_eq!(event["attempts"].as_u64().unwrap() as usize, listed.len());
    }
}

e2e!(
    one_pass_records_every_attempt_of_several_endpoints_and_members,
    |app: TestApp| async move {
        app.demo().await;
        // Endpoint a refuses one member's events; endpoint b takes everything.
        let a = Receiver::default();
        *a.refuse.lock().unwrap() = Some("picky-bad".to_owned());
        let b = Receiver::default();
        let (addr_a, _stop_a, _task_a) = a.start().await;
        let (addr_b, _stop_b, _task_b) = b.start().await;
        let (ea, _) = endpoint(&app, &format!("http://{addr_a}/a")).await;
        let (eb, _) = endpoint(&app, &format!("http://{addr_b}/b")).await;
        // This instance delivers nothing: the courier started below finds every event waiting
        // and sends the first of each member and endpoint in one pass.
        let admin = app.admin();
        let members = ["picky-1", "picky-2", "picky-bad"];
        for name in members {
            let (_, id) = app.register(name).await;
            for n in 0..3 {
                app.gql(
                    Some(&admin),
                    ADJUST,
                    j!({"m": id, "a": "5", "k": format!("{name}-{n}")}),
                )
                .await
                .data();
            }
        }
        let written = events(&app, &ea).await;
        let bad = of_member(&written, "picky-bad");
        assert!(bad.len() >= 3, "{written:#?}");
        for name in members {
            assert_eq!(
                of_member(&written, name),
                of_member(&events(&app, &eb).await, name)
            );
        }
        let courier = another_instance(&app).await;

        // b gets every event once; a every event but the refused member's, whose first event
        // is retried while the others wait behind it.
        all_delivered(&courier, &eb, chrono::Duration::seconds(1)).await;
        for _ in 0..300 {
            let now = events(&courier, &ea).await;
            let others_done = now
                .iter()
                .filter(|e| !bad.contains(&e["id"].as_str().unwrap().to_owned()))
                .all(|e| e["status"] == "DELIVERED");
            if others_done && a.answers_to(&bad[0]).len() >= 3 {
                break;
            }
            courier.clock.advance(chrono::Duration::minutes(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The clock stands still now (the next retry is minutes away): let the pass in
        // flight record its attempts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = events(&courier, &ea).await;
        for event in &now {
            let id = event["id"].as_str().unwrap();
            if id == bad[0] {
                assert_eq!(event["status"], "PENDING");
                assert!(a.answers_to(id).iter().all(|code| *code == 500));
                assert!(a.answers_to(id).len() >= 3);
            } else if bad.contains(&id.to_owned()) {
                assert_eq!(event["status"], "PENDING", "{event}");
                assert_eq!(event["attempts"], 0, "{event}");
                assert!(a.answers_to(id).is_empty());
            } else {
                assert_eq!(event["status"], "DELIVERED", "{event}");
                assert_eq!(a.answers_to(id), vec![200]);
            }
        }
        attempts_are_exact(&courier, &ea, &a).await;
        attempts_are_exact(&courier, &eb, &b).await;
        // Three minutes of one member's failures disable nothing.
        let list = "{ webhookEndpoints { id enabled } }";
        let listed = courier.gql(Some(&courier.admin()), list, j!({})).await;
        for found in listed.data()["webhookEndpoints"].as_array().unwrap() {
            assert_eq!(found["enabled"], true);
        }

        // Accepted again: the member's events follow, in order, each once.
        *a.refuse.lock().unwrap() = None;
        all_delivered(&courier, &ea, chrono::Duration::minutes(2)).await;
        let arrived: Vec<String> = a
            .answered(200)
            .iter()
            .filter(|d| bad.contains(&d.id))
            .map(|d| d.id.clone())
            .collect();
        assert_eq!(arrived, bad);
        attempts_are_exact(&courier, &ea, &a).await;
        attempts_are_exact(&courier, &eb, &b).await;
        assert_eq!(b.answered(200).len(), written.len());
        assert_eq!(b.log.lock().unwrap().len(), written.len());
    },
    |config: &mut loyalty_server::Config| {
        allow_private(config);
        config.webhooks.poll_interval_ms = 0;
    }
);

e2e!(
    a_down_endpoint_waits_for_its_retry_and_holds_up_no_other_endpoint,
    |app: TestApp| async move {
        app.demo().await;
        let down = Receiver::default();
        down.mode.store(FAIL, Ordering::SeqCst);
        let (down_addr, _stop_down, _down_task) = down.start().await;
        let up = Receiver::default();
        let (up_addr, _stop_up, _up_task) = up.start().await;
        let (a, _) = endpoint(&app, &format!("http://{down_addr}/hooks")).await;
        let (b, _) = endpoint(&app, &format!("http://{up_addr}/hooks")).await;
        let admin = app.admin();
        let list = "{ webhookEndpoints { id failingSince retryAt } }";
        let state_of = |id: String| {
            let app = &app;
            let admin = admin.clone();
            async move {
                let listed = app.gql(Some(&admin), list, j!({})).await;
                listed.data()["webhookEndpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["id"] == id.as_str())
                    .unwrap()
                    .clone()
            }
        };
        let (first, _) = app.register("gate-m1").await;
        app.daily_login(&first, "g1").await.data();

        // The clock stands still from here (a zero step): no retry comes due. B gets
        // everything; A fails its first round and is held back until its earliest retry,
        // within a minute.
        let still = chrono::Duration::zero();
        all_delivered(&app, &b, still).await;
        let mut held = Value::Null;
        for _ in 0..100 {
            let state = state_of(a.clone()).await;
            if state["retryAt"].is_string() {
                held = state;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let retry_at: chrono::DateTime<chrono::Utc> = held["retryAt"]
            .as_str()
            .expect("never held back")
            .parse()
            .unwrap();
        let now = app.loyalty.now();
        assert!(
            retry_at > now && retry_at <= now + chrono::Duration::minutes(1),
            "{held:#?} at {now}"
        );
        assert!(held["failingSince"].is_string());
        let tried = down.log.lock().unwrap().len();
        assert_eq!(tried, 1, "one member, one head tried");

        // A new member's first event is due at once: B gets it, A does not while it is held.
        app.register("gate-m2").await;
        let to_b = all_delivered(&app, &b, still).await;
        assert!(to_b.len() > 2, "{to_b:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(down.log.lock().unwrap().len(), tried, "held back");
        assert_eq!(state_of(a.clone()).await["retryAt"], held["retryAt"]);

        // A test event clears the hold: it and the new member's head are tried at once.
        let test = "mutation($e: ID!) { sendTestWebhook(endpointId: $e) { id } }";
        let sent = app.gql(Some(&admin), test, j!({"e": a})).await;
        let test_id = sent.data()["sendTestWebhook"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..100 {
            if down.log.lock().unwrap().len() >= tried + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(down.answers_to(&test_id), [500]);
        assert_eq!(down.log.lock().unwrap().len(), tried + 2);

        // Back up: once the retries come due everything arrives once, and nothing holds it.
        down.mode.store(OK, Ordering::SeqCst);
        let events = all_delivered(&app, &a, chrono::Duration::minutes(1)).await;
        let answered = down.answered(200);
        let ids: HashSet<&str> = answered.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids.len(), events.len());
        assert_eq!(answered.len(), events.len(), "each once");
        let state = state_of(a.clone()).await;
        assert_eq!(state["retryAt"], Value::Null, "{state:#?}");
        assert_eq!(state["failingSince"], Value::Null, "{state:#?}");
        app.assert_ledger_invariants().await;
    },
    allow_private
);
