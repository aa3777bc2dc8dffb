//! Latency recording, percentiles and the markdown report.

use std::time::Duration;

/// How many distinct error messages one recorder keeps verbatim; the rest are
/// folded into a single "(other messages)" bucket so a flood of unique
/// messages cannot blow up memory.
const MAX_DISTINCT_MESSAGES: usize = 8;
const OTHER_MESSAGES: &str = "(other messages)";
const MAX_MESSAGE_CHARS: usize = 240;

/// Per-task, per-workload measurements. Tasks own their recorders and merge
/// them after the phase, so the hot loop never takes a lock.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Latency of each successful operation, in microseconds.
    pub samples_us: Vec<u64>,
    pub errors: u64,
    /// Successful operations whose response said points were awarded.
    pub awarded: u64,
    /// Distinct error messages in first-seen order, with counts.
    pub messages: Vec<(String, u64)>,
}

impl Recorder {
    pub fn ok(&mut self, latency: Duration) {
        self.samples_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn err(&mut self, message: &str) {
        self.errors += 1;
        let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        self.add_message(message, 1);
    }

    fn add_message(&mut self, message: String, count: u64) {
        if let Some(entry) = self.messages.iter_mut().find(|(m, _)| *m == message) {
            entry.1 += count;
        } else if self.messages.len() < MAX_DISTINCT_MESSAGES {
            self.messages.push((message, count));
        } else if let Some(entry) = self.messages.iter_mut().find(|(m, _)| m == OTHER_MESSAGES) {
            entry.1 += count;
        } else if let Some(last) = self.messages.last_mut() {
            // Turn the last slot into the overflow bucket.
            *last = (OTHER_MESSAGES.to_string(), last.1 + count);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.samples_us.extend(other.samples_us);
        self.errors += other.errors;
        self.awarded += other.awarded;
        for (message, count) in other.messages {
            self.add_message(message, count);
        }
    }

    pub fn ops(&self) -> u64 {
        self.samples_us.len() as u64
    }

    /// Summarise this recorder. `elapsed` is the wall-clock length of the
    /// measured phase (all workloads of a phase share it).
    pub fn summarize(mut self, label: &str, concurrency: usize, elapsed: Duration) -> Summary {
        self.samples_us.sort_unstable();
        let secs = elapsed.as_secs_f64();
        let ops = self.ops();
        Summary {
            label: label.to_string(),
            concurrency,
            ops,
            errors: self.errors,
            awarded: self.awarded,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            p50_ms: percentile_ms(&self.samples_us, 50.0),
            p99_ms: percentile_ms(&self.samples_us, 99.0),
            p999_ms: percentile_ms(&self.samples_us, 99.9),
            messages: self.messages,
        }
    }
}

/// Nearest-rank percentile of already sorted microsecond samples, in ms.
pub fn percentile_ms(sorted_us: &[u64], pct: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let n = sorted_us.len();
    // The epsilon keeps 99.9 % of 2,000 at rank 1,998: 99.9 is not exact in binary.
    let rank = ((pct / 100.0) * n as f64 - 1e-9).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    sorted_us.get(idx).map(|us| *us as f64 / 1000.0)
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub label: String,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub awarded: u64,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// p99.9: with fewer than 1,000 samples this is the slowest or nearly so.
    pub p999_ms: Option<f64>,
    pub messages: Vec<(String, u64)>,
}

pub fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |ms| format!("{ms:.2}"))
}

pub fn table_header() -> String {
    "| workload | concurrency | ops | errors | ops/s | p50 ms | p99 ms | p99.9 ms |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|"
        .to_string()
}

pub fn table_row(s: &Summary) -> String {
    format!(
        "| {} | {} | {} | {} | {:.1} | {} | {} | {} |",
        s.label,
        s.concurrency,
        s.ops,
        s.errors,
        s.ops_per_sec,
        fmt_ms(s.p50_ms),
        fmt_ms(s.p99_ms),
        fmt_ms(s.p999_ms)
    )
}

/// Lines describing the first few distinct error messages of a row.
pub fn error_lines(s: &Summary, max: usize) -> Vec<String> {
    s.messages
        .iter()
        .take(max)
        .map(|(m, c)| format!("  - {}: {c}× {m}", s.label))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&v, 100.0), Some(100.0));
        // Nearest rank: p99.9 of 100 samples is the slowest, of 2,000 the second slowest.
        assert_eq!(percentile_ms(&v, 99.9), Some(100.0));
        let w: Vec<u64> = (1..=2000).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&w, 99.9), Some(1998.0));
        assert_eq!(percentile_ms(&[7000], 99.0), Some(7.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }

    #[test]
    fn messages_are_capped_and_merged() {
        let mut a = Recorder::default();
        for i in 0..20 {
            a.err(&format!("boom {i}"));
        }
        a.err("boom 0");
        assert_eq!(a.errors, 21);
        assert_eq!(a.messages.len(), MAX_DISTINCT_MESSAGES);
        assert_eq!(a.messages[0], ("boom 0".to_string(), 2));
        let total: u64 = a.messages.iter().map(|(_, c)| c).sum();
        assert_eq!(total, 21);

        let mut b = Recorder::default();
        b.err("boom 0");
        b.ok(Duration::from_micros(1500));
        b.merge(a);
        assert_eq!(b.errors, 22);
        assert_eq!(b.messages[0], ("boom 0".to_string(), 3));
        let total: u64 = b.messages.iter().map(|(_, c)| c).sum();
        assert_eq!(total, 22);
        let s = b.summarize("x", 1, Duration::from_secs(1));
        assert_eq!(s.ops, 1);
        assert_eq!(s.p50_ms, Some(1.5));
    }
}
