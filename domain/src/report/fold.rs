//! The folder: adds committed rows of the ledger, members, purchases and refunds to the report's
//! daily sums and moves each table's watermark, in batches, from a background job. The posting
//! path never writes here, so postings never contend on a hot aggregate row.
//!
//! # Why the watermark is safe
//!
//! The report trusts that every row with `id <= W` is in the sums and that no such row can
//! commit later. "The largest id seen" does not give that on PostgreSQL: ids come from a
//! sequence when a row is inserted, not when its transaction commits, so a transaction holding
//! id 100 may commit after one holding 101.
//!
//! On PostgreSQL a pass first reads, in one statement, `M = max(id)` of each table and the
//! virtual transaction ids of every session holding a write lock (`RowExclusiveLock`) on those
//! tables. Row `M` was committed when the statement's snapshot was taken, so every id `<= M` had
//! been drawn from the sequence (`CACHE 1`, ids handed out in order) before that moment, by a
//! transaction that had already locked the table for its `INSERT` and keeps that lock until it
//! ends. Such a transaction has either finished by the time we read the locks (then its rows are
//! committed, or never will be) or is in the list. The pass waits until every listed transaction
//! is gone, so afterwards every row with `id <= M` that will ever exist is committed, and each
//! fold transaction (READ COMMITTED, statements started after the wait) sees all of them. It
//! folds `(W, min(W + chunk, M)]` and sets `W` in the same transaction, under a row lock on the
//! watermarks, so concurrent folders on several instances take turns and nothing is counted
//! twice. Unlike a check on the snapshot's in-progress xids, this also covers a transaction that
//! drew an id but had no xid yet. A long transaction only delays folding; reports stay exact
//! through the tail meanwhile.
//!
//! On SQLite write transactions are serial and an uncommitted writer's ids lie above every
//! committed one, so the committed `max(id)` of any snapshot is final. Folding five seconds of
//! postings in one transaction held the one write lock for up to 1.4 s every pass, and the
//! postings' lane behind it (p99.9 of the SQLite earn benchmark 0.9–1.3 s). So there a chunk is
//! read in a read transaction (a WAL snapshot, which never blocks the writer), and only its sums
//! are written under the write lock, after checking that the watermarks and the timezones the
//! sums are cut in have not moved; the writing takes the lane's turn (`WriterGate`: postings
//! queue behind one chunk and go the moment it commits), and the folder then waits twice as long
//! as it wrote (it takes at most a third of the writer's time, however far behind it is). A
//! chunk starts at 25 ids per table and is halved or doubled (up to 1,000) to hold the lock
//! about 5 ms.
//!
//! On both, a pass folds up to the ids that were final when it began (rows committed during the
//! pass wait for the next one instead of being chased a few at a time), and the marks of who
//! did what on which day that this instance has already stored are not written again
//! ([`FoldedMarks`]): a member's later rows of a day only add to the sums.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, FromQueryResult, TransactionTrait, Value,
};
use tokio_util::sync::CancellationToken;

use super::gaps::{self, Cells};
use super::read::{scan, stmt};
use super::spans::{self, Mark as Did, Words};
use super::tally::{Cat, Cell, EventRow, EventTable, LedgerRow, Tally};
use crate::error::{DomainError, DomainResult};
use crate::ledger::db::run_detached;
use crate::ledger::settled::settled_max_ids;
use crate::periods::parse_timezone;
use crate::service::Loyalty;

/// Ids of each table folded per transaction.
pub const FOLD_CHUNK: i64 = 20_000;
/// On SQLite, writing a chunk's sums holds the one write lock: chunks are sized to hold it about
/// [`SQLITE_HOLD`] at a time, so that postings wait a few milliseconds at a time behind the
/// folder, not a second. A chunk of new marks costs ~0.15 ms per row folded (the first chunk
/// size), one whose marks are all stored (see [`FoldedMarks`]) a fraction of that.
const SQLITE_FOLD_CHUNK: std::ops::RangeInclusive<i64> = 25..=1_000;
/// How long one SQLite chunk should hold the write lock: the chunk size halves above it and
/// doubles below half of it.
const SQLITE_HOLD: Duration = Duration::from_millis(5);
/// Aggregate rows per `INSERT`.
const INSERT_ROWS: usize = 400;
/// Member ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// The most marks [`FoldedMarks`] keeps for one program (a few dozen bytes each).
const FOLDED_MARKS: usize = 200_000;

/// The tables the folder reads, each with a watermark row named after it.
pub const TABLES: [&str; 7] = [
    "ledger_entries",
    "members",
    "purchases",
    "refunds",
    "guest_orders",
    "guest_refunds",
    "voucher_uses",
];

#[derive(FromQueryResult)]
struct Mark {
    name: String,
    last_id: i64,
}

#[derive(FromQueryResult)]
struct Ends {
    member_id: i64,
    first_day: i32,
    last_day: i32,
}

#[derive(FromQueryResult)]
struct ProgramTz {
    id: i64,
    timezone: String,
}

/// The marks (who did what on which local day) this instance's folder has committed, per
/// program, with the timezone their days were cut in.
///
/// Writing a chunk's marks (span bits, gap cells, member ends) is most of a chunk's writing,
/// and a member's second and later rows of a day add no mark. Stored marks only ever gain
/// bits, except when a timezone change rebuilds a program's sums (`rebuild_stale`): the
/// rebuild folds every row up to the watermarks again in the new timezone, so a mark cut in
/// the program's current timezone that was once committed is stored now. The folder therefore
/// leaves such marks out of its writes. Nothing depends on a mark being here: one missing (another
/// instance folded it, or it was evicted) is written again, which changes nothing, since the
/// bits are OR-ed and a day already stored moves no gap.
#[derive(Default)]
pub(crate) struct FoldedMarks(std::sync::Mutex<HashMap<i64, Folded>>);

#[derive(Default)]
struct Folded {
    timezone: String,
    marks: HashSet<(Did, NaiveDate, i64)>,
}

impl FoldedMarks {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Folded>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops from `marks` (of a program, cut in `timezone`) those already stored. Returns
    /// whether this instance has committed a chunk of the program before (in any timezone).
    fn drop_stored(
        &self,
        program_id: i64,
        timezone: &str,
        marks: &mut HashSet<(Did, NaiveDate, i64)>,
    ) -> bool {
        let known = self.known();
        let Some(folded) = known.get(&program_id) else {
            return false;
        };
        if folded.timezone == timezone {
            marks.retain(|mark| !folded.marks.contains(mark));
        }
        true
    }

    /// Records `marks` as committed for a program cut in `timezone`. Past [`FOLDED_MARKS`] it
    /// keeps only the newest day's (rows are folded roughly in time order), or nothing.
    fn committed(
        &self,
        program_id: i64,
        timezone: &str,
        marks: impl IntoIterator<Item = (Did, NaiveDate, i64)>,
    ) {
        let mut known = self.known();
        let folded = known.entry(program_id).or_default();
        if folded.timezone != timezone {
            folded.timezone = timezone.to_owned();
            folded.marks.clear();
        }
        folded.marks.extend(marks);
        if folded.marks.len() > FOLDED_MARKS {
            let newest = folded.marks.iter().map(|(_, day, _)| *day).max();
            folded.marks.retain(|(_, day, _)| Some(*day) == newest);
            if folded.marks.len() > FOLDED_MARKS / 2 {
                folded.marks.clear();
            }
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Source rows added to the sums.
    pub rows: u64,
    /// Programs whose sums were rebuilt after a timezone change.
    pub rebuilt: u64,
    /// Marks (a member did something on a day) written; those this instance had already
    /// stored are left out (see [`FoldedMarks`]).
    pub marks: u64,
}

impl FoldStats {
    fn add(&mut self, other: FoldStats) {
        self.rows += other.rows;
        self.rebuilt += other.rebuilt;
        self.marks += other.marks;
    }
}

/// The watermarks as a read sees them (SQLite's fold reads its chunk before it writes).
async fn read_marks(txn: &DatabaseTransaction) -> DomainResult<BTreeMap<String, i64>> {
    let marks = Mark::find_by_statement(stmt(
        txn.get_database_backend(),
        "SELECT name, last_id FROM report_watermarks",
        vec![],
    ))
    .all(txn)
    .await?;
    Ok(marks.into_iter().map(|m| (m.name, m.last_id)).collect())
}

/// Opens a fold transaction holding the watermarks (PostgreSQL: row locks; SQLite: the write
/// lock, taken by a first no-op write) and returns them.
async fn lock_marks(txn: &DatabaseTransaction) -> DomainResult<BTreeMap<String, i64>> {
    let backend = txn.get_database_backend();
    let lock = match backend {
        DatabaseBackend::Sqlite => "UPDATE report_watermarks SET last_id = last_id",
        DatabaseBackend::Postgres | DatabaseBackend::MySql => {
            "SELECT 1 FROM report_watermarks ORDER BY name FOR UPDATE"
        }
    };
    txn.execute(stmt(backend, lock, vec![])).await?;
    read_marks(txn).await
}

/// Adds `tally` (one program's) to the stored sums.
async fn write(txn: &DatabaseTransaction, program_id: i64, tally: Tally) -> DomainResult<()> {
    let cells: Vec<_> = tally.cells.into_iter().collect();
    write_cells(txn, program_id, &cells).await?;
    // Before the spans: the gaps read the days stored so far from them.
    write_gaps(txn, program_id, &tally.marks).await?;
    write_spans(txn, program_id, &tally.marks).await
}

/// `($n+1, …, $n+width)`: one row of a multi-row `INSERT`, after `n` values.
fn placeholders(n: usize, width: usize) -> String {
    let list: Vec<String> = (1..=width).map(|i| format!("${}", n + i)).collect();
    format!("({})", list.join(", "))
}

async fn write_cells(
    txn: &DatabaseTransaction,
    program_id: i64,
    cells: &[((NaiveDate, Cat, String), Cell)],
) -> DomainResult<()> {
    let backend = txn.get_database_backend();
    for chunk in cells.chunks(INSERT_ROWS) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        let mut rows = Vec::with_capacity(chunk.len());
        for ((day, cat, key), cell) in chunk {
            rows.push(placeholders(values.len(), 6));
            values.extend([
                program_id.into(),
                day.to_string().into(),
                cat.as_str().into(),
                key.clone().into(),
                cell.amount_minor.into(),
                cell.count.into(),
            ]);
        }
        txn.execute(stmt(
            backend,
            &format!(
                "INSERT INTO report_daily (program_id, day, kind, key, amount_minor, count) \
                 VALUES {} ON CONFLICT (program_id, day, kind, key) DO UPDATE SET \
                 amount_minor = report_daily.amount_minor + excluded.amount_minor, \
                 count = report_daily.count + excluded.count",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// The marks as bits of `report_member_spans` rows (see [`spans`]): OR is idempotent, so a day
/// folded twice (or already present) changes nothing, and a row whose bits would not change is
/// not rewritten (no dead row version for the table to carry).
async fn write_spans(
    txn: &DatabaseTransaction,
    program_id: i64,
    marks: &HashSet<(Did, NaiveDate, i64)>,
) -> DomainResult<()> {
    let backend = txn.get_database_backend();
    let mut rows: BTreeMap<(String, i64, i64), Words> = BTreeMap::new();
    for (mark, day, member) in marks {
        for (span, words) in spans::rows_of(*day) {
            rows.entry((mark.code(), span, *member))
                .or_default()
                .or(&words);
        }
    }
    let rows: Vec<_> = rows.into_iter().collect();
    let columns = spans::COLUMNS.join(", ");
    let merge: Vec<String> = spans::COLUMNS
        .iter()
        .map(|c| format!("{c} = report_member_spans.{c} | excluded.{c}"))
        .collect();
    let changed: Vec<String> = spans::COLUMNS
        .iter()
        .map(|c| format!("(report_member_spans.{c} | excluded.{c}) <> report_member_spans.{c}"))
        .collect();
    let width = 4 + spans::COLUMNS.len();
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * width);
        let mut list = Vec::with_capacity(chunk.len());
        for ((what, span, member), words) in chunk {
            list.push(placeholders(values.len(), width));
            values.extend([
                program_id.into(),
                what.clone().into(),
                Value::from(i32::try_from(*span).unwrap_or(i32::MIN)),
                (*member).into(),
            ]);
            values.extend(words.0.iter().map(|w| Value::from(*w)));
        }
        txn.execute(stmt(
            backend,
            &format!(
                "INSERT INTO report_member_spans (program_id, what, span, member_id, {columns}) \
                 VALUES {} ON CONFLICT (program_id, what, span, member_id) DO UPDATE SET {} \
                 WHERE {}",
                list.join(", "),
                merge.join(", "),
                changed.join(" OR ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// A day number as the `INTEGER` column it is stored in.
fn day_value(day: i64) -> Value {
    Value::from(i32::try_from(day).unwrap_or(i32::MIN))
}

/// The marks' days as moves between `report_gaps` cells (see [`gaps`]), and each member's new
/// first and last day. A day after a member's last one (the usual case: rows are folded roughly
/// in time order) needs only those ends; a day between them reads the member's stored days.
async fn write_gaps(
    txn: &DatabaseTransaction,
    program_id: i64,
    marks: &HashSet<(Did, NaiveDate, i64)>,
) -> DomainResult<()> {
    let mut added: BTreeMap<String, BTreeMap<i64, BTreeSet<i64>>> = BTreeMap::new();
    for (mark, day, member) in marks {
        added
            .entry(mark.code())
            .or_default()
            .entry(*member)
            .or_default()
            .insert(spans::day_number(*day));
    }
    for (what, members) in &added {
        let ends = member_ends(txn, program_id, what, members).await?;
        let mut cells = Cells::new();
        let mut moved = Vec::new();
        for (member, days) in members {
            let stored = ends.get(member).copied();
            let before = match stored {
                None => BTreeSet::new(),
                Some((first, last)) if gaps::ends_suffice(first, last, days) => {
                    BTreeSet::from([first, last])
                }
                Some((first, last)) => {
                    stored_days(txn, program_id, what, *member, first, last).await?
                }
            };
            gaps::delta(&before, days, &mut cells);
            let mut all = before;
            all.extend(days.iter().copied());
            if let (Some(first), Some(last)) = (all.first(), all.last()) {
                if stored != Some((*first, *last)) {
                    moved.push((*member, *first, *last));
                }
            }
        }
        upsert_ends(txn, program_id, what, &moved).await?;
        upsert_gaps(txn, program_id, what, &cells).await?;
    }
    Ok(())
}

/// The stored first and last day of `members` (of kind `what`).
async fn member_ends(
    txn: &DatabaseTransaction,
    program_id: i64,
    what: &str,
    members: &BTreeMap<i64, BTreeSet<i64>>,
) -> DomainResult<HashMap<i64, (i64, i64)>> {
    let backend = txn.get_database_backend();
    let ids: Vec<i64> = members.keys().copied().collect();
    let mut ends = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let mut values: Vec<Value> = vec![program_id.into(), what.into()];
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        let rows = Ends::find_by_statement(stmt(
            backend,
            &format!(
                "SELECT member_id, first_day, last_day FROM report_member_ends \
                 WHERE program_id = $1 AND what = $2 AND member_id IN ({})",
                list.join(", ")
            ),
            values,
        ))
        .all(txn)
        .await?;
        for row in rows {
            ends.insert(
                row.member_id,
                (i64::from(row.first_day), i64::from(row.last_day)),
            );
        }
    }
    Ok(ends)
}

/// Every day of kind `what` folded for `member` so far (between its ends), from its span rows.
async fn stored_days(
    txn: &DatabaseTransaction,
    program_id: i64,
    what: &str,
    member: i64,
    first: i64,
    last: i64,
) -> DomainResult<BTreeSet<i64>> {
    let backend = txn.get_database_backend();
    let span = |day: i64| day_value(day.div_euclid(spans::SPAN_DAYS));
    let rows = txn
        .query_all(stmt(
            backend,
            &format!(
                "SELECT span, {} FROM report_member_spans WHERE program_id = $1 AND what = $2 \
                 AND span >= $3 AND span <= $4 AND member_id = $5",
                spans::COLUMNS.join(", ")
            ),
            vec![
                program_id.into(),
                what.into(),
                span(first),
                span(last),
                member.into(),
            ],
        ))
        .await?;
    let mut days = BTreeSet::new();
    for row in rows {
        let base: i32 = row.try_get("", "span")?;
        let mut words = Words::default();
        for (word, column) in words.0.iter_mut().zip(spans::COLUMNS) {
            *word = row.try_get("", column)?;
        }
        days.extend(words.own_days(i64::from(base)));
    }
    Ok(days)
}

async fn upsert_ends(
    txn: &DatabaseTransaction,
    program_id: i64,
    what: &str,
    moved: &[(i64, i64, i64)],
) -> DomainResult<()> {
    let backend = txn.get_database_backend();
    for chunk in moved.chunks(INSERT_ROWS) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        let mut rows = Vec::with_capacity(chunk.len());
        for (member, first, last) in chunk {
            rows.push(placeholders(values.len(), 5));
            values.extend([
                program_id.into(),
                what.into(),
                (*member).into(),
                day_value(*first),
                day_value(*last),
            ]);
        }
        txn.execute(stmt(
            backend,
            &format!(
                "INSERT INTO report_member_ends (program_id, what, member_id, first_day, \
                 last_day) VALUES {} ON CONFLICT (program_id, what, member_id) DO UPDATE SET \
                 first_day = excluded.first_day, last_day = excluded.last_day",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

async fn upsert_gaps(
    txn: &DatabaseTransaction,
    program_id: i64,
    what: &str,
    cells: &Cells,
) -> DomainResult<()> {
    let backend = txn.get_database_backend();
    let cells: Vec<_> = cells.iter().collect();
    for chunk in cells.chunks(INSERT_ROWS) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        let mut rows = Vec::with_capacity(chunk.len());
        for ((day, gap), n) in chunk {
            rows.push(placeholders(values.len(), 5));
            values.extend([
                program_id.into(),
                what.into(),
                day_value(*day),
                day_value(*gap),
                (**n).into(),
            ]);
        }
        txn.execute(stmt(
            backend,
            &format!(
                "INSERT INTO report_gaps (program_id, what, day, gap, n) VALUES {} \
                 ON CONFLICT (program_id, what, day, gap) DO UPDATE SET \
                 n = report_gaps.n + excluded.n",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Moves the watermarks of the tables in `marks` (one statement).
async fn set_marks(txn: &DatabaseTransaction, marks: &BTreeMap<String, i64>) -> DomainResult<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let mut cases = Vec::with_capacity(marks.len());
    let mut names = Vec::with_capacity(marks.len());
    let mut values: Vec<Value> = Vec::with_capacity(2 * marks.len());
    for (name, last_id) in marks {
        let n = values.len();
        cases.push(format!("WHEN ${} THEN ${}", n + 1, n + 2));
        names.push(format!("${}", n + 1));
        values.extend([name.clone().into(), (*last_id).into()]);
    }
    txn.execute(stmt(
        txn.get_database_backend(),
        &format!(
            "UPDATE report_watermarks SET last_id = CASE name {} END WHERE name IN ({})",
            cases.join(" "),
            names.join(", ")
        ),
        values,
    ))
    .await?;
    Ok(())
}

async fn program_timezones<C: ConnectionTrait>(
    conn: &C,
    table: &str,
) -> DomainResult<HashMap<i64, String>> {
    let backend = conn.get_database_backend();
    let rows = ProgramTz::find_by_statement(stmt(
        backend,
        &format!(
            "SELECT {} AS id, timezone FROM {table}",
            if table == "programs" {
                "id"
            } else {
                "program_id"
            }
        ),
        vec![],
    ))
    .all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.timezone)).collect())
}

/// PostgreSQL: folds one chunk of every table past its watermark, up to `targets`, in one
/// transaction holding the watermarks. Returns the rows folded; `None` when there was nothing
/// to do.
async fn fold_chunk(
    loyalty: &Loyalty,
    targets: &BTreeMap<String, i64>,
) -> DomainResult<Option<FoldStats>> {
    let txn = loyalty.db().begin().await?;
    let marks = lock_marks(&txn).await?;
    let ends = chunk_ends(&marks, targets, FOLD_CHUNK);
    if ends.values().all(|(from, end)| end <= from) {
        txn.commit().await?;
        return Ok(None);
    }
    let (tallies, cut_in, rows) = tally_chunk(&txn, &ends).await?;
    let written = write_chunk(txn, loyalty.folded_marks(), ends, tallies, cut_in).await?;
    Ok(Some(FoldStats {
        rows,
        marks: written,
        rebuilt: 0,
    }))
}

/// SQLite: reads a chunk (at most `chunk` ids per table, up to the pass's `targets`) in a read
/// transaction, and takes the write lock only to add its sums, if the watermarks and the
/// timezones the sums are cut in are still what the read found (otherwise another pass folded
/// or rebuilt meanwhile: `Some(0)`, read again). Adjusts `chunk` to the time the write lock was
/// held (see [`SQLITE_HOLD`]).
async fn fold_chunk_sqlite(
    loyalty: &Loyalty,
    targets: &BTreeMap<String, i64>,
    chunk: &mut i64,
) -> DomainResult<Option<FoldStats>> {
    let read = loyalty.db().begin().await?;
    let marks = read_marks(&read).await?;
    let cut = program_timezones(&read, "report_programs").await?;
    let ends = chunk_ends(&marks, targets, *chunk);
    if ends.values().all(|(from, end)| end <= from) {
        read.commit().await?;
        return Ok(None);
    }
    let (tallies, cut_in, rows) = tally_chunk(&read, &ends).await?;
    read.commit().await?;
    // The lane's turn at the write lock, so that postings queue behind one small chunk and
    // are let in the moment it commits (see `WriterGate`).
    let turn = loyalty.batcher().writer_gate().turn().await;
    let held = std::time::Instant::now();
    let txn = loyalty.db().begin().await?;
    if lock_marks(&txn).await? != marks || program_timezones(&txn, "report_programs").await? != cut
    {
        txn.rollback().await?;
        return Ok(Some(FoldStats::default()));
    }
    let written = write_chunk(txn, loyalty.folded_marks(), ends, tallies, cut_in).await?;
    drop(turn);
    let held = held.elapsed();
    *chunk = if held > SQLITE_HOLD {
        *chunk / 2
    } else if held < SQLITE_HOLD / 2 {
        *chunk * 2
    } else {
        *chunk
    }
    .clamp(*SQLITE_FOLD_CHUNK.start(), *SQLITE_FOLD_CHUNK.end());
    // Postings first: the folder waits twice as long as it held the turn before the next
    // chunk, so that it takes at most a third of the writer's time however far behind it is.
    tokio::time::sleep(held * 2).await;
    Ok(Some(FoldStats {
        rows,
        marks: written,
        rebuilt: 0,
    }))
}

/// Adds a chunk's tallies to the sums (without the marks `folded` knows are stored), moves the
/// watermarks to its ends and commits; then tells `folded` the marks it wrote. Returns how many
/// it wrote.
async fn write_chunk(
    txn: DatabaseTransaction,
    folded: &FoldedMarks,
    ends: BTreeMap<String, (i64, i64)>,
    tallies: HashMap<i64, Tally>,
    cut_in: HashMap<i64, String>,
) -> DomainResult<u64> {
    let backend = txn.get_database_backend();
    let mut written = Vec::with_capacity(tallies.len());
    for (program_id, mut tally) in tallies {
        // `tally_chunk` cut every program's rows in a timezone it names.
        let tz = cut_in.get(&program_id).cloned().ok_or_else(|| {
            DomainError::internal(format!("program {program_id} was tallied in no timezone"))
        })?;
        // A program this instance folded before has its `report_programs` row: only a rebuild
        // migration deletes it (`REFOLD`), and a new process starts with nothing known, as for
        // the marks. Only a program new to this instance may need the row.
        if !folded.drop_stored(program_id, &tz, &mut tally.marks) {
            txn.execute(stmt(
                backend,
                "INSERT INTO report_programs (program_id, timezone) VALUES ($1, $2) \
                 ON CONFLICT (program_id) DO NOTHING",
                vec![program_id.into(), tz.clone().into()],
            ))
            .await?;
        }
        let marks = tally.marks.clone();
        write(&txn, program_id, tally).await?;
        written.push((program_id, tz, marks));
    }
    let moved = ends
        .into_iter()
        .filter(|(_, (from, end))| end > from)
        .map(|(table, (_, end))| (table, end))
        .collect();
    set_marks(&txn, &moved).await?;
    txn.commit().await?;
    let mut count = 0;
    for (program_id, tz, marks) in written {
        count += marks.len() as u64;
        folded.committed(program_id, &tz, marks);
    }
    Ok(count)
}

/// Each table's `(from, end]` for this chunk: at most `chunk` ids past its watermark, never past
/// its target, never backwards.
fn chunk_ends(
    marks: &BTreeMap<String, i64>,
    targets: &BTreeMap<String, i64>,
    chunk: i64,
) -> BTreeMap<String, (i64, i64)> {
    let mut ends = BTreeMap::new();
    for table in TABLES {
        let from = marks.get(table).copied().unwrap_or(0);
        let target = targets.get(table).copied().unwrap_or(0);
        ends.insert(table.to_owned(), (from, target.min(from + chunk).max(from)));
    }
    ends
}

/// Per-program tallies of the rows in `ends`, the timezone each program is cut in, and the number
/// of rows read.
async fn tally_chunk(
    txn: &DatabaseTransaction,
    ends: &BTreeMap<String, (i64, i64)>,
) -> DomainResult<(HashMap<i64, Tally>, HashMap<i64, String>, u64)> {
    let backend = txn.get_database_backend();
    // Each program's rows are cut into days in the timezone its sums were cut in; a program seen
    // for the first time starts with its current timezone.
    let mut cut_in = program_timezones(txn, "report_programs").await?;
    let current = program_timezones(txn, "programs").await?;
    let mut tallies: HashMap<i64, Tally> = HashMap::new();
    let mut rows = 0u64;
    let tz_of = |program_id: i64, cut_in: &mut HashMap<i64, String>| -> DomainResult<Tz> {
        let name = cut_in.entry(program_id).or_insert_with(|| {
            current
                .get(&program_id)
                .cloned()
                .unwrap_or_else(|| "UTC".into())
        });
        parse_timezone(name)
    };
    let (from, end) = ends.get("ledger_entries").copied().unwrap_or_default();
    if end > from {
        let ledger = LedgerRow::find_by_statement(stmt(
            backend,
            &format!("{} WHERE l.id > $1 AND l.id <= $2", LedgerRow::SELECT),
            vec![from.into(), end.into()],
        ))
        .all(txn)
        .await?;
        for row in &ledger {
            let tz = tz_of(row.program_id, &mut cut_in)?;
            tallies.entry(row.program_id).or_default().ledger(tz, row)?;
        }
        rows += ledger.len() as u64;
    }
    for table in EventTable::ALL {
        let (from, end) = ends.get(table.name()).copied().unwrap_or_default();
        if end <= from {
            continue;
        }
        let events = EventRow::find_by_statement(stmt(
            backend,
            &format!("{} WHERE t.id > $1 AND t.id <= $2", table.select()),
            vec![from.into(), end.into()],
        ))
        .all(txn)
        .await?;
        for row in &events {
            let tz = tz_of(row.program_id, &mut cut_in)?;
            tallies
                .entry(row.program_id)
                .or_default()
                .event(tz, table, row);
        }
        rows += events.len() as u64;
    }
    Ok((tallies, cut_in, rows))
}

/// Recomputes the sums of programs whose timezone changed since they were cut.
async fn rebuild_stale(loyalty: &Loyalty) -> DomainResult<u64> {
    // Almost every pass finds nothing to rebuild: it looks with plain reads first and takes the
    // watermarks (on SQLite the write lock, in the lane's turn) only when a timezone moved.
    let cut_in = program_timezones(loyalty.db(), "report_programs").await?;
    let current = program_timezones(loyalty.db(), "programs").await?;
    if cut_in
        .iter()
        .all(|(program_id, tz)| current.get(program_id).is_none_or(|now| now == tz))
    {
        return Ok(0);
    }
    let _turn = loyalty.batcher().writer_gate().turn().await;
    let txn = loyalty.db().begin().await?;
    let backend = txn.get_database_backend();
    let marks = lock_marks(&txn).await?;
    let cut_in = program_timezones(&txn, "report_programs").await?;
    let current = program_timezones(&txn, "programs").await?;
    let mut rebuilt = 0;
    for (program_id, old) in cut_in {
        let Some(tz_name) = current.get(&program_id).filter(|tz| **tz != old) else {
            continue;
        };
        let tz = parse_timezone(tz_name)?;
        for table in [
            "report_daily",
            "report_member_spans",
            "report_gaps",
            "report_member_ends",
        ] {
            txn.execute(stmt(
                backend,
                &format!("DELETE FROM {table} WHERE program_id = $1"),
                vec![program_id.into()],
            ))
            .await?;
        }
        let mut tally = Tally::default();
        let upto = |name: &str| marks.get(name).copied().unwrap_or(0);
        scan(&txn, program_id, tz, &|_| 0, &upto, &mut tally).await?;
        write(&txn, program_id, tally).await?;
        txn.execute(stmt(
            backend,
            "UPDATE report_programs SET timezone = $1 WHERE program_id = $2",
            vec![tz_name.clone().into(), program_id.into()],
        ))
        .await?;
        rebuilt += 1;
    }
    txn.commit().await?;
    Ok(rebuilt)
}

impl Loyalty {
    /// One pass of the folder: rebuilds programs whose timezone changed, then folds every row
    /// that is final into the report's sums. Safe on several instances at once.
    pub async fn fold_reports(&self) -> DomainResult<FoldStats> {
        let loyalty = self.clone();
        run_detached(async move { loyalty.fold_reports_attached().await }).await
    }

    async fn fold_reports_attached(&self) -> DomainResult<FoldStats> {
        let mut stats = FoldStats {
            rebuilt: rebuild_stale(self).await?,
            ..FoldStats::default()
        };
        // Up to what is final now; later rows wait for the next pass rather than be chased a
        // few at a time.
        let Some(targets) = settled_max_ids(self.db(), &TABLES).await? else {
            return Ok(stats);
        };
        match self.db().get_database_backend() {
            DatabaseBackend::Postgres | DatabaseBackend::MySql => {
                while let Some(chunk) = fold_chunk(self, &targets).await? {
                    stats.add(chunk);
                }
            }
            DatabaseBackend::Sqlite => {
                let mut chunk = *SQLITE_FOLD_CHUNK.start();
                while let Some(folded) = fold_chunk_sqlite(self, &targets, &mut chunk).await? {
                    stats.add(folded);
                }
            }
        }
        Ok(stats)
    }

    /// Runs [`Loyalty::fold_reports`] every `interval` until shutdown.
    pub fn spawn_report_folder(&self, interval: Duration, shutdown: CancellationToken) {
        let loyalty = self.clone();
        crate::jobs::every(
            "report fold",
            interval,
            shutdown,
            move || {
                let loyalty = loyalty.clone();
                async move { loyalty.fold_reports().await }
            },
            |stats: &FoldStats| {
                if *stats != FoldStats::default() {
                    tracing::debug!(
                        rows = stats.rows,
                        marks = stats.marks,
                        rebuilt = stats.rebuilt,
                        "report fold"
                    );
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(day: u32, member: i64) -> (Did, NaiveDate, i64) {
        let day = NaiveDate::from_ymd_opt(2026, 3, day).unwrap_or_default();
        (Did::Active, day, member)
    }

    #[test]
    fn folded_marks_are_known_only_in_the_timezone_they_were_cut_in() {
        let folded = FoldedMarks::default();
        folded.committed(1, "Asia/Ho_Chi_Minh", [mark(2, 7)]);
        let mut marks = HashSet::from([mark(2, 7), mark(2, 8), mark(3, 7)]);
        folded.drop_stored(1, "Asia/Ho_Chi_Minh", &mut marks);
        assert_eq!(marks, HashSet::from([mark(2, 8), mark(3, 7)]));
        // Another program, or the same one cut in another timezone (a rebuild): nothing known.
        for (program, tz, seen) in [(2, "Asia/Ho_Chi_Minh", false), (1, "Europe/Berlin", true)] {
            let mut marks = HashSet::from([mark(2, 7)]);
            assert_eq!(folded.drop_stored(program, tz, &mut marks), seen);
            assert_eq!(marks.len(), 1, "program {program} in {tz}");
        }
        // Marks committed in the new timezone replace the old ones.
        folded.committed(1, "Europe/Berlin", [mark(3, 7)]);
        let mut marks = HashSet::from([mark(2, 7), mark(3, 7)]);
        folded.drop_stored(1, "Europe/Berlin", &mut marks);
        assert_eq!(marks, HashSet::from([mark(2, 7)]));
    }

    #[test]
    fn folded_marks_past_the_bound_keep_only_the_newest_day() {
        let folded = FoldedMarks::default();
        let old = (0..FOLDED_MARKS as i64).map(|m| mark(2, m));
        folded.committed(1, "UTC", old);
        folded.committed(1, "UTC", [mark(3, 1), mark(3, 2)]);
        let mut marks = HashSet::from([mark(2, 1), mark(3, 1), mark(3, 2)]);
        folded.drop_stored(1, "UTC", &mut marks);
        assert_eq!(marks, HashSet::from([mark(2, 1)]));
    }
}
