//! The member's mini-app at `/app`, driven in headless Chromium over the Chrome DevTools
//! Protocol against a real server: development sign-in, a double-clicked check-in that posts
//! once, a product viewed twice and paid once, a spin verified in the browser, a posting by
//! another client that shows without a reload, and a gift redeemed. Plus the assets' headers
//! and the member development sign-in's rules.
//!
//! Runs on PostgreSQL + Redis only: the page does nothing SQLite would change, and there the
//! live balance crosses the Redis bus as in production.

use std::path::PathBuf;

use loyalty_server::config::KeyOrigin;
use serde_json::Value;

use crate::browser::{Browser, PHONE};
use crate::helpers::*;

const PURCHASE: &str =
    "mutation($i: RecordPurchaseInput!) { recordPurchase(input: $i) { balance } }";

fn decimal(value: &Value) -> rust_decimal::Decimal {
    value.as_str().unwrap().parse().unwrap()
}

/// The page's balance: the exact API string it shows (`data-value`).
const BALANCE: &str = "document.getElementById('balance').dataset.value";

async fn api_balance(app: &TestApp, token: &str) -> rust_decimal::Decimal {
    app.balance(token).await.parse().unwrap()
}

/// Ledger rows of one member with one source or purpose.
async fn rows(app: &TestApp, member_id: &str, column: &str, value: &str) -> i64 {
    app.sql_i64(&format!(
        "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {member_id} \
         AND account = 'POINTS' AND {column} = '{value}'"
    ))
    .await
}

fn development_key(config: &mut loyalty_server::config::Config) {
    // The embedded default's development key (the test key stays the one that signs).
    config.jwt.origin = KeyOrigin::DevelopmentFile(PathBuf::from("jwt-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_member_mini_app_works_in_chromium() {
    let app = spawn_app_with(Backend::Postgres, development_key).await;
    app.demo().await;
    let admin = app.admin();
    // A tier to progress towards (multiplier 1: the rules pay as written).
    app.gql(
        Some(&admin),
        "mutation { upsertTier(input: {name: \"Gold\", minQualification: \"1000\", multiplier: \"1\"}) { id } }",
        j!({}),
    )
    .await
    .data();

    let mut browser = Browser::launch(PHONE).await;
    browser
        .call("Page.navigate", j!({ "url": format!("{}/app", app.url) }))
        .await;

    // Sign in: the development sign-in (embedded default, loopback) as the demo member.
    browser
        .wait_for(
            "the development sign-in is offered",
            "!document.getElementById('dev-login').hidden",
        )
        .await;
    browser.click("#dev-login").await;
    browser
        .wait_for(
            "the page is ready",
            "document.body.dataset.state === 'ready'",
        )
        .await;
    // Whatever follows happens without a reload: this mark would vanish with one.
    browser.eval("window.__noReload = true").await;
    let token = app.member("demo-member-1");
    let me = app.gql(Some(&token), "{ me { id balance } }", j!({})).await;
    let member_id = me.data()["me"]["id"].as_str().unwrap().to_owned();
    let start = decimal(&me.data()["me"]["balance"]);
    assert_eq!(decimal(&browser.eval(BALANCE).await), start);
    assert!(
        browser.text("#tier-next").await.contains("to Gold"),
        "{}",
        browser.text("#tier-next").await
    );

    // Check in with a double click: one posting of the rule's points.
    let opportunities = app
        .gql(
            Some(&token),
            "{ earnOpportunities { action points } }",
            j!({}),
        )
        .await;
    let login_points = opportunities.data()["earnOpportunities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["action"] == "daily_login")
        .map(|o| decimal(&o["points"]))
        .unwrap();
    let keys_before = app
        .sql_i64(
            "SELECT COUNT(*) AS n FROM idempotency_records WHERE caller = 'member:demo-member-1'",
        )
        .await;
    browser.double_click("#checkin").await;
    browser
        .wait_for(
            "the check-in's award is shown",
            "document.getElementById('checkin-result').dataset.awarded === 'true'",
        )
        .await;
    let after_login = start + login_points;
    browser
        .wait_for(
            "the balance rose by the rule's points",
            &format!("{BALANCE} === '{after_login:.2}'"),
        )
        .await;
    assert_eq!(api_balance(&app, &token).await, after_login);
    assert_eq!(rows(&app, &member_id, "source", "daily_login").await, 1);
    let keys_after = app
        .sql_i64(
            "SELECT COUNT(*) AS n FROM idempotency_records WHERE caller = 'member:demo-member-1'",
        )
        .await;
    assert_eq!(
        keys_after - keys_before,
        1,
        "the double click sent one request (one idempotency key)"
    );
    browser
        .wait_for(
            "the streak shows the check-in",
            "document.getElementById('streak').textContent === '1'",
        )
        .await;

    // View a product twice: paid once, and the page says so each time.
    browser.click("[data-tab=shop]").await;
    browser.click("[data-view='sku-001']").await;
    browser
        .wait_for(
            "the first view's award",
            "document.querySelector(\"[data-object='sku-001']\").dataset.count === '1'",
        )
        .await;
    browser.click("[data-view='sku-001']").await;
    browser
        .wait_for(
            "the second view's answer",
            "document.querySelector(\"[data-object='sku-001']\").dataset.count === '2'",
        )
        .await;
    let award = browser
        .eval("Object.assign({}, document.querySelector(\"[data-object='sku-001']\").dataset)")
        .await;
    assert_eq!(award["awarded"], "false", "{award}");
    assert_eq!(
        rows(&app, &member_id, "source", "first_product_view").await,
        1
    );
    let after_view = after_login + rust_decimal::Decimal::new(2, 0);
    assert_eq!(api_balance(&app, &token).await, after_view);

    // A flaky network: the first answer to a news read is lost after the server posted it. The
    // page sends the same request again with the same idempotency key, and is paid once.
    browser
        .eval(
            "(() => { window.__keys = []; const real = window.fetch; let lost = false; \
             window.fetch = async (url, init) => { const answer = await real(url, init); \
             if (init && typeof init.body === 'string' && init.body.includes('news_read')) { \
             window.__keys.push(JSON.parse(init.body).variables.input.idempotencyKey); \
             if (!lost) { lost = true; throw new TypeError('connection reset'); } } \
             return answer; }; })()",
        )
        .await;
    browser.click("[data-read='news-001']").await;
    browser
        .wait_for(
            "the read's award after the retry",
            "document.querySelector(\"[data-object='news-001']\").dataset.awarded === 'true'",
        )
        .await;
    let keys = browser.eval("window.__keys").await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "sent, answer lost, sent again: {keys:?}");
    assert_eq!(keys[0], keys[1], "the retry reused the key");
    assert_eq!(rows(&app, &member_id, "source", "first_news_read").await, 1);
    let after_view = after_view + rust_decimal::Decimal::new(3, 0);
    assert_eq!(api_balance(&app, &token).await, after_view);

    // Spin: odds and commitment shown before, the result verified in the browser.
    browser.click("[data-tab=wheel]").await;
    let wheel = app
        .gql(
            Some(&token),
            "{ wheels { commitment segments { id probability } } }",
            j!({}),
        )
        .await;
    let wheel = &wheel.data()["wheels"][0];
    let expected: Vec<Value> = wheel["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| j!([s["id"], s["probability"]]))
        .collect();
    let odds = browser
        .eval(
            "Array.from(document.querySelectorAll('#wheel-odds tr'))\
             .map(r => [r.dataset.segment, r.dataset.probability])",
        )
        .await;
    assert_eq!(odds, Value::Array(expected), "the odds shown are the API's");
    let commitment = browser
        .eval("document.getElementById('wheel-commitment').dataset.commitment")
        .await;
    assert_eq!(commitment, wheel["commitment"], "the commitment is shown");
    browser.click("#wheel-spin").await;
    let verified = browser
        .wait_for(
            "the spin's proof was checked",
            "document.getElementById('wheel-verified').dataset.verified",
        )
        .await;
    assert_eq!(
        verified,
        "true",
        "{}",
        browser.text("#wheel-verified").await
    );
    assert!(browser.text("#wheel-verified").await.contains("verified"));
    let segment = browser
        .eval("document.getElementById('wheel-result').dataset.segment")
        .await;
    let spun = app
        .sql_i64(&format!(
            "SELECT COUNT(*) AS n FROM spins WHERE member_id = {member_id} AND segment_id = {} \
             AND server_seed_hash = '{}'",
            segment.as_str().unwrap(),
            commitment.as_str().unwrap()
        ))
        .await;
    assert_eq!(spun, 1, "the ledger has the spin the page verified");
    assert_eq!(rows(&app, &member_id, "purpose", "lucky_wheel").await, 1);
    let after_spin = api_balance(&app, &token).await;
    browser
        .wait_for(
            "the balance after the spin",
            &format!("{BALANCE} === '{after_spin:.2}'"),
        )
        .await;

    // Another client posts (the shop's service records a purchase): the page shows it live.
    let purchase = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": "demo-member-1", "orderId": "o-1", "amount": "300.00", "idempotencyKey": "o-1"}}),
        )
        .await;
    let after_purchase = decimal(&purchase.data()["recordPurchase"]["balance"]);
    assert_eq!(
        after_purchase,
        after_spin + rust_decimal::Decimal::new(150, 0)
    );
    browser
        .wait_for(
            "the purchase's points appear without a reload",
            &format!("{BALANCE} === '{after_purchase:.2}' && window.__noReload === true"),
        )
        .await;

    // The socket drops and a posting lands meanwhile: the page reconnects, sees from the
    // snapshot's version that it missed something, and re-reads the balance.
    browser.eval("state.socket.close()").await;
    browser
        .wait_for(
            "the page noticed the socket closed",
            "document.getElementById('live-status').dataset.live === 'off'",
        )
        .await;
    let purchase = app
        .gql(
            Some(&app.service()),
            PURCHASE,
            j!({"i": {"memberExternalId": "demo-member-1", "orderId": "o-2", "amount": "100.00", "idempotencyKey": "o-2"}}),
        )
        .await;
    let after_purchase = decimal(&purchase.data()["recordPurchase"]["balance"]);
    browser
        .wait_for(
            "the missed purchase appears after reconnecting",
            &format!(
                "{BALANCE} === '{after_purchase:.2}' && \
                 document.getElementById('live-status').dataset.live === 'on' && window.__noReload === true"
            ),
        )
        .await;

    // Redeem a gift with limited stock.
    let gifts = app
        .gql(Some(&token), "{ gifts { id name cost stock } }", j!({}))
        .await;
    let tote = gifts.data()["gifts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Tote bag")
        .unwrap()
        .clone();
    let (gift_id, stock) = (
        tote["id"].as_str().unwrap().to_owned(),
        tote["stock"].as_i64().unwrap(),
    );
    browser.click("[data-tab=rewards]").await;
    browser
        .wait_for(
            "the gift is listed with its stock",
            &format!("(document.querySelector(\"[data-gift='{gift_id}']\") || {{dataset: {{}}}}).dataset.stock === '{stock}'"),
        )
        .await;
    browser.click(&format!("[data-redeem='{gift_id}']")).await;
    browser
        .wait_for(
            "the redemption is shown",
            "document.getElementById('gift-result').dataset.redemption",
        )
        .await;
    browser
        .wait_for(
            "the stock went down on the page",
            &format!("(document.querySelector(\"[data-gift='{gift_id}']\") || {{dataset: {{}}}}).dataset.stock === '{}'", stock - 1),
        )
        .await;
    let redeemed = app
        .sql_i64(&format!(
            "SELECT COUNT(*) AS n FROM redemptions WHERE member_id = {member_id} AND gift_id = {gift_id}"
        ))
        .await;
    assert_eq!(redeemed, 1);
    let after_gift = api_balance(&app, &token).await;
    assert_eq!(after_gift, after_purchase - decimal(&tote["cost"]));
    browser
        .wait_for(
            "the balance after the gift",
            &format!("{BALANCE} === '{after_gift:.2}'"),
        )
        .await;

    // A discount voucher: its code is on the page, as the API has it.
    browser
        .eval("document.getElementById('voucher-points').value = '50'")
        .await;
    browser.click("#voucher-buy").await;
    browser
        .wait_for(
            "the voucher is bought",
            "document.getElementById('voucher-result').textContent.startsWith('Voucher ')",
        )
        .await;
    let vouchers = app
        .gql(
            Some(&token),
            "{ myVouchers(first: 10) { edges { node { id code } } } }",
            j!({}),
        )
        .await;
    let expected: Vec<Value> = vouchers.data()["myVouchers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| j!([e["node"]["id"], e["node"]["code"]]))
        .collect();
    assert!(!expected.is_empty());
    let shown = browser
        .wait_for(
            "the vouchers are listed",
            &format!(
                "document.querySelectorAll('#vouchers li').length === {} && \
                 Array.from(document.querySelectorAll('#vouchers li'))\
                 .map(li => [li.dataset.voucher, li.querySelector('.mono').textContent])",
                expected.len()
            ),
        )
        .await;
    assert_eq!(shown, Value::Array(expected));

    // The leaderboard with the member's rank, by period; the history, paged.
    browser.click("[data-tab=more]").await;
    browser
        .wait_for(
            "the member's rank",
            "document.getElementById('my-rank').dataset.rank",
        )
        .await;
    browser.click("[data-period=DAY]").await;
    browser
        .wait_for(
            "today's board",
            "document.querySelector('[data-period=DAY]').getAttribute('aria-pressed') === 'true' \
             && document.getElementById('my-rank').dataset.rank === '1'",
        )
        .await;
    let postings = app
        .sql_i64(&format!(
            "SELECT COUNT(*) AS n FROM ledger_entries WHERE member_id = {member_id}"
        ))
        .await;
    assert!(postings > 10, "more than one page of history: {postings}");
    browser
        .wait_for(
            "the history's first page, with the voucher (the last posting) on top",
            "document.querySelectorAll('#history li').length === 10 && \
             document.querySelector('#history li').textContent.startsWith('discount') && \
             !document.getElementById('history-more').hidden",
        )
        .await;
    browser.click("#history-more").await;
    browser
        .wait_for(
            "the history's next page",
            &format!(
                "document.querySelectorAll('#history li').length === {}",
                postings.min(20)
            ),
        )
        .await;
    app.assert_ledger_invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mini_app_is_served_with_a_strict_policy_and_a_member_dev_login() {
    let app = spawn_app_with(Backend::Sqlite, development_key).await;
    let page = app
        .client
        .get(format!("{}/app", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    // Only Telegram Web may frame it (its Mini Apps run in an iframe there).
    assert!(
        csp.ends_with("frame-ancestors https://web.telegram.org"),
        "{csp}"
    );
    assert!(page.headers().get("x-frame-options").is_none());
    let html = page.text().await.unwrap();
    assert!(!html.contains("https://"), "no third-party asset");
    for (path, kind) in [
        ("/app/app.js", "text/javascript"),
        ("/app/app.css", "text/css"),
    ] {
        let asset = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status().as_u16(), 200, "{path}");
        assert!(asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }

    // Before `demo` there is no member to sign in as; after it, a member token of `demo`.
    let login = format!("{}/app/dev-login", app.url);
    assert_eq!(
        app.client
            .post(&login)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        409
    );
    app.demo().await;
    let answer: Value = app
        .client
        .post(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["subject"], "demo-member-1");
    let token = answer["token"].as_str().unwrap();
    let registered = app
        .gql(
            Some(token),
            "mutation { register { created member { externalId } } }",
            j!({}),
        )
        .await;
    assert_eq!(
        registered.data()["register"]["member"]["externalId"],
        "demo-member-1"
    );
    // A member token: admin operations are refused.
    let refused = app
        .gql(Some(token), "{ members { edges { node { id } } } }", j!({}))
        .await;
    assert_eq!(refused.code(), "FORBIDDEN");
    // Cross-site, or from a non-loopback Host: no such route.
    let cross = app
        .client
        .post(&login)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 404);
    let host = app
        .client
        .post(&login)
        .header("host", "shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(host.status().as_u16(), 404);

    // With a configured key (the test key as it is), the route does not exist.
    let configured = spawn_app(Backend::Sqlite).await;
    let gone = configured
        .client
        .post(format!("{}/app/dev-login", configured.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
}

/// Opened by Telegram (launch data in the address's fragment, as Telegram passes it), the page
/// signs in through `/auth/telegram`; with a configured key there is no development sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inside_telegram_the_mini_app_signs_in_with_the_launch_data() {
    use crate::telegram::{encode, fields, init_data, with_bot, BOT_TOKEN};
    let app = spawn_app(Backend::Sqlite).await;
    with_bot(&app).await;
    let launch = init_data(&fields(&app, 424_242, None), BOT_TOKEN);
    let url = format!(
        "{}/app?program=demo#tgWebAppData={}&tgWebAppVersion=7.0&tgWebAppPlatform=web",
        app.url,
        encode(&launch)
    );

    let mut browser = Browser::launch(PHONE).await;
    browser.call("Page.navigate", j!({ "url": url })).await;
    browser
        .wait_for(
            "signed in with Telegram",
            "document.body.dataset.state === 'ready'",
        )
        .await;
    let token = app.member("tg-424242");
    let me = app
        .gql(Some(&token), "{ me { displayName balance } }", j!({}))
        .await;
    assert_eq!(me.data()["me"]["displayName"], "Mai Nguyễn");
    assert_eq!(browser.eval(BALANCE).await, me.data()["me"]["balance"]);
    let offered = browser
        .eval("!document.getElementById('dev-login').hidden")
        .await;
    assert_eq!(
        offered, false,
        "no development sign-in with a configured key"
    );
}
