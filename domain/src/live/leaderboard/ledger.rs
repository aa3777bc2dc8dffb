//! Points earned, straight from the ledger: what rebuilds, per-member refreshes and reads
//! without Redis use. One statement, so the figures and the version are one snapshot.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::{Bucket, Period};
use crate::error::DomainResult;
use crate::ledger::db::stmt;
use crate::program::Program;

/// A member's points earned (hundredths) in the current periods, as of their posting counter.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct Totals {
    pub member_id: i64,
    /// The member's highest `member_version` (every account and kind).
    pub version: i64,
    pub in_day: Option<i64>,
    pub in_week: Option<i64>,
    pub in_month: Option<i64>,
    pub all_time: Option<i64>,
}

impl Totals {
    pub fn points(&self, period: Period) -> i64 {
        match period {
            Period::Day => self.in_day,
            Period::Week => self.in_week,
            Period::Month => self.in_month,
            Period::AllTime => self.all_time,
        }
        .unwrap_or_default()
    }
}

const COUNTED: &str = "r.account = 'POINTS' AND r.kind IN ('EARN', 'REVERSAL')";

/// In the bucket `[$s, $e)`: the row itself, and for a reversal the earn it reverses.
fn within(start: usize, end: usize) -> String {
    format!(
        "{COUNTED} AND r.created_at >= ${start} AND r.created_at < ${end} \
         AND COALESCE(o.created_at, r.created_at) >= ${start}"
    )
}

fn sum_when(condition: &str, alias: &str) -> String {
    format!("CAST(SUM(CASE WHEN {condition} THEN r.amount_minor ELSE 0 END) AS BIGINT) AS {alias}")
}

/// Every member's totals in the periods current at `now` (or only those of `members`).
pub(crate) async fn totals<C: ConnectionTrait>(
    conn: &C,
    program: &Program,
    now: DateTime<Utc>,
    members: Option<&[i64]>,
) -> DomainResult<Vec<Totals>> {
    let tz = program.tz;
    let mut values: Vec<Value> = vec![program.id.into()];
    for period in [Period::Day, Period::Week, Period::Month] {
        let bucket = Bucket::at(period, tz, now);
        values.push(bucket.starts_at(tz).unwrap_or(now).into());
        values.push(bucket.ends_at(tz).unwrap_or(now).into());
    }
    let mut sql = format!(
        "SELECT r.member_id AS member_id, CAST(MAX(r.member_version) AS BIGINT) AS version, {}, {}, {}, {} \
         FROM ledger_entries r LEFT JOIN ledger_entries o ON o.id = r.reverses_id \
         WHERE r.program_id = $1",
        sum_when(&within(2, 3), "in_day"),
        sum_when(&within(4, 5), "in_week"),
        sum_when(&within(6, 7), "in_month"),
        sum_when(COUNTED, "all_time"),
    );
    if let Some(members) = members {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (8..8 + members.len()).map(|n| format!("${n}")).collect();
        sql.push_str(&format!(
            " AND r.member_id IN ({})",
            placeholders.join(", ")
        ));
        values.extend(members.iter().map(|&id| Value::from(id)));
    }
    sql.push_str(" GROUP BY r.member_id");
    let backend = conn.get_database_backend();
    Ok(Totals::find_by_statement(stmt(backend, &sql, values))
        .all(conn)
        .await?)
}

#[derive(FromQueryResult)]
struct EarnedAt {
    created_at: DateTime<Utc>,
}

/// When the earn that reversal `posting_id` reverses was posted (`None`: it names none).
pub(crate) async fn reversed_at<C: ConnectionTrait>(
    conn: &C,
    posting_id: i64,
) -> DomainResult<Option<DateTime<Utc>>> {
    let backend = conn.get_database_backend();
    let sql = "SELECT o.created_at AS created_at FROM ledger_entries r \
               JOIN ledger_entries o ON o.id = r.reverses_id WHERE r.id = $1";
    Ok(
        EarnedAt::find_by_statement(stmt(backend, sql, vec![posting_id.into()]))
            .one(conn)
            .await?
            .map(|row| row.created_at),
    )
}
