//! `POST /auth/telegram`: Telegram Mini App init data, signed here independently of the server's
//! code (HMAC-SHA256 keyed by HMAC("WebAppData", bot token) over the sorted data-check string),
//! exchanged for a member token; `start_param=ref_<code>` attributes the referral.

use hmac::{Hmac, Mac};
use loyalty_domain::clock::Clock;
use serde_json::Value;
use sha2::Sha256;

use crate::e2e;
use crate::helpers::*;

pub const BOT_TOKEN: &str = "7012345678:AAHk-test_TOKEN_for-e2e";
const SET_TOKEN: &str = "mutation($t: String) { setTelegramBotToken(botToken: $t) }";

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The data-check string of `fields` and the query string a mini-app would receive.
pub fn init_data(fields: &[(&str, String)], bot_token: &str) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let check = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let secret = hmac(b"WebAppData", bot_token.as_bytes());
    let hash = hex::encode(hmac(&secret, check.as_bytes()));
    let mut query: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    query.push(format!("hash={hash}"));
    query.join("&")
}

pub fn fields(
    app: &TestApp,
    user_id: i64,
    start_param: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc".to_owned()),
        (
            "user",
            format!(
                r#"{{"id":{user_id},"first_name":"Mai","last_name":"Nguyễn","username":"mai_ng","language_code":"vi"}}"#
            ),
        ),
        ("auth_date", app.clock.now().timestamp().to_string()),
        ("signature", "aW50ZWdyaXR5LWlzLWtleQ".to_owned()),
    ];
    if let Some(p) = start_param {
        fields.push(("start_param", p.to_owned()));
    }
    fields
}

async fn launch(app: &TestApp, program: &str, init_data: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/auth/telegram", app.url))
        .json(&j!({"initData": init_data, "program": program}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn with_bot(app: &TestApp) {
    app.demo().await;
    let r = app
        .gql(Some(&app.admin()), SET_TOKEN, j!({"t": BOT_TOKEN}))
        .await;
    assert_eq!(r.data()["setTelegramBotToken"], true);
}

/// How many members the demo program has.
async fn member_count(app: &TestApp) -> u64 {
    let r = app
        .gql(
            Some(&app.admin()),
            "{ members(first: 100) { edges { cursor } } }",
            j!({}),
        )
        .await;
    r.data()["members"]["edges"].as_array().unwrap().len() as u64
}

e2e!(
    a_signed_launch_signs_the_member_in,
    |app: TestApp| async move {
        with_bot(&app).await;
        let (status, body) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 279058397, None), BOT_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tokenType"], "Bearer");
        assert_eq!(body["expiresIn"], 3600);
        assert_eq!(body["created"], true);
        assert_eq!(body["member"]["externalId"], "tg-279058397");
        assert_eq!(body["member"]["displayName"], "Mai Nguyễn");
        // Joined and registered: new_member_reward 20 + new_account_registration 50.
        assert_eq!(body["member"]["balance"], "70.00");
        assert_eq!(body["referral"], Value::Null);

        // The token is a member token for that member.
        let token = body["token"].as_str().unwrap().to_owned();
        let me = app
            .gql(
                Some(&token),
                "{ me { id externalId displayName balance } }",
                j!({}),
            )
            .await;
        assert_eq!(me.data()["me"]["id"], body["member"]["id"]);
        assert_eq!(me.data()["me"]["balance"], "70.00");

        // Launching again finds the same member and pays nothing more.
        let (status, again) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 279058397, None), BOT_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["created"], false);
        assert_eq!(again["member"]["id"], body["member"]["id"]);
        assert_eq!(again["member"]["balance"], "70.00");
        assert_eq!(member_count(&app).await, 1);
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    start_param_attributes_the_referral,
    |app: TestApp| async move {
        with_bot(&app).await;
        let (inviter, _) = app.register("alice").await;
        let code = app
            .gql(Some(&inviter), "{ me { referralCode } }", j!({}))
            .await
            .data()["me"]["referralCode"]
            .as_str()
            .unwrap()
            .to_owned();
        let start = format!("ref_{code}");
        let (status, body) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 42, Some(&start)), BOT_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["referral"]["status"], "REWARDED");
        // 70 for joining and registering, 30 new_user_referral; the inviter gets 50.
        assert_eq!(body["member"]["balance"], "100.00");
        app.settle_work().await;
        assert_eq!(app.balance(&inviter).await, "120.00");

        // The same link again: the answer still explains the referral; nothing is paid twice.
        let (_, again) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 42, Some(&start)), BOT_TOKEN),
        )
        .await;
        assert_eq!(again["created"], false);
        assert_eq!(again["referral"]["status"], "REWARDED");
        assert_eq!(again["member"]["balance"], "100.00");
        assert_eq!(app.balance(&inviter).await, "120.00");

        // A start parameter that is not a referral is ignored; an unknown code is explained.
        let (_, other) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 43, Some("promo_summer")), BOT_TOKEN),
        )
        .await;
        assert_eq!(other["referral"], Value::Null);
        let (_, unknown) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 44, Some("ref_NOSUCH")), BOT_TOKEN),
        )
        .await;
        assert_eq!(unknown["referral"]["status"], "UNKNOWN_CODE");
        assert_eq!(unknown["member"]["balance"], "70.00");
        app.assert_ledger_invariants().await;
    }
);

e2e!(
    bad_init_data_is_refused_with_401,
    |app: TestApp| async move {
        with_bot(&app).await;
        let good = init_data(&fields(&app, 7, None), BOT_TOKEN);
        let refused = |body: &Value, needle: &str| {
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{body}"
            );
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        };

        // A tampered field: the signed user id 7 changed to 8.
        let tampered = good.replace("%22id%22%3A7%2C", "%22id%22%3A8%2C");
        assert_ne!(tampered, good);
        let (status, body) = launch(&app, "demo", &tampered).await;
        assert_eq!(status, 401);
        refused(&body, "signature does not match");

        // A wrong hash: signed with another bot's token, and a hash that is not even hex.
        let (status, body) = launch(
            &app,
            "demo",
            &init_data(&fields(&app, 7, None), "1:another-bot"),
        )
        .await;
        assert_eq!(status, 401);
        refused(&body, "signature does not match");
        let (hashless, _) = good.rsplit_once("&hash=").unwrap();
        let (status, body) = launch(&app, "demo", &format!("{hashless}&hash=nothex")).await;
        assert_eq!(status, 401);
        refused(&body, "signature does not match");

        // A missing hash.
        let (status, body) = launch(&app, "demo", hashless).await;
        assert_eq!(status, 401);
        refused(&body, "no hash");

        // A stale auth_date: one second past the 24-hour window (the server's clock decides).
        let mut stale = fields(&app, 7, None);
        stale[2].1 = (app.clock.now().timestamp() - 86_401).to_string();
        let (status, body) = launch(&app, "demo", &init_data(&stale, BOT_TOKEN)).await;
        assert_eq!(status, 401);
        refused(&body, "too old");
        // The same payload is fine while it is inside the window.
        stale[2].1 = (app.clock.now().timestamp() - 86_000).to_string();
        assert_eq!(
            launch(&app, "demo", &init_data(&stale, BOT_TOKEN)).await.0,
            200
        );
        assert_eq!(member_count(&app).await, 1);

        // Nobody was created by the refusals: only the one good launch above.
        let (status, body) = launch(&app, "demo", "").await;
        assert_eq!(status, 401);
        refused(&body, "empty");
        assert_eq!(member_count(&app).await, 1);
    }
);

e2e!(
    launch_needs_a_configured_program,
    |app: TestApp| async move {
        app.demo().await;
        let data = init_data(&fields(&app, 7, None), BOT_TOKEN);
        // No bot token set yet.
        let (status, body) = launch(&app, "demo", &data).await;
        assert_eq!(status, 401);
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("does not accept"));
        let r = app
            .gql(Some(&app.admin()), "{ telegramSignIn }", j!({}))
            .await;
        assert_eq!(r.data()["telegramSignIn"], false);

        // Only admins set it, and it must look like a bot token.
        let r = app
            .gql(Some(&app.member("m")), SET_TOKEN, j!({"t": BOT_TOKEN}))
            .await;
        assert_eq!(r.code(), "FORBIDDEN");
        let r = app
            .gql(Some(&app.service()), SET_TOKEN, j!({"t": BOT_TOKEN}))
            .await;
        assert_eq!(r.code(), "FORBIDDEN");
        let r = app
            .gql(Some(&app.admin()), SET_TOKEN, j!({"t": "not a token"}))
            .await;
        assert_eq!(r.code(), "VALIDATION");
        with_bot(&app).await;
        assert_eq!(launch(&app, "demo", &data).await.0, 200);
        let r = app
            .gql(Some(&app.admin()), "{ telegramSignIn }", j!({}))
            .await;
        assert_eq!(r.data()["telegramSignIn"], true);

        // Turned off again.
        let r = app
            .gql(Some(&app.admin()), SET_TOKEN, j!({"t": null}))
            .await;
        assert_eq!(r.data()["setTelegramBotToken"], false);
        assert_eq!(launch(&app, "demo", &data).await.0, 401);

        // An unknown program, and a body that is not the expected JSON.
        let (status, body) = launch(&app, "nosuch", &data).await;
        assert_eq!(
            (status, body["errors"][0]["extensions"]["code"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        let response = app
            .client
            .post(format!("{}/auth/telegram", app.url))
            .json(&j!({"initData": data}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "VALIDATION");
    }
);
