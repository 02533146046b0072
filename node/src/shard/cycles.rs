//! A shard's part of a settlement cycle: freeze candidates at close, apply
//! the decision's legs at apply. Both are log entries, so every replica
//! freezes the same candidates and moves the same balances.
//!
//! Close takes the first waiting transactions of the window's queue (by
//! arrival; a deferred one goes to the back, so transactions that cannot
//! settle never crowd out those that can) and snapshots the balances the
//! decision will be made on. Apply is atomic (every leg of the shard in one entry, checked
//! before anything changes: no balance goes below zero) and idempotent by
//! cycle id (a re-sent apply is a duplicate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use settle_codec::tx::DeferReason;
use settle_codec::{ParticipantId, TxResult, TxStatus, Window};

use super::ledger::BALANCE_MAX;
use super::state::{window_slot, ShardState};

/// A cycle this shard closed and has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCycle {
    pub window: Window,
    /// Candidate ids in the order they were taken (oldest first).
    pub candidates: Vec<u128>,
    /// Every account's balance at close, by participant id.
    pub balances: Vec<(ParticipantId, u64)>,
    pub close_index: u64,
    pub close_at_us: u64,
}

/// What the control group decided, as the shard records it for the audit
/// trail of every transaction of the cycle.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct DecisionFacts {
    /// Control log index of the decision.
    pub decision_index: u64,
    /// When the optimiser (or its fallback) finished.
    pub optimized_at_us: u64,
    /// Leader timestamp of the decision entry (proposed to the control group).
    pub decided_at_us: u64,
    /// When the coordinator saw the decision committed.
    pub achieved_at_us: u64,
    /// Decided by the fallback grouping.
    pub fallback: bool,
}

/// Facts of a cycle the shard's records refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleNote {
    pub window: Window,
    pub close_index: u64,
    pub close_at_us: u64,
    /// Known once the shard applied the decision.
    pub decision: Option<DecisionFacts>,
    pub apply_index: u64,
    pub apply_at_us: u64,
    /// The settlement counts as confirmed when applied (no execution step).
    pub confirmed: bool,
    /// Records (and the open cycle's candidates) referring to this note.
    pub refs: u64,
}

/// What a cycle's decision does with one candidate of this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Leg {
    /// Debit the debtor here; the creditor gets `receive_amount` (credited
    /// by the shard of the receive currency) in batch `batch`.
    Settled { batch: u32, receive_amount: u64 },
    /// Back to waiting for the next cycle of its window.
    Deferred { reason: DeferReason },
    /// Its window's deadline passed unfunded: it waits for cycles of
    /// window `to` from now on (its deadline counts from now).
    Rolled { reason: DeferReason, to: Window },
}

/// A shard's share of a decision.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct CycleApply {
    pub cycle_id: u64,
    pub decision: DecisionFacts,
    /// Settlement is final when applied (no execution step follows).
    pub confirm: bool,
    /// One per candidate, in candidate order.
    pub legs: Vec<Leg>,
    /// Credits in this shard's currency, one per creditor (summed), final
    /// now (no execution step follows).
    pub credits: Vec<(ParticipantId, u64)>,
    /// Credits in this shard's currency waiting for their wire, one per
    /// batch: (batch, creditor, amount). Not spendable until confirmed.
    pub incoming: Vec<(u32, ParticipantId, u64)>,
}

/// What a payment rail finally did with one batch's wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct BatchOutcome {
    pub cycle_id: u64,
    pub batch: u32,
    /// Confirmed by a rail; else failed after `attempts` and reversed.
    pub confirmed: bool,
    pub attempts: u32,
}

/// Where a settled transaction's wire is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Final when applied (no execution step), or not settled.
    #[default]
    Final,
    /// Sent to a rail, not yet confirmed.
    InFlight,
    /// Confirmed by a rail, recorded at this entry.
    Confirmed { log_index: u64, at_us: u64 },
    /// Failed on every rail after `attempts`; reversed at this entry.
    Reversed {
        log_index: u64,
        at_us: u64,
        attempts: u32,
    },
}

/// A batch whose wire is in flight, as its creditor's shard holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingBatch {
    pub cycle_id: u64,
    pub batch: u32,
    pub creditor: ParticipantId,
    pub amount: u64,
}

impl ShardState {
    /// Freezes up to `candidates_max` waiting transactions of `window` as
    /// cycle `cycle_id`'s candidates. Duplicate: already closed (nothing
    /// changes); Conflict: the cycle was applied here already.
    pub fn apply_close(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        cycle_id: u64,
        window: Window,
        candidates_max: usize,
    ) -> TxResult {
        self.advance(log_index, leader_ts_us);
        assert!(cycle_id > 0, "cycle ids start at 1");
        if self.open_cycles.contains_key(&cycle_id) {
            return TxResult::Duplicate;
        }
        if cycle_id <= self.last_applied_cycle {
            return TxResult::Conflict;
        }
        let queue = &mut self.waiting[window_slot(window)];
        let take = queue.len().min(candidates_max);
        let mut candidates = Vec::with_capacity(take);
        for _ in 0..take {
            let (_, id) = queue.pop_first().expect("counted");
            let record = self.records.get_mut(&id).expect("waiting ids are records");
            assert!(record.is_waiting(), "only waiting transactions are queued");
            record.candidate_of = cycle_id;
            candidates.push(id);
        }
        let balances = self
            .accounts
            .iter()
            .map(|(&p, a)| (ParticipantId(p), a.balance))
            .collect();
        self.cycle_notes.insert(
            cycle_id,
            CycleNote {
                window,
                close_index: log_index,
                close_at_us: self.clock_us,
                decision: None,
                apply_index: 0,
                apply_at_us: 0,
                confirmed: false,
                refs: candidates.len() as u64,
            },
        );
        self.open_cycles.insert(
            cycle_id,
            OpenCycle {
                window,
                candidates,
                balances,
                close_index: log_index,
                close_at_us: self.clock_us,
            },
        );
        TxResult::Created
    }

    /// An open cycle's candidates and balances at close.
    pub fn open_cycle(&self, cycle_id: u64) -> Option<&OpenCycle> {
        self.open_cycles.get(&cycle_id)
    }

    /// Every open cycle's id, oldest first.
    pub fn open_cycle_ids(&self) -> Vec<u64> {
        self.open_cycles.keys().copied().collect()
    }

    pub fn last_applied_cycle(&self) -> u64 {
        self.last_applied_cycle
    }

    /// Applies a decision's legs for this shard, all or nothing. Created:
    /// applied; Duplicate: applied before; Conflict: refused, nothing
    /// changed (never closed here, legs do not match the candidates, or a
    /// balance would go below zero).
    pub fn apply_cycle(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        apply: &CycleApply,
    ) -> TxResult {
        self.advance(log_index, leader_ts_us);
        let Some(open) = self.open_cycles.get(&apply.cycle_id) else {
            return if apply.cycle_id <= self.last_applied_cycle {
                TxResult::Duplicate
            } else {
                TxResult::Conflict
            };
        };
        if apply.legs.len() != open.candidates.len() {
            tracing::error!(
                cycle = apply.cycle_id,
                legs = apply.legs.len(),
                candidates = open.candidates.len(),
                "cycle apply refused: legs do not match the candidates"
            );
            return TxResult::Conflict;
        }
        // Check every leg against the balances before changing anything.
        let mut delta: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (id, leg) in open.candidates.iter().zip(&apply.legs) {
            if let Leg::Settled { .. } = leg {
                let tx = &self.records[id].tx;
                delta.entry(tx.debtor.0).or_default().1 += tx.amount;
            }
        }
        for &(p, amount) in &apply.credits {
            let d = &mut delta.entry(p.0).or_default().0;
            *d = d.saturating_add(amount);
        }
        let mut incoming: BTreeMap<u32, u64> = BTreeMap::new();
        for &(_, p, amount) in &apply.incoming {
            let d = incoming.entry(p.0).or_default();
            *d = d.saturating_add(amount);
        }
        for (&p, &amount) in &incoming {
            let now = self.accounts.get(&p).map_or(0, |a| a.incoming);
            if now.saturating_add(amount) > BALANCE_MAX {
                tracing::error!(
                    cycle = apply.cycle_id,
                    participant = p,
                    "cycle apply refused: incoming beyond BALANCE_MAX"
                );
                return TxResult::Conflict;
            }
        }
        for (&p, &(credit, debit)) in &delta {
            let balance = self.accounts.get(&p).map_or(0, |a| a.balance) as i128;
            let after = balance + credit as i128 - debit as i128;
            if after < 0 || after > BALANCE_MAX as i128 {
                tracing::error!(
                    cycle = apply.cycle_id,
                    participant = p,
                    balance,
                    after,
                    "cycle apply refused: a balance would leave [0, BALANCE_MAX]"
                );
                return TxResult::Conflict;
            }
        }
        let open = self
            .open_cycles
            .remove(&apply.cycle_id)
            .expect("checked above");
        let at_us = self.clock_us;
        for (&p, &(credit, debit)) in &delta {
            self.account_changing(p, |s| {
                let account = s.accounts.entry(p).or_default();
                account.credited += credit;
                account.debited += debit;
                account.balance = account.balance + credit - debit;
                debug_assert!(account.is_consistent());
            });
            self.flows
                .add(p, at_us, i128::from(credit) - i128::from(debit));
        }
        for (&p, &amount) in &incoming {
            self.account_changing(p, |s| {
                s.accounts.entry(p).or_default().incoming += amount;
            });
        }
        for &(batch, creditor, amount) in &apply.incoming {
            self.in_flight
                .insert((apply.cycle_id, batch), (creditor, amount));
        }
        // The cycle's facts first: records finishing below take them to the
        // store with them.
        let note = self
            .cycle_notes
            .get_mut(&apply.cycle_id)
            .expect("closed cycles have a note");
        note.decision = Some(apply.decision);
        note.apply_index = log_index;
        note.apply_at_us = at_us;
        note.confirmed = apply.confirm;
        let note = *note;
        self.cold.put_note(apply.cycle_id, &note);
        for (id, leg) in open.candidates.iter().zip(&apply.legs) {
            let record = self.records.get_mut(id).expect("candidates are records");
            assert_eq!(record.candidate_of, apply.cycle_id);
            record.candidate_of = 0;
            match *leg {
                Leg::Settled {
                    batch,
                    receive_amount,
                } => {
                    record.status = TxStatus::Settled;
                    record.settled_in = apply.cycle_id;
                    record.batch = batch;
                    record.receive_amount = receive_amount;
                    self.pending_count -= 1;
                    self.settled_total += 1;
                    if apply.confirm {
                        self.finish(*id, at_us);
                    } else {
                        // Expirable once its wire is final.
                        record.execution = Execution::InFlight;
                        self.out_flight
                            .entry((apply.cycle_id, batch))
                            .or_default()
                            .push(*id);
                    }
                }
                Leg::Deferred { reason } | Leg::Rolled { reason, .. } => {
                    let previous = record.deferred_in;
                    record.status = TxStatus::Deferred;
                    record.deferred_in = apply.cycle_id;
                    record.defer_reason = Some(reason);
                    record.deferrals += 1;
                    record.rolled_from = None;
                    if let Leg::Rolled { to, .. } = *leg {
                        record.rolled_from = Some(record.window);
                        record.window = to;
                        record.since_us = at_us;
                        record.rolls += 1;
                        self.rolled_total += 1;
                    }
                    assert!(
                        record.window == open.window || record.rolled_from.is_some(),
                        "a candidate waits in its cycle's window"
                    );
                    self.queue_seq += 1;
                    record.seq = self.queue_seq;
                    self.waiting[window_slot(record.window)].push(record.seq, *id);
                    self.release_note(previous);
                }
            }
        }
        // Kept while a record in memory refers to it (`release_note`).
        if self
            .cycle_notes
            .get(&apply.cycle_id)
            .is_some_and(|n| n.refs == 0)
        {
            self.cycle_notes.remove(&apply.cycle_id);
        }
        self.last_applied_cycle = self.last_applied_cycle.max(apply.cycle_id);
        TxResult::Created
    }
}

impl ShardState {
    /// Applies rails' final answers. For each batch: this shard's
    /// transactions in it become confirmed (or failed and reversed: their
    /// debits are refunded), and if this shard holds the batch's incoming
    /// credit it becomes balance (or is dropped). One result per outcome:
    /// Created when something here changed, Duplicate when nothing did
    /// (another shard's batch, or applied before).
    pub fn apply_execution(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        outcomes: &[BatchOutcome],
        results: &mut Vec<TxResult>,
    ) {
        self.advance(log_index, leader_ts_us);
        let at_us = self.clock_us;
        for o in outcomes {
            let key = (o.cycle_id, o.batch);
            let mut changed = false;
            if let Some(ids) = self.out_flight.remove(&key) {
                changed = true;
                for id in ids {
                    let record = self
                        .records
                        .get_mut(&id)
                        .expect("in-flight ids are records");
                    assert_eq!(record.execution, Execution::InFlight);
                    if o.confirmed {
                        record.execution = Execution::Confirmed { log_index, at_us };
                    } else {
                        record.execution = Execution::Reversed {
                            log_index,
                            at_us,
                            attempts: o.attempts,
                        };
                        record.status = TxStatus::Failed;
                        let (debtor, amount) = (record.tx.debtor.0, record.tx.amount);
                        self.account_changing(debtor, |s| {
                            let account = s.accounts.entry(debtor).or_default();
                            account.refunded += amount;
                            account.balance += amount;
                            debug_assert!(account.is_consistent());
                        });
                        self.flows.add(debtor, at_us, i128::from(amount));
                    }
                    self.finish(id, at_us);
                }
            }
            if let Some((creditor, amount)) = self.in_flight.remove(&key) {
                changed = true;
                self.account_changing(creditor.0, |s| {
                    let account = s.accounts.entry(creditor.0).or_default();
                    assert!(account.incoming >= amount, "incoming covers its batches");
                    account.incoming -= amount;
                    if o.confirmed {
                        account.credited += amount;
                        account.balance += amount;
                    }
                    debug_assert!(account.is_consistent());
                });
                if o.confirmed {
                    self.flows.add(creditor.0, at_us, i128::from(amount));
                }
            }
            results.push(if changed {
                TxResult::Created
            } else {
                TxResult::Duplicate
            });
        }
    }

    /// Batches whose wire is in flight and whose credit this shard holds.
    pub fn incoming_batches(&self) -> Vec<IncomingBatch> {
        self.in_flight
            .iter()
            .map(|(&(cycle_id, batch), &(creditor, amount))| IncomingBatch {
                cycle_id,
                batch,
                creditor,
                amount,
            })
            .collect()
    }

    /// This shard's transactions in a batch whose wire is in flight.
    pub fn outgoing_batch(&self, cycle_id: u64, batch: u32) -> &[u128] {
        self.out_flight
            .get(&(cycle_id, batch))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use settle_codec::{Currency, Transaction, TxEventKind};

    pub(crate) fn tx(
        id: u128,
        debtor: u32,
        creditor: u32,
        amount: u64,
        window: Window,
    ) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(debtor),
            creditor: ParticipantId(creditor),
            amount,
            send: Currency::USD,
            receive: Currency::USD,
            window,
            client_timestamp_us: 0,
        }
    }

    pub(crate) fn facts(index: u64) -> DecisionFacts {
        DecisionFacts {
            decision_index: index,
            optimized_at_us: 1,
            decided_at_us: 2,
            achieved_at_us: 3,
            fallback: false,
        }
    }

    /// A shard with bank 1 funded 100, bank 2 funded 0, and three RTGS
    /// payments 1 → 2 of 60, 50, 10 plus one T1 payment.
    pub(crate) fn funded() -> ShardState {
        let mut s = ShardState::new();
        s.apply_open(1, 10, [(ParticipantId(1), 100)], &mut Vec::new());
        let mut r = Vec::new();
        s.apply_submit(
            2,
            20,
            Currency::USD,
            [
                tx(11, 1, 2, 60, Window::Rtgs),
                tx(12, 1, 2, 50, Window::Rtgs),
                tx(13, 1, 2, 10, Window::Rtgs),
                tx(14, 1, 2, 5, Window::T1),
            ],
            &mut r,
        );
        s
    }

    fn settle(batch: u32, amount: u64) -> Leg {
        Leg::Settled {
            batch,
            receive_amount: amount,
        }
    }

    #[test]
    fn close_freezes_oldest_waiting_of_the_window_and_is_idempotent() {
        let mut s = funded();
        assert_eq!(s.apply_close(3, 30, 1, Window::Rtgs, 2), TxResult::Created);
        let open = s.open_cycle(1).unwrap();
        assert_eq!(open.candidates, vec![11, 12]);
        assert_eq!(open.balances, vec![(ParticipantId(1), 100)]);
        assert_eq!(s.waiting_count(Window::Rtgs), 1);
        assert_eq!(s.waiting_count(Window::T1), 1);
        assert_eq!(
            s.apply_close(4, 31, 1, Window::Rtgs, 2),
            TxResult::Duplicate
        );
        assert_eq!(s.open_cycle(1).unwrap().candidates, vec![11, 12]);
        let kinds: Vec<_> = s.events(11, 1).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![TxEventKind::TransactionSubmitted, TxEventKind::BatchCreated]
        );
    }

    #[test]
    fn apply_moves_balances_once_and_requeues_deferred_at_the_back() {
        let mut s = funded();
        s.apply_close(3, 30, 1, Window::Rtgs, 10);
        let apply = CycleApply {
            cycle_id: 1,
            decision: facts(7),
            confirm: true,
            legs: vec![
                settle(1, 60),
                Leg::Deferred {
                    reason: DeferReason::Liquidity { short: 10 },
                },
                settle(1, 10),
            ],
            credits: vec![(ParticipantId(2), 70)],
            incoming: vec![],
        };
        assert_eq!(s.apply_cycle(4, 40, &apply), TxResult::Created);
        assert_eq!(s.account(ParticipantId(1)).balance, 30);
        assert_eq!(s.account(ParticipantId(2)).balance, 70);
        assert_eq!(
            s.balance_total(),
            100,
            "a same-currency cycle moves, never creates"
        );
        assert_eq!(s.apply_cycle(5, 50, &apply), TxResult::Duplicate);
        assert_eq!(
            s.account(ParticipantId(1)).balance,
            30,
            "re-applied idempotently"
        );
        // The settled flows are the forecast's history (the opening is not).
        let flow = |p| s.flow_series(ParticipantId(p), 60).map(|f| f.current);
        assert_eq!((flow(1), flow(2)), (Some(-70), Some(70)));
        assert_eq!(s.lookup_record(11).unwrap().status, TxStatus::Settled);
        assert_eq!(s.record(12).unwrap().status, TxStatus::Deferred);
        assert_eq!(s.pending_count(), 2);
        assert_eq!(s.settled_total(), 2);
        // The deferred payment waits behind what arrived before its
        // deferral, ahead of what arrives after.
        s.apply_submit(
            6,
            60,
            Currency::USD,
            [tx(15, 1, 2, 1, Window::Rtgs)],
            &mut Vec::new(),
        );
        assert_eq!(s.waiting_count(Window::Rtgs), 2);
        s.apply_close(7, 70, 2, Window::Rtgs, 1);
        assert_eq!(s.open_cycle(2).unwrap().candidates, vec![12]);
        // Its trail explains the deferral, then shows the new candidacy.
        let events = s.events(12, 1);
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TxEventKind::TransactionSubmitted,
                TxEventKind::BatchCreated,
                TxEventKind::BatchOptimized,
                TxEventKind::ConsensusSubmitted,
                TxEventKind::ConsensusAchieved,
                TxEventKind::BatchCreated,
            ]
        );
        assert_eq!(
            events[2].detail,
            settle_codec::tx::EventDetail::Defer {
                reason: DeferReason::Liquidity { short: 10 },
                deferrals: 1
            }
        );
        assert_eq!(events[2].group, 0, "decisions are control log entries");
        assert_eq!(events[2].entry_index, 7);
        let settled: Vec<_> = s.events(11, 1).iter().map(|e| e.kind).collect();
        assert_eq!(settled.len(), 7);
        assert_eq!(settled[5], TxEventKind::SettlementInitiated);
        assert_eq!(settled[6], TxEventKind::SettlementConfirmed);
    }

    #[test]
    fn apply_that_would_overdraw_is_refused_whole() {
        let mut s = funded();
        s.apply_close(3, 30, 1, Window::Rtgs, 10);
        let greedy = CycleApply {
            cycle_id: 1,
            decision: facts(7),
            confirm: true,
            legs: vec![settle(1, 60), settle(1, 50), settle(1, 10)],
            credits: vec![(ParticipantId(2), 120)],
            incoming: vec![],
        };
        assert_eq!(s.apply_cycle(4, 40, &greedy), TxResult::Conflict);
        assert_eq!(s.account(ParticipantId(1)).balance, 100);
        assert_eq!(s.account(ParticipantId(2)).balance, 0);
        assert_eq!(s.record(11).unwrap().status, TxStatus::Pending);
        assert!(
            s.open_cycle(1).is_some(),
            "still open: a correct decision can follow"
        );
        let short = CycleApply {
            legs: vec![settle(1, 60)],
            ..greedy
        };
        assert_eq!(s.apply_cycle(5, 41, &short), TxResult::Conflict);
    }

    #[test]
    fn notes_are_dropped_with_the_last_record_that_refers_to_them() {
        let mut s = funded();
        s.apply_deposit(
            3,
            25,
            Currency::USD,
            1,
            ParticipantId(1),
            Currency::USD,
            100,
        );
        s.apply_close(4, 30, 1, Window::Rtgs, 10);
        let apply = CycleApply {
            cycle_id: 1,
            decision: facts(7),
            confirm: true,
            legs: vec![settle(1, 60), settle(1, 50), settle(1, 10)],
            credits: vec![(ParticipantId(2), 120)],
            incoming: vec![],
        };
        assert_eq!(s.apply_cycle(5, 40, &apply), TxResult::Created);
        assert_eq!(s.account(ParticipantId(1)).balance, 80);
        // Settled and final: the records left memory for the store, and the
        // note with the last of them (the store keeps the cycle's facts).
        s.end_entry().unwrap();
        assert!(s.record(11).is_none());
        assert_eq!(s.lookup_record(11).unwrap().status, TxStatus::Settled);
        assert!(!s.cycle_notes.contains_key(&1));
        assert_eq!(s.events(11, 1).len(), 7, "the trail is told from the store");
        let later = 40 + super::super::state::DEDUP_WINDOW_US;
        // An empty cycle leaves no note behind.
        s.apply_close(7, later, 2, Window::T2, 10);
        s.apply_cycle(
            8,
            later,
            &CycleApply {
                cycle_id: 2,
                legs: vec![],
                credits: vec![],
                incoming: vec![],
                ..apply
            },
        );
        assert!(s.cycle_notes.is_empty());
    }

    #[test]
    fn wires_confirm_or_reverse_and_money_in_flight_is_never_spent() {
        let mut s = funded();
        s.apply_close(3, 30, 1, Window::Rtgs, 10);
        let apply = CycleApply {
            cycle_id: 1,
            decision: facts(7),
            confirm: false,
            legs: vec![
                settle(1, 60),
                Leg::Deferred {
                    reason: DeferReason::Liquidity { short: 10 },
                },
                settle(2, 10),
            ],
            credits: vec![],
            incoming: vec![(1, ParticipantId(2), 60), (2, ParticipantId(2), 10)],
        };
        assert_eq!(s.apply_cycle(4, 40, &apply), TxResult::Created);
        let (a1, a2) = (s.account(ParticipantId(1)), s.account(ParticipantId(2)));
        assert_eq!((a1.balance, a1.debited), (30, 70));
        assert_eq!(
            (a2.balance, a2.incoming),
            (0, 70),
            "not spendable before the wire"
        );
        assert_eq!(s.outgoing_batch(1, 1), &[11]);
        assert_eq!(s.incoming_batches().len(), 2);
        let kinds = |s: &mut ShardState, id| -> Vec<TxEventKind> {
            s.events(id, 1).iter().map(|e| e.kind).collect()
        };
        assert_eq!(
            kinds(&mut s, 11).last(),
            Some(&TxEventKind::SettlementInitiated)
        );

        let outcomes = [
            BatchOutcome {
                cycle_id: 1,
                batch: 1,
                confirmed: true,
                attempts: 1,
            },
            BatchOutcome {
                cycle_id: 1,
                batch: 2,
                confirmed: false,
                attempts: 4,
            },
        ];
        let mut results = Vec::new();
        s.apply_execution(5, 50, &outcomes, &mut results);
        s.end_entry().unwrap();
        assert_eq!(results, vec![TxResult::Created, TxResult::Created]);
        let (a1, a2) = (s.account(ParticipantId(1)), s.account(ParticipantId(2)));
        assert_eq!(
            (a1.balance, a1.refunded),
            (40, 10),
            "the failed wire's debit comes back"
        );
        assert_eq!((a2.balance, a2.credited, a2.incoming), (60, 60, 0));
        assert!(a1.is_consistent() && a2.is_consistent());
        assert_eq!(s.balance_total() + u128::from(a2.incoming), 100);
        assert_eq!(s.lookup_record(13).unwrap().status, TxStatus::Failed);
        assert_eq!(
            kinds(&mut s, 13)[5..],
            [
                TxEventKind::SettlementInitiated,
                TxEventKind::SettlementFailed,
                TxEventKind::SettlementReversed
            ]
        );
        assert_eq!(
            kinds(&mut s, 11).last(),
            Some(&TxEventKind::SettlementConfirmed)
        );
        let confirmed = s.events(11, 1).pop().unwrap();
        assert_eq!((confirmed.entry_index, confirmed.at_us), (5, 50));
        // The same answers again change nothing.
        let mut again = Vec::new();
        s.apply_execution(6, 60, &outcomes, &mut again);
        assert_eq!(again, vec![TxResult::Duplicate, TxResult::Duplicate]);
        assert_eq!(s.account(ParticipantId(1)).balance, 40);
    }
}
