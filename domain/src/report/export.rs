//! The ledger export: a program's rows of a local-date period, read page by page (by id), so an
//! export of millions of rows needs constant memory. Rows are those committed when each page is
//! read, up to the highest id in the period when the export started (the ledger is append-only,
//! so a page once read never changes).

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::check_range;
use super::read::stmt;
use crate::error::DomainResult;
use crate::periods::start_of_day;
use crate::program::Program;
use crate::service::Loyalty;

/// Most rows a page may ask for.
pub const MAX_PAGE: u64 = 10_000;

/// One exported ledger row with its member's ids.
#[derive(Clone, Debug, FromQueryResult)]
pub struct ExportRow {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub member_id: i64,
    pub member_external_id: String,
    pub member_display_name: Option<String>,
    pub account: String,
    pub kind: String,
    pub amount_minor: i64,
    pub source: Option<String>,
    pub purpose: Option<String>,
    pub ref_type: Option<String>,
    pub ref_id: Option<String>,
    pub note: Option<String>,
}

/// Where an export reads: the program, the instants of the local-date period and its id span.
#[derive(Clone, Debug)]
pub struct ExportRange {
    pub program_id: i64,
    pub tz: chrono_tz::Tz,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub min_id: i64,
    pub max_id: i64,
}

#[derive(FromQueryResult)]
struct Span {
    min_id: Option<i64>,
    max_id: Option<i64>,
}

impl Loyalty {
    /// Checks the period and finds the id span of the rows to export.
    pub async fn ledger_export_range(
        &self,
        program: &Program,
        from: NaiveDate,
        to: NaiveDate,
    ) -> DomainResult<ExportRange> {
        check_range(from, to, "period")?;
        let start = start_of_day(program.tz, from);
        let end = start_of_day(program.tz, to.succ_opt().unwrap_or(to));
        let span = Span::find_by_statement(stmt(
            self.db().get_database_backend(),
            "SELECT MIN(id) AS min_id, MAX(id) AS max_id FROM ledger_entries \
             WHERE program_id = $1 AND created_at >= $2 AND created_at < $3",
            vec![program.id.into(), start.into(), end.into()],
        ))
        .one(self.db())
        .await?;
        let (min_id, max_id) = span
            .and_then(|s| Some((s.min_id?, s.max_id?)))
            .unwrap_or((1, 0));
        Ok(ExportRange {
            program_id: program.id,
            tz: program.tz,
            start,
            end,
            min_id,
            max_id,
        })
    }

    /// The next page: rows with `id > after` in the range, by id, at most `limit`.
    pub async fn ledger_export_page(
        &self,
        range: &ExportRange,
        after: i64,
        limit: u64,
    ) -> DomainResult<Vec<ExportRow>> {
        let limit = limit.clamp(1, MAX_PAGE);
        Ok(ExportRow::find_by_statement(stmt(
            self.db().get_database_backend(),
            &format!(
                "SELECT l.id, l.created_at, l.member_id, m.external_id AS member_external_id, \
                 m.display_name AS member_display_name, l.account, l.kind, l.amount_minor, \
                 l.source, l.purpose, l.ref_type, l.ref_id, l.note \
                 FROM ledger_entries l JOIN members m ON m.id = l.member_id \
                 WHERE l.program_id = $1 AND l.id > $2 AND l.id >= $3 AND l.id <= $4 \
                 AND l.created_at >= $5 AND l.created_at < $6 ORDER BY l.id LIMIT {limit}"
            ),
            vec![
                range.program_id.into(),
                after.into(),
                range.min_id.into(),
                range.max_id.into(),
                range.start.into(),
                range.end.into(),
            ],
        ))
        .all(self.db())
        .await?)
    }
}
