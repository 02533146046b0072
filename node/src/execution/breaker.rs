//! A circuit breaker per rail: stop sending to a rail that keeps failing,
//! and probe it again after a cool-down.
//!
//! Closed → Open after `failures_to_open` consecutive failures; Open reads
//! as HalfOpen once `cool_down_us` has passed; in HalfOpen one trial is let
//! through: a success closes the breaker, a failure opens it for another
//! cool-down. A pure state machine over the time it is given: no clock, no
//! timers, so the engine stays deterministic.

/// Consecutive failures that open a breaker by default: one blip is not an
/// outage, five in a row are.
pub const DEFAULT_FAILURES_TO_OPEN: u32 = 5;
/// How long an open breaker rests by default before a trial.
pub const DEFAULT_COOL_DOWN_US: u64 = 30_000_000;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// At least 1 (checked by the engine's configuration).
    pub failures_to_open: u32,
    pub cool_down_us: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: DEFAULT_FAILURES_TO_OPEN,
            cool_down_us: DEFAULT_COOL_DOWN_US,
        }
    }
}

/// What a breaker lets through at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; failures are being counted.
    Closed { consecutive_failures: u32 },
    /// No traffic until `until_us`.
    Open { until_us: u64 },
    /// The cool-down is over: the next request is a trial.
    HalfOpen,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    /// Never `HalfOpen`: that state is derived from `Open` and the time.
    state: BreakerState,
    times_opened: u64,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        assert!(
            config.failures_to_open >= 1,
            "breaker needs failures_to_open >= 1"
        );
        CircuitBreaker {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            times_opened: 0,
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The state at `now_us`: an open breaker whose cool-down has passed
    /// reads as half-open.
    pub fn state(&self, now_us: u64) -> BreakerState {
        match self.state {
            BreakerState::Open { until_us } if now_us >= until_us => BreakerState::HalfOpen,
            state => state,
        }
    }

    /// Whether a request may go to the rail at `now_us`.
    pub fn allows(&self, now_us: u64) -> bool {
        !matches!(self.state(now_us), BreakerState::Open { .. })
    }

    /// The rail answered (whatever it said, it is up): close.
    pub fn record_success(&mut self, _now_us: u64) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
    }

    /// The rail failed to serve a request sent at `now_us`.
    pub fn record_failure(&mut self, now_us: u64) {
        match self.state(now_us) {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failures_to_open {
                    self.open(now_us);
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            // The trial failed: rest again.
            BreakerState::HalfOpen => self.open(now_us),
            // A request that raced the opening: the cool-down stands.
            BreakerState::Open { .. } => {}
        }
    }

    /// How many times the breaker has opened (trial failures included).
    pub fn times_opened(&self) -> u64 {
        self.times_opened
    }

    fn open(&mut self, now_us: u64) {
        self.state = BreakerState::Open {
            until_us: now_us.saturating_add(self.config.cool_down_us),
        };
        self.times_opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures_to_open: u32, cool_down_us: u64) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failures_to_open,
            cool_down_us,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut b = breaker(3, 100);
        b.record_failure(1);
        b.record_failure(2);
        assert_eq!(
            b.state(2),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        );
        // A success in between resets the count.
        b.record_success(3);
        b.record_failure(4);
        b.record_failure(5);
        assert!(b.allows(5));
        b.record_failure(6);
        assert_eq!(b.state(6), BreakerState::Open { until_us: 106 });
        assert!(!b.allows(105));
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn half_opens_after_cool_down_and_closes_on_success() {
        let mut b = breaker(1, 100);
        b.record_failure(10);
        assert!(!b.allows(109));
        assert_eq!(b.state(110), BreakerState::HalfOpen);
        assert!(b.allows(110));
        b.record_success(110);
        assert_eq!(
            b.state(110),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn failed_trial_reopens_for_a_full_cool_down() {
        let mut b = breaker(2, 100);
        b.record_failure(0);
        b.record_failure(0);
        assert_eq!(b.state(150), BreakerState::HalfOpen);
        b.record_failure(150);
        assert_eq!(b.state(150), BreakerState::Open { until_us: 250 });
        assert_eq!(b.times_opened(), 2);
    }

    #[test]
    fn failure_while_open_does_not_extend_the_cool_down() {
        let mut b = breaker(1, 100);
        b.record_failure(0);
        b.record_failure(50);
        assert_eq!(b.state(50), BreakerState::Open { until_us: 100 });
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    #[should_panic(expected = "failures_to_open")]
    fn zero_threshold_is_a_bug() {
        breaker(0, 1);
    }
}
