//! The `/admin` dashboard: Debian's headless `chromium` loads the real page against a server with
//! the demo's four weeks of activity, and every number the page shows (tagged `data-key` /
//! `data-metric`) equals the API's answer for the same period. Plus the embedded assets and the
//! development login, which exists only with the generated development secret.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use loyalty_domain::clock::ManualClock;
use loyalty_domain::Loyalty;
use loyalty_server::config::Config;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::browser::{Browser, DESKTOP};
use crate::helpers::*;

const TZ: &str = "Asia/Ho_Chi_Minh";
const REPORT: &str = "query($from: Date!, $to: Date!, $g: Granularity, $cf: Date, $ct: Date) { loyaltyReport(from: $from, to: $to, granularity: $g, compareFrom: $cf, compareTo: $ct) { comparison { from to pointsIssued { total } pointsUsed { total } pointsExpired outstandingBalance redemptionRate members { total new active } revenue averageOrderValue ...Sections } asOf to pointsIssued { total count bySource { source points count share } } pointsUsed { total count byPurpose { purpose points count share } } pointsExpired outstandingBalance redemptionRate members { total new active } revenue averageOrderValue acquisition { newMembers withPurchase withoutPurchase } coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare } averageDiscount { total fromPoints fromPrizes vouchers rate } averageOrderValues { members nonMembers everyone } purchasers purchaseRate activityByMonth { month memberOrders revenue lastPurchaseMembers } membershipDuration { minMonths members orders revenue averagePurchase revenuePerMember } campaigns { ruleId pointsIssued awards membersReached budgetTotal budgetSpent budgetRemaining } series { bucketStart issued used expired newMembers newMembersWithPurchase memberOrders memberRevenue nonMemberOrders nonMemberRevenue discount } } } fragment Sections on LoyaltyReportFigures { acquisition { newMembers withPurchase withoutPurchase } coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare } averageDiscount { total fromPoints fromPrizes vouchers rate } averageOrderValues { members nonMembers everyone } purchasers purchaseRate }";
/// The numbers of each section object the page shows (`section.field`), and which of them it
/// compares with the previous period.
const SECTIONS: [(&str, &[&str], &[&str]); 4] = [
    (
        "acquisition",
        &["newMembers", "withPurchase", "withoutPurchase"],
        &["newMembers", "withPurchase", "withoutPurchase"],
    ),
    (
        "coverage",
        &[
            "memberOrders",
            "nonMemberOrders",
            "orderShare",
            "memberRevenue",
            "nonMemberRevenue",
            "revenueShare",
        ],
        &[
            "memberOrders",
            "nonMemberOrders",
            "orderShare",
            "memberRevenue",
            "nonMemberRevenue",
            "revenueShare",
        ],
    ),
    (
        "averageDiscount",
        &["total", "fromPoints", "fromPrizes", "vouchers", "rate"],
        &["total", "fromPoints", "fromPrizes", "rate"],
    ),
    (
        "averageOrderValues",
        &["members", "nonMembers", "everyone"],
        &["members", "nonMembers", "everyone"],
    ),
];
/// Every series field the page shows per bucket.
const SERIES_FIELDS: [&str; 10] = [
    "issued",
    "used",
    "expired",
    "newMembers",
    "newMembersWithPurchase",
    "memberOrders",
    "memberRevenue",
    "nonMemberOrders",
    "nonMemberRevenue",
    "discount",
];
const REFERRALS: &str = "query($f: DateTime!, $t: DateTime!) { referralReport(from: $f, to: $t, first: 50) { edges { node { member { id } totalReferrals pendingReferrals clicks } } funnel { clicks registrations rewarded } } }";

/// The browser, or a failure that says how to get it: this test never passes without one.
pub fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the dashboard browser test needs Debian's `chromium` (apt-get install -y chromium; \
         .ci/run installs it) or CHROMIUM=/path/to/chrome"
    );
}

/// How every test here runs chromium: headless, no sandbox (CI runs as root), no GPU.
pub const HEADLESS: [&str; 6] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
];

/// The page's DOM after its scripts ran (headless, virtual time: no waiting on wall time).
async fn dump_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("loyalty-chromium-{}", uuid::Uuid::new_v4()));
    let run = tokio::process::Command::new(chromium())
        .args(HEADLESS)
        .arg("--virtual-time-budget=20000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium finished within 120 s")
        .expect("chromium started");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// One tag's attribute, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Every `data-key` → (`data-metric`, the text shown) in the DOM.
fn shown_metrics(dom: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut rest = dom;
    while let Some(at) = rest.find("data-key=\"") {
        let open = rest[..at].rfind('<').unwrap();
        let close = at + rest[at..].find('>').unwrap();
        let tag = &rest[open..=close];
        let key = attribute(tag, "data-key").unwrap();
        let value =
            attribute(tag, "data-metric").unwrap_or_else(|| panic!("{key}: no data-metric"));
        let text_end = close + 1 + rest[close + 1..].find('<').unwrap();
        let text = rest[close + 1..text_end].to_owned();
        assert!(
            out.insert(key.clone(), (value, text)).is_none(),
            "{key} shown twice"
        );
        rest = &rest[close..];
    }
    out
}

fn body_state(dom: &str) -> String {
    let at = dom.find("<body").unwrap();
    let close = at + dom[at..].find('>').unwrap();
    attribute(&dom[at..=close], "data-state").unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The same keys the page uses, built from the API's answers (written independently of the
/// page's code).
fn expected_metrics(report: &Value, referrals: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, value: &Value| {
        out.insert(key, text(value));
    };
    for key in [
        "asOf",
        "to",
        "pointsExpired",
        "outstandingBalance",
        "redemptionRate",
        "revenue",
        "averageOrderValue",
        "purchasers",
        "purchaseRate",
    ] {
        put(key.into(), &report[key]);
    }
    for (section, fields, _) in SECTIONS {
        for field in fields {
            put(format!("{section}.{field}"), &report[section][field]);
        }
    }
    for month in report["activityByMonth"].as_array().unwrap() {
        let prefix = format!("activityByMonth.{}", text(&month["month"]));
        for field in ["memberOrders", "revenue", "lastPurchaseMembers"] {
            put(format!("{prefix}.{field}"), &month[field]);
        }
    }
    for bucket in report["membershipDuration"].as_array().unwrap() {
        let prefix = format!("membershipDuration.{}", text(&bucket["minMonths"]));
        for field in [
            "members",
            "orders",
            "revenue",
            "averagePurchase",
            "revenuePerMember",
        ] {
            put(format!("{prefix}.{field}"), &bucket[field]);
        }
    }
    for campaign in report["campaigns"].as_array().unwrap() {
        let prefix = format!("campaigns.{}", text(&campaign["ruleId"]));
        for field in ["pointsIssued", "awards", "membersReached", "budgetSpent"] {
            put(format!("{prefix}.{field}"), &campaign[field]);
        }
        // A campaign without a total budget shows a dash, not a number.
        for field in ["budgetTotal", "budgetRemaining"] {
            if !campaign[field].is_null() {
                put(format!("{prefix}.{field}"), &campaign[field]);
            }
        }
    }
    for (figure, list, name) in [
        ("pointsIssued", "bySource", "source"),
        ("pointsUsed", "byPurpose", "purpose"),
    ] {
        put(format!("{figure}.total"), &report[figure]["total"]);
        put(format!("{figure}.count"), &report[figure]["count"]);
        for row in report[figure][list].as_array().unwrap() {
            let prefix = format!("{figure}.{list}.{}", text(&row[name]));
            for field in ["points", "count", "share"] {
                put(format!("{prefix}.{field}"), &row[field]);
            }
        }
    }
    for field in ["total", "new", "active"] {
        put(format!("members.{field}"), &report["members"][field]);
    }
    // The previous period of the same length, beside each KPI.
    let before = &report["comparison"];
    for key in [
        "from",
        "to",
        "pointsExpired",
        "outstandingBalance",
        "redemptionRate",
        "revenue",
        "averageOrderValue",
        "purchaseRate",
    ] {
        put(format!("comparison.{key}"), &before[key]);
    }
    for (section, _, compared) in SECTIONS {
        for field in compared {
            put(
                format!("comparison.{section}.{field}"),
                &before[section][field],
            );
        }
    }
    put(
        "comparison.pointsIssued.total".into(),
        &before["pointsIssued"]["total"],
    );
    put(
        "comparison.pointsUsed.total".into(),
        &before["pointsUsed"]["total"],
    );
    for field in ["total", "new", "active"] {
        put(
            format!("comparison.members.{field}"),
            &before["members"][field],
        );
    }
    for bucket in report["series"].as_array().unwrap() {
        let prefix = format!("series.{}", text(&bucket["bucketStart"]));
        for field in SERIES_FIELDS {
            put(format!("{prefix}.{field}"), &bucket[field]);
        }
    }
    for field in ["clicks", "registrations", "rewarded"] {
        put(
            format!("referralReport.funnel.{field}"),
            &referrals["funnel"][field],
        );
    }
    for edge in referrals["edges"].as_array().unwrap() {
        let node = &edge["node"];
        let prefix = format!("referralReport.{}", text(&node["member"]["id"]));
        for field in ["totalReferrals", "pendingReferrals", "clicks"] {
            put(format!("{prefix}.{field}"), &node[field]);
        }
    }
    out
}

/// The figures the page shows as percentages (the API's ratios, 4 fraction digits).
fn is_ratio(key: &str) -> bool {
    [".share", "Rate", "Share", ".rate"]
        .iter()
        .any(|end| key.ends_with(end))
}

/// Loads the page for `from..=to` and asserts it shows exactly the API's figures; returns the
/// DOM.
async fn page_equals_api(app: &TestApp, from: &str, to: &str, granularity: &str) -> String {
    let token = app.admin();
    let url = format!(
        "{}/admin#token={token}&from={from}&to={to}&granularity={granularity}",
        app.url
    );
    let dom = dump_dom(&url).await;
    assert_eq!(
        body_state(&dom),
        "ready",
        "the page did not finish loading: {}",
        dom.split("id=\"report-error\"")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take(400)
            .collect::<String>()
    );

    let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
    let (first, last) = (day(from), day(to));
    let compare_to = first - chrono::Duration::days(1);
    let compare_from = first - (last - first) - chrono::Duration::days(1);
    let report = app
        .gql(
            Some(&token),
            REPORT,
            j!({
                "from": from, "to": to, "g": granularity,
                "cf": compare_from.to_string(), "ct": compare_to.to_string(),
            }),
        )
        .await;
    let next_day = (last + chrono::Duration::days(1)).to_string();
    let referrals = app
        .gql(
            Some(&token),
            REFERRALS,
            j!({
                "f": local(TZ, &format!("{from} 00:00:00")),
                "t": local(TZ, &format!("{next_day} 00:00:00")),
            }),
        )
        .await;
    let expected = expected_metrics(
        &report.data()["loyaltyReport"],
        &referrals.data()["referralReport"],
    );
    let shown = shown_metrics(&dom);
    let shown_values: BTreeMap<String, String> = shown
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert_eq!(shown_values, expected, "the page and the API disagree");

    // What a reader sees is the same number, only grouped (and percentages moved two places).
    for (key, (value, shown)) in &shown {
        let plain = shown.replace(',', "").replace('−', "-");
        if is_ratio(key) {
            let percent =
                value.parse::<rust_decimal::Decimal>().unwrap() * rust_decimal::Decimal::from(100);
            assert_eq!(
                plain
                    .trim_end_matches('%')
                    .parse::<rust_decimal::Decimal>()
                    .unwrap(),
                percent,
                "{key}: shown {shown}, API {value}"
            );
        } else if key != "asOf" {
            assert_eq!(plain, *value, "{key}: shown {shown}, API {value}");
        }
    }
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_the_apis_numbers_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    app.clock.set(local(TZ, "2026-03-15 10:00:00"));
    // What `loyalty-server demo` seeds: the program, its campaigns, four weeks of activity.
    let program = app.demo().await;
    app.loyalty.seed_demo_campaigns(&program).await.unwrap();
    app.loyalty.seed_demo_activity(&program).await.unwrap();

    // The demo's four weeks, day by day: hundreds of figures, all equal to the API's.
    let dom = page_equals_api(&app, "2026-02-15", "2026-03-14", "DAY").await;
    let shown = shown_metrics(&dom);
    assert_eq!(
        shown.keys().filter(|k| k.starts_with("series.")).count(),
        28 * SERIES_FIELDS.len()
    );
    assert!(shown["pointsIssued.total"].0.parse::<f64>().unwrap() > 1_000.0);
    assert!(shown
        .keys()
        .any(|k| k.starts_with("referralReport.") && k.ends_with(".totalReferrals")));
    // The sections compare real figures, not zeros: members and walk-in customers ordered,
    // vouchers bought with points were used at checkout, campaigns paid.
    let positive = |key: &str| {
        let value = &shown
            .get(key)
            .unwrap_or_else(|| panic!("{key} not shown"))
            .0;
        value.parse::<rust_decimal::Decimal>().unwrap() > rust_decimal::Decimal::ZERO
    };
    for key in [
        "acquisition.newMembers",
        "acquisition.withPurchase",
        "acquisition.withoutPurchase",
        "coverage.memberOrders",
        "coverage.nonMemberOrders",
        "coverage.memberRevenue",
        "coverage.nonMemberRevenue",
        "coverage.orderShare",
        "coverage.revenueShare",
        "averageDiscount.total",
        "averageDiscount.fromPoints",
        "averageDiscount.vouchers",
        "averageDiscount.rate",
        "averageOrderValues.members",
        "averageOrderValues.nonMembers",
        "averageOrderValues.everyone",
        "purchasers",
        "purchaseRate",
        "activityByMonth.2026-02-15.revenue",
        "activityByMonth.2026-03-01.revenue",
        "activityByMonth.2026-03-01.lastPurchaseMembers",
        "membershipDuration.0.members",
    ] {
        assert!(positive(key), "{key} is {:?}", shown.get(key));
    }
    assert_ne!(shown["coverage.orderShare"].0, "1.0000");
    let issuing = shown
        .keys()
        .filter(|k| k.starts_with("campaigns.") && k.ends_with(".pointsIssued") && positive(k))
        .count();
    assert!(issuing >= 3, "only {issuing} campaigns issued points");
    assert!(
        shown
            .keys()
            .any(|k| k.starts_with("campaigns.") && k.ends_with(".budgetSpent") && positive(k)),
        "no campaign spent any of its budget"
    );
    assert!(shown
        .keys()
        .any(|k| k.starts_with("campaigns.") && k.ends_with(".budgetRemaining")));

    // By week, over a period with no activity at all: zeros and the referrals' empty state.
    let dom = page_equals_api(&app, "2025-01-01", "2025-01-31", "WEEK").await;
    assert!(dom.contains("No referrals in this period"));
    assert_eq!(shown_metrics(&dom)["pointsIssued.total"].0, "0.00");
}

/// A server built from `config` on a free port, with a manual clock.
async fn serve(config: Config) -> (String, Loyalty, CancellationToken) {
    let clock = ManualClock::new(local(TZ, "2026-03-15 10:00:00"));
    let app = loyalty_server::build(config, Arc::new(clock))
        .await
        .unwrap();
    let loyalty = app.loyalty().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = CancellationToken::new();
    tokio::spawn(loyalty_server::run(app, listener, token.clone()));
    (url, loyalty, token)
}

fn env_config(data_dir: &std::path::Path, jwt_secret: Option<&str>) -> Config {
    let data_dir = data_dir.display().to_string();
    let jwt_secret = jwt_secret.map(str::to_owned);
    Config::from_lookup(move |name| match name {
        "DATA_DIR" => Some(data_dir.clone()),
        "JWT_SECRET" => jwt_secret.clone(),
        "EXPIRY_INTERVAL_SECS" => Some("0".into()),
        _ => None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn development_login_signs_into_demo_in_the_embedded_default_only() {
    let dir = std::env::temp_dir().join(format!("loyalty-devlogin-{}", uuid::Uuid::new_v4()));
    let client = reqwest::Client::new();

    // The embedded default: no JWT_SECRET, so the server generated its development secret.
    let (url, loyalty, stop) = serve(env_config(&dir.join("embedded"), None)).await;
    let login = format!("{url}/admin/dev-login");
    let probe: Value = client
        .get(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(probe, j!({ "available": true, "program": "demo" }));
    // Before `demo` ran there is nothing to sign into, and the answer says what to do.
    let early = client.post(&login).send().await.unwrap();
    assert_eq!(early.status().as_u16(), 409);
    let early: Value = early.json().await.unwrap();
    assert!(early["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("loyalty-server demo"));

    loyalty.seed_demo().await.unwrap();
    let answer = client.post(&login).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["program"], "demo");
    assert_eq!(answer["expiresInSecs"], 8 * 3600);
    let token = answer["token"].as_str().unwrap();
    // The token is an admin's of `demo`: admin-only queries answer.
    let report: Value = client
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&j!({ "query": "{ program { externalId } loyaltyReport(from: \"2026-03-01\", to: \"2026-03-14\") { pointsIssued { total } members { total } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report,
        j!({ "data": {
            "program": { "externalId": "demo" },
            "loyaltyReport": { "pointsIssued": { "total": "0.00" }, "members": { "total": 0 } },
        } })
    );
    stop.cancel();

    // A configured JWT_SECRET: the route does not exist (nor does the page offer it).
    let secret = "a-configured-production-secret-0123456789abcdef";
    let (url, loyalty, stop) = serve(env_config(&dir.join("configured"), Some(secret))).await;
    loyalty.seed_demo().await.unwrap();
    let login = format!("{url}/admin/dev-login");
    let post = client.post(&login).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 404);
    let post: Value = post.json().await.unwrap();
    assert_eq!(post["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(
        client.get(&login).send().await.unwrap().status().as_u16(),
        404
    );
    // The dashboard itself is still there: sign in with a token.
    assert_eq!(
        client
            .get(format!("{url}/admin"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A same-host reverse proxy forwards its own `Host`, and a DNS-rebinding page reaches the
/// loopback port under its own domain: both are refused, as is any cross-site request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn development_login_answers_only_same_origin_loopback_requests() {
    let dir = std::env::temp_dir().join(format!("loyalty-devlogin-{}", uuid::Uuid::new_v4()));
    let (url, loyalty, stop) = serve(env_config(&dir, None)).await;
    loyalty.seed_demo().await.unwrap();
    let client = reqwest::Client::new();
    let login = format!("{url}/admin/dev-login");
    let host = url.trim_start_matches("http://").to_owned();
    let port = host.rsplit_once(':').unwrap().1.to_owned();

    let refused = [
        vec![("host", "rebind.attacker.example".to_owned())],
        vec![("host", format!("shop.example:{port}"))],
        vec![("origin", "http://rebind.attacker.example".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("origin", format!("https://{host}"))],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
    ];
    for headers in refused {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let mut request = client.request(method.clone(), &login);
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 404, "{method} {headers:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
        }
    }

    // What the page itself sends (same origin), and other loopback spellings, still work.
    let allowed = [
        vec![
            ("origin", format!("http://{host}")),
            ("sec-fetch-site", "same-origin".to_owned()),
        ],
        vec![("host", format!("localhost:{port}"))],
        vec![
            ("host", format!("localhost:{port}")),
            ("origin", format!("http://localhost:{port}")),
        ],
        vec![
            ("host", format!("[::1]:{port}")),
            ("sec-fetch-site", "none".to_owned()),
        ],
    ];
    for headers in allowed {
        let mut request = client.post(&login);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["token"].is_string(), "{body}");
    }
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_assets_are_embedded_and_need_no_network() {
    let app = spawn_app(Backend::Sqlite).await;
    // The test server's key is configured (not the development file): no development login.
    let login = app
        .client
        .post(format!("{}/admin/dev-login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 404);

    for (path, content_type, marker) in [
        (
            "/admin",
            "text/html; charset=utf-8",
            "<script src=\"/admin/app.js\"",
        ),
        (
            "/admin/",
            "text/html; charset=utf-8",
            "Customer Loyalty Report",
        ),
        (
            "/admin/app.js",
            "text/javascript; charset=utf-8",
            "graphql-transport-ws",
        ),
        ("/admin/app.css", "text/css; charset=utf-8", ".kpi"),
        ("/admin/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let csp = response
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path} lacks {marker}");
        // Offline: nothing is fetched from another host (no CDN, no web fonts). The SVG
        // namespace is a name, not a download.
        let body = body.replace("http://www.w3.org/2000/svg", "");
        for remote in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!body.contains(remote), "{path} refers to {remote}");
        }
        if path == "/admin" || path == "/admin/" {
            let csp = csp.expect("the page has a CSP");
            assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_sends_non_admins_back_to_sign_in_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    app.demo().await;
    for (token, says) in [
        (app.member("alice"), "FORBIDDEN"),
        (app.service(), "FORBIDDEN"),
        ("not-a-jwt".to_owned(), "UNAUTHENTICATED"),
    ] {
        let dom = dump_dom(&format!("{}/admin#token={token}", app.url)).await;
        assert_eq!(body_state(&dom), "error");
        let at = dom.find("id=\"signin-error\"").unwrap();
        let message = &dom[at..at + dom[at..].find("</p>").unwrap()];
        assert!(message.contains(says), "{says} not in {message}");
        assert!(!message.contains("hidden"), "the sign-in error is hidden");
        // No figure of the program reached the page.
        assert!(shown_metrics(&dom).is_empty());
    }
}

/// The ticker is fed by the `activity` subscription: postings committed while the page is open
/// appear on it, with their exact amounts, and nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_ticker_shows_postings_as_they_commit_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    app.demo().await;
    let (_, member_id) = app.register("ticker").await;
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let today = loyalty_domain::clock::Clock::now(&app.clock)
        .with_timezone(&tz)
        .format("%Y-%m-%d")
        .to_string();
    let url = format!(
        "{}/admin#token={}&from={today}&to={today}&granularity=DAY",
        app.url,
        app.admin()
    );
    let mut page = Browser::open(&url, DESKTOP).await;
    page.wait_for(
        "the live feed",
        "document.getElementById('live-status').textContent === 'live'",
    )
    .await;
    let mut posted = Vec::new();
    for (n, amount) in ["1.25", "3.00", "0.50"].iter().enumerate() {
        let r = app
            .gql(
                Some(&app.admin()),
                "mutation($m: ID!, $a: Decimal!, $k: String!) { adjustPoints(memberId: $m, amount: $a, reason: \"ticker\", idempotencyKey: $k) { transaction { id } } }",
                j!({"m": member_id, "a": amount, "k": format!("tick-{n}")}),
            )
            .await;
        let id = r.data()["adjustPoints"]["transaction"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        posted.push((format!("activity.{id}.delta"), (*amount).to_owned()));
    }
    page.wait_for(
        "three ticker lines",
        "document.querySelectorAll('#ticker li').length === 3",
    )
    .await;
    let shown: Value = page
        .eval(
            "JSON.stringify([...document.querySelectorAll('#ticker [data-key]')].map(e => [e.dataset.key, e.dataset.metric]))",
        )
        .await;
    let mut shown: Vec<(String, String)> = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    shown.sort();
    posted.sort();
    assert_eq!(
        shown, posted,
        "the ticker shows exactly the postings, with their amounts"
    );
}

/// The coverage card shows members' share of revenue or of orders (both views carry the API's
/// figures, compared above); its toggle switches between them, and the choice outlives a reload
/// of the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coverage_toggle_switches_between_revenue_and_orders_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    app.demo().await;
    let url = format!(
        "{}/admin#token={}&from=2026-03-01&to=2026-03-14&granularity=DAY",
        app.url,
        app.admin()
    );
    let mut page = Browser::open(&url, DESKTOP).await;
    page.wait_for("the report", "document.body.dataset.state === 'ready'")
        .await;
    let shown = "JSON.stringify([['revenue', 'orders'].map(v => !document.getElementById('coverage-' + v).hidden), [...document.querySelectorAll('[data-coverage]')].map(b => b.getAttribute('aria-pressed'))])";
    assert_eq!(
        page.eval(shown).await,
        j!(r#"[[true,false],["true","false"]]"#)
    );

    page.eval("document.querySelector('[data-coverage=orders]').click()")
        .await;
    assert_eq!(
        page.eval(shown).await,
        j!(r#"[[false,true],["false","true"]]"#)
    );

    // By week now: the figures are drawn again, and the orders view stays chosen.
    page.eval("(() => { const g = document.getElementById('granularity'); g.value = 'WEEK'; g.dispatchEvent(new Event('change')); })()")
        .await;
    page.wait_for(
        "the weekly report",
        "document.body.dataset.state === 'ready' && !!document.querySelector('[data-key=\"series.2026-02-23.memberOrders\"]')",
    )
    .await;
    assert_eq!(
        page.eval(shown).await,
        j!(r#"[[false,true],["false","true"]]"#)
    );

    page.eval("document.querySelector('[data-coverage=revenue]').click()")
        .await;
    assert_eq!(
        page.eval(shown).await,
        j!(r#"[[true,false],["true","false"]]"#)
    );
}
