//! Program settings: every role reads them, admins change them, every instance follows.

use crate::e2e;
use crate::helpers::*;

const UPDATE: &str = "mutation($i: ProgramInput!) { updateProgram(input: $i) { timezone referralLinkTemplate validityDays } }";

fn settings(timezone: &str, template: Option<&str>) -> serde_json::Value {
    j!({"i": {"name": "Demo Mini-App Shop", "timezone": timezone, "pointsPerCurrency": "10", "validityDays": 365, "referralLinkTemplate": template}})
}

e2e!(
    admins_change_settings_and_every_instance_follows,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let other = spawn_app_at(app.backend, Some(&app), None).await;
        // The second instance reads (and caches) the settings before the change.
        let before = other
            .gql(Some(&token), "{ program { timezone currency } }", j!({}))
            .await;
        assert_eq!(before.data()["program"]["timezone"], "Asia/Ho_Chi_Minh");
        let template = "https://t.me/demo_bot/shop?startapp=ref_{code}";
        let updated = app
            .gql(
                Some(&app.admin()),
                UPDATE,
                settings("Europe/Berlin", Some(template)),
            )
            .await;
        assert_eq!(updated.data()["updateProgram"]["timezone"], "Europe/Berlin");
        let me = app
            .gql(Some(&token), "{ me { referralCode referralLink } }", j!({}))
            .await;
        let code = me.data()["me"]["referralCode"].as_str().unwrap();
        assert_eq!(
            me.data()["me"]["referralLink"],
            template.replace("{code}", code).as_str()
        );
        if app.backend == Backend::Postgres {
            // Through Redis pub/sub the other instance drops its copy (bounded wait, no timing claim).
            let mut seen = String::new();
            for _ in 0..100 {
                let r = other
                    .gql(Some(&token), "{ program { timezone } }", j!({}))
                    .await;
                seen = r.data()["program"]["timezone"].as_str().unwrap().to_owned();
                if seen == "Europe/Berlin" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(seen, "Europe/Berlin");
        }
    }
);

e2e!(
    program_refusals_have_exact_codes,
    |app: TestApp| async move {
        app.demo().await;
        let (token, _) = app.register("m1").await;
        let admin = app.admin();
        assert_eq!(
            app.gql(Some(&admin), UPDATE, settings("Mars/Olympus", None))
                .await
                .code(),
            "VALIDATION"
        );
        assert_eq!(
            app.gql(
                Some(&admin),
                UPDATE,
                settings("UTC", Some("https://x.example/no-code"))
            )
            .await
            .code(),
            "VALIDATION"
        );
        assert_eq!(
            app.gql(
                Some(&admin),
                UPDATE,
                settings("UTC", Some("javascript:{code}"))
            )
            .await
            .code(),
            "VALIDATION"
        );
        assert_eq!(
            app.gql(Some(&token), UPDATE, settings("UTC", None))
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            app.gql(Some(&app.service()), UPDATE, settings("UTC", None))
                .await
                .code(),
            "FORBIDDEN"
        );
        let unchanged = app
            .gql(
                Some(&token),
                "{ program { timezone } me { referralLink } }",
                j!({}),
            )
            .await;
        assert_eq!(unchanged.data()["program"]["timezone"], "Asia/Ho_Chi_Minh");
        assert!(unchanged.data()["me"]["referralLink"].is_null());
    }
);
