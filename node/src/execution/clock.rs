//! Time as execution sees it: microseconds from a clock the caller picks.
//!
//! The engine itself never reads a clock (every step takes `now_us`), so the
//! same inputs give the same events; the clock only decides where `now_us`
//! comes from. Tests use [`ManualClock`] and advance it by hand: no sleeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in microseconds.
pub trait Clock {
    fn now_us(&self) -> u64;
}

/// Wall-clock time since the Unix epoch, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        // A host clock before 1970 is misconfigured; 0 keeps the reading
        // defined, and the engine never lets its own time go backwards.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to, so tests are exact and instant.
///
/// Atomic rather than `Cell` so one clock can be shared (`Arc`) between the
/// code under test and the test itself, on any thread.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_us: AtomicU64,
}

impl ManualClock {
    pub fn new(start_us: u64) -> Self {
        ManualClock {
            now_us: AtomicU64::new(start_us),
        }
    }

    /// Moves time forward by `delta_us` (saturating) and returns the new time.
    pub fn advance_us(&self, delta_us: u64) -> u64 {
        let now = self.now_us().saturating_add(delta_us);
        self.now_us.store(now, Ordering::Relaxed);
        now
    }

    /// Moves time forward by `delta` and returns the new time.
    pub fn advance(&self, delta: Duration) -> u64 {
        self.advance_us(u64::try_from(delta.as_micros()).unwrap_or(u64::MAX))
    }

    /// Sets the time. Time never goes backwards: a test that tries is wrong.
    pub fn set_us(&self, now_us: u64) {
        assert!(
            now_us >= self.now_us(),
            "ManualClock moved backwards: {} -> {now_us}",
            self.now_us()
        );
        self.now_us.store(now_us, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_us(), 1_000);
        assert_eq!(clock.now_us(), 1_000);
        assert_eq!(clock.advance_us(500), 1_500);
        assert_eq!(clock.advance(Duration::from_secs(5)), 5_001_500);
        clock.set_us(6_000_000);
        assert_eq!(clock.now_us(), 6_000_000);
        assert_eq!(clock.advance_us(u64::MAX), u64::MAX);
    }

    #[test]
    #[should_panic(expected = "backwards")]
    fn manual_clock_refuses_to_go_backwards() {
        let clock = ManualClock::new(10);
        clock.set_us(9);
    }

    #[test]
    fn shared_manual_clock_is_seen_by_every_holder() {
        let clock = Arc::new(ManualClock::new(0));
        let seen: Arc<ManualClock> = Arc::clone(&clock);
        clock.advance_us(42);
        assert_eq!(seen.now_us(), 42);
        fn read(clock: impl Clock) -> u64 {
            clock.now_us()
        }
        assert_eq!(read(&*seen), 42);
        assert_eq!(read(seen), 42);
    }

    #[test]
    fn system_clock_reads_a_time_after_2020() {
        // 2020-01-01T00:00:00Z in µs: a reading below it means unit confusion.
        assert!(SystemClock.now_us() > 1_577_836_800_000_000);
    }
}
