//! Deadlines and the price of waiting.
//!
//! Every window has a deadline: an RTGS payment is due a configurable time
//! after it was accepted (`--rtgs-max-wait`, 60 s by default), a T+0
//! payment at its day's cut-off, T+1 and T+2 one and two days later. The
//! node tells the optimiser what deferring each candidate costs (the
//! contract's per-transaction `defer_usd`): the window's own price
//! (`defer_bps`) plus a term that grows with the share of its time it has
//! waited, reaching what settling it alone would cost as the deadline
//! nears, and a prohibitive price once it is due. So a fundable payment
//! settles by its deadline however small it is, and one that still cannot
//! be funded then is rolled to the next window (see `decide::finish`).

use std::time::Duration;

use settle_codec::Window;

use super::WindowSchedule;

/// Deferring a due payment costs this many times what settling it alone
/// could cost (plus [`DUE_PRICE_FLOOR_USD`]): more than any saving a
/// deferral could buy the rest of the cycle, so the optimiser settles
/// every due payment it can fund.
pub const DUE_PRICE_FACTOR: f64 = 1_000.0;

/// The least a due payment's deferral costs, USD.
pub const DUE_PRICE_FLOOR_USD: f64 = 1_000.0;

/// The default most an RTGS payment waits before it is due.
pub const RTGS_MAX_WAIT_DEFAULT: Duration = Duration::from_secs(60);

const DAY_US: u64 = 86_400 * 1_000_000;

/// The window a payment rolls to when its deadline passes unfunded.
pub fn next_window(window: Window) -> Window {
    match window {
        Window::Rtgs => Window::T0,
        Window::T0 => Window::T1,
        Window::T1 | Window::T2 => Window::T2,
    }
}

/// When payments of each window are due.
#[derive(Debug, Clone)]
pub struct Deadlines {
    pub rtgs_max_wait: Duration,
    /// Per window, `Window::ALL` order: when its cycles run.
    pub schedules: [WindowSchedule; 4],
}

impl Deadlines {
    /// When a payment waiting in `window` since `since_us` is treated as
    /// due: its deadline, less one period of the window's schedule (the
    /// last cycle before the deadline must already settle it). `None`: the
    /// window has no schedule, so no deadline (cycles run on request).
    pub fn due_at_us(&self, window: Window, since_us: u64) -> Option<u64> {
        let slot = Window::ALL.iter().position(|&w| w == window)?;
        let day_offset = slot.saturating_sub(1) as u64; // RTGS, T0: 0; T1: 1; T2: 2
        match (&self.schedules[slot], window) {
            (WindowSchedule::Every(period), Window::Rtgs) => {
                let wait = self.rtgs_max_wait.saturating_sub(*period);
                Some(since_us.saturating_add(wait.as_micros() as u64))
            }
            (_, Window::Rtgs) => {
                Some(since_us.saturating_add(self.rtgs_max_wait.as_micros() as u64))
            }
            (WindowSchedule::Off, _) => None,
            (WindowSchedule::Every(period), _) => {
                let period_us = period.as_micros() as u64;
                Some(since_us.saturating_add(day_offset.saturating_mul(period_us)))
            }
            (WindowSchedule::At(times), _) => {
                let day_start = since_us - since_us % DAY_US;
                let cut_off = times
                    .iter()
                    .map(|&t| day_start + u64::from(t) * 1_000_000)
                    .find(|&t| t > since_us)
                    .or_else(|| {
                        times
                            .first()
                            .map(|&t| day_start + DAY_US + u64::from(t) * 1_000_000)
                    })?;
                Some(cut_off.saturating_add(day_offset * DAY_US))
            }
        }
    }
}

/// The price of deferring one candidate once more, USD, and whether it is
/// due. `base_usd` is its window's price, `alone_usd` the most settling it
/// on its own could cost (a wire and the dearest FX path).
pub fn defer_price(
    base_usd: f64,
    alone_usd: f64,
    since_us: u64,
    due_at_us: Option<u64>,
    now_us: u64,
) -> (f64, bool) {
    let Some(due) = due_at_us else {
        return (base_usd, false);
    };
    if now_us >= due {
        let price = DUE_PRICE_FACTOR * (alone_usd + base_usd) + DUE_PRICE_FLOOR_USD;
        return (price, true);
    }
    let span = due.saturating_sub(since_us).max(1) as f64;
    let waited = now_us.saturating_sub(since_us) as f64 / span;
    (base_usd + alone_usd * waited * waited, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines() -> Deadlines {
        Deadlines {
            rtgs_max_wait: Duration::from_secs(60),
            schedules: [
                WindowSchedule::Every(Duration::from_millis(200)),
                WindowSchedule::At(vec![16 * 3600]),
                WindowSchedule::At(vec![16 * 3600]),
                WindowSchedule::Off,
            ],
        }
    }

    #[test]
    fn each_window_has_its_deadline() {
        let d = deadlines();
        let day = 20_000 * DAY_US;
        let at_10h = day + 10 * 3_600_000_000;
        // RTGS: 60 s after it started waiting, less one 200 ms cycle.
        assert_eq!(d.due_at_us(Window::Rtgs, at_10h), Some(at_10h + 59_800_000));
        // T0: today's 16:00 cut-off; after it, tomorrow's.
        assert_eq!(
            d.due_at_us(Window::T0, at_10h),
            Some(day + 16 * 3_600_000_000)
        );
        let at_17h = day + 17 * 3_600_000_000;
        assert_eq!(
            d.due_at_us(Window::T0, at_17h),
            Some(day + DAY_US + 16 * 3_600_000_000)
        );
        // T1: the cut-off a day later; no schedule, no deadline.
        assert_eq!(
            d.due_at_us(Window::T1, at_10h),
            Some(day + DAY_US + 16 * 3_600_000_000)
        );
        assert_eq!(d.due_at_us(Window::T2, at_10h), None);
    }

    #[test]
    fn waiting_gets_dearer_and_prohibitive_when_due() {
        // A 1.00 EUR payment: 0.0054 USD to wait a cycle, 5 USD to wire.
        let (base, alone) = (0.0054, 5.0);
        let (start, due) = (1_000, 61_000);
        let mut last = 0.0;
        for now in (start..due).step_by(6_000) {
            let (price, is_due) = defer_price(base, alone, start, Some(due), now);
            assert!(!is_due && price >= last, "{now}: {price}");
            last = price;
        }
        let (near, _) = defer_price(base, alone, start, Some(due), due - 1);
        assert!(
            near > alone,
            "waiting costs more than a wire just before due"
        );
        let (price, is_due) = defer_price(base, alone, start, Some(due), due);
        assert!(is_due && price > 1_000.0 * alone);
        assert_eq!(defer_price(base, alone, start, None, due), (base, false));
        assert_eq!(next_window(Window::Rtgs), Window::T0);
        assert_eq!(next_window(Window::T2), Window::T2);
    }
}
