//! Reading a report in one snapshot: the folded sums of the asked days, plus the tail (rows past
//! the watermark), plus tiers. PostgreSQL: one REPEATABLE READ, READ ONLY transaction; SQLite: one
//! transaction, whose first read fixes its snapshot (WAL).
//!
//! Why the sum is exact: the folder adds exactly the rows with `id <= W` to the sums and sets the
//! watermark `W` in the same transaction, and no row with `id <= W` can commit after that (see
//! `fold`). The snapshot sees either the state before a fold or after it, never half of it, so
//! "sums (rows ≤ W) + tail (rows > W visible in the snapshot)" counts every visible row once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    FromQueryResult, IsolationLevel, TransactionTrait, Value,
};

use super::sections::CampaignRule;
use super::spans::{self, Mark, Words};
use super::tally::{Cat, Cell, EventRow, EventTable, LedgerRow, Tally};
use super::{PeriodData, TierCount};
use crate::error::{DomainError, DomainResult};
use crate::program::Program;
use crate::stored::Stored;

/// Rows read per round trip when scanning the tail.
const TAIL_PAGE: u64 = 5_000;
/// Member ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

pub(crate) use crate::ledger::db::stmt;

/// A stored `YYYY-MM-DD` day. A report of a year reads about ten thousand of them, so the
/// fixed layout is read directly (chrono's format parser was a tenth of the report's CPU).
pub(crate) fn parse_day(value: &str) -> DomainResult<NaiveDate> {
    let bad = || DomainError::internal(format!("bad report day `{value}`"));
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad());
    }
    let (year, month, day) = (
        number(&bytes[..4]).ok_or_else(bad)?,
        number(&bytes[5..7]).ok_or_else(bad)?,
        number(&bytes[8..]).ok_or_else(bad)?,
    );
    NaiveDate::from_ymd_opt(i32::try_from(year).map_err(|_| bad())?, month, day).ok_or_else(bad)
}

#[derive(FromQueryResult)]
struct DailyRow {
    day: String,
    kind: String,
    key: String,
    amount_minor: i64,
    count: i64,
}

#[derive(FromQueryResult)]
struct KindSum {
    kind: String,
    amount_minor: i64,
    count: i64,
}

#[derive(FromQueryResult)]
struct Watermark {
    name: String,
    last_id: i64,
}

#[derive(FromQueryResult)]
struct Timezone {
    timezone: String,
}

#[derive(FromQueryResult)]
struct TierRow {
    id: i64,
    name: String,
}

#[derive(FromQueryResult)]
struct TierMembers {
    tier_id: Option<i64>,
    n: i64,
}

/// The watermarks that apply to a program: the stored ones when its sums were cut in `tz`, else
/// zero (the sums are stale after a timezone change until the folder rebuilds them, so the
/// report reads the program's raw rows instead).
pub(crate) async fn watermarks<C: ConnectionTrait>(
    db: &C,
    program_id: i64,
    tz: &str,
) -> DomainResult<Option<BTreeMap<String, i64>>> {
    let backend = db.get_database_backend();
    let cut_in = Timezone::find_by_statement(stmt(
        backend,
        "SELECT timezone FROM report_programs WHERE program_id = $1",
        vec![program_id.into()],
    ))
    .one(db)
    .await?;
    if cut_in.is_none_or(|t| t.timezone != tz) {
        return Ok(None);
    }
    let rows = Watermark::find_by_statement(stmt(
        backend,
        "SELECT name, last_id FROM report_watermarks",
        vec![],
    ))
    .all(db)
    .await?;
    Ok(Some(
        rows.into_iter().map(|w| (w.name, w.last_id)).collect(),
    ))
}

/// Adds one program's rows past the watermarks (`None`: all of its rows) to `tally`, paging by id.
pub(crate) async fn scan<C: ConnectionTrait>(
    db: &C,
    program_id: i64,
    tz: chrono_tz::Tz,
    after: &(dyn Fn(&str) -> i64 + Sync),
    upto: &(dyn Fn(&str) -> i64 + Sync),
    tally: &mut Tally,
) -> DomainResult<()> {
    let backend = db.get_database_backend();
    let mut last = after("ledger_entries");
    let end = upto("ledger_entries");
    loop {
        let rows = LedgerRow::find_by_statement(stmt(
            backend,
            &format!(
                "{} WHERE l.program_id = $1 AND l.id > $2 AND l.id <= $3 ORDER BY l.id \
                 LIMIT {TAIL_PAGE}",
                LedgerRow::SELECT
            ),
            vec![program_id.into(), last.into(), end.into()],
        ))
        .all(db)
        .await?;
        let Some(tail) = rows.last() else { break };
        last = tail.id;
        for row in &rows {
            tally.ledger(tz, row)?;
        }
    }
    for table in EventTable::ALL {
        let mut last = after(table.name());
        let end = upto(table.name());
        loop {
            let rows = EventRow::find_by_statement(stmt(
                backend,
                &format!(
                    "{} WHERE t.program_id = $1 AND t.id > $2 AND t.id <= $3 ORDER BY t.id \
                     LIMIT {TAIL_PAGE}",
                    table.select()
                ),
                vec![program_id.into(), last.into(), end.into()],
            ))
            .all(db)
            .await?;
            let Some(tail) = rows.last() else { break };
            last = tail.id;
            for row in &rows {
                tally.event(tz, table, row);
            }
        }
    }
    Ok(())
}

async fn begin_snapshot(db: &DatabaseConnection) -> DomainResult<DatabaseTransaction> {
    Ok(match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        DatabaseBackend::Sqlite | DatabaseBackend::MySql => db.begin().await?,
    })
}

/// What one report reads, in one snapshot.
pub(super) struct Gathered {
    pub periods: Vec<PeriodData>,
    pub tiers: Vec<TierCount>,
    pub campaigns: Vec<CampaignRule>,
}

/// The sums of each of `ranges`, the tier distribution and the campaigns, read in one snapshot.
pub(super) async fn gather(
    db: &DatabaseConnection,
    program: &Program,
    ranges: &[(NaiveDate, NaiveDate)],
) -> DomainResult<Gathered> {
    let txn = begin_snapshot(db).await?;
    let marks = watermarks(&txn, program.id, program.tz.name()).await?;
    let tail = tail(&txn, program, marks.as_ref()).await?;
    let folded = marks.is_some();
    let mut periods = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        periods.push(period(&txn, program, folded, &tail, *from, *to).await?);
    }
    let distribution = tier_distribution(&txn, program).await?;
    let campaigns = campaigns(&txn, program).await?;
    txn.commit().await?;
    Ok(Gathered {
        periods,
        tiers: distribution,
        campaigns,
    })
}

/// The program's rows past the watermarks (all of them when its sums are not usable).
async fn tail(
    txn: &DatabaseTransaction,
    program: &Program,
    marks: Option<&BTreeMap<String, i64>>,
) -> DomainResult<Tally> {
    let after = |name: &str| marks.and_then(|m| m.get(name).copied()).unwrap_or(0);
    let mut tail = Tally::default();
    scan(
        txn,
        program.id,
        program.tz,
        &after,
        &|_| i64::MAX,
        &mut tail,
    )
    .await?;
    Ok(tail)
}

/// One period: the folded sums (when `folded`) plus the tail's rows of its days.
async fn period(
    txn: &DatabaseTransaction,
    program: &Program,
    folded: bool,
    tail: &Tally,
    from: NaiveDate,
    to: NaiveDate,
) -> DomainResult<PeriodData> {
    let mut sums = if folded {
        folded_sums(txn, program, from, to).await?
    } else {
        Sums::default()
    };
    let to_key = to.to_string();
    for ((day, cat, key), cell) in &tail.cells {
        if *day > to {
            continue;
        }
        sums.cumulative.entry(*cat).or_default().add(*cell);
        if *cat == Cat::Joined {
            *sums.joined_by_month.entry(month_key(*day)).or_default() += cell.count;
        }
        if *day < from {
            continue;
        }
        match cat {
            // Members of the day with a first order by the period's end.
            Cat::FirstPurchase if *key <= to_key => {
                sums.tally.add(*day, *cat, String::new(), *cell)
            }
            Cat::FirstPurchase => {}
            _ => sums.tally.add(*day, *cat, key.clone(), *cell),
        }
    }
    let month_starts = month_starts(from, to);
    let mut purchase_starts = vec![from];
    purchase_starts.extend(month_starts.iter().copied());
    let scope = Scope {
        program_id: program.id,
        folded,
        tail,
        base: spans::base_of(from),
        to,
    };
    let active = distinct(txn, &scope, Select::One(Mark::Active), &[from]).await?;
    let bought = distinct(txn, &scope, Select::One(Mark::Purchase), &purchase_starts).await?;
    let reached = distinct(txn, &scope, Select::Rules, &[from]).await?;
    let count_of = |counts: &BTreeMap<Mark, Vec<u64>>, mark: Mark, i: usize| {
        counts
            .get(&mark)
            .and_then(|c| c.get(i).copied())
            .unwrap_or(0)
    };
    Ok(PeriodData {
        tally: sums.tally,
        cumulative: sums.cumulative,
        active: count_of(&active, Mark::Active, 0),
        purchasers: count_of(&bought, Mark::Purchase, 0),
        bought_since: month_starts
            .iter()
            .enumerate()
            .map(|(i, start)| (*start, count_of(&bought, Mark::Purchase, i + 1)))
            .collect(),
        joined_by_month: sums.joined_by_month,
        reached: reached
            .iter()
            .filter_map(|(mark, counts)| match mark {
                Mark::Rule(id) => Some((*id, counts.first().copied().unwrap_or(0))),
                Mark::Active | Mark::Purchase => None,
            })
            .collect(),
    })
}

/// `YYYY-MM` of a day.
pub(crate) fn month_key(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The first day of each calendar month `[from, to]` touches, the first one clamped to `from`.
pub(crate) fn month_starts(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let mut starts = vec![from];
    let mut next = crate::periods::month_start(from).checked_add_months(chrono::Months::new(1));
    while let Some(start) = next.filter(|d| *d <= to) {
        starts.push(start);
        next = start.checked_add_months(chrono::Months::new(1));
    }
    starts
}

/// The folded part of a period.
#[derive(Default)]
struct Sums {
    /// The cells of the days in `[from, to]`; `FIRST_PURCHASE` only for orders by `to`, keyed "".
    tally: Tally,
    /// Sums of every day up to `to`, by category.
    cumulative: BTreeMap<Cat, Cell>,
    /// Members joined by `to`, by the month they joined (`YYYY-MM`).
    joined_by_month: BTreeMap<String, i64>,
}

#[derive(FromQueryResult)]
struct DayCount {
    day: String,
    n: i64,
}

#[derive(FromQueryResult)]
struct MonthCount {
    month: String,
    n: i64,
}

/// The folded sums of `[from, to]`.
async fn folded_sums(
    txn: &DatabaseTransaction,
    program: &Program,
    from: NaiveDate,
    to: NaiveDate,
) -> DomainResult<Sums> {
    let backend = txn.get_database_backend();
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let mut sums = Sums::default();
    let rows = DailyRow::find_by_statement(stmt(
        backend,
        "SELECT day, kind, key, amount_minor, count FROM report_daily \
         WHERE program_id = $1 AND day >= $2 AND day <= $3 AND kind <> 'FIRST_PURCHASE'",
        vec![
            program.id.into(),
            from_s.clone().into(),
            to_s.clone().into(),
        ],
    ))
    .all(txn)
    .await?;
    for row in rows {
        sums.tally.add(
            parse_day(&row.day)?,
            Cat::read("report_daily.kind", &row.kind)?,
            row.key,
            Cell {
                amount_minor: row.amount_minor,
                count: row.count,
            },
        );
    }
    // New members of each day who had ordered by `to` (the key is the first order's day).
    let firsts = DayCount::find_by_statement(stmt(
        backend,
        "SELECT day, CAST(SUM(count) AS BIGINT) AS n FROM report_daily WHERE program_id = $1 \
         AND kind = 'FIRST_PURCHASE' AND day >= $2 AND day <= $3 AND key <= $3 GROUP BY day",
        vec![program.id.into(), from_s.into(), to_s.clone().into()],
    ))
    .all(txn)
    .await?;
    for row in firsts {
        let cell = Cell {
            amount_minor: 0,
            count: row.n,
        };
        sums.tally.add(
            parse_day(&row.day)?,
            Cat::FirstPurchase,
            String::new(),
            cell,
        );
    }
    let cumulative = KindSum::find_by_statement(stmt(
        backend,
        "SELECT kind, CAST(SUM(amount_minor) AS BIGINT) AS amount_minor, \
         CAST(SUM(count) AS BIGINT) AS count FROM report_daily \
         WHERE program_id = $1 AND day <= $2 GROUP BY kind",
        vec![program.id.into(), to_s.clone().into()],
    ))
    .all(txn)
    .await?;
    for sum in cumulative {
        sums.cumulative
            .entry(Cat::read("report_daily.kind", &sum.kind)?)
            .or_default()
            .add(Cell {
                amount_minor: sum.amount_minor,
                count: sum.count,
            });
    }
    let joined = MonthCount::find_by_statement(stmt(
        backend,
        "SELECT SUBSTR(day, 1, 7) AS month, CAST(SUM(count) AS BIGINT) AS n FROM report_daily \
         WHERE program_id = $1 AND kind = 'JOINED' AND day <= $2 GROUP BY SUBSTR(day, 1, 7)",
        vec![program.id.into(), to_s.into()],
    ))
    .all(txn)
    .await?;
    for row in joined {
        *sums.joined_by_month.entry(row.month).or_default() += row.n;
    }
    Ok(sums)
}

/// Which span rows a distinct count reads.
#[derive(Clone, Copy)]
enum Select {
    One(Mark),
    /// Every campaign's.
    Rules,
}

impl Select {
    fn matches(self, mark: Mark) -> bool {
        match self {
            Select::One(one) => one == mark,
            Select::Rules => matches!(mark, Mark::Rule(_)),
        }
    }

    /// The `what` condition (codes of rules are `R<id>`).
    fn condition(self) -> String {
        match self {
            Select::One(mark) => format!("what = '{}'", mark.code()),
            Select::Rules => "what >= 'R' AND what < 'S'".into(),
        }
    }
}

/// Where distinct counts come from: the folded gap cells (when the sums are usable), and the
/// tail's marks checked against the folded span rows of span `base`.
struct Scope<'a> {
    program_id: i64,
    folded: bool,
    tail: &'a Tally,
    base: i64,
    /// The last day of every window counted.
    to: NaiveDate,
}

/// For each kind of activity `select` picks, the members with a day in each window
/// `[start, scope.to]` of `starts` (each at most a span row long): the folded days counted from
/// `report_gaps` in SQL (see [`super::gaps`]), then corrected, member by member, for the tail
/// (a member the tail adds a day to counts when their merged days hit the window and the folded
/// ones did not).
async fn distinct(
    txn: &DatabaseTransaction,
    scope: &Scope<'_>,
    select: Select,
    starts: &[NaiveDate],
) -> DomainResult<BTreeMap<Mark, Vec<u64>>> {
    let backend = txn.get_database_backend();
    let to = scope.to;
    let masks = starts
        .iter()
        .map(|start| {
            spans::mask(scope.base, *start, to)
                .ok_or_else(|| DomainError::internal(format!("{start}..{to} exceeds a span row")))
        })
        .collect::<DomainResult<Vec<Words>>>()?;
    let mut counts: BTreeMap<Mark, Vec<i64>> = BTreeMap::new();
    if scope.folded && !starts.is_empty() {
        let columns: Vec<String> = starts
            .iter()
            .enumerate()
            .map(|(i, start)| {
                let a = spans::day_number(*start);
                format!(
                    "CAST(SUM(CASE WHEN day >= {a} AND (gap = 0 OR day - gap < {a}) THEN n \
                     ELSE 0 END) AS BIGINT) AS c{i}"
                )
            })
            .collect();
        let earliest = starts.iter().min().copied().unwrap_or(to);
        let rows = txn
            .query_all(stmt(
                backend,
                &format!(
                    "SELECT what, {} FROM report_gaps WHERE program_id = $1 AND {} \
                     AND day >= $2 AND day <= $3 GROUP BY what",
                    columns.join(", "),
                    select.condition()
                ),
                vec![
                    scope.program_id.into(),
                    Value::from(i32::try_from(spans::day_number(earliest)).unwrap_or(i32::MIN)),
                    Value::from(i32::try_from(spans::day_number(to)).unwrap_or(i32::MAX)),
                ],
            ))
            .await?;
        for row in rows {
            let what: String = row.try_get("", "what")?;
            let Some(mark) = Mark::parse(&what) else {
                continue;
            };
            let mut per_window = Vec::with_capacity(starts.len());
            for i in 0..starts.len() {
                per_window.push(row.try_get::<i64>("", &format!("c{i}"))?);
            }
            counts.insert(mark, per_window);
        }
    }
    // The tail's days of each (kind, member), as bits of the same rows.
    let mut fresh: BTreeMap<(Mark, i64), Words> = BTreeMap::new();
    for (mark, day, member) in &scope.tail.marks {
        if select.matches(*mark) {
            let mut words = Words::default();
            if words.set(scope.base, *day) {
                fresh.entry((*mark, *member)).or_default().or(&words);
            }
        }
    }
    let stored = if scope.folded && !fresh.is_empty() {
        folded_rows(txn, scope, select, &fresh).await?
    } else {
        BTreeMap::new()
    };
    for ((mark, member), words) in &fresh {
        let before = stored.get(&(*mark, *member)).copied().unwrap_or_default();
        let mut after = before;
        after.or(words);
        let per_mask = counts.entry(*mark).or_insert_with(|| vec![0; masks.len()]);
        for (count, mask) in per_mask.iter_mut().zip(&masks) {
            *count += i64::from(after.hits(mask)) - i64::from(before.hits(mask));
        }
    }
    Ok(counts
        .into_iter()
        .map(|(mark, c)| {
            (
                mark,
                c.into_iter()
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .collect(),
            )
        })
        .collect())
}

/// The folded rows (span `scope.base`) of the members in `fresh`.
async fn folded_rows(
    txn: &DatabaseTransaction,
    scope: &Scope<'_>,
    select: Select,
    fresh: &BTreeMap<(Mark, i64), Words>,
) -> DomainResult<BTreeMap<(Mark, i64), Words>> {
    let backend = txn.get_database_backend();
    let members: Vec<i64> = fresh
        .keys()
        .map(|(_, member)| *member)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut stored = BTreeMap::new();
    for chunk in members.chunks(IN_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let mut values: Vec<Value> = vec![
            scope.program_id.into(),
            Value::from(i32::try_from(scope.base).unwrap_or(i32::MIN)),
        ];
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        let rows = txn
            .query_all(stmt(
                backend,
                &format!(
                    "SELECT what, member_id, {} FROM report_member_spans WHERE program_id = $1 \
                     AND {} AND span = $2 AND member_id IN ({})",
                    spans::COLUMNS.join(", "),
                    select.condition(),
                    placeholders.join(", ")
                ),
                values,
            ))
            .await?;
        for row in rows {
            let what: String = row.try_get("", "what")?;
            let Some(mark) = Mark::parse(&what) else {
                continue;
            };
            let member: i64 = row.try_get("", "member_id")?;
            let mut words = Words::default();
            for (word, column) in words.0.iter_mut().zip(spans::COLUMNS) {
                *word = row.try_get("", column)?;
            }
            stored.insert((mark, member), words);
        }
    }
    Ok(stored)
}

#[derive(FromQueryResult)]
struct CampaignRow {
    id: i64,
    name: String,
    source: String,
    budget_total_minor: Option<i64>,
    spent_minor: i64,
    deleted: i64,
}

/// The program's rules with what their budgets have spent (now).
async fn campaigns(
    txn: &DatabaseTransaction,
    program: &Program,
) -> DomainResult<Vec<CampaignRule>> {
    let rows = CampaignRow::find_by_statement(stmt(
        txn.get_database_backend(),
        "SELECT r.id, r.name, r.source, r.budget_total_minor, \
         COALESCE(b.spent_minor, CAST(0 AS BIGINT)) AS spent_minor, \
         CAST(CASE WHEN r.deleted_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS deleted \
         FROM earning_rules r LEFT JOIN rule_budgets b \
         ON b.program_id = r.program_id AND b.rule_id = r.id \
         WHERE r.program_id = $1 ORDER BY r.id",
        vec![program.id.into()],
    ))
    .all(txn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CampaignRule {
            id: r.id,
            name: r.name,
            source: r.source,
            budget_total_minor: r.budget_total_minor,
            spent_minor: r.spent_minor,
            deleted: r.deleted != 0,
        })
        .collect())
}

/// Members per tier, tiers in ladder order, then the members without a tier.
async fn tier_distribution(
    txn: &DatabaseTransaction,
    program: &Program,
) -> DomainResult<Vec<TierCount>> {
    let backend = txn.get_database_backend();
    let tiers = TierRow::find_by_statement(stmt(
        backend,
        "SELECT id, name FROM tiers WHERE program_id = $1 ORDER BY min_qualification_minor, id",
        vec![program.id.into()],
    ))
    .all(txn)
    .await?;
    let counts = TierMembers::find_by_statement(stmt(
        backend,
        "SELECT tier_id, COUNT(*) AS n FROM members WHERE program_id = $1 GROUP BY tier_id",
        vec![program.id.into()],
    ))
    .all(txn)
    .await?;
    let count_of = |tier: Option<i64>| {
        counts
            .iter()
            .find(|c| c.tier_id == tier)
            .map(|c| u64::try_from(c.n).unwrap_or(0))
            .unwrap_or(0)
    };
    let mut distribution: Vec<TierCount> = tiers
        .into_iter()
        .map(|t| TierCount {
            count: count_of(Some(t.id)),
            tier: Some((t.id, t.name)),
        })
        .collect();
    distribution.push(TierCount {
        tier: None,
        count: count_of(None),
    });
    Ok(distribution)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_days_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_day("2026-02-28").unwrap(),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
        for bad in [
            "2026-02-29",
            "2026-2-28",
            "2026/02/28",
            "20a6-02-28",
            "2026-02-28 ",
            "",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
