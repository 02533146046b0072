//! What a run looked like second by second: the figures of the live
//! progress line, kept for the report's plots. Bounded: past
//! [`TIMELINE_SAMPLES_MAX`] samples, neighbours are merged in pairs, so a
//! long run keeps its shape and its totals stay exact.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Samples kept (a day of seconds; a longer run halves its resolution).
pub const TIMELINE_SAMPLES_MAX: usize = 86_400;

/// One interval of the run (about a second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds from the run's start to the end of this interval.
    pub t_s: f64,
    /// Length of the interval, seconds.
    pub interval_s: f64,
    /// Transactions answered in the interval (any per-transaction result).
    pub answered: u64,
    /// `answered / interval_s`.
    pub tx_per_s: f64,
    /// Request latency percentiles of the requests answered in the
    /// interval, ms (0 when none was).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Transactions in requests that failed in the interval.
    pub errors: u64,
    /// Transactions settled by cycles since the run's start, at the end of
    /// the interval (settle mode only).
    pub settled: Option<u64>,
}

impl Sample {
    /// A sample of `answered` transactions, `errors` failed and the
    /// latencies (µs) of `latency_us`, over the interval ending at `t`.
    pub fn new(
        t: Duration,
        interval: Duration,
        answered: u64,
        errors: u64,
        latency_us: &Histogram<u64>,
        settled: Option<u64>,
    ) -> Sample {
        let interval_s = interval.as_secs_f64();
        let at = |q: f64| {
            if latency_us.is_empty() {
                0.0
            } else {
                latency_us.value_at_quantile(q) as f64 / 1e3
            }
        };
        Sample {
            t_s: t.as_secs_f64(),
            interval_s,
            answered,
            tx_per_s: if interval_s > 0.0 {
                answered as f64 / interval_s
            } else {
                0.0
            },
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: if latency_us.is_empty() {
                0.0
            } else {
                latency_us.max() as f64 / 1e3
            },
            errors,
            settled,
        }
    }

    /// This sample and the next as one interval: counts add up; the
    /// percentiles are the larger of the two (an upper bound, which is
    /// what a plot of tail latency should not hide).
    fn merged(&self, next: &Sample) -> Sample {
        let interval_s = self.interval_s + next.interval_s;
        let answered = self.answered + next.answered;
        Sample {
            t_s: next.t_s,
            interval_s,
            answered,
            tx_per_s: if interval_s > 0.0 {
                answered as f64 / interval_s
            } else {
                0.0
            },
            p50_ms: self.p50_ms.max(next.p50_ms),
            p99_ms: self.p99_ms.max(next.p99_ms),
            max_ms: self.max_ms.max(next.max_ms),
            errors: self.errors + next.errors,
            settled: next.settled.or(self.settled),
        }
    }
}

/// The run's samples, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub samples: Vec<Sample>,
}

impl Timeline {
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() >= TIMELINE_SAMPLES_MAX {
            self.samples = self
                .samples
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => a.merged(b),
                    [a] => *a,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
        }
        self.samples.push(sample);
        assert!(self.samples.len() <= TIMELINE_SAMPLES_MAX);
    }

    /// Transactions answered over the whole timeline.
    pub fn answered(&self) -> u64 {
        self.samples.iter().map(|s| s.answered).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64, answered: u64, p99_ms: f64) -> Sample {
        Sample {
            t_s: t as f64,
            interval_s: 1.0,
            answered,
            tx_per_s: answered as f64,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms,
            errors: 0,
            settled: None,
        }
    }

    #[test]
    fn a_full_timeline_merges_pairs_and_keeps_its_totals() {
        let mut timeline = Timeline::default();
        for t in 0..TIMELINE_SAMPLES_MAX as u64 + 1 {
            timeline.push(sample(t + 1, 10, (t % 7) as f64));
        }
        assert_eq!(timeline.samples.len(), TIMELINE_SAMPLES_MAX / 2 + 1);
        assert_eq!(timeline.answered(), 10 * (TIMELINE_SAMPLES_MAX as u64 + 1));
        let first = timeline.samples[0];
        assert_eq!(
            (first.t_s, first.interval_s, first.tx_per_s),
            (2.0, 2.0, 10.0)
        );
        assert_eq!(first.p99_ms, 1.0, "the larger of the pair");
    }

    #[test]
    fn a_sample_of_no_request_has_zero_latency() {
        let empty = Histogram::<u64>::new(3).unwrap();
        let s = Sample::new(
            Duration::from_secs(2),
            Duration::from_millis(500),
            0,
            3,
            &empty,
            Some(5),
        );
        assert_eq!((s.p99_ms, s.tx_per_s, s.errors), (0.0, 0.0, 3));
    }
}
