//! Figures of a benchmark run: per-operation latency histograms and counts, merged across
//! workers, rendered as text or JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track, in microseconds (one hour); slower requests are
/// recorded as this value.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits kept by the histograms.
const PRECISION: u8 = 3;

/// Counts and latencies of one kind of operation.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of successful requests, in microseconds.
    latency: Histogram<u64>,
    /// Failed requests.
    pub errors: u64,
}

impl OpStats {
    /// Empty figures.
    pub fn new() -> anyhow::Result<Self> {
        Ok(OpStats {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, PRECISION)?,
            errors: 0,
        })
    }

    /// A successful request that took `took`.
    pub fn ok(&mut self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Successful requests.
    pub fn ok_count(&self) -> u64 {
        self.latency.len()
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        self.errors += other.errors;
        Ok(())
    }

    fn summary(&self) -> OpSummary {
        let empty = self.latency.is_empty();
        let q = |quantile: f64| (!empty).then(|| self.latency.value_at_quantile(quantile));
        OpSummary {
            ok: self.ok_count(),
            errors: self.errors,
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: (!empty).then(|| self.latency.max()),
        }
    }
}

/// The quantiles of one kind of operation (absent when nothing succeeded).
#[derive(Debug, PartialEq, Serialize)]
pub struct OpSummary {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Median latency.
    pub p50_us: Option<u64>,
    /// 99th percentile latency.
    pub p99_us: Option<u64>,
    /// 99.9th percentile latency.
    pub p999_us: Option<u64>,
    /// Slowest successful request.
    pub max_us: Option<u64>,
}

/// Everything one worker measured.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// Reads.
    pub reads: OpStats,
    /// Writes.
    pub writes: OpStats,
    /// The first error seen, to show what went wrong.
    pub first_error: Option<String>,
}

impl WorkerStats {
    /// Empty figures.
    pub fn new() -> anyhow::Result<Self> {
        Ok(WorkerStats {
            reads: OpStats::new()?,
            writes: OpStats::new()?,
            first_error: None,
        })
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: &WorkerStats) -> anyhow::Result<()> {
        self.reads.merge(&other.reads)?;
        self.writes.merge(&other.writes)?;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }
}

/// The final report of a run.
#[derive(Debug, PartialEq, Serialize)]
pub struct Report {
    /// Node measured.
    pub node: String,
    /// Concurrent workers.
    pub concurrency: u32,
    /// Requests per second asked for (`--rate`); absent for a closed loop.
    pub rate_ops_s: Option<u64>,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    /// Requests issued (successful and failed).
    pub ops: u64,
    /// Successful requests per second.
    pub throughput_ops_s: f64,
    /// Failed requests.
    pub errors: u64,
    /// Reads.
    pub reads: OpSummary,
    /// Writes.
    pub writes: OpSummary,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Report {
    /// Summarises merged figures of a run that lasted `elapsed`.
    pub fn new(
        node: String,
        concurrency: u32,
        rate: Option<u64>,
        elapsed: Duration,
        stats: &WorkerStats,
    ) -> Self {
        let reads = stats.reads.summary();
        let writes = stats.writes.summary();
        let ok = reads.ok + writes.ok;
        let errors = reads.errors + writes.errors;
        let secs = elapsed.as_secs_f64();
        Report {
            node,
            concurrency,
            rate_ops_s: rate,
            elapsed_s: secs,
            ops: ok + errors,
            throughput_ops_s: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            errors,
            reads,
            writes,
            first_error: stats.first_error.clone(),
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let paced = match self.rate_ops_s {
            Some(r) => format!(", paced at {r} ops/s (latency from when each request was due)"),
            None => String::new(),
        };
        let mut out = format!(
            "node {}, concurrency {}{paced}, {:.1} s\n\
             ops         {} ({} errors)\n\
             throughput  {:.1} ops/s\n",
            self.node,
            self.concurrency,
            self.elapsed_s,
            self.ops,
            self.errors,
            self.throughput_ops_s
        );
        out.push_str(&format!(
            "{:<8} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "", "ok", "errors", "p50 ms", "p99 ms", "p999 ms", "max ms"
        ));
        for (name, s) in [("reads", &self.reads), ("writes", &self.writes)] {
            out.push_str(&format!(
                "{:<8} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
                name,
                s.ok,
                s.errors,
                millis(s.p50_us),
                millis(s.p99_us),
                millis(s.p999_us),
                millis(s.max_us)
            ));
        }
        if let Some(e) = &self.first_error {
            out.push_str(&format!("first error: {e}\n"));
        }
        out
    }
}

fn millis(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.3}", us as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_workers_add_counts_and_keep_the_first_error() {
        let mut a = WorkerStats::new().unwrap();
        a.reads.ok(Duration::from_micros(100));
        a.writes.errors = 2;
        let mut b = WorkerStats::new().unwrap();
        b.reads.ok(Duration::from_micros(300));
        b.writes.ok(Duration::from_millis(5));
        b.first_error = Some("boom".into());
        a.merge(&b).unwrap();
        assert_eq!(a.reads.ok_count(), 2);
        assert_eq!(a.writes.ok_count(), 1);
        assert_eq!(a.writes.errors, 2);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn report_counts_ops_throughput_and_quantiles_per_kind() {
        let mut s = WorkerStats::new().unwrap();
        for us in 1..=1000 {
            s.reads.ok(Duration::from_micros(us));
        }
        s.reads.errors = 10;
        let r = Report::new("n".into(), 4, None, Duration::from_secs(2), &s);
        assert_eq!(r.ops, 1010);
        assert_eq!(r.errors, 10);
        assert!((r.throughput_ops_s - 500.0).abs() < 1e-9);
        let p50 = r.reads.p50_us.unwrap();
        assert!((495..=505).contains(&p50), "{p50}");
        assert_eq!(r.reads.max_us, Some(1000));
        assert_eq!(r.writes.p50_us, None);
        let text = r.text();
        assert!(text.contains("500.0 ops/s"), "{text}");
        assert!(text
            .lines()
            .any(|l| l.starts_with("writes") && l.contains('-')));
    }

    #[test]
    fn latencies_beyond_the_bound_are_clamped_not_lost() {
        let mut s = OpStats::new().unwrap();
        s.ok(Duration::from_secs(7200));
        s.ok(Duration::ZERO);
        assert_eq!(s.ok_count(), 2);
        assert!(s.latency.max() >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
    }
}
