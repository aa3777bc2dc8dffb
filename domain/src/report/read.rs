//! Reading a report in one snapshot: the folded sums of the asked days, plus the tail (rows past
//! the watermark), plus tiers. PostgreSQL: one REPEATABLE READ, READ ONLY transaction; SQLite: one
//! transaction, whose first read fixes its snapshot (WAL).
//!
//! Why the sum is exact: the folder adds exactly the rows with `id <= W` to the sums and sets the
//! watermark `W` in the same transaction, and no row with `id <= W` can commit after that (see
//! `fold`). The snapshot sees either the state before a fold or after it, never half of it, so
//! "sums (rows ≤ W) + tail (rows > W visible in the snapshot)" counts every visible row once.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    FromQueryResult, IsolationLevel, TransactionTrait, Value,
};

use super::tally::{Cat, Cell, EventRow, LedgerRow, Tally};
use super::{PeriodData, TierCount};
use crate::error::{DomainError, DomainResult};
use crate::program::Program;
use crate::stored::Stored;

/// Rows read per round trip when scanning the tail.
const TAIL_PAGE: u64 = 5_000;
/// Member ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

pub(crate) use crate::ledger::db::stmt;

pub(crate) fn parse_day(value: &str) -> DomainResult<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|e| DomainError::internal(format!("bad report day `{value}`: {e}")))
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
struct Count {
    n: i64,
}

#[derive(FromQueryResult)]
struct MemberId {
    member_id: i64,
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
                "SELECT id, program_id, member_id, account, kind, amount_minor, source, purpose, \
                 created_at FROM ledger_entries WHERE program_id = $1 AND id > $2 AND id <= $3 \
                 ORDER BY id LIMIT {TAIL_PAGE}"
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
    for (table, cat, amount, at) in [
        ("members", Cat::Joined, "CAST(0 AS BIGINT)", "joined_at"),
        ("purchases", Cat::Purchase, "amount_minor", "created_at"),
        ("refunds", Cat::PurchaseRefund, "amount_minor", "created_at"),
    ] {
        let mut last = after(table);
        let end = upto(table);
        loop {
            let rows = EventRow::find_by_statement(stmt(
                backend,
                &format!(
                    "SELECT id, program_id, {amount} AS amount_minor, {at} AS created_at \
                     FROM {table} WHERE program_id = $1 AND id > $2 AND id <= $3 \
                     ORDER BY id LIMIT {TAIL_PAGE}"
                ),
                vec![program_id.into(), last.into(), end.into()],
            ))
            .all(db)
            .await?;
            let Some(tail) = rows.last() else { break };
            last = tail.id;
            for row in &rows {
                tally.event(tz, cat, row);
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

/// The sums of each of `ranges` and the tier distribution, read in one snapshot.
pub(super) async fn gather(
    db: &DatabaseConnection,
    program: &Program,
    ranges: &[(NaiveDate, NaiveDate)],
) -> DomainResult<(Vec<PeriodData>, Vec<TierCount>)> {
    let txn = begin_snapshot(db).await?;
    let marks = watermarks(&txn, program.id, program.tz.name()).await?;
    let tail = tail(&txn, program, marks.as_ref()).await?;
    let folded = marks.is_some();
    let mut periods = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        periods.push(period(&txn, program, folded, &tail, *from, *to).await?);
    }
    let distribution = tier_distribution(&txn, program).await?;
    txn.commit().await?;
    Ok((periods, distribution))
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
    let (mut tally, mut cumulative, mut active) = if folded {
        let (tally, cumulative) = folded_sums(txn, program, from, to).await?;
        let active = folded_active(txn, program, from, to).await?;
        (tally, cumulative, active)
    } else {
        (Tally::default(), BTreeMap::new(), 0)
    };
    for ((day, cat, key), cell) in &tail.cells {
        if *day <= to {
            cumulative.entry(*cat).or_default().add(*cell);
            if *day >= from {
                tally.add(*day, *cat, key.clone(), *cell);
            }
        }
    }
    // Tail members active in the range who are not already counted from the sums.
    let mut fresh: HashSet<i64> = tail
        .member_days
        .iter()
        .filter(|(day, _)| *day >= from && *day <= to)
        .map(|(_, member)| *member)
        .collect();
    if folded && !fresh.is_empty() {
        drop_folded_members(txn, program, from, to, &mut fresh).await?;
    }
    active += fresh.len() as u64;
    Ok(PeriodData {
        tally,
        cumulative,
        active,
    })
}

/// The folded cells of the days in `[from, to]` and the folded cumulative sums up to `to`.
async fn folded_sums(
    txn: &DatabaseTransaction,
    program: &Program,
    from: NaiveDate,
    to: NaiveDate,
) -> DomainResult<(Tally, BTreeMap<Cat, Cell>)> {
    let backend = txn.get_database_backend();
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let mut tally = Tally::default();
    let rows = DailyRow::find_by_statement(stmt(
        backend,
        "SELECT day, kind, key, amount_minor, count FROM report_daily \
         WHERE program_id = $1 AND day >= $2 AND day <= $3",
        vec![program.id.into(), from_s.into(), to_s.clone().into()],
    ))
    .all(txn)
    .await?;
    for row in rows {
        tally.add(
            parse_day(&row.day)?,
            Cat::read("report_daily.kind", &row.kind)?,
            row.key,
            Cell {
                amount_minor: row.amount_minor,
                count: row.count,
            },
        );
    }
    let mut cumulative: BTreeMap<Cat, Cell> = BTreeMap::new();
    let sums = KindSum::find_by_statement(stmt(
        backend,
        "SELECT kind, CAST(SUM(amount_minor) AS BIGINT) AS amount_minor, \
         CAST(SUM(count) AS BIGINT) AS count FROM report_daily \
         WHERE program_id = $1 AND day <= $2 GROUP BY kind",
        vec![program.id.into(), to_s.into()],
    ))
    .all(txn)
    .await?;
    for sum in sums {
        cumulative
            .entry(Cat::read("report_daily.kind", &sum.kind)?)
            .or_default()
            .add(Cell {
                amount_minor: sum.amount_minor,
                count: sum.count,
            });
    }
    Ok((tally, cumulative))
}

/// Members the folded sums count as active in `[from, to]`.
async fn folded_active(
    txn: &DatabaseTransaction,
    program: &Program,
    from: NaiveDate,
    to: NaiveDate,
) -> DomainResult<u64> {
    let backend = txn.get_database_backend();
    let count = match super::block_window(from, to) {
        // Up to 65 days: one row per member in one block, a bit test, no DISTINCT.
        Some((block, lo, hi)) => stmt(
            backend,
            "SELECT COUNT(*) AS n FROM report_member_blocks WHERE program_id = $1 \
             AND block = $2 AND ((lo & $3) <> 0 OR (hi & $4) <> 0)",
            vec![
                program.id.into(),
                Value::from(i32::try_from(block).unwrap_or(i32::MIN)),
                lo.into(),
                hi.into(),
            ],
        ),
        // DISTINCT in a subquery: PostgreSQL hashes it instead of sorting.
        None => stmt(
            backend,
            "SELECT COUNT(*) AS n FROM (SELECT DISTINCT member_id FROM report_member_days \
             WHERE program_id = $1 AND day >= $2 AND day <= $3) AS d",
            vec![
                program.id.into(),
                from.to_string().into(),
                to.to_string().into(),
            ],
        ),
    };
    let folded = Count::find_by_statement(count)
        .one(txn)
        .await?
        .map(|c| c.n)
        .unwrap_or_default();
    Ok(u64::try_from(folded).unwrap_or(0))
}

/// Removes from `fresh` the members the folded sums already count in `[from, to]`.
async fn drop_folded_members(
    txn: &DatabaseTransaction,
    program: &Program,
    from: NaiveDate,
    to: NaiveDate,
    fresh: &mut HashSet<i64>,
) -> DomainResult<()> {
    let backend = txn.get_database_backend();
    let ids: Vec<i64> = fresh.iter().copied().collect();
    for chunk in ids.chunks(IN_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
        let mut values: Vec<Value> = vec![
            program.id.into(),
            from.to_string().into(),
            to.to_string().into(),
        ];
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        let known = MemberId::find_by_statement(stmt(
            backend,
            &format!(
                "SELECT DISTINCT member_id FROM report_member_days WHERE program_id = $1 \
                 AND day >= $2 AND day <= $3 AND member_id IN ({})",
                placeholders.join(", ")
            ),
            values,
        ))
        .all(txn)
        .await?;
        for row in known {
            fresh.remove(&row.member_id);
        }
    }
    Ok(())
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
