//! The retry schedule: how long to wait after a failed attempt.
//!
//! The first attempt is immediate; retry `n` waits `retry_delays_us[n-1]`
//! after the attempt that failed. The default (5 s, 15 s, 31 s) gives a
//! rail a few seconds for a blip and half a minute for a restart before the
//! wire is reversed and its transactions go back to the next cycle.

/// Most delays a schedule may list (and so the most retries an instruction
/// may ask for): past that, waiting only holds a queue slot.
pub const BACKOFF_RETRIES_MAX: usize = 16;

/// Default delays before retries 1, 2 and 3.
pub const DEFAULT_RETRY_DELAYS_US: [u64; 3] = [5_000_000, 15_000_000, 31_000_000];

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("a backoff schedule needs at least one retry delay")]
    Empty,
    #[error("a backoff schedule lists {len} delays, at most {BACKOFF_RETRIES_MAX} allowed")]
    TooLong { len: usize },
    #[error("backoff delay {index} ({delay_us} µs) is shorter than the one before it")]
    Decreasing { index: usize, delay_us: u64 },
    #[error("exponential backoff factor must be at least 1, got {factor}")]
    Factor { factor: u32 },
}

/// Delays before each retry, non-decreasing (backing off never speeds up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffSchedule {
    retry_delays_us: Vec<u64>,
}

impl BackoffSchedule {
    pub fn new(retry_delays_us: Vec<u64>) -> Result<Self, BackoffError> {
        if retry_delays_us.is_empty() {
            return Err(BackoffError::Empty);
        }
        if retry_delays_us.len() > BACKOFF_RETRIES_MAX {
            return Err(BackoffError::TooLong {
                len: retry_delays_us.len(),
            });
        }
        if let Some(index) =
            (1..retry_delays_us.len()).find(|&i| retry_delays_us[i] < retry_delays_us[i - 1])
        {
            return Err(BackoffError::Decreasing {
                index,
                delay_us: retry_delays_us[index],
            });
        }
        Ok(BackoffSchedule { retry_delays_us })
    }

    /// `retries` delays: `first_delay_us`, then each `factor` times the one
    /// before (saturating).
    pub fn exponential(
        first_delay_us: u64,
        factor: u32,
        retries: usize,
    ) -> Result<Self, BackoffError> {
        if factor == 0 {
            return Err(BackoffError::Factor { factor });
        }
        if retries > BACKOFF_RETRIES_MAX {
            return Err(BackoffError::TooLong { len: retries });
        }
        let delays = std::iter::successors(Some(first_delay_us), |d| {
            Some(d.saturating_mul(u64::from(factor)))
        })
        .take(retries)
        .collect();
        Self::new(delays)
    }

    /// How long to wait before the attempt made after `retry_count` retries:
    /// 0 for the first attempt; past the end of the schedule the last delay
    /// repeats (an instruction may allow more retries than the schedule lists).
    pub fn delay_us(&self, retry_count: u32) -> u64 {
        if retry_count == 0 {
            return 0;
        }
        let index = usize::try_from(retry_count - 1)
            .unwrap_or(usize::MAX)
            .min(self.retry_delays_us.len() - 1);
        self.retry_delays_us[index]
    }

    /// The retries the schedule lists.
    pub fn retries(&self) -> u32 {
        // At most BACKOFF_RETRIES_MAX, so the cast is exact.
        self.retry_delays_us.len() as u32
    }

    pub fn retry_delays_us(&self) -> &[u64] {
        &self.retry_delays_us
    }
}

impl Default for BackoffSchedule {
    fn default() -> Self {
        BackoffSchedule {
            retry_delays_us: DEFAULT_RETRY_DELAYS_US.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_immediate_then_5_15_31_seconds() {
        let s = BackoffSchedule::default();
        assert_eq!(s.retries(), 3);
        assert_eq!(s.delay_us(0), 0);
        assert_eq!(s.delay_us(1), 5_000_000);
        assert_eq!(s.delay_us(2), 15_000_000);
        assert_eq!(s.delay_us(3), 31_000_000);
    }

    #[test]
    fn past_the_schedule_the_last_delay_repeats() {
        let s = BackoffSchedule::new(vec![1, 2]).unwrap();
        assert_eq!(s.delay_us(3), 2);
        assert_eq!(s.delay_us(u32::MAX), 2);
    }

    #[test]
    fn exponential_multiplies_and_saturates() {
        let s = BackoffSchedule::exponential(1_000, 3, 4).unwrap();
        assert_eq!(s.retry_delays_us(), &[1_000, 3_000, 9_000, 27_000]);
        let s = BackoffSchedule::exponential(u64::MAX / 2, 4, 3).unwrap();
        assert_eq!(s.retry_delays_us(), &[u64::MAX / 2, u64::MAX, u64::MAX]);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        assert_eq!(BackoffSchedule::new(vec![]), Err(BackoffError::Empty));
        assert_eq!(
            BackoffSchedule::new(vec![5, 4]),
            Err(BackoffError::Decreasing {
                index: 1,
                delay_us: 4
            })
        );
        assert_eq!(
            BackoffSchedule::new(vec![1; BACKOFF_RETRIES_MAX + 1]),
            Err(BackoffError::TooLong {
                len: BACKOFF_RETRIES_MAX + 1
            })
        );
        assert_eq!(
            BackoffSchedule::exponential(1, 0, 2),
            Err(BackoffError::Factor { factor: 0 })
        );
        assert!(BackoffSchedule::new(vec![0, 0, 7]).is_ok());
    }
}
