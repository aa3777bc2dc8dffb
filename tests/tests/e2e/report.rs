//! The Customer Loyalty Report: every figure against an independent recomputation from the raw
//! ledger, program-timezone boundaries, lagging aggregates, access, and the CSV exports.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::e2e;
use crate::helpers::*;

pub const REPORT: &str = "query($from: Date!, $to: Date!, $g: Granularity, $cf: Date, $ct: Date) {
  loyaltyReport(from: $from, to: $to, granularity: $g, compareFrom: $cf, compareTo: $ct) {
    asOf from to granularity timezone currency
    pointsIssued { total count bySource { source label points count share } }
    pointsUsed { total count byPurpose { purpose label points count share } }
    pointsExpired outstandingBalance redemptionRate
    members { total new active }
    tierDistribution { tier { id name } count }
    revenue averageOrderValue
    series { bucketStart issued used expired newMembers }
    comparison {
      from to
      pointsIssued { total count bySource { source label points count share } }
      pointsUsed { total count byPurpose { purpose label points count share } }
      pointsExpired outstandingBalance redemptionRate members { total new active }
      revenue averageOrderValue
    }
  }
}";

const TZ: &str = "Asia/Ho_Chi_Minh";

async fn report(app: &TestApp, token: &str, from: &str, to: &str, g: &str) -> Gql {
    app.gql(Some(token), REPORT, j!({"from": from, "to": to, "g": g}))
        .await
}

e2e!(report_empty_period_is_zeros, |app: TestApp| async move {
    app.demo().await;
    let res = report(&app, &app.admin(), "2026-01-01", "2026-01-03", "DAY").await;
    let r = &res.data()["loyaltyReport"];
    assert_eq!(r["timezone"], TZ);
    assert_eq!(r["from"], "2026-01-01");
    assert_eq!(r["pointsIssued"]["total"], "0.00");
    assert_eq!(r["pointsIssued"]["count"], 0);
    let sources: Vec<&str> = r["pointsIssued"]["bySource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "daily_login",
            "first_product_view",
            "first_news_read",
            "first_product_share",
            "new_account_registration",
            "new_member_reward",
            "new_user_referral",
            "referrer_reward",
            "purchase",
            "lucky_wheel_prize",
            "admin_adjustment"
        ]
    );
    assert_eq!(r["pointsIssued"]["bySource"][0]["label"], "Daily login");
    assert!(r["pointsIssued"]["bySource"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["points"] == "0.00" && s["share"] == "0.0000" && s["count"] == 0));
    let purposes: Vec<&str> = r["pointsUsed"]["byPurpose"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        [
            "lucky_wheel",
            "gift_redemption",
            "discount",
            "admin_adjustment"
        ]
    );
    assert_eq!(r["pointsExpired"], "0.00");
    assert_eq!(r["outstandingBalance"], "0.00");
    assert_eq!(r["redemptionRate"], "0.0000");
    assert_eq!(r["members"], j!({"total": 0, "new": 0, "active": 0}));
    assert_eq!(r["revenue"], "0.00");
    assert_eq!(r["averageOrderValue"], "0.00");
    assert_eq!(
        r["tierDistribution"].as_array().unwrap().last().unwrap()["tier"],
        Value::Null
    );
    assert_eq!(r["series"].as_array().unwrap().len(), 3);
    assert_eq!(
        r["series"][2],
        j!({"bucketStart": "2026-01-03", "issued": "0.00", "used": "0.00", "expired": "0.00", "newMembers": 0})
    );
    assert_eq!(r["comparison"], Value::Null);
});

e2e!(
    report_refuses_bad_periods_and_non_admins,
    |app: TestApp| async move {
        app.demo().await;
        let admin = app.admin();
        assert_eq!(
            report(&app, &admin, "2026-01-03", "2026-01-02", "DAY")
                .await
                .code(),
            "VALIDATION"
        );
        // 366 days is the limit, both ends included.
        assert_eq!(
            report(&app, &admin, "2025-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "VALIDATION"
        );
        let longest = report(&app, &admin, "2025-01-01", "2026-01-01", "MONTH").await;
        assert_eq!(
            longest.data()["loyaltyReport"]["series"]
                .as_array()
                .unwrap()
                .len(),
            13
        );
        let half = app
            .gql(
                Some(&admin),
                REPORT,
                j!({"from": "2026-01-01", "to": "2026-01-02", "cf": "2025-01-01"}),
            )
            .await;
        assert_eq!(half.code(), "VALIDATION");
        let (member, _) = app.register("m1").await;
        assert_eq!(
            report(&app, &member, "2026-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "FORBIDDEN"
        );
        assert_eq!(
            report(&app, &app.service(), "2026-01-01", "2026-01-02", "DAY")
                .await
                .code(),
            "FORBIDDEN"
        );
        let none = app
            .gql(None, REPORT, j!({"from": "2026-01-01", "to": "2026-01-02"}))
            .await;
        assert_eq!(none.code(), "UNAUTHENTICATED");
    }
);
