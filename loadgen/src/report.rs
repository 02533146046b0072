//! Measurements of a run: HDR latency histograms, result counts, the live
//! line printed every second and the final report (text and JSON).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds up to one minute; anything slower
/// is clamped (and still counted) rather than dropped.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// Per-client measurements, merged at the end (no sharing on the hot path).
#[derive(Debug, Clone)]
pub struct Recorder {
    pub latency_us: Histogram<u64>,
    pub counts: ResultCounts,
    pub requests: u64,
    /// Requests that got no answer within the request deadline.
    pub timeouts: u64,
    /// Batches sent again after a failed or timed-out request.
    pub resent: u64,
}

/// How many transactions got each answer.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ResultCounts {
    pub created: u64,
    pub duplicate: u64,
    pub conflict: u64,
    pub rejected: u64,
    /// Transactions in requests that failed as a whole (connection or server error).
    pub errors: u64,
}

impl ResultCounts {
    pub fn add(&mut self, other: &ResultCounts) {
        self.created += other.created;
        self.duplicate += other.duplicate;
        self.conflict += other.conflict;
        self.rejected += other.rejected;
        self.errors += other.errors;
    }

    /// Transactions the node answered (with any per-transaction result).
    pub fn answered(&self) -> u64 {
        self.created + self.duplicate + self.conflict + self.rejected
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("valid histogram bounds"),
            counts: ResultCounts::default(),
            requests: 0,
            timeouts: 0,
            resent: 0,
        }
    }
}

/// Records `latency` in µs into `h` (bounds of [`LATENCY_US_MAX`]),
/// corrected for coordinated omission when the open loop's interval is given.
pub fn record_us(h: &mut Histogram<u64>, latency: Duration, expected_interval_us: Option<u64>) {
    let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
    match expected_interval_us {
        Some(interval) if interval > 0 => h
            .record_correct(us, interval)
            .expect("value clamped within bounds"),
        _ => h.record(us).expect("value clamped within bounds"),
    }
}

impl Recorder {
    /// Records one request's latency. `expected_interval_us` is the open-loop
    /// send interval of this client: HDR back-fills the samples a stalled
    /// server would have caused (coordinated-omission correction).
    pub fn record_latency(&mut self, latency: Duration, expected_interval_us: Option<u64>) {
        record_us(&mut self.latency_us, latency, expected_interval_us);
        self.requests += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        self.counts.add(&other.counts);
        self.requests += other.requests;
        self.timeouts += other.timeouts;
        self.resent += other.resent;
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The final report, printed as text and written as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub targets: Vec<String>,
    pub clients: usize,
    pub batch: usize,
    pub rate_tps: Option<u64>,
    pub duration_s: f64,
    pub transactions_per_s: f64,
    pub created_per_s: f64,
    pub requests_per_s: f64,
    pub latency_us: Percentiles,
    pub results: ResultCounts,
    pub requests: u64,
    /// Requests that hit the request deadline (`--request-timeout`).
    pub timeouts: u64,
    /// Batches re-sent (same ids) after a failure or a timeout.
    pub resent: u64,
    /// Transactions acknowledged in each second of the run, in order.
    pub acked_per_second: Vec<u64>,
}

impl Report {
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let r = &self.results;
        format!(
            "mode={} clients={} batch={} rate={} duration={:.1}s\n\
             throughput: {:.0} tx/s answered, {:.0} tx/s created, {:.0} requests/s\n\
             latency (request, ms): p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3} mean={:.3}\n\
             results: created={} duplicate={} conflict={} rejected={} errors={} (requests={})\n\
             failures: timeouts={} (requests past the deadline) resent={} (batches)",
            self.mode,
            self.clients,
            self.batch,
            self.rate_tps.map_or("closed-loop".to_string(), |r| format!("{r} tx/s")),
            self.duration_s,
            self.transactions_per_s,
            self.created_per_s,
            self.requests_per_s,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            l.mean / 1000.0,
            r.created,
            r.duplicate,
            r.conflict,
            r.rejected,
            r.errors,
            self.requests,
            self.timeouts,
            self.resent,
        )
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The live line: elapsed time, throughput and p99 over the last second,
/// transactions settled so far (settle mode) and failed so far.
pub fn live_line(sample: &crate::timeline::Sample, errors: u64) -> String {
    let settled = sample.settled.map_or("-".to_string(), |s| s.to_string());
    format!(
        "[{:>6.1}s] {:>9.0} tx/s  p99 {:>8.3} ms  settled {:>9}  errors {}",
        sample.t_s, sample.tx_per_s, sample.p99_ms, settled, errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinated_omission_correction_backfills_stalls() {
        let mut plain = Recorder::default();
        let mut corrected = Recorder::default();
        for _ in 0..99 {
            plain.record_latency(Duration::from_micros(100), None);
            corrected.record_latency(Duration::from_micros(100), Some(1_000));
        }
        // One 100 ms stall in a 1 ms open loop hides ~99 requests that would have waited.
        plain.record_latency(Duration::from_millis(100), None);
        corrected.record_latency(Duration::from_millis(100), Some(1_000));
        assert!(Percentiles::of(&plain.latency_us).p90 < 1_000);
        assert!(Percentiles::of(&corrected.latency_us).p90 > 10_000);
        assert_eq!(plain.requests, corrected.requests);
    }

    #[test]
    fn merge_adds_counts_and_samples() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.counts.created = 3;
        b.counts.duplicate = 2;
        a.record_latency(Duration::from_micros(5), None);
        b.record_latency(Duration::from_micros(7), None);
        a.merge(&b);
        assert_eq!(a.counts.answered(), 5);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.requests, 2);
    }

    #[test]
    fn merge_adds_timeouts_and_resends() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.timeouts = 1;
        b.timeouts = 2;
        b.resent = 3;
        a.merge(&b);
        assert_eq!((a.timeouts, a.resent), (3, 3));
    }
}
