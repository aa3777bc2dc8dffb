//! `loyalty-bench --matrix` (`bench/run.sh matrix`): the one run. For each concurrency
//! (8, 32, 128 by default) the raw SQL transaction, then the mixed workload and each earning
//! action alone over HTTP; then `me { balance }` beside `{ __typename }` on the same server;
//! then the embedded SQLite default's earn rate on a second server; CPU per operation of the
//! server, PostgreSQL and this client around every measured cell. Prints one throughput and
//! latency table (p50, p99, p99.9, and each HTTP rate ÷ the raw rate at the same
//! concurrency), the reads, the SQLite verdict and the CPU table.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::cpu::{CpuProbe, CpuUsage};
use crate::http::{self, HttpConfig, Load, Mix, Prepared, Workload};
use crate::raw::{self, RawBench};
use crate::stats::{error_lines, fmt_ms, Summary};

/// The SQLite target of issue 13: at least this many earns a second ...
const SQLITE_TARGET_OPS: f64 = 1000.0;
/// ... with p99 under this, at [`SQLITE_TARGET_CONCURRENCY`].
const SQLITE_TARGET_P99_MS: f64 = 50.0;
const SQLITE_TARGET_CONCURRENCY: usize = 8;

/// A row of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixWorkload {
    /// `--mix`.
    Mixed,
    Only(Workload),
}

/// clap value parser for `--workloads`: `mixed` or a workload key.
pub fn parse_matrix_workload(s: &str) -> Result<MatrixWorkload, String> {
    let s = s.trim();
    if s == "mixed" {
        return Ok(MatrixWorkload::Mixed);
    }
    Workload::from_key(s)
        .map(MatrixWorkload::Only)
        .ok_or_else(|| {
            let keys: Vec<&str> = Workload::ALL.iter().map(|w| w.key()).collect();
            format!(
                "unknown workload {s:?}; expected mixed or one of {}",
                keys.join(", ")
            )
        })
}

impl MatrixWorkload {
    fn load(self, mix: Mix) -> Load {
        match self {
            MatrixWorkload::Mixed => Load::Mix(mix),
            MatrixWorkload::Only(w) => Load::Only(w),
        }
    }

    fn label(self, mix: Mix) -> String {
        match self {
            MatrixWorkload::Mixed => format!("mixed ({mix})"),
            MatrixWorkload::Only(w) => w.label().to_string(),
        }
    }
}

pub struct SqliteTarget {
    pub http: HttpConfig,
    pub pid: Option<u32>,
    pub concurrencies: Vec<usize>,
}

pub struct MatrixConfig<'a> {
    pub http: HttpConfig,
    pub server_pid: Option<u32>,
    pub database_url: &'a str,
    pub raw_max_connections: usize,
    pub keep_tables: bool,
    pub concurrencies: Vec<usize>,
    pub workloads: Vec<MatrixWorkload>,
    pub mix: Mix,
    /// 0: no reads.
    pub reads_concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub sqlite: Option<SqliteTarget>,
}

impl MatrixConfig<'_> {
    pub fn cells(&self) -> usize {
        let reads = if self.reads_concurrency > 0 { 2 } else { 0 };
        let sqlite = self.sqlite.as_ref().map_or(0, |s| s.concurrencies.len());
        self.concurrencies.len() * (1 + self.workloads.len()) + reads + sqlite
    }

    /// Wall time of the measurements alone (set-up and registration come on top).
    pub fn estimate(&self) -> Duration {
        (self.duration + self.warmup) * u32::try_from(self.cells()).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Earn,
    Read,
    Sqlite,
}

struct Cell {
    kind: Kind,
    label: String,
    summary: Summary,
    cpu: Option<CpuUsage>,
}

/// Progress and counting of the cells on stderr.
struct Progress {
    done: usize,
    total: usize,
}

impl Progress {
    fn start(&mut self, what: &str, concurrency: usize) {
        self.done += 1;
        eprintln!(
            "[{}/{}] {what} at concurrency {concurrency} ...",
            self.done, self.total
        );
    }

    fn finish(summary: &Summary) {
        eprintln!(
            "  {:.1} ops/s, p50 {} ms, p99 {} ms, p99.9 {} ms, {} errors",
            summary.ops_per_sec,
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p99_ms),
            fmt_ms(summary.p999_ms),
            summary.errors
        );
    }
}

pub async fn run(cfg: MatrixConfig<'_>) -> Result<()> {
    eprintln!(
        "matrix: {} cells × ({}s + {}s warm-up) ≈ {:.1} min of measurement, plus set-up",
        cfg.cells(),
        cfg.duration.as_secs(),
        cfg.warmup.as_secs(),
        cfg.estimate().as_secs_f64() / 60.0
    );
    let mut progress = Progress {
        done: 0,
        total: cfg.cells(),
    };

    eprintln!(
        "[setup] registering {} members at {} (run id {}) ...",
        cfg.http.members, cfg.http.server, cfg.http.run_id
    );
    let prepared = http::prepare(&cfg.http).await?;
    eprintln!("  {}", prepared.apq_note);

    let max_concurrency = cfg
        .concurrencies
        .iter()
        .copied()
        .chain(std::iter::once(cfg.reads_concurrency))
        .max()
        .unwrap_or(1);
    eprintln!("[setup] raw SQL tables and pool ...");
    let raw = RawBench::setup(
        cfg.database_url,
        cfg.http.members,
        max_concurrency.min(cfg.raw_max_connections),
        cfg.keep_tables,
    )
    .await?;
    let probe = match CpuProbe::new(cfg.server_pid, Some(cfg.database_url)).await {
        Ok(p) => p,
        Err(e) => {
            raw.finish().await;
            return Err(e);
        }
    };
    let measured = measure_postgres(&cfg, &prepared, &raw, &probe, &mut progress).await;
    let raw_connections = raw.connections();
    raw.finish().await;
    probe.close().await;
    let mut cells = measured?;

    let mut sqlite_note = None;
    let mut sqlite_failed = None;
    if let Some(target) = &cfg.sqlite {
        match measure_sqlite(&cfg, target, &mut progress).await {
            Ok((sqlite_cells, note)) => {
                cells.extend(sqlite_cells);
                sqlite_note = Some(note);
            }
            // The PostgreSQL tables are still worth printing.
            Err(e) => sqlite_failed = Some(e),
        }
    }

    print_report(
        &cfg,
        &prepared,
        &cells,
        raw_connections,
        sqlite_note.as_deref(),
    );
    if let Some(e) = sqlite_failed {
        return Err(e.context("the embedded SQLite phase failed"));
    }
    verdict(&cells)
}

async fn measure_postgres(
    cfg: &MatrixConfig<'_>,
    prepared: &Prepared,
    raw: &RawBench,
    probe: &CpuProbe,
    progress: &mut Progress,
) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for &c in &cfg.concurrencies {
        progress.start(raw::LABEL, c);
        raw.warm_up(c, cfg.warmup).await?;
        let before = probe.snapshot().await?;
        let summary = raw.measure(c, cfg.duration).await?;
        let after = probe.snapshot().await?;
        Progress::finish(&summary);
        cells.push(Cell {
            kind: Kind::Raw,
            label: raw::LABEL.to_string(),
            summary,
            cpu: Some(probe.usage(&before, &after)),
        });
        for &w in &cfg.workloads {
            let label = w.label(cfg.mix);
            cells.push(
                http_cell(
                    Kind::Earn,
                    label,
                    w.load(cfg.mix),
                    c,
                    cfg,
                    prepared,
                    probe,
                    progress,
                )
                .await?,
            );
        }
    }
    if cfg.reads_concurrency > 0 {
        for w in [Workload::MeBalance, Workload::Typename] {
            let c = cfg.reads_concurrency;
            cells.push(
                http_cell(
                    Kind::Read,
                    w.label().to_string(),
                    Load::Only(w),
                    c,
                    cfg,
                    prepared,
                    probe,
                    progress,
                )
                .await?,
            );
        }
    }
    Ok(cells)
}

#[allow(clippy::too_many_arguments)]
async fn http_cell(
    kind: Kind,
    label: String,
    load: Load,
    concurrency: usize,
    cfg: &MatrixConfig<'_>,
    prepared: &Prepared,
    probe: &CpuProbe,
    progress: &mut Progress,
) -> Result<Cell> {
    progress.start(&label, concurrency);
    http::warm_up(prepared, load, concurrency, cfg.warmup).await?;
    let before = probe.snapshot().await?;
    let phase = http::measure_load(prepared, load, concurrency, cfg.duration).await?;
    let after = probe.snapshot().await?;
    Progress::finish(&phase.total);
    let mut summary = phase.total;
    summary.label.clone_from(&label);
    Ok(Cell {
        kind,
        label,
        summary,
        cpu: Some(probe.usage(&before, &after)),
    })
}

async fn measure_sqlite(
    cfg: &MatrixConfig<'_>,
    target: &SqliteTarget,
    progress: &mut Progress,
) -> Result<(Vec<Cell>, String)> {
    eprintln!(
        "[setup] embedded SQLite server {}: registering {} members ...",
        target.http.server, target.http.members
    );
    let prepared = http::prepare(&target.http).await?;
    eprintln!("  {}", prepared.apq_note);
    let probe = CpuProbe::new(target.pid, None).await?;
    let mut cells = Vec::new();
    for &c in &target.concurrencies {
        let label = format!("embedded SQLite: mixed ({})", cfg.mix);
        cells.push(
            http_cell(
                Kind::Sqlite,
                label,
                Load::Mix(cfg.mix),
                c,
                cfg,
                &prepared,
                &probe,
                progress,
            )
            .await?,
        );
    }
    probe.close().await;
    let note = format!(
        "{}; {} resends with text after PERSISTED_QUERY_NOT_FOUND",
        prepared.apq_note,
        prepared.apq_resends()
    );
    Ok((cells, note))
}

fn find<'a>(cells: &'a [Cell], kind: Kind, label: &str, concurrency: usize) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.kind == kind && c.label == label && c.summary.concurrency == concurrency)
}

fn print_report(
    cfg: &MatrixConfig<'_>,
    prepared: &Prepared,
    cells: &[Cell],
    raw_connections: usize,
    sqlite_note: Option<&str>,
) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "loyalty-bench --matrix: {} members, {}s per cell after {}s warm-up, {} CPU cores, run id {}",
        cfg.http.members,
        cfg.duration.as_secs(),
        cfg.warmup.as_secs(),
        cores,
        cfg.http.run_id
    );
    let reg = &prepared.register;
    println!(
        "setup: registered {} members ({} errors) at {:.1}/s; {}; {} resends with text after PERSISTED_QUERY_NOT_FOUND",
        reg.ops,
        reg.errors,
        reg.ops_per_sec,
        prepared.apq_note,
        prepared.apq_resends()
    );
    if let Some(note) = sqlite_note {
        println!("embedded SQLite server: {note}");
    }

    print_main_table(cfg, cells, raw_connections);
    print_reads(cfg, cells);
    print_sqlite(cells);
    print_cpu(cells);

    let mut errors = Vec::new();
    for cell in cells {
        errors.extend(
            error_lines(&cell.summary, 3)
                .into_iter()
                .map(|l| format!("{l} (concurrency {})", cell.summary.concurrency)),
        );
    }
    if !errors.is_empty() {
        println!();
        println!("first distinct errors (count × message):");
        for line in errors {
            println!("{line}");
        }
    }
}

fn print_main_table(cfg: &MatrixConfig<'_>, cells: &[Cell], raw_connections: usize) {
    if cfg.concurrencies.is_empty() {
        return;
    }
    println!();
    println!(
        "Throughput (successful ops/s) and client-side latency (ms) by concurrency; ÷ raw is \
         the HTTP rate over the raw SQL transaction's rate at the same concurrency:"
    );
    println!();
    let mut header = String::from("| workload |");
    let mut rule = String::from("|---|");
    for c in &cfg.concurrencies {
        header.push_str(&format!(" c={c} ops/s | ÷ raw | p50 | p99 | p99.9 |"));
        rule.push_str("---:|---:|---:|---:|---:|");
    }
    println!("{header}");
    println!("{rule}");

    let mut rows: Vec<(Kind, String)> = vec![(Kind::Raw, raw::LABEL.to_string())];
    rows.extend(cfg.workloads.iter().map(|w| (Kind::Earn, w.label(cfg.mix))));
    for (kind, label) in rows {
        let mut line = format!("| {label} |");
        for &c in &cfg.concurrencies {
            let raw_rate = find(cells, Kind::Raw, raw::LABEL, c).map(|r| r.summary.ops_per_sec);
            match find(cells, kind, &label, c) {
                Some(cell) => {
                    let s = &cell.summary;
                    let ratio = match (kind, raw_rate) {
                        (Kind::Raw, _) => "—".to_string(),
                        (_, Some(r)) if r > 0.0 => format!("{:.3}", s.ops_per_sec / r),
                        _ => "n/a".to_string(),
                    };
                    line.push_str(&format!(
                        " {:.1} | {ratio} | {} | {} | {} |",
                        s.ops_per_sec,
                        fmt_ms(s.p50_ms),
                        fmt_ms(s.p99_ms),
                        fmt_ms(s.p999_ms)
                    ));
                }
                None => line.push_str(" - | - | - | - | - |"),
            }
        }
        println!("{line}");
    }
    let capped: Vec<String> = cfg
        .concurrencies
        .iter()
        .filter(|c| **c > raw_connections)
        .map(ToString::to_string)
        .collect();
    if !capped.is_empty() {
        println!();
        println!(
            "The raw SQL transaction at concurrency {} runs that many workers over {raw_connections} \
             PostgreSQL connections (--raw-max-connections; max_connections is shared with the \
             server's pool), as the server's requests share its pool.",
            capped.join(", ")
        );
    }
    let thin: Vec<String> = cells
        .iter()
        .filter(|c| c.summary.ops > 0 && c.summary.ops < 10_000)
        .map(|c| format!("{} at {}", c.label, c.summary.concurrency))
        .collect();
    if !thin.is_empty() {
        println!(
            "p99.9 rests on fewer than 10 samples above it where a cell has under 10,000 \
             operations ({} of {} cells).",
            thin.len(),
            cells.len()
        );
    }
}

fn print_reads(cfg: &MatrixConfig<'_>, cells: &[Cell]) {
    let c = cfg.reads_concurrency;
    let me = find(cells, Kind::Read, Workload::MeBalance.label(), c);
    let trivial = find(cells, Kind::Read, Workload::Typename.label(), c);
    if me.is_none() && trivial.is_none() {
        return;
    }
    println!();
    println!("Reads on the same server (member token), concurrency {c}:");
    println!();
    println!(
        "| query | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/op | PostgreSQL CPU µs/op |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for cell in [me, trivial].into_iter().flatten() {
        let s = &cell.summary;
        let (server, pg) = match &cell.cpu {
            Some(u) => (
                CpuUsage::per_op(u.server_secs, s.ops),
                CpuUsage::per_op(sum(u.pg_db_secs, u.pg_background_secs), s.ops),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| `{}` | {:.1} | {} | {} | {} | {server} | {pg} |",
            cell.label,
            s.ops_per_sec,
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.p999_ms)
        );
    }
    if let (Some(me), Some(trivial)) = (me, trivial) {
        if trivial.summary.ops_per_sec > 0.0 {
            println!();
            println!(
                "`me {{ balance }}` / `{{ __typename }}`: {:.3} of the trivial query's rate",
                me.summary.ops_per_sec / trivial.summary.ops_per_sec
            );
        }
    }
}

fn print_sqlite(cells: &[Cell]) {
    let sqlite: Vec<&Cell> = cells.iter().filter(|c| c.kind == Kind::Sqlite).collect();
    if sqlite.is_empty() {
        return;
    }
    println!();
    println!(
        "Embedded SQLite default (a second server without DATABASE_URL, REDIS_URL or JWT_SECRET):"
    );
    println!();
    println!("| workload | concurrency | ops | errors | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/op |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cell in &sqlite {
        let s = &cell.summary;
        let server = cell.cpu.as_ref().map_or_else(
            || "-".to_string(),
            |u| CpuUsage::per_op(u.server_secs, s.ops),
        );
        println!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {server} |",
            cell.label,
            s.concurrency,
            s.ops,
            s.errors,
            s.ops_per_sec,
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.p999_ms)
        );
    }
    println!();
    match sqlite
        .iter()
        .find(|c| c.summary.concurrency == SQLITE_TARGET_CONCURRENCY)
    {
        Some(cell) => {
            let s = &cell.summary;
            let rate_ok = s.ops_per_sec >= SQLITE_TARGET_OPS;
            let p99_ok = s.p99_ms.is_some_and(|p| p < SQLITE_TARGET_P99_MS);
            println!(
                "SQLite target (≥ {SQLITE_TARGET_OPS:.0} earns/s with p99 < {SQLITE_TARGET_P99_MS:.0} ms at concurrency {SQLITE_TARGET_CONCURRENCY}): {}: {:.1} ops/s ({}), p99 {} ms ({})",
                if rate_ok && p99_ok { "MET" } else { "MISSED" },
                s.ops_per_sec,
                if rate_ok { "ok" } else { "too slow" },
                fmt_ms(s.p99_ms),
                if p99_ok { "ok" } else { "too high" },
            );
        }
        None => println!(
            "SQLite target: not evaluated (it is stated at concurrency {SQLITE_TARGET_CONCURRENCY}; \
             add it to --sqlite-concurrencies)"
        ),
    }
}

fn print_cpu(cells: &[Cell]) {
    if cells.iter().all(|c| c.cpu.is_none()) {
        return;
    }
    println!();
    println!(
        "CPU per operation (µs of CPU time per successful operation, from /proc utime + stime \
         over each measured cell). PostgreSQL = the backends of the bench database; PG \
         background = checkpointer, WAL writer, background writer, launchers and postmaster \
         (cluster-wide). Cores = CPU seconds per wall second: the sampled processes together, \
         and the whole machine (the difference is everything else: Redis, other load):"
    );
    println!();
    println!("| workload | concurrency | ops | errors | awarded | server | PostgreSQL | PG background | client | cores (ours) | cores (machine) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cell in cells {
        let s = &cell.summary;
        let awarded = match cell.kind {
            Kind::Raw | Kind::Read => "-".to_string(),
            Kind::Earn | Kind::Sqlite if s.ops > 0 => {
                format!("{:.0}%", 100.0 * s.awarded as f64 / s.ops as f64)
            }
            Kind::Earn | Kind::Sqlite => "-".to_string(),
        };
        let (server, pg, bg, client, ours, machine) = match &cell.cpu {
            Some(u) => (
                CpuUsage::per_op(u.server_secs, s.ops),
                CpuUsage::per_op(u.pg_db_secs, s.ops),
                CpuUsage::per_op(u.pg_background_secs, s.ops),
                CpuUsage::per_op(u.client_secs, s.ops),
                u.ours_cores()
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                u.machine_cores()
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            ),
            None => {
                let dash = || "-".to_string();
                (dash(), dash(), dash(), dash(), dash(), dash())
            }
        };
        println!(
            "| {} | {} | {} | {} | {awarded} | {server} | {pg} | {bg} | {client} | {ours} | {machine} |",
            cell.label, s.concurrency, s.ops, s.errors
        );
    }
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// The tables are printed either way; the exit status says whether the numbers mean
/// anything.
fn verdict(cells: &[Cell]) -> Result<()> {
    let empty: Vec<String> = cells
        .iter()
        .filter(|c| c.summary.ops == 0)
        .map(|c| format!("{} at {}", c.label, c.summary.concurrency))
        .collect();
    for cell in cells {
        let s = &cell.summary;
        let total = s.ops + s.errors;
        if s.ops > 0 && s.errors * 100 > total {
            eprintln!(
                "warning: {:.1}% of {} at concurrency {} failed; treat that cell with care",
                100.0 * s.errors as f64 / total as f64,
                cell.label,
                s.concurrency
            );
        }
    }
    if !empty.is_empty() {
        bail!(
            "{} cell(s) completed no operation (see the errors above): {}",
            empty.len(),
            empty.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse() {
        assert_eq!(parse_matrix_workload("mixed"), Ok(MatrixWorkload::Mixed));
        assert_eq!(
            parse_matrix_workload(" news_read"),
            Ok(MatrixWorkload::Only(Workload::NewsRead))
        );
        assert!(parse_matrix_workload("spin").is_err());
    }

    #[test]
    fn sums_of_optional_seconds() {
        assert_eq!(sum(Some(1.0), Some(2.0)), Some(3.0));
        assert_eq!(sum(None, Some(2.0)), Some(2.0));
        assert_eq!(sum(None, None), None);
    }
}
