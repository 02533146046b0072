//! Settlement cycles: close → decide → apply, one at a time, for every
//! window (RTGS continuously, T0/T1/T2 at their cut-offs or on request).
//!
//! - [`coordinator`]: the loop on the control group's leader: schedules,
//!   serialises and recovers cycles, funds opening balances.
//! - [`deadline`]: when each window's payments are due, and the price of
//!   waiting that makes them settle by then.
//! - [`decide`]: the record of a cycle's inputs, the solve against a time
//!   budget, the fallback grouping, deferral reasons, each shard's legs.
//! - [`instance`]: a record as the solver's instance and solution files
//!   (the same function for deciding and for auditing).
//! - [`fx`]: the cycle parameters the control group holds.
//! - [`wires`]: every batch of an applied cycle as a wire for the
//!   execution engine, and the rails' answers back into the shards' logs.
//! - [`wire`], [`client`], [`audit`]: the operator's side: control
//!   messages over TCP, the CLI's client, audit trails and re-costing.
//!
//! The shards' part (freeze, apply) is `crate::shard::cycles`; the control
//! group's record is `crate::control`. This module must not reach into
//! either's internals: it talks to shards through `ShardRouter` and to the
//! control group through its log.

pub mod audit;
pub mod client;
pub mod coordinator;
pub mod deadline;
pub mod decide;
pub mod fx;
pub mod instance;
pub mod wire;
pub mod wires;

use std::time::Duration;

use settle_codec::messages::{CycleSummary, MAX_CYCLE_TRANSACTIONS};
use settle_codec::Window;
use tokio::sync::oneshot;

use crate::intake::router::ShardError;
use crate::participants::Participant;

/// Requests queued for the coordinator before senders wait: operator
/// requests and participant changes are rare.
pub const COORDINATOR_INBOX_MAX: usize = 64;

/// A request to the coordinator.
pub enum CoordinatorMsg {
    /// Run a cycle of `window` now; answered once it is applied.
    Run {
        window: Window,
        reply: oneshot::Sender<Result<CycleSummary, ShardError>>,
    },
    /// Participants were added or changed: open the accounts they fund.
    Open { participants: Vec<Participant> },
}

/// When the cycles of a window run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowSchedule {
    /// Only on request (`settle cycle run`).
    Off,
    /// Every period, from start.
    Every(Duration),
    /// At these cut-off times of day, UTC, as seconds after midnight.
    At(Vec<u32>),
}

impl WindowSchedule {
    /// Parses `off`, `every:2s` (any humantime duration) or a list of UTC
    /// cut-offs `16:00,18:30`.
    pub fn parse(text: &str) -> Result<WindowSchedule, String> {
        let text = text.trim();
        if text == "off" {
            return Ok(WindowSchedule::Off);
        }
        if let Some(period) = text.strip_prefix("every:") {
            let period =
                humantime::parse_duration(period).map_err(|e| format!("{period:?}: {e}"))?;
            if period < Duration::from_millis(1) {
                return Err(format!("{text:?}: the period must be at least 1 ms"));
            }
            return Ok(WindowSchedule::Every(period));
        }
        let mut times = Vec::new();
        for part in text.split(',') {
            let (h, m) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("{part:?} is not HH:MM"))?,
                m.parse().map_err(|_| format!("{part:?} is not HH:MM"))?,
            );
            if h > 23 || m > 59 {
                return Err(format!("{part:?} is not a time of day"));
            }
            times.push(h * 3600 + m * 60);
        }
        times.sort_unstable();
        times.dedup();
        Ok(WindowSchedule::At(times))
    }

    /// How long from `now_unix_s` (seconds, UTC) until the next cycle.
    pub fn next_after(&self, now_unix_us: u64) -> Option<Duration> {
        match self {
            WindowSchedule::Off => None,
            WindowSchedule::Every(period) => Some(*period),
            WindowSchedule::At(times) => {
                const DAY_US: u64 = 86_400 * 1_000_000;
                let today_us = now_unix_us % DAY_US;
                let next = times
                    .iter()
                    .map(|&t| u64::from(t) * 1_000_000)
                    .find(|&t| t > today_us)
                    .or_else(|| times.first().map(|&t| u64::from(t) * 1_000_000 + DAY_US))?;
                Some(Duration::from_micros(next - today_us))
            }
        }
    }
}

/// How a node runs cycles.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// Schedule per window, in `Window::ALL` order (RTGS, T0, T1, T2).
    pub schedules: [WindowSchedule; 4],
    /// Most candidates in one cycle (all shards together).
    pub candidates_max: usize,
    /// A fixed solver budget instead of one that grows with the candidates.
    pub solver_budget: Option<Duration>,
    /// Send every batch as a wire over the (simulated) payment rails; a
    /// settlement is final when its wire is confirmed. `None`: final when
    /// applied.
    pub wires: Option<wires::WiresConfig>,
    /// The most an RTGS payment waits before it is due (see [`deadline`]).
    pub rtgs_max_wait: Duration,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            schedules: [
                WindowSchedule::Every(Duration::from_millis(200)),
                WindowSchedule::At(vec![16 * 3600]),
                WindowSchedule::At(vec![17 * 3600]),
                WindowSchedule::At(vec![17 * 3600 + 30 * 60]),
            ],
            candidates_max: MAX_CYCLE_TRANSACTIONS,
            solver_budget: None,
            wires: None,
            rtgs_max_wait: deadline::RTGS_MAX_WAIT_DEFAULT,
        }
    }
}

impl CycleConfig {
    /// When each window's payments are due.
    pub fn deadlines(&self) -> deadline::Deadlines {
        deadline::Deadlines {
            rtgs_max_wait: self.rtgs_max_wait,
            schedules: self.schedules.clone(),
        }
    }

    pub fn schedule(&self, window: Window) -> &WindowSchedule {
        &self.schedules[Window::ALL
            .iter()
            .position(|&w| w == window)
            .expect("a window")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_find_the_next_cut_off() {
        assert_eq!(WindowSchedule::parse("off").unwrap(), WindowSchedule::Off);
        assert_eq!(
            WindowSchedule::parse("every:250ms").unwrap(),
            WindowSchedule::Every(Duration::from_millis(250))
        );
        let at = WindowSchedule::parse("18:30, 16:00").unwrap();
        assert_eq!(at, WindowSchedule::At(vec![16 * 3600, 18 * 3600 + 1800]));
        let day = 86_400_000_000u64;
        let at_15h = 3 * day + 15 * 3_600_000_000;
        assert_eq!(at.next_after(at_15h), Some(Duration::from_secs(3600)));
        let at_19h = 3 * day + 19 * 3_600_000_000;
        assert_eq!(at.next_after(at_19h), Some(Duration::from_secs(21 * 3600)));
        for bad in ["25:00", "every:x", "noon", "every:0s"] {
            assert!(WindowSchedule::parse(bad).is_err(), "{bad}");
        }
    }
}
