//! Fixed-bucket latency histograms: a plain one a core counts in, and the
//! same shape summed over cores at scrape time.

/// Upper bounds (ms) of the latency buckets: log-linear from 0.05 ms to 10 s
/// (about 4 per factor of 2 up to 1 s), fine enough that
/// `histogram_quantile` places p50/p95/p99/p99.9 within a quarter of
/// their true value; Prometheus adds `+Inf`.
pub const LATENCY_MS_BOUNDS: [f64; 43] = [
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0,
    8.0, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 125.0, 150.0, 200.0,
    250.0, 300.0, 400.0, 500.0, 750.0, 1_000.0, 2_000.0, 3_000.0, 5_000.0, 10_000.0,
];

/// Buckets including the last, unbounded one.
pub const LATENCY_BUCKETS: usize = LATENCY_MS_BOUNDS.len() + 1;

const _: () = {
    let mut i = 1;
    while i < LATENCY_MS_BOUNDS.len() {
        assert!(
            LATENCY_MS_BOUNDS[i - 1] < LATENCY_MS_BOUNDS[i],
            "bounds ascend"
        );
        i += 1;
    }
};

/// A latency histogram in milliseconds: per-bucket counts (not cumulative),
/// the sum and the count. Plain integers: one core writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS],
    pub sum_ms: f64,
    pub count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: [0; LATENCY_BUCKETS],
            sum_ms: 0.0,
            count: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records `n` samples of `ms` each (a request's transactions share its latency).
    pub fn observe_n(&mut self, ms: f64, n: u64) {
        let at = LATENCY_MS_BOUNDS.partition_point(|&bound| bound < ms);
        self.buckets[at] += n;
        self.sum_ms += ms * n as f64;
        self.count += n;
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_ms += other.sum_ms;
        self.count += other.count;
    }

    /// (upper bound, count in that bucket alone) pairs as `prometheus-client`
    /// wants them: it accumulates them itself, and writes `+Inf` for the
    /// last bound, `f64::MAX`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        debug_assert_eq!(
            self.buckets.iter().sum::<u64>(),
            self.count,
            "every sample is in one bucket"
        );
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, &count)| (LATENCY_MS_BOUNDS.get(i).copied().unwrap_or(f64::MAX), count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_on_a_bound_falls_in_that_bucket_le() {
        let mut h = LatencyHistogram::default();
        h.observe_n(1.0, 3);
        h.observe_n(0.05, 1);
        h.observe_n(60_000.0, 2);
        let b = h.buckets();
        assert_eq!(b[0], (0.05, 1));
        assert_eq!(b[2], (0.1, 0));
        let one = b.iter().find(|(bound, _)| *bound == 1.0).unwrap();
        assert_eq!(one.1, 3);
        assert_eq!(b.last().unwrap(), &(f64::MAX, 2));
        assert_eq!(h.count, 6);
        assert!((h.sum_ms - (3.0 + 0.05 + 120_000.0)).abs() < 1e-9);
    }

    #[test]
    fn adding_histograms_sums_every_bucket() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.observe_n(2.0, 1);
        b.observe_n(2.0, 2);
        b.observe_n(500.0, 1);
        a.add(&b);
        assert_eq!(a.count, 4);
        assert_eq!(a.buckets().iter().map(|(_, n)| n).sum::<u64>(), 4);
    }
}
