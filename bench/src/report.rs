//! `--report`: the Customer Loyalty Report at scale. Seeds millions of ledger rows into the
//! `demo` program with set-based `INSERT … SELECT generate_series` (plus members, purchases,
//! refunds, non-members' orders and refunds, voucher uses), waits for the running server's
//! folder to catch up (no VACUUM after it: what a report right after a backfill sees), then
//! measures `loyaltyReport` with every section over HTTP, sequentially, on varying 30-day and
//! 365-day windows, beside a naive `GROUP BY` over the raw ledger computing the original
//! figures of a 30-day window.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::stats::{table_header, table_row, Recorder};

pub struct ReportConfig<'a> {
    pub server: &'a str,
    pub database_url: &'a str,
    pub token: String,
    pub rows: i64,
    pub members: i64,
    pub iterations: usize,
    pub fold_timeout: Duration,
}

/// Days of history the seeded rows cover (ending now).
const HISTORY_DAYS: i64 = 365;
const TZ: &str = "Asia/Ho_Chi_Minh";
const BATCH: i64 = 500_000;

const QUERY: &str = "query($from: Date!, $to: Date!) { loyaltyReport(from: $from, to: $to) {
  asOf pointsIssued { total count bySource { source points count share } }
  pointsUsed { total count byPurpose { purpose points count share } }
  pointsExpired outstandingBalance redemptionRate members { total new active }
  tierDistribution { tier { id } count } revenue averageOrderValue
  acquisition { newMembers withPurchase withoutPurchase }
  coverage { memberOrders nonMemberOrders orderShare memberRevenue nonMemberRevenue revenueShare }
  averageDiscount { total fromPoints fromPrizes vouchers rate }
  averageOrderValues { members nonMembers everyone } purchasers purchaseRate
  activityByMonth { month memberOrders revenue lastPurchaseMembers }
  membershipDuration { label members orders revenue averagePurchase revenuePerMember }
  campaigns { ruleId pointsIssued awards membersReached budgetSpent budgetRemaining }
  series { bucketStart issued used expired newMembers newMembersWithPurchase memberOrders
    memberRevenue nonMemberOrders nonMemberRevenue discount } } }";

async fn seed(pool: &PgPool, cfg: &ReportConfig<'_>) -> Result<i64> {
    let program: i64 = sqlx::query("SELECT id FROM programs WHERE external_id = 'demo'")
        .fetch_one(pool)
        .await
        .context("program `demo` (run `loyalty-server demo` first)")?
        .get(0);
    let existing: i64 = sqlx::query("SELECT COUNT(*) FROM ledger_entries WHERE program_id = $1")
        .bind(program)
        .fetch_one(pool)
        .await?
        .get(0);
    if existing >= cfg.rows {
        eprintln!("      {existing} ledger rows already there; not seeding");
        return Ok(program);
    }
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO members (program_id, external_id, display_name, referral_code, joined_at, \
         login_streak) SELECT $1, 'rb-' || g, 'Member ' || g, 'RB' || g, \
         now() - make_interval(secs => (($3 - g)::float8 / $3) * $4 * 86400), 0 \
         FROM generate_series(1, $2) AS g",
    )
    .bind(program)
    .bind(cfg.members)
    .bind(cfg.members as f64)
    .bind(HISTORY_DAYS as f64)
    .execute(pool)
    .await?;
    let first_member: i64 = sqlx::query(
        "SELECT MIN(id) FROM members WHERE program_id = $1 AND external_id LIKE 'rb-%'",
    )
    .bind(program)
    .fetch_one(pool)
    .await?
    .get(0);
    // Row g: a member, a kind (12 earns of the 11 sources, 4 spends, a gift refund, a purchase
    // reversal, an expiry, an adjustment), and an instant that grows with g over the history.
    let mut done = 0;
    while done < cfg.rows {
        let upto = (done + BATCH).min(cfg.rows);
        sqlx::query(
            "INSERT INTO ledger_entries (program_id, member_id, account, amount_minor, kind, \
             source, purpose, member_version, created_at) \
             SELECT $1, $2 + (g % $5), 'POINTS', \
               CASE WHEN g % 20 < 12 THEN 500 WHEN g % 20 < 16 THEN -300 WHEN g % 20 = 16 THEN 300 \
                    WHEN g % 20 = 17 THEN -100 WHEN g % 20 = 18 THEN -50 \
                    WHEN g % 40 = 19 THEN 200 ELSE -100 END, \
               CASE WHEN g % 20 < 12 THEN 'EARN' WHEN g % 20 < 16 THEN 'SPEND' \
                    WHEN g % 20 = 16 THEN 'REFUND' WHEN g % 20 = 17 THEN 'REVERSAL' \
                    WHEN g % 20 = 18 THEN 'EXPIRE' ELSE 'ADJUST' END, \
               CASE WHEN g % 20 < 12 THEN (ARRAY['daily_login','first_product_view', \
                    'first_news_read','first_product_share','new_account_registration', \
                    'new_member_reward','new_user_referral','referrer_reward','purchase', \
                    'lucky_wheel_prize','daily_login','purchase'])[(g % 20)::int + 1] \
                    WHEN g % 20 = 17 THEN 'purchase' \
                    WHEN g % 40 = 19 THEN 'admin_adjustment' END, \
               CASE WHEN g % 20 BETWEEN 12 AND 15 THEN (ARRAY['lucky_wheel','gift_redemption', \
                    'discount','gift_redemption'])[(g % 20)::int - 11] \
                    WHEN g % 20 = 16 THEN 'gift_redemption' \
                    WHEN g % 20 = 19 AND g % 40 <> 19 THEN 'admin_adjustment' END, \
               g, now() - make_interval(secs => (($4 - g)::float8 / $4) * $6 * 86400) \
             FROM generate_series($3 + 1, $7) AS g",
        )
        .bind(program)
        .bind(first_member)
        .bind(done)
        .bind(cfg.rows as f64)
        .bind(cfg.members)
        .bind(HISTORY_DAYS as f64)
        .bind(upto)
        .execute(pool)
        .await?;
        done = upto;
        eprintln!("      {done} ledger rows ({:.0?})", started.elapsed());
    }
    let purchases = cfg.rows / 25;
    sqlx::query(
        "INSERT INTO purchases (program_id, member_id, order_id, amount_minor, refunded_minor, \
         points_minor, reversed_minor, unrecovered_minor, created_at) \
         SELECT $1, $2 + (g % $3), 'rb-order-' || g, 1000 + (g % 50) * 100, 0, 0, 0, 0, \
         now() - make_interval(secs => (($4 - g)::float8 / $4) * $5 * 86400) \
         FROM generate_series(1, $6) AS g",
    )
    .bind(program)
    .bind(first_member)
    .bind(cfg.members)
    .bind(purchases as f64)
    .bind(HISTORY_DAYS as f64)
    .bind(purchases)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO refunds (program_id, purchase_id, amount_minor, points_reversed_minor, \
         points_unrecovered_minor, created_at) \
         SELECT program_id, id, 500, 0, 0, created_at + interval '1 day' FROM purchases \
         WHERE program_id = $1 AND id % 10 = 0",
    )
    .bind(program)
    .execute(pool)
    .await?;
    // Non-members' orders (a quarter of the members' count) with a refund on every tenth, and
    // voucher uses (one per 50 orders), over the same year.
    let guests = purchases / 4;
    sqlx::query(
        "INSERT INTO guest_orders (program_id, order_id, customer_id, amount_minor, \
         refunded_minor, idempotency_key, created_at) \
         SELECT $1, 'rb-guest-' || g, NULL, 800 + (g % 40) * 100, 0, 'rb-guest-' || g, \
         now() - make_interval(secs => (($2 - g)::float8 / $2) * $3 * 86400) \
         FROM generate_series(1, $4) AS g",
    )
    .bind(program)
    .bind(guests as f64)
    .bind(HISTORY_DAYS as f64)
    .bind(guests)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO guest_refunds (program_id, guest_order_id, amount_minor, created_at) \
         SELECT program_id, id, 300, created_at + interval '2 days' FROM guest_orders \
         WHERE program_id = $1 AND id % 10 = 0",
    )
    .bind(program)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO voucher_uses (program_id, voucher_id, member_id, origin, value_minor, \
         order_id, created_at) SELECT $1, -g, $2 + (g % $3), \
         CASE WHEN g % 3 = 0 THEN 'wheel' ELSE 'discount' END, 500, 'rb-order-' || g, \
         now() - make_interval(secs => (($4 - g)::float8 / $4) * $5 * 86400) \
         FROM generate_series(1, $6) AS g",
    )
    .bind(program)
    .bind(first_member)
    .bind(cfg.members)
    .bind((purchases / 50) as f64)
    .bind(HISTORY_DAYS as f64)
    .bind(purchases / 50)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    eprintln!("      seeded in {:.1?}", started.elapsed());
    Ok(program)
}

async fn wait_folded(pool: &PgPool, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let behind = loyalty_domain::report::fold::TABLES
        .iter()
        .map(|t| {
            format!(
                "(SELECT COUNT(*) FROM report_watermarks WHERE name = '{t}' AND last_id < \
                 (SELECT COALESCE(MAX(id), 0) FROM {t}))"
            )
        })
        .collect::<Vec<_>>()
        .join(" + ");
    loop {
        let behind: i64 = sqlx::query(&format!("SELECT CAST({behind} AS BIGINT)"))
            .fetch_one(pool)
            .await?
            .get(0);
        if behind == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("the server's folder did not catch up within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The same figures straight from the raw tables, as one would without aggregates.
async fn naive(pool: &PgPool, program: i64, from: &str, to: &str) -> Result<()> {
    let range = "(SELECT ($2::date)::timestamp AT TIME ZONE $4 AS s, \
                 ($3::date + 1)::timestamp AT TIME ZONE $4 AS e) r";
    let queries = [
        format!(
            "SELECT kind, source, purpose, SIGN(amount_minor) AS sign, SUM(amount_minor), COUNT(*) \
             FROM ledger_entries, {range} WHERE program_id = $1 AND account = 'POINTS' \
             AND created_at >= r.s AND created_at < r.e GROUP BY 1, 2, 3, 4"
        ),
        format!(
            "SELECT (created_at AT TIME ZONE $4)::date AS day, kind, SUM(amount_minor) \
             FROM ledger_entries, {range} WHERE program_id = $1 AND account = 'POINTS' \
             AND created_at >= r.s AND created_at < r.e GROUP BY 1, 2"
        ),
        format!(
            "SELECT SUM(amount_minor) FROM ledger_entries, {range} WHERE program_id = $1 \
             AND account = 'POINTS' AND created_at < r.e"
        ),
        format!(
            "SELECT COUNT(DISTINCT member_id) FROM ledger_entries, {range} \
             WHERE program_id = $1 AND created_at >= r.s AND created_at < r.e"
        ),
        format!(
            "SELECT COUNT(*) FILTER (WHERE joined_at < r.e), \
             COUNT(*) FILTER (WHERE joined_at >= r.s AND joined_at < r.e), \
             (joined_at AT TIME ZONE $4)::date FROM members, {range} WHERE program_id = $1 GROUP BY 3"
        ),
        format!(
            "SELECT (SELECT SUM(amount_minor) FROM purchases WHERE program_id = $1 \
             AND created_at >= r.s AND created_at < r.e), (SELECT COUNT(*) FROM purchases \
             WHERE program_id = $1 AND created_at >= r.s AND created_at < r.e), \
             (SELECT SUM(amount_minor) FROM refunds WHERE program_id = $1 \
             AND created_at >= r.s AND created_at < r.e) FROM {range}"
        ),
        "SELECT tier_id, COUNT(*) FROM members WHERE program_id = $1 AND $2::text IS NOT NULL \
         AND $3::text IS NOT NULL AND $4::text IS NOT NULL GROUP BY tier_id"
            .to_owned(),
    ];
    for sql in &queries {
        sqlx::query(sql)
            .bind(program)
            .bind(from)
            .bind(to)
            .bind(TZ)
            .fetch_all(pool)
            .await
            .with_context(|| format!("naive query failed: {sql}"))?;
    }
    Ok(())
}

/// The `i`-th window of `days` days, in a fixed pseudo-random order: 30-day windows end 1..=300
/// days ago, 365-day ones 1..=30 days ago (the seeded history is a year).
fn window(i: usize, days: u64) -> (String, String) {
    let spread = if days > 60 { 30 } else { 300 };
    let back = 1 + (i * 7919) % spread;
    let to = chrono::Utc::now().date_naive() - chrono::Days::new(back as u64);
    let from = to - chrono::Days::new(days - 1);
    (from.to_string(), to.to_string())
}

/// An admin token for `program`, valid for a day.
pub fn admin_token(secret: &str, issuer: &str, audience: &str, program: &str) -> Result<String> {
    let exp = chrono::Utc::now().timestamp() + 86_400;
    let claims = json!({"sub": "bench-admin", "program": program, "role": "admin",
                        "iss": issuer, "aud": audience, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing JWT")
}

pub async fn run(cfg: &ReportConfig<'_>) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(cfg.database_url)
        .await
        .context("connecting to --database-url")?;
    eprintln!(
        "[1/3] seeding {} ledger rows, {} members ...",
        cfg.rows, cfg.members
    );
    let program = seed(&pool, cfg).await?;
    eprintln!("[2/3] waiting for the server's folder ...");
    let folded = wait_folded(&pool, cfg.fold_timeout).await?;
    eprintln!("      folded after {folded:.1?} more (no VACUUM: measured as it stands)");
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(&pool)
        .await?
        .get(0);

    eprintln!(
        "[3/3] {} iterations of each window, sequential ...",
        cfg.iterations
    );
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for days in [30u64, 365] {
        let mut report = Recorder::default();
        let started = Instant::now();
        for i in 0..cfg.iterations {
            let (from, to) = window(i, days);
            let t = Instant::now();
            let response: serde_json::Value = client
                .post(format!("{}/graphql", cfg.server))
                .bearer_auth(&cfg.token)
                .json(&json!({"query": QUERY, "variables": {"from": from, "to": to}}))
                .send()
                .await?
                .json()
                .await?;
            if response.get("errors").is_some() {
                report.err(&response["errors"].to_string());
            } else {
                report.ok(t.elapsed());
            }
        }
        rows.push(report.summarize(
            &format!("loyaltyReport, every section, {days}-day windows (HTTP)"),
            1,
            started.elapsed(),
        ));
    }
    // The naive queries take seconds each: a few are enough to show the difference.
    let naive_runs = cfg.iterations.min(20);
    let mut raw = Recorder::default();
    let started = Instant::now();
    for i in 0..naive_runs {
        let (from, to) = window(i, 30);
        let t = Instant::now();
        match naive(&pool, program, &from, &to).await {
            Ok(()) => raw.ok(t.elapsed()),
            Err(e) => raw.err(&format!("{e:#}")),
        }
    }
    rows.push(raw.summarize(
        "naive GROUP BY over the raw ledger, original figures, 30 days (SQL only)",
        1,
        started.elapsed(),
    ));
    println!();
    println!("ledger rows: {total}; members seeded: {}", cfg.members);
    println!();
    println!("{}", table_header());
    for row in &rows {
        println!("{}", table_row(row));
    }
    Ok(())
}
