//! Payment rails: where instructions go, and an in-process simulation of
//! them whose faults tests inject deterministically.
//!
//! A real rail (FedWire, SWIFT) would sit behind [`PaymentRail`] too; the
//! engine never knows which kind it drives.

use std::collections::VecDeque;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use settle_codec::{Currency, ParticipantId};

use super::instruction::SettlementInstruction;

/// Why a rail said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A passing fault (the simulated failure rate); worth retrying.
    Transient,
    /// The rail gave no answer in time; worth retrying.
    Timeout,
    /// The rail does not carry this currency.
    UnsupportedCurrency,
    /// The destination account cannot receive; retrying will not help.
    AccountInvalid,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Transient => "transient",
            RejectReason::Timeout => "timeout",
            RejectReason::UnsupportedCurrency => "unsupported_currency",
            RejectReason::AccountInvalid => "account_invalid",
        }
    }
}

/// What is unavailable: the whole rail (counts against its breaker) or only
/// the path to one counterparty (another route may still reach it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unavailability {
    Rail,
    Counterparty,
}

/// A rail's answer to one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RailOutcome {
    /// Accepted; final confirmation arrives `latency_us` after submission.
    Confirmed { latency_us: u64 },
    /// Refused; `retryable` says whether the same wire may succeed later.
    Rejected {
        reason: RejectReason,
        retryable: bool,
    },
    /// Could not be sent at all.
    Unavailable { scope: Unavailability },
}

/// A payment rail as the engine sees it: submit a wire, get an answer.
///
/// `submit` is synchronous and takes the time so that simulated rails are
/// deterministic; a real rail's adapter answers from what it already knows
/// (acknowledgement) and reports settlement latency.
pub trait PaymentRail {
    fn name(&self) -> &str;
    fn submit(&mut self, instr: &SettlementInstruction, now_us: u64) -> RailOutcome;
}

impl<R: PaymentRail + ?Sized> PaymentRail for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn submit(&mut self, instr: &SettlementInstruction, now_us: u64) -> RailOutcome {
        (**self).submit(instr, now_us)
    }
}

/// Scheduled outages a simulated rail keeps. Faults come from tests and
/// configuration; a bound keeps the per-submission check cheap.
pub const RAIL_OUTAGES_MAX: usize = 64;
/// Scheduled counterparty outages a simulated rail keeps (one per bank per
/// incident is plenty for any scenario we script).
pub const RAIL_COUNTERPARTY_OUTAGES_MAX: usize = 256;
/// Scripted outcomes a simulated rail holds ahead of use.
pub const RAIL_SCRIPT_MAX: usize = 1_024;
/// Failure rates are in parts per million of submissions.
pub const PPM: u32 = 1_000_000;

/// A half-open time interval `[start_us, end_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_us: u64,
    pub end_us: u64,
}

impl TimeWindow {
    /// From `start_us` on, for good (until the fault is cleared).
    pub fn starting_at(start_us: u64) -> Self {
        TimeWindow {
            start_us,
            end_us: u64::MAX,
        }
    }

    pub fn contains(self, now_us: u64) -> bool {
        self.start_us <= now_us && now_us < self.end_us
    }
}

/// How a simulated rail behaves when no fault applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailProfile {
    pub name: String,
    /// The currencies carried; `None` carries every currency.
    pub currencies: Option<Vec<Currency>>,
    /// Confirmation latency is drawn uniformly from `[min, max]`.
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    /// Share of submissions rejected as transient, in parts per million.
    pub failure_ppm: u32,
}

impl RailProfile {
    /// FedWire-like: USD only, fast (20–200 ms), rarely fails (0.1 %).
    pub fn fedwire_like() -> Self {
        RailProfile {
            name: "fedwire".to_owned(),
            currencies: Some(vec![Currency::USD]),
            latency_us_min: 20_000,
            latency_us_max: 200_000,
            failure_ppm: 1_000,
        }
    }

    /// SWIFT-like: every currency, slower (0.5–5 s), fails more (0.5 %).
    pub fn swift_like() -> Self {
        RailProfile {
            name: "swift".to_owned(),
            currencies: None,
            latency_us_min: 500_000,
            latency_us_max: 5_000_000,
            failure_ppm: 5_000,
        }
    }

    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Never fails by chance and confirms after exactly `latency_us`: the
    /// baseline tests add faults to.
    pub fn reliable(mut self, latency_us: u64) -> Self {
        self.failure_ppm = 0;
        self.latency_us_min = latency_us;
        self.latency_us_max = latency_us;
        self
    }

    pub fn carries(&self, currency: Currency) -> bool {
        self.currencies
            .as_ref()
            .is_none_or(|list| list.contains(&currency))
    }
}

/// Why a simulated rail's configuration or fault was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailConfigError {
    #[error("latency range is empty: min {min_us} µs > max {max_us} µs")]
    LatencyRange { min_us: u64, max_us: u64 },
    #[error("failure rate {ppm} ppm is above {PPM}")]
    FailureRate { ppm: u32 },
    #[error("time window is empty: start {start_us} µs >= end {end_us} µs")]
    EmptyWindow { start_us: u64, end_us: u64 },
    #[error("too many scheduled outages (at most {max})")]
    TooManyOutages { max: usize },
    #[error("too many scripted outcomes (at most {RAIL_SCRIPT_MAX})")]
    ScriptFull,
}

/// What a simulated rail has been asked and how it answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RailStats {
    pub submitted: u64,
    pub confirmed: u64,
    pub rejected: u64,
    pub unavailable: u64,
}

/// An in-process rail with seeded randomness and injectable faults.
///
/// A submission meets, in order: a rail outage (unavailable), an outage of
/// the instruction's counterparty (unavailable, counterparty), a currency
/// the profile does not carry (non-retryable rejection), the next scripted
/// outcome, the random failure rate (transient rejection), else a
/// confirmation with a random latency. Same seed, same submissions, same
/// answers.
#[derive(Debug, Clone)]
pub struct SimulatedRail {
    profile: RailProfile,
    rng: ChaCha8Rng,
    outages: Vec<TimeWindow>,
    counterparty_outages: Vec<(ParticipantId, TimeWindow)>,
    script: VecDeque<RailOutcome>,
    stats: RailStats,
}

impl SimulatedRail {
    pub fn new(profile: RailProfile, seed: u64) -> Result<Self, RailConfigError> {
        if profile.latency_us_min > profile.latency_us_max {
            return Err(RailConfigError::LatencyRange {
                min_us: profile.latency_us_min,
                max_us: profile.latency_us_max,
            });
        }
        check_ppm(profile.failure_ppm)?;
        Ok(SimulatedRail {
            profile,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outages: Vec::new(),
            counterparty_outages: Vec::new(),
            script: VecDeque::new(),
            stats: RailStats::default(),
        })
    }

    pub fn fedwire_like(seed: u64) -> Self {
        Self::new(RailProfile::fedwire_like(), seed).expect("the FedWire preset is valid")
    }

    pub fn swift_like(seed: u64) -> Self {
        Self::new(RailProfile::swift_like(), seed).expect("the SWIFT preset is valid")
    }

    pub fn profile(&self) -> &RailProfile {
        &self.profile
    }

    pub fn stats(&self) -> RailStats {
        self.stats
    }

    /// The rail is down during `window`.
    pub fn add_outage(&mut self, window: TimeWindow) -> Result<(), RailConfigError> {
        check_window(window)?;
        if self.outages.len() >= RAIL_OUTAGES_MAX {
            return Err(RailConfigError::TooManyOutages {
                max: RAIL_OUTAGES_MAX,
            });
        }
        self.outages.push(window);
        Ok(())
    }

    /// The rail cannot reach `counterparty` during `window`.
    pub fn add_counterparty_outage(
        &mut self,
        counterparty: ParticipantId,
        window: TimeWindow,
    ) -> Result<(), RailConfigError> {
        check_window(window)?;
        if self.counterparty_outages.len() >= RAIL_COUNTERPARTY_OUTAGES_MAX {
            return Err(RailConfigError::TooManyOutages {
                max: RAIL_COUNTERPARTY_OUTAGES_MAX,
            });
        }
        self.counterparty_outages.push((counterparty, window));
        Ok(())
    }

    /// The next submissions that reach the script (no outage applies) get
    /// these outcomes, in order, before chance decides again.
    pub fn script(&mut self, outcome: RailOutcome) -> Result<(), RailConfigError> {
        if self.script.len() >= RAIL_SCRIPT_MAX {
            return Err(RailConfigError::ScriptFull);
        }
        self.script.push_back(outcome);
        Ok(())
    }

    pub fn set_failure_ppm(&mut self, ppm: u32) -> Result<(), RailConfigError> {
        check_ppm(ppm)?;
        self.profile.failure_ppm = ppm;
        Ok(())
    }

    /// Ends every outage, counterparty outage and scripted outcome.
    pub fn clear_faults(&mut self) {
        self.outages.clear();
        self.counterparty_outages.clear();
        self.script.clear();
    }

    fn decide(&mut self, instr: &SettlementInstruction, now_us: u64) -> RailOutcome {
        if self.outages.iter().any(|w| w.contains(now_us)) {
            return RailOutcome::Unavailable {
                scope: Unavailability::Rail,
            };
        }
        if self
            .counterparty_outages
            .iter()
            .any(|&(p, w)| p == instr.counterparty && w.contains(now_us))
        {
            return RailOutcome::Unavailable {
                scope: Unavailability::Counterparty,
            };
        }
        if !self.profile.carries(instr.currency) {
            return RailOutcome::Rejected {
                reason: RejectReason::UnsupportedCurrency,
                retryable: false,
            };
        }
        if let Some(outcome) = self.script.pop_front() {
            return outcome;
        }
        if self.draw_below(u64::from(PPM)) < u64::from(self.profile.failure_ppm) {
            return RailOutcome::Rejected {
                reason: RejectReason::Transient,
                retryable: true,
            };
        }
        let span = self.profile.latency_us_max - self.profile.latency_us_min;
        let jitter = if span == u64::MAX {
            self.rng.next_u64()
        } else {
            self.draw_below(span + 1)
        };
        RailOutcome::Confirmed {
            latency_us: self.profile.latency_us_min + jitter,
        }
    }

    /// A uniform draw in `[0, bound)` (the modulo bias is below 2^-40 for the
    /// bounds used here, far under anything a test could see).
    fn draw_below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.rng.next_u64() % bound
    }
}

impl PaymentRail for SimulatedRail {
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn submit(&mut self, instr: &SettlementInstruction, now_us: u64) -> RailOutcome {
        let outcome = self.decide(instr, now_us);
        self.stats.submitted += 1;
        match outcome {
            RailOutcome::Confirmed { .. } => self.stats.confirmed += 1,
            RailOutcome::Rejected { .. } => self.stats.rejected += 1,
            RailOutcome::Unavailable { .. } => self.stats.unavailable += 1,
        }
        outcome
    }
}

fn check_ppm(ppm: u32) -> Result<(), RailConfigError> {
    if ppm > PPM {
        return Err(RailConfigError::FailureRate { ppm });
    }
    Ok(())
}

fn check_window(window: TimeWindow) -> Result<(), RailConfigError> {
    if window.start_us >= window.end_us {
        return Err(RailConfigError::EmptyWindow {
            start_us: window.start_us,
            end_us: window.end_us,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::instruction::tests::usd_instruction;

    fn confirmed(latency_us: u64) -> RailOutcome {
        RailOutcome::Confirmed { latency_us }
    }

    const RAIL_DOWN: RailOutcome = RailOutcome::Unavailable {
        scope: Unavailability::Rail,
    };

    #[test]
    fn reliable_rail_confirms_with_its_fixed_latency() {
        let mut rail = SimulatedRail::new(RailProfile::fedwire_like().reliable(7), 1).unwrap();
        assert_eq!(rail.name(), "fedwire");
        assert_eq!(rail.submit(&usd_instruction(1), 0), confirmed(7));
        assert_eq!(rail.stats().confirmed, 1);
    }

    #[test]
    fn outage_is_a_half_open_window() {
        let mut rail = SimulatedRail::new(RailProfile::swift_like().reliable(1), 1).unwrap();
        rail.add_outage(TimeWindow {
            start_us: 100,
            end_us: 200,
        })
        .unwrap();
        let instr = usd_instruction(1);
        assert_eq!(rail.submit(&instr, 99), confirmed(1));
        assert_eq!(rail.submit(&instr, 100), RAIL_DOWN);
        assert_eq!(rail.submit(&instr, 199), RAIL_DOWN);
        assert_eq!(rail.submit(&instr, 200), confirmed(1));
        assert_eq!(
            rail.stats(),
            RailStats {
                submitted: 4,
                confirmed: 2,
                rejected: 0,
                unavailable: 2
            }
        );
        rail.add_outage(TimeWindow::starting_at(300)).unwrap();
        assert_eq!(rail.submit(&instr, u64::MAX - 1), RAIL_DOWN);
        rail.clear_faults();
        assert_eq!(rail.submit(&instr, 400), confirmed(1));
    }

    #[test]
    fn counterparty_outage_touches_only_that_counterparty() {
        let mut rail = SimulatedRail::new(RailProfile::swift_like().reliable(1), 1).unwrap();
        rail.add_counterparty_outage(ParticipantId(2), TimeWindow::starting_at(0))
            .unwrap();
        let to_2 = usd_instruction(1);
        let mut to_3 = usd_instruction(2);
        to_3.counterparty = ParticipantId(3);
        assert_eq!(
            rail.submit(&to_2, 5),
            RailOutcome::Unavailable {
                scope: Unavailability::Counterparty
            }
        );
        assert_eq!(rail.submit(&to_3, 5), confirmed(1));
    }

    #[test]
    fn unsupported_currency_is_a_final_rejection() {
        let mut rail = SimulatedRail::fedwire_like(1);
        let mut eur = usd_instruction(1);
        eur.currency = Currency::EUR;
        assert_eq!(
            rail.submit(&eur, 0),
            RailOutcome::Rejected {
                reason: RejectReason::UnsupportedCurrency,
                retryable: false
            }
        );
    }

    #[test]
    fn scripted_outcomes_come_first_in_order_but_not_during_an_outage() {
        let mut rail = SimulatedRail::new(RailProfile::swift_like().reliable(3), 1).unwrap();
        let timeout = RailOutcome::Rejected {
            reason: RejectReason::Timeout,
            retryable: true,
        };
        rail.script(timeout).unwrap();
        rail.script(confirmed(99)).unwrap();
        rail.add_outage(TimeWindow {
            start_us: 0,
            end_us: 10,
        })
        .unwrap();
        let instr = usd_instruction(1);
        assert_eq!(rail.submit(&instr, 5), RAIL_DOWN);
        assert_eq!(rail.submit(&instr, 10), timeout);
        assert_eq!(rail.submit(&instr, 11), confirmed(99));
        assert_eq!(rail.submit(&instr, 12), confirmed(3));
    }

    #[test]
    fn failure_rate_and_latency_follow_the_profile_and_the_seed() {
        let profile = RailProfile {
            failure_ppm: 250_000,
            ..RailProfile::swift_like()
        };
        let run = |seed| {
            let mut rail = SimulatedRail::new(profile.clone(), seed).unwrap();
            let instr = usd_instruction(1);
            (0..10_000)
                .map(|t| rail.submit(&instr, t))
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42), "same seed, same answers");
        assert_ne!(a, run(43), "another seed, other answers");
        let failures = a
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    RailOutcome::Rejected {
                        retryable: true,
                        ..
                    }
                )
            })
            .count();
        assert!(
            (2_300..=2_700).contains(&failures),
            "{failures} failures of 10,000 at 25 %"
        );
        for outcome in &a {
            if let RailOutcome::Confirmed { latency_us } = *outcome {
                assert!((500_000..=5_000_000).contains(&latency_us), "{latency_us}");
            }
        }
    }

    #[test]
    fn bad_configuration_and_faults_are_refused() {
        let inverted = RailProfile {
            latency_us_min: 2,
            latency_us_max: 1,
            ..RailProfile::swift_like()
        };
        assert_eq!(
            SimulatedRail::new(inverted, 0).unwrap_err(),
            RailConfigError::LatencyRange {
                min_us: 2,
                max_us: 1
            }
        );
        let mut rail = SimulatedRail::swift_like(0);
        assert_eq!(
            rail.set_failure_ppm(PPM + 1),
            Err(RailConfigError::FailureRate { ppm: PPM + 1 })
        );
        assert_eq!(
            rail.add_outage(TimeWindow {
                start_us: 5,
                end_us: 5
            }),
            Err(RailConfigError::EmptyWindow {
                start_us: 5,
                end_us: 5
            })
        );
        for i in 0..RAIL_OUTAGES_MAX as u64 {
            rail.add_outage(TimeWindow {
                start_us: i,
                end_us: i + 1,
            })
            .unwrap();
        }
        assert_eq!(
            rail.add_outage(TimeWindow::starting_at(0)),
            Err(RailConfigError::TooManyOutages {
                max: RAIL_OUTAGES_MAX
            })
        );
        for _ in 0..RAIL_SCRIPT_MAX {
            rail.script(confirmed(1)).unwrap();
        }
        assert_eq!(rail.script(confirmed(1)), Err(RailConfigError::ScriptFull));
    }

    #[test]
    fn boxed_rails_are_rails() {
        let mut rail: Box<dyn PaymentRail> =
            Box::new(SimulatedRail::new(RailProfile::swift_like().reliable(4), 0).unwrap());
        assert_eq!(rail.name(), "swift");
        assert_eq!(rail.submit(&usd_instruction(1), 0), confirmed(4));
    }
}
