//! The execution engine: sends due instructions to rails, retries with
//! backoff, routes around open breakers and unreachable counterparties, and
//! gives up with a failure and a reversal.
//!
//! A deterministic step function: `enqueue` and `poll(now_us)` are the only
//! inputs besides the rails' own answers, so the same calls at the same times
//! give the same events. No runtime, no timers: the caller (a glommio task,
//! or a test with a `ManualClock`) polls at `next_due_us()` or sooner.

use std::collections::BTreeMap;

use settle_codec::Currency;

use super::backoff::BackoffSchedule;
use super::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use super::error::{ConfigError, EnqueueError};
use super::event::{ExecutionEvent, ExecutionEventKind, FailureReason};
use super::instruction::{SettlementInstruction, INSTRUCTION_TRANSACTIONS_MAX, MAX_RETRIES_LIMIT};
use super::rail::{PaymentRail, RailOutcome, RailProfile, SimulatedRail, Unavailability};
use super::route::{RailId, Route, ROUTE_ALTERNATES_MAX};

/// Most instructions pending at once (waiting, or sent and awaiting
/// confirmation). A cycle makes one instruction per (creditor, currency)
/// batch, so this holds several cycles of a few hundred banks; when rails
/// are slower than cycles, refusing new work (back-pressure on the cycle
/// coordinator) beats an ever-growing backlog of stale wires.
pub const PENDING_INSTRUCTIONS_MAX: usize = 4_096;

/// Most queue entries one `poll` handles; the rest wait for the next poll,
/// so one step never stalls the core it runs on.
pub const ATTEMPTS_PER_POLL_MAX: usize = 256;

/// Most rails one engine drives (ids are `u8`; real deployments have a few).
pub const RAILS_MAX: usize = 16;

/// How the engine retries and when it stops trusting a rail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionConfig {
    pub backoff: BackoffSchedule,
    /// The same for every rail; each rail has its own breaker.
    pub breaker: BreakerConfig,
    /// At most [`PENDING_INSTRUCTIONS_MAX`].
    pub queue_capacity: usize,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            backoff: BackoffSchedule::default(),
            breaker: BreakerConfig::default(),
            queue_capacity: PENDING_INSTRUCTIONS_MAX,
        }
    }
}

/// Where an instruction is in its life.
#[derive(Debug)]
enum Stage {
    /// Waiting for its next attempt (the queue key's time).
    Due { initiated: bool },
    /// Accepted by `rail` at attempt `attempt`; confirmed at the queue key's
    /// time, `latency_us` after submission.
    InFlight {
        rail: RailId,
        attempt: u32,
        latency_us: u64,
    },
}

#[derive(Debug)]
struct Pending {
    instruction: SettlementInstruction,
    stage: Stage,
}

/// Queue order: due time, then arrival order (a sequence number), so equal
/// times resolve the same way on every run.
type QueueKey = (u64, u64);

struct RailSlot<R> {
    rail: R,
    breaker: CircuitBreaker,
}

/// The rails of [`ExecutionEngine::simulated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedRails {
    /// FedWire-like: USD's primary.
    pub fedwire: RailId,
    /// SWIFT-like: every other currency's primary, USD's alternate.
    pub swift: RailId,
    /// A second SWIFT-like route through a correspondent bank: the
    /// alternate of non-USD currencies.
    pub correspondent: RailId,
}

/// Owns the rails (each with its breaker), the routing table and the
/// bounded queue of pending instructions. Generic over the rail type so a
/// caller holding concrete rails (tests: [`SimulatedRail`]) can reach them
/// through [`ExecutionEngine::rail_mut`] to inject faults.
pub struct ExecutionEngine<R = Box<dyn PaymentRail>> {
    config: ExecutionConfig,
    rails: Vec<RailSlot<R>>,
    routes: BTreeMap<Currency, Route>,
    default_route: Option<Route>,
    queue: BTreeMap<QueueKey, Pending>,
    /// instruction id → its queue key; same entries as `queue`.
    keys: BTreeMap<u64, QueueKey>,
    next_seq: u64,
    /// The latest time seen: a caller's clock that steps back cannot make
    /// the engine reorder what it already did.
    now_us: u64,
}

impl ExecutionEngine<SimulatedRail> {
    /// The standard simulated deployment: USD over FedWire with SWIFT as
    /// the alternate; every other currency over SWIFT with a correspondent
    /// SWIFT route as the alternate. Each rail's randomness derives from `seed`.
    pub fn simulated(
        config: ExecutionConfig,
        seed: u64,
    ) -> Result<(Self, SimulatedRails), ConfigError> {
        let mut engine = Self::new(config)?;
        let correspondent = RailProfile {
            latency_us_min: 1_000_000,
            latency_us_max: 10_000_000,
            ..RailProfile::swift_like().with_name("swift-correspondent")
        };
        let rails = SimulatedRails {
            fedwire: engine.add_rail(SimulatedRail::fedwire_like(seed))?,
            swift: engine.add_rail(SimulatedRail::swift_like(seed.wrapping_add(1)))?,
            correspondent: engine.add_rail(
                SimulatedRail::new(correspondent, seed.wrapping_add(2))
                    .expect("the correspondent preset is valid"),
            )?,
        };
        engine.set_route(
            Currency::USD,
            Route::new(rails.fedwire).with_alternate(rails.swift),
        )?;
        engine.set_default_route(Route::new(rails.swift).with_alternate(rails.correspondent))?;
        Ok((engine, rails))
    }
}

impl<R: PaymentRail> ExecutionEngine<R> {
    pub fn new(config: ExecutionConfig) -> Result<Self, ConfigError> {
        if config.breaker.failures_to_open == 0 {
            return Err(ConfigError::BreakerThreshold);
        }
        if !(1..=PENDING_INSTRUCTIONS_MAX).contains(&config.queue_capacity) {
            return Err(ConfigError::QueueCapacity {
                capacity: config.queue_capacity,
                max: PENDING_INSTRUCTIONS_MAX,
            });
        }
        Ok(ExecutionEngine {
            config,
            rails: Vec::new(),
            routes: BTreeMap::new(),
            default_route: None,
            queue: BTreeMap::new(),
            keys: BTreeMap::new(),
            next_seq: 0,
            now_us: 0,
        })
    }

    pub fn config(&self) -> &ExecutionConfig {
        &self.config
    }

    /// Registers a rail, with a closed breaker.
    pub fn add_rail(&mut self, rail: R) -> Result<RailId, ConfigError> {
        if self.rails.len() >= RAILS_MAX {
            return Err(ConfigError::TooManyRails { max: RAILS_MAX });
        }
        // RAILS_MAX fits in u8.
        let id = RailId(self.rails.len() as u8);
        self.rails.push(RailSlot {
            rail,
            breaker: CircuitBreaker::new(self.config.breaker),
        });
        Ok(id)
    }

    /// Routes `currency` (replacing its route, if any).
    pub fn set_route(&mut self, currency: Currency, route: Route) -> Result<(), ConfigError> {
        self.check_route(&route)?;
        self.routes.insert(currency, route);
        Ok(())
    }

    /// Routes every currency without a route of its own.
    pub fn set_default_route(&mut self, route: Route) -> Result<(), ConfigError> {
        self.check_route(&route)?;
        self.default_route = Some(route);
        Ok(())
    }

    pub fn route_for(&self, currency: Currency) -> Option<&Route> {
        self.routes.get(&currency).or(self.default_route.as_ref())
    }

    pub fn rail(&self, id: RailId) -> Option<&R> {
        self.rails.get(id.index()).map(|slot| &slot.rail)
    }

    /// The rail itself, e.g. to inject faults into a simulated one.
    pub fn rail_mut(&mut self, id: RailId) -> Option<&mut R> {
        self.rails.get_mut(id.index()).map(|slot| &mut slot.rail)
    }

    /// Every registered rail, in registration order.
    pub fn rail_ids(&self) -> impl Iterator<Item = RailId> + '_ {
        (0..self.rails.len()).map(|i| RailId(u8::try_from(i).expect("at most RAILS_MAX rails")))
    }

    pub fn rail_name(&self, id: RailId) -> Option<&str> {
        self.rail(id).map(|rail| rail.name())
    }

    pub fn breaker(&self, id: RailId) -> Option<&CircuitBreaker> {
        self.rails.get(id.index()).map(|slot| &slot.breaker)
    }

    /// The breaker's state at `now_us`.
    pub fn breaker_state(&self, id: RailId, now_us: u64) -> Option<BreakerState> {
        self.breaker(id).map(|b| b.state(now_us))
    }

    /// Instructions waiting or awaiting confirmation.
    pub fn pending_len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn is_pending(&self, instruction_id: u64) -> bool {
        self.keys.contains_key(&instruction_id)
    }

    /// When the next poll has work: the earliest attempt or confirmation.
    pub fn next_due_us(&self) -> Option<u64> {
        self.queue.first_key_value().map(|(&(due_us, _), _)| due_us)
    }

    /// Takes an instruction; its first attempt is due at `now_us` (made by
    /// the next poll). Refuses, without side effects, what it cannot carry.
    pub fn enqueue(
        &mut self,
        instruction: SettlementInstruction,
        now_us: u64,
    ) -> Result<(), EnqueueError> {
        let id = instruction.instruction_id;
        if self.queue.len() >= self.config.queue_capacity {
            return Err(EnqueueError::QueueFull {
                capacity: self.config.queue_capacity,
            });
        }
        if self.keys.contains_key(&id) {
            return Err(EnqueueError::Duplicate { instruction_id: id });
        }
        if self.route_for(instruction.currency).is_none() {
            return Err(EnqueueError::NoRoute {
                currency: instruction.currency,
            });
        }
        if instruction.amount == 0 {
            return Err(EnqueueError::ZeroAmount { instruction_id: id });
        }
        if instruction.max_retries > MAX_RETRIES_LIMIT {
            return Err(EnqueueError::TooManyRetries {
                instruction_id: id,
                max_retries: instruction.max_retries,
                limit: MAX_RETRIES_LIMIT,
            });
        }
        if instruction.retry_count > instruction.max_retries {
            return Err(EnqueueError::RetriesAlreadySpent {
                instruction_id: id,
                retry_count: instruction.retry_count,
                max_retries: instruction.max_retries,
            });
        }
        if instruction.transaction_ids.len() > INSTRUCTION_TRANSACTIONS_MAX {
            return Err(EnqueueError::TooManyTransactions {
                instruction_id: id,
                len: instruction.transaction_ids.len(),
                max: INSTRUCTION_TRANSACTIONS_MAX,
            });
        }
        let due_us = now_us.max(self.now_us);
        self.insert(
            due_us,
            Pending {
                instruction,
                stage: Stage::Due { initiated: false },
            },
        );
        Ok(())
    }

    /// Does the work due at `now_us` (at most [`ATTEMPTS_PER_POLL_MAX`]
    /// entries, earliest first) and reports what happened, in order.
    pub fn poll(&mut self, now_us: u64) -> Vec<ExecutionEvent> {
        let now_us = now_us.max(self.now_us);
        self.now_us = now_us;
        let mut events = Vec::new();
        for _ in 0..ATTEMPTS_PER_POLL_MAX {
            let Some(entry) = self.queue.first_entry() else {
                break;
            };
            let (due_us, _) = *entry.key();
            if due_us > now_us {
                break;
            }
            let pending = entry.remove();
            let removed = self.keys.remove(&pending.instruction.instruction_id);
            assert!(removed.is_some(), "queue and key index disagree");
            match pending.stage {
                Stage::InFlight {
                    rail,
                    attempt,
                    latency_us,
                } => events.push(event(
                    &pending.instruction,
                    due_us,
                    attempt,
                    Some(rail),
                    ExecutionEventKind::Confirmed { latency_us },
                )),
                Stage::Due { initiated } => {
                    self.attempt(pending.instruction, initiated, now_us, &mut events)
                }
            }
        }
        assert_eq!(self.queue.len(), self.keys.len());
        events
    }

    /// One attempt: the route's rails in order until one answers.
    fn attempt(
        &mut self,
        instruction: SettlementInstruction,
        mut initiated: bool,
        now_us: u64,
        events: &mut Vec<ExecutionEvent>,
    ) {
        let attempt = instruction.attempt();
        let Some(route) = self.route_for(instruction.currency).cloned() else {
            // Routes are replaced, never removed, and enqueue checked one
            // existed; fail safe all the same.
            initiate_once(&mut initiated, &instruction, now_us, None, events);
            return self.fail(
                instruction,
                None,
                FailureReason::NoRoute,
                false,
                now_us,
                events,
            );
        };
        // The rail tried last and why it did not take the wire.
        let mut missed: Option<(RailId, FailureReason)> = None;
        for &rail_id in route.rails() {
            if let Some((rail, reason)) = missed.take() {
                events.push(event(
                    &instruction,
                    now_us,
                    attempt,
                    Some(rail),
                    ExecutionEventKind::Rerouted { reason },
                ));
            }
            let slot = &mut self.rails[rail_id.index()];
            if !slot.breaker.allows(now_us) {
                missed = Some((rail_id, FailureReason::BreakerOpen));
                continue;
            }
            initiate_once(&mut initiated, &instruction, now_us, Some(rail_id), events);
            match slot.rail.submit(&instruction, now_us) {
                RailOutcome::Confirmed { latency_us } => {
                    slot.breaker.record_success(now_us);
                    let confirm_us = now_us.saturating_add(latency_us);
                    let stage = Stage::InFlight {
                        rail: rail_id,
                        attempt,
                        latency_us,
                    };
                    self.insert(confirm_us, Pending { instruction, stage });
                    return;
                }
                RailOutcome::Rejected {
                    reason,
                    retryable: false,
                } => {
                    // The rail is up (it answered); the wire itself is bad.
                    slot.breaker.record_success(now_us);
                    let reason = FailureReason::Rejected {
                        reason,
                        retryable: false,
                    };
                    return self.fail(instruction, Some(rail_id), reason, false, now_us, events);
                }
                RailOutcome::Rejected {
                    reason,
                    retryable: true,
                } => {
                    slot.breaker.record_failure(now_us);
                    let reason = FailureReason::Rejected {
                        reason,
                        retryable: true,
                    };
                    return self.retry_or_fail(instruction, rail_id, reason, now_us, events);
                }
                RailOutcome::Unavailable {
                    scope: Unavailability::Rail,
                } => {
                    slot.breaker.record_failure(now_us);
                    missed = Some((rail_id, FailureReason::RailUnavailable));
                }
                RailOutcome::Unavailable {
                    scope: Unavailability::Counterparty,
                } => {
                    // Not the rail's fault: its breaker is left alone.
                    missed = Some((rail_id, FailureReason::CounterpartyUnavailable));
                }
            }
        }
        let (rail, reason) = missed.expect("a route has at least one rail");
        initiate_once(&mut initiated, &instruction, now_us, Some(rail), events);
        self.retry_or_fail(instruction, rail, reason, now_us, events);
    }

    fn retry_or_fail(
        &mut self,
        mut instruction: SettlementInstruction,
        rail: RailId,
        reason: FailureReason,
        now_us: u64,
        events: &mut Vec<ExecutionEvent>,
    ) {
        if !instruction.can_retry() {
            return self.fail(instruction, Some(rail), reason, true, now_us, events);
        }
        let attempt = instruction.attempt();
        instruction.retry_count += 1;
        let next_attempt_us =
            now_us.saturating_add(self.config.backoff.delay_us(instruction.retry_count));
        events.push(event(
            &instruction,
            now_us,
            attempt,
            Some(rail),
            ExecutionEventKind::RetryScheduled {
                reason,
                next_attempt_us,
            },
        ));
        self.insert(
            next_attempt_us,
            Pending {
                instruction,
                stage: Stage::Due { initiated: true },
            },
        );
    }

    fn fail(
        &mut self,
        instruction: SettlementInstruction,
        rail: Option<RailId>,
        reason: FailureReason,
        retries_exhausted: bool,
        now_us: u64,
        events: &mut Vec<ExecutionEvent>,
    ) {
        let attempt = instruction.attempt();
        events.push(event(
            &instruction,
            now_us,
            attempt,
            rail,
            ExecutionEventKind::Failed {
                reason,
                retries_exhausted,
            },
        ));
        events.push(event(
            &instruction,
            now_us,
            attempt,
            rail,
            ExecutionEventKind::Reversed {
                instruction: instruction.clone(),
            },
        ));
    }

    fn check_route(&self, route: &Route) -> Result<(), ConfigError> {
        if route.alternates().len() > ROUTE_ALTERNATES_MAX {
            return Err(ConfigError::TooManyAlternates {
                alternates: route.alternates().len(),
                max: ROUTE_ALTERNATES_MAX,
            });
        }
        for (i, &rail) in route.rails().iter().enumerate() {
            if rail.index() >= self.rails.len() {
                return Err(ConfigError::UnknownRail { rail });
            }
            if route.rails()[..i].contains(&rail) {
                return Err(ConfigError::DuplicateRail { rail });
            }
        }
        Ok(())
    }

    fn insert(&mut self, due_us: u64, pending: Pending) {
        let key = (due_us, self.next_seq);
        self.next_seq += 1;
        let id = pending.instruction.instruction_id;
        let previous = self.keys.insert(id, key);
        assert!(previous.is_none(), "instruction {id} queued twice");
        self.queue.insert(key, pending);
        assert!(self.queue.len() <= self.config.queue_capacity);
    }
}

/// Emits `Initiated` if the instruction's life has not begun: at its first
/// submission to a rail, or, when every rail was skipped, where the first
/// attempt ended, so every `Failed` has an `Initiated` before it.
fn initiate_once(
    initiated: &mut bool,
    instruction: &SettlementInstruction,
    now_us: u64,
    rail: Option<RailId>,
    events: &mut Vec<ExecutionEvent>,
) {
    if !*initiated {
        *initiated = true;
        let attempt = instruction.attempt();
        events.push(event(
            instruction,
            now_us,
            attempt,
            rail,
            ExecutionEventKind::Initiated,
        ));
    }
}

fn event(
    instruction: &SettlementInstruction,
    at_us: u64,
    attempt: u32,
    rail: Option<RailId>,
    kind: ExecutionEventKind,
) -> ExecutionEvent {
    ExecutionEvent {
        at_us,
        instruction_id: instruction.instruction_id,
        batch_id: instruction.batch_id,
        cycle_id: instruction.cycle_id,
        attempt,
        rail,
        kind,
    }
}
