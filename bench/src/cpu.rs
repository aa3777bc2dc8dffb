//! CPU time per operation, sampled around each measured phase from `/proc`: `utime + stime`
//! of the server process (all its threads), of PostgreSQL's processes and of this client, and
//! the whole machine's busy time from `/proc/stat` (which shows what else was running).
//!
//! PostgreSQL's processes are found through `pg_stat_activity`: the backends of the bench's
//! database (the server's pool, the raw phase's pool, autovacuum workers on it) and the
//! cluster's background processes (checkpointer, WAL writer, background writer, launchers)
//! plus the postmaster. The background processes serve every database of the cluster: on a
//! machine where other databases are busy, that column includes their share. A backend that
//! exits during a phase takes its CPU time with it (pools keep theirs open, so this is rare).
//! Linux only, and PostgreSQL must run on this machine (a containerised or remote one shows
//! as n/a).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

const PG_PIDS: &str = "SELECT pid, datname IS NOT NULL AS ours FROM pg_stat_activity \
    WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)";

/// Where to sample.
pub struct CpuProbe {
    server_pid: Option<u32>,
    pg: Option<PgPool>,
    ticks_per_sec: f64,
}

/// CPU counters at one instant, in clock ticks.
pub struct CpuSnapshot {
    at: Instant,
    client: Option<u64>,
    server: Option<u64>,
    /// `None`: PostgreSQL is not sampled (not asked for, or not on this machine).
    pg_db: Option<HashMap<u32, u64>>,
    pg_background: Option<HashMap<u32, u64>>,
    machine_busy: Option<u64>,
}

/// CPU seconds spent between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub wall_secs: f64,
    pub client_secs: Option<f64>,
    pub server_secs: Option<f64>,
    pub pg_db_secs: Option<f64>,
    pub pg_background_secs: Option<f64>,
    pub machine_secs: Option<f64>,
}

impl CpuUsage {
    /// CPU microseconds per operation, formatted; `-` when unknown or no operation.
    pub fn per_op(secs: Option<f64>, ops: u64) -> String {
        match secs {
            Some(s) if ops > 0 => format!("{:.0}", s * 1e6 / ops as f64),
            _ => "-".to_string(),
        }
    }

    /// The sampled processes together, in cores (CPU seconds per wall second).
    pub fn ours_cores(&self) -> Option<f64> {
        if self.wall_secs <= 0.0 {
            return None;
        }
        let sum = [
            self.client_secs,
            self.server_secs,
            self.pg_db_secs,
            self.pg_background_secs,
        ]
        .iter()
        .flatten()
        .sum::<f64>();
        Some(sum / self.wall_secs)
    }

    /// The whole machine, in cores.
    pub fn machine_cores(&self) -> Option<f64> {
        match self.machine_secs {
            Some(s) if self.wall_secs > 0.0 => Some(s / self.wall_secs),
            _ => None,
        }
    }
}

impl CpuProbe {
    /// `database_url`: sample PostgreSQL too (one extra connection, used only between
    /// phases). Says on stderr what cannot be sampled.
    pub async fn new(server_pid: Option<u32>, database_url: Option<&str>) -> Result<CpuProbe> {
        let pg = match database_url {
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("connecting the CPU probe to PostgreSQL")?,
            ),
            None => None,
        };
        let mut probe = CpuProbe {
            server_pid,
            pg,
            ticks_per_sec: clock_ticks_per_sec(),
        };
        if let Some(pid) = server_pid {
            if proc_ticks(pid).is_none() {
                eprintln!("warning: cannot read /proc/{pid}/stat: server CPU is not sampled");
                probe.server_pid = None;
            }
        }
        if probe.pg.is_some() {
            let (db, bg) = probe.pg_ticks().await?;
            let found = db.as_ref().map_or(0, HashMap::len) + bg.as_ref().map_or(0, HashMap::len);
            if found == 0 {
                eprintln!(
                    "warning: no PostgreSQL process of pg_stat_activity is on this machine \
                     (remote or containerised?): PostgreSQL CPU is not sampled"
                );
                if let Some(pool) = probe.pg.take() {
                    pool.close().await;
                }
            }
        }
        Ok(probe)
    }

    pub async fn snapshot(&self) -> Result<CpuSnapshot> {
        let (pg_db, pg_background) = self.pg_ticks().await?;
        Ok(CpuSnapshot {
            at: Instant::now(),
            client: proc_ticks_self(),
            server: self.server_pid.and_then(proc_ticks),
            pg_db,
            pg_background,
            machine_busy: machine_busy_ticks(),
        })
    }

    pub fn usage(&self, before: &CpuSnapshot, after: &CpuSnapshot) -> CpuUsage {
        let secs = |ticks: u64| ticks as f64 / self.ticks_per_sec;
        let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(secs(b.saturating_sub(a))),
            _ => None,
        };
        CpuUsage {
            wall_secs: after.at.duration_since(before.at).as_secs_f64(),
            client_secs: delta(before.client, after.client),
            server_secs: delta(before.server, after.server),
            pg_db_secs: pid_delta(before.pg_db.as_ref(), after.pg_db.as_ref()).map(secs),
            pg_background_secs: pid_delta(
                before.pg_background.as_ref(),
                after.pg_background.as_ref(),
            )
            .map(secs),
            machine_secs: delta(before.machine_busy, after.machine_busy),
        }
    }

    /// Ticks of every local PostgreSQL process: (backends of this database, background).
    #[allow(clippy::type_complexity)]
    async fn pg_ticks(&self) -> Result<(Option<HashMap<u32, u64>>, Option<HashMap<u32, u64>>)> {
        let Some(pool) = &self.pg else {
            return Ok((None, None));
        };
        let rows = sqlx::query(PG_PIDS)
            .fetch_all(pool)
            .await
            .context("reading pg_stat_activity for the CPU probe")?;
        let mut db = HashMap::new();
        let mut background = HashMap::new();
        let mut postmaster = None;
        for row in rows {
            let pid: i32 = row.try_get("pid").context("pg_stat_activity.pid")?;
            let ours: bool = row.try_get("ours").context("pg_stat_activity.datname")?;
            let Ok(pid) = u32::try_from(pid) else {
                continue;
            };
            let Some(stat) = read_stat(pid).filter(|s| s.comm == "postgres") else {
                continue;
            };
            if ours {
                db.insert(pid, stat.ticks);
            } else {
                postmaster = postmaster.or(Some(stat.ppid));
                background.insert(pid, stat.ticks);
            }
        }
        if let Some(pm) = postmaster {
            if let Some(stat) = read_stat(pm).filter(|s| s.comm == "postgres") {
                background.insert(pm, stat.ticks);
            }
        }
        Ok((Some(db), Some(background)))
    }

    pub async fn close(self) {
        if let Some(pool) = self.pg {
            pool.close().await;
        }
    }
}

/// Ticks spent by the processes of `after` since `before`; a process new in `after` counts
/// from zero (it started during the phase).
fn pid_delta(before: Option<&HashMap<u32, u64>>, after: Option<&HashMap<u32, u64>>) -> Option<u64> {
    let (before, after) = (before?, after?);
    Some(
        after
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
            .sum(),
    )
}

struct ProcStat {
    comm: String,
    ppid: u32,
    /// utime + stime.
    ticks: u64,
}

/// Parse `/proc/<pid>/stat`: `pid (comm) state ppid … utime stime …` (fields 14 and 15); the
/// command name may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        comm,
        ppid,
        ticks: utime + stime,
    })
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn proc_ticks(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.ticks)
}

fn proc_ticks_self() -> Option<u64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|s| s.ticks)
}

/// Busy ticks of the whole machine: the first `cpu` line of `/proc/stat` without idle and
/// iowait (guest time is already inside user time).
fn parse_machine_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum();
    Some(busy)
}

fn machine_busy_ticks() -> Option<u64> {
    parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `USER_HZ` from the auxiliary vector (`AT_CLKTCK`), else the usual 100.
fn clock_ticks_per_sec() -> f64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 100.0;
    };
    let word = std::mem::size_of::<usize>();
    let words: Vec<u64> = auxv
        .chunks_exact(word)
        .filter_map(|c| match word {
            8 => c.try_into().ok().map(u64::from_ne_bytes),
            4 => c.try_into().ok().map(u32::from_ne_bytes).map(u64::from),
            _ => None,
        })
        .collect();
    words
        .chunks_exact(2)
        .find(|pair| pair.first() == Some(&AT_CLKTCK))
        .and_then(|pair| pair.get(1))
        .filter(|hz| **hz > 0)
        .map_or(100.0, |hz| *hz as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_awkward_names() {
        let line = "2214 (postgres) S 2213 2214 2214 0 -1 4194368 138 0 0 0 7 3 0 0 20 0 1 0 4761";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.comm.as_str(), s.ppid, s.ticks), ("postgres", 2213, 10));
        let odd = "42 (a) b (c)) R 1 42 42 0 -1 0 0 0 0 0 100 50 0 0 20 0 9 0 1";
        let s = parse_stat(odd).unwrap();
        assert_eq!((s.comm.as_str(), s.ppid, s.ticks), ("a) b (c)", 1, 150));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn this_process_is_readable() {
        assert!(proc_ticks_self().is_some());
        assert!(proc_ticks(std::process::id()).is_some());
        assert!(machine_busy_ticks().is_some());
        let hz = clock_ticks_per_sec();
        assert!(hz >= 100.0, "{hz}");
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let text = "cpu  10 1 5 1000 20 2 3 4 0 0\ncpu0 5 0 2 500 10 1 1 2 0 0\n";
        assert_eq!(parse_machine_busy(text), Some(10 + 1 + 5 + 2 + 3 + 4));
    }

    #[test]
    fn deltas_count_new_processes_from_zero() {
        let before: HashMap<u32, u64> = [(1, 100), (2, 50)].into();
        let after: HashMap<u32, u64> = [(1, 130), (3, 7)].into();
        assert_eq!(pid_delta(Some(&before), Some(&after)), Some(30 + 7));
        assert_eq!(pid_delta(None, Some(&after)), None);
        let u = CpuUsage {
            wall_secs: 2.0,
            client_secs: Some(0.5),
            server_secs: Some(1.0),
            pg_db_secs: None,
            pg_background_secs: Some(0.5),
            machine_secs: Some(3.0),
        };
        assert_eq!(u.ours_cores(), Some(1.0));
        assert_eq!(u.machine_cores(), Some(1.5));
        assert_eq!(CpuUsage::per_op(Some(0.5), 1000), "500");
        assert_eq!(CpuUsage::per_op(Some(0.5), 0), "-");
        assert_eq!(CpuUsage::per_op(None, 10), "-");
    }
}
