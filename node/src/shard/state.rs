//! The state of one shard: every transaction it accepted, its idempotency
//! keys, the balances of its currency, the cycles it takes part in and the
//! audit trail of each transaction.
//!
//! Changed only by the `apply_*` functions, plain functions of (state,
//! entry) → (state, results): the same log gives the same state on every
//! replica. Time comes from the leader's timestamp in the entry, never from
//! this machine's clock.
//!
//! The cycle and balance parts live in [`super::ledger`] (funding, balances)
//! and [`super::cycles`] (close, apply); snapshots in [`super::snapshot`].

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;
use settle_codec::tx::{Actor, DeferReason, EventDetail};
use settle_codec::{
    Currency, ParticipantId, Transaction, TxEvent, TxEventKind, TxResult, TxStatus, Window,
    MAX_TX_EVENTS,
};

use super::cold::{Cold, ColdError, ColdReader, KeyKind};
use super::cycles::{CycleNote, Execution, OpenCycle};
use super::flows::{FlowHistory, FlowSeries};
use super::ledger::{Account, Deposit, DepositKey};
use super::reservations::Reservations;
use super::table::{Entry, Table};
use super::GroupId;

/// Idempotency keys are kept at least this long after the transaction's last
/// state change (24 h, as promised to clients).
pub const DEDUP_WINDOW_US: u64 = 24 * 60 * 60 * 1_000_000;

/// How far ahead of the transaction being applied `apply_submit` prefetches:
/// enough for the work in between to cover a TLB and cache miss.
const PREFETCH_AHEAD: usize = 16;

/// Retries recorded per transaction: the first ones say a client retried;
/// a client retrying forever must not grow the trail.
pub const DEDUP_EVENTS_KEPT: usize = 2;

/// What the shard remembers of one accepted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRecord {
    pub tx: Transaction,
    /// Log index of the entry that accepted it (its audit entry id).
    pub accepted_index: u64,
    /// Leader timestamp of that entry.
    pub accepted_at_us: u64,
    pub status: TxStatus,
    /// Place in its window's queue, from 1: set at acceptance and again
    /// when a cycle defers it (to the back: deferred transactions must not
    /// crowd out newer ones that could settle). Cycles take the lowest first.
    pub seq: u64,
    /// The open cycle that froze it as a candidate, 0 when none.
    pub candidate_of: u64,
    /// The latest cycle that deferred it, 0 when none, and why.
    pub deferred_in: u64,
    pub defer_reason: Option<DeferReason>,
    /// Cycles that deferred it so far.
    pub deferrals: u32,
    /// The cycle that settled it, 0 when none; its batch and the amount the
    /// creditor received (in the receive currency).
    pub settled_in: u64,
    pub batch: u32,
    pub receive_amount: u64,
    /// Where its wire is, once settled.
    pub execution: Execution,
    /// The window it waits in: its own, until a deadline passed unfunded
    /// rolled it to a later one.
    pub window: Window,
    /// When it started waiting in `window` (acceptance, or its last roll):
    /// what its deadline counts from.
    pub since_us: u64,
    /// Its latest deferral rolled it, from this window; and rolls so far.
    pub rolled_from: Option<Window>,
    pub rolls: u32,
}

impl TxRecord {
    fn accepted(tx: Transaction, index: u64, at_us: u64, seq: u64) -> TxRecord {
        TxRecord {
            tx,
            accepted_index: index,
            accepted_at_us: at_us,
            status: TxStatus::Pending,
            seq,
            candidate_of: 0,
            deferred_in: 0,
            defer_reason: None,
            deferrals: 0,
            settled_in: 0,
            batch: 0,
            receive_amount: 0,
            execution: Execution::Final,
            window: tx.window,
            since_us: at_us,
            rolled_from: None,
            rolls: 0,
        }
    }

    /// The transaction as a cycle sees it: in the window it waits in now.
    pub fn candidate(&self) -> Transaction {
        Transaction {
            window: self.window,
            ..self.tx
        }
    }

    /// Waiting for a cycle of its window (not frozen in one, not finished).
    pub fn is_waiting(&self) -> bool {
        self.candidate_of == 0 && matches!(self.status, TxStatus::Pending | TxStatus::Deferred)
    }
}

/// One audit event that is not implied by the record itself (retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraEvent {
    pub kind: TxEventKind,
    pub log_index: u64,
    pub at_us: u64,
}

/// Slots per chunk of a [`WaitQueue`]: the queue grows and shrinks by whole
/// chunks, so a long queue never reallocates (no copy, no pause).
const WAIT_CHUNK: usize = 1_024;

/// The waiting transactions of one window, lowest queue place first.
///
/// Why not a sorted map: a transaction joins only with a fresh, highest
/// `seq` (at acceptance, or when a cycle defers it) and cycles take from the
/// front, so a queue keeps the order for O(1) per operation, where a
/// `BTreeMap` searched ~5 nodes per insert (a large share of apply time).
#[derive(Debug, Default)]
pub(super) struct WaitQueue {
    /// Full chunks, then a last one that may be partly filled.
    chunks: VecDeque<Vec<(u64, u128)>>,
    /// Entries of the first chunk already taken.
    head: usize,
    len: usize,
}

impl WaitQueue {
    /// Appends at the back; `seq` must exceed every queued one.
    #[inline]
    pub(super) fn push(&mut self, seq: u64, id: u128) {
        if let Some(&(last, _)) = self.chunks.back().and_then(|c| c.last()) {
            assert!(last < seq, "queue places only grow: {seq} after {last}");
        }
        match self.chunks.back_mut().filter(|c| c.len() < WAIT_CHUNK) {
            Some(chunk) => chunk.push((seq, id)),
            None => {
                let mut chunk = Vec::with_capacity(WAIT_CHUNK);
                chunk.push((seq, id));
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    /// Takes the entry with the lowest queue place.
    pub(super) fn pop_first(&mut self) -> Option<(u64, u128)> {
        let first = self.chunks.front_mut()?;
        let entry = *first.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == first.len() {
            self.head = 0;
            if first.len() == WAIT_CHUNK {
                self.chunks.pop_front();
            } else {
                // The only chunk: keep it for the next pushes.
                first.clear();
            }
        }
        Some(entry)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// A queue of `entries` given in any order (snapshot restore); `Err`
    /// names a queue place held twice.
    pub(super) fn from_unordered(mut entries: Vec<(u64, u128)>) -> Result<WaitQueue, u64> {
        entries.sort_unstable_by_key(|&(seq, _)| seq);
        let mut queue = WaitQueue::default();
        for pair in entries.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(pair[0].0);
            }
        }
        for (seq, id) in entries {
            queue.push(seq, id);
        }
        Ok(queue)
    }
}

/// The deterministic state of one shard.
#[derive(Debug, Default)]
pub struct ShardState {
    /// The largest leader timestamp applied: the shard's clock. Monotonic even
    /// if a new leader's clock is behind the old one's.
    pub(super) clock_us: u64,
    pub(super) last_applied_index: u64,
    /// Transactions not finished (waiting, in a cycle, or with a wire in
    /// flight): finished ones live in the store ([`super::cold`]).
    /// Partitioned so that growth never stalls the core (see `table`).
    pub(super) records: Table<u128, TxRecord>,
    /// The store's part: finished records, their keys, reserved ids.
    pub(super) cold: Cold,
    /// Retries of unfinished transactions, bounded per transaction by
    /// [`DEDUP_EVENTS_KEPT`].
    pub(super) extra_events: FxHashMap<u128, Vec<ExtraEvent>>,
    /// Waiting transactions per window, by queue place (`seq`, id).
    /// Derived from the records (rebuilt on snapshot restore).
    pub(super) waiting: [WaitQueue; 4],
    pub(super) pending_count: u64,
    /// The last queue place handed out (see `TxRecord::seq`).
    pub(super) queue_seq: u64,
    pub(super) submitted_total: u64,
    pub(super) deduped_total: u64,
    pub(super) conflict_total: u64,
    /// Balances of this shard's currency, by participant.
    pub(super) accounts: BTreeMap<u32, Account>,
    /// Deposit ids within the dedup window.
    pub(super) deposits: FxHashMap<u128, Deposit>,
    pub(super) deposit_expiry: VecDeque<(u64, u128)>,
    /// Cycles closed here and not yet applied.
    pub(super) open_cycles: BTreeMap<u64, OpenCycle>,
    /// Facts of every cycle a kept record refers to (reference counted).
    pub(super) cycle_notes: BTreeMap<u64, CycleNote>,
    /// The highest cycle applied here (cycles apply in id order).
    pub(super) last_applied_cycle: u64,
    /// Batches in flight on a rail whose credit this shard holds:
    /// (cycle, batch) → (creditor, amount).
    pub(super) in_flight: BTreeMap<(u64, u32), (ParticipantId, u64)>,
    /// This shard's transactions in batches in flight: (cycle, batch) → ids.
    pub(super) out_flight: BTreeMap<(u64, u32), Vec<u128>>,
    pub(super) settled_total: u64,
    /// Deposit ids this shard (their home) reserved for the shards that
    /// book them (ids of transactions are reserved in the store).
    pub(super) reserved_deposits: Reservations<DepositKey>,
    pub(super) reserved_total: u64,
    /// Transactions rolled to a later window (deadline passed unfunded).
    pub(super) rolled_total: u64,
    /// Running checksum of every write to the store (see `Cold::commit`).
    pub(super) cold_crc: u32,
    /// Running multiset hashes of the accounts and of the unfinished
    /// records (see `fingerprint`); derived, rebuilt on snapshot restore.
    pub(super) accounts_digest: u64,
    pub(super) records_digest: u64,
    /// Net flow per participant per time bucket (liquidity forecasts).
    pub(super) flows: FlowHistory,
}

/// The slot of a window in per-window tables.
pub(super) fn window_slot(w: Window) -> usize {
    match w {
        Window::Rtgs => 0,
        Window::T0 => 1,
        Window::T1 => 2,
        Window::T2 => 3,
    }
}

impl ShardState {
    pub fn new() -> Self {
        ShardState::default()
    }

    pub fn clock_us(&self) -> u64 {
        self.clock_us
    }

    pub fn last_applied_index(&self) -> u64 {
        self.last_applied_index
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Transactions accepted and not finished (waiting or frozen in a cycle).
    pub fn pending_count(&self) -> u64 {
        self.pending_count
    }

    /// Transactions of `window` waiting for a cycle (not frozen in one).
    pub fn waiting_count(&self, window: Window) -> usize {
        self.waiting[window_slot(window)].len()
    }

    pub fn settled_total(&self) -> u64 {
        self.settled_total
    }

    /// Rolls so far: transactions whose window's deadline passed unfunded.
    pub fn rolled_total(&self) -> u64 {
        self.rolled_total
    }

    pub fn record(&self, id: u128) -> Option<&TxRecord> {
        self.records.get(&id)
    }

    /// Counters: (submitted, deduped, conflicts) since the log began.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.submitted_total,
            self.deduped_total,
            self.conflict_total,
        )
    }

    /// Applies one submit entry at `log_index`, written by the leader at
    /// `leader_ts_us`, appending one result per transaction to `results`.
    ///
    /// `books` is the currency this shard books: a transaction sending it is
    /// booked here (after checking that no other shard's booking reserved
    /// its id here); one sending another currency only reserves its id here,
    /// its home shard, for the shard that will book it (see
    /// [`super::reservations`]).
    pub fn apply_submit(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        books: Currency,
        transactions: impl IntoIterator<Item = Transaction, IntoIter: Clone>,
        results: &mut Vec<TxResult>,
    ) {
        self.advance(log_index, leader_ts_us);
        let (at_us, index) = (self.clock_us, log_index);
        // The table's misses dominate: a second pass over the entry runs
        // `PREFETCH_AHEAD` transactions ahead, prefetching each id's index
        // line so that the probe finds it in cache. (Cloning the iterator of
        // a decoded entry is free; hashing an id twice costs nanoseconds.)
        let transactions = transactions.into_iter();
        let mut ahead = transactions.clone();
        for tx in ahead.by_ref().take(PREFETCH_AHEAD) {
            self.records.prefetch(Table::<u128, TxRecord>::hash(&tx.id));
        }
        for tx in transactions {
            if let Some(next) = ahead.next() {
                self.records
                    .prefetch(Table::<u128, TxRecord>::hash(&next.id));
            }
            let result = if tx.send == books {
                self.book(tx, index, at_us)
            } else {
                self.reserve(tx, index, at_us)
            };
            results.push(result);
        }
    }

    /// Books one transaction of this shard's currency.
    fn book(&mut self, tx: Transaction, index: u64, at_us: u64) -> TxResult {
        let h = Table::<u128, TxRecord>::hash(&tx.id);
        match self.records.entry_hashed(tx.id, h) {
            Entry::Vacant(slot) => {
                if let Some(key) = self.cold.key(tx.id, index, at_us) {
                    // Finished (its record in the store), or reserved here by
                    // a body that sends another currency.
                    return if key.kind == KeyKind::Booked && same_content(&key.body, &tx) {
                        self.deduped_total += 1;
                        TxResult::Duplicate
                    } else {
                        self.conflict_total += 1;
                        TxResult::Conflict
                    };
                }
                self.submitted_total += 1;
                self.queue_seq += 1;
                let seq = self.queue_seq;
                let record = TxRecord::accepted(tx, index, at_us, seq);
                self.records_digest = self
                    .records_digest
                    .wrapping_add(super::fingerprint::record_term(&record));
                slot.insert(record);
                self.waiting[window_slot(tx.window)].push(seq, tx.id);
                self.pending_count += 1;
                TxResult::Created
            }
            Entry::Occupied(existing) if same_content(&existing.tx, &tx) => {
                self.deduped_total += 1;
                let events = self.extra_events.entry(tx.id).or_default();
                if events.len() < DEDUP_EVENTS_KEPT {
                    events.push(ExtraEvent {
                        kind: TxEventKind::TransactionDeduped,
                        log_index: index,
                        at_us,
                    });
                }
                TxResult::Duplicate
            }
            Entry::Occupied(_) => {
                self.conflict_total += 1;
                TxResult::Conflict
            }
        }
    }

    /// Reserves the id of a transaction another shard books (this shard is
    /// the id's home).
    fn reserve(&mut self, tx: Transaction, index: u64, at_us: u64) -> TxResult {
        if self.records.get(&tx.id).is_some() {
            // Booked here: it sends this shard's currency, `tx` does not.
            self.conflict_total += 1;
            return TxResult::Conflict;
        }
        match self.cold.key(tx.id, index, at_us) {
            None => {
                self.cold.put_reservation(tx, index, at_us);
                self.reserved_total += 1;
                TxResult::Created
            }
            Some(key) if key.kind == KeyKind::Reserved && same_content(&key.body, &tx) => {
                TxResult::Duplicate
            }
            Some(_) => {
                self.conflict_total += 1;
                TxResult::Conflict
            }
        }
    }

    /// The body that reserved `id` here for another shard, if any.
    pub fn reservation(&mut self, id: u128) -> Option<Transaction> {
        self.cold
            .key(id, self.last_applied_index + 1, self.clock_us)
            .filter(|k| k.kind == KeyKind::Reserved)
            .map(|k| k.body)
    }

    /// Records held in memory: what the proposer bounds.
    pub fn held(&self) -> usize {
        self.records.len()
    }

    /// The bound on [`Self::held`] (from the node's memory budget).
    pub fn records_max(&self) -> usize {
        self.cold.records_max
    }

    /// A finished transaction leaves memory for the store.
    pub(super) fn finish(&mut self, id: u128, at_us: u64) {
        let record = self.records.remove(&id).expect("finished ids are records");
        self.records_digest = self
            .records_digest
            .wrapping_sub(super::fingerprint::record_term(&record));
        assert!(!record.is_waiting() && record.candidate_of == 0);
        let extra = self.extra_events.remove(&id).unwrap_or_default();
        self.cold.put_finished(&record, &extra, at_us);
        self.release_note(record.deferred_in);
        self.release_note(record.settled_in);
    }

    /// Writes the entry's cold changes to the store; `Err` if the store
    /// failed since the last call (the group must stop: see
    /// `GroupState::apply`).
    pub fn end_entry(&mut self) -> Result<(), ColdError> {
        self.cold_crc = self
            .cold
            .commit(self.last_applied_index, self.clock_us, self.cold_crc);
        match self.cold.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A participant's flow history up to `now_us` (see [`super::flows`]).
    pub fn flow_series(&self, participant: ParticipantId, now_us: u64) -> Option<FlowSeries> {
        self.flows.series(participant.0, now_us)
    }

    /// Width of the flow history's buckets.
    pub fn flow_bucket_us(&self) -> u64 {
        self.flows.bucket_us()
    }

    /// Participants with a flow history.
    pub fn flow_participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.flows.participants().map(ParticipantId)
    }

    /// Sets the width of the flow buckets of a shard that has no history yet
    /// (a fresh state; one restored from a snapshot keeps its width, so the
    /// replicas never disagree on the history once they have one).
    pub fn configure_flows(&mut self, bucket_us: u64) {
        if self.flows.is_empty() && self.flows.bucket_us() != bucket_us {
            self.flows = FlowHistory::with_bucket_us(bucket_us);
        }
    }

    /// Replaces the store (the node's RocksDB store, on open), rebuilding
    /// the key filter from it.
    pub fn attach_store(&mut self, cold: Cold) {
        self.cold = cold;
    }

    /// The cold part, leaving a store in memory in its place.
    pub fn take_cold(&mut self) -> Cold {
        std::mem::take(&mut self.cold)
    }

    /// Hands the store every write applied so far and waits until they are
    /// written. Blocks: for tests and for work off the core.
    pub fn sync_store(&mut self) -> Result<(), ColdError> {
        Ok(self.cold.sync()?)
    }

    /// Reads of finished transactions, for use off the core: they see
    /// every entry applied so far (the staged writes are handed over).
    pub fn cold_reader(&mut self) -> ColdReader {
        self.cold.hand_over();
        ColdReader::new(self.cold.store())
    }

    /// Moves the clock and the applied index forward and forgets idempotency
    /// keys (transactions, deposits) finished longer than the dedup window ago.
    pub(super) fn advance(&mut self, log_index: u64, leader_ts_us: u64) {
        assert!(
            log_index > self.last_applied_index,
            "entries apply in log order: {log_index} after {}",
            self.last_applied_index
        );
        // The previous entry's cold changes, if `end_entry` was not called
        // (unit tests drive the state directly).
        self.cold_crc = self
            .cold
            .commit(self.last_applied_index, self.clock_us, self.cold_crc);
        self.last_applied_index = log_index;
        self.clock_us = self.clock_us.max(leader_ts_us);
        while let Some(&(at, id)) = self.deposit_expiry.front() {
            if at.saturating_add(DEDUP_WINDOW_US) > self.clock_us {
                break;
            }
            self.deposit_expiry.pop_front();
            self.deposits.remove(&id);
        }
        self.reserved_deposits.expire(self.clock_us);
    }

    /// One bounded step of readying memory that applies will write (the
    /// transaction table's next slab chunk, its nearly full index
    /// partitions). Changes no content. Returns whether there may be more.
    pub fn prepare_memory(&mut self) -> bool {
        self.records.prepare()
    }

    /// Records a non-data entry (blank, membership) so the applied index moves.
    pub fn apply_noop(&mut self, log_index: u64) {
        assert!(log_index > self.last_applied_index);
        self.last_applied_index = log_index;
    }

    /// The status and audit trail of an unfinished transaction (in memory).
    /// The transaction of an unfinished (in memory) record.
    pub fn hot_tx(&self, id: u128) -> Option<&Transaction> {
        self.records.get(&id).map(|r| &r.tx)
    }

    pub fn hot_events(&self, id: u128, group: GroupId) -> Option<(TxStatus, Vec<TxEvent>)> {
        let r = self.records.get(&id)?;
        let extra = self.extra_events.get(&id).map_or(&[][..], Vec::as_slice);
        let events = trail(r, extra, &mut |c| self.cycle_notes.get(&c).copied(), group);
        Some((r.status, events))
    }

    /// The audit trail of a transaction, oldest first (empty if unknown),
    /// finished or not. `group` is this shard's group id (the log the entry
    /// ids refer to). A finished transaction is read from the store: this
    /// may touch the disk, so the shard's core uses [`Self::hot_events`] and
    /// a [`ColdReader`] off the core instead.
    pub fn events(&mut self, id: u128, group: GroupId) -> Vec<TxEvent> {
        if let Some((_, events)) = self.hot_events(id, group) {
            return events;
        }
        self.cold_reader()
            .lookup(id, group, super::visibility::Visibility::All)
            .ok()
            .flatten()
            .map_or_else(Vec::new, |(_, events)| events)
    }

    /// A transaction's record, in memory or (finished) in the store; see
    /// [`Self::events`] on reading the store.
    pub fn lookup_record(&mut self, id: u128) -> Option<TxRecord> {
        if let Some(r) = self.records.get(&id) {
            return Some(*r);
        }
        self.cold_reader().record(id).ok().flatten().map(|(r, _)| r)
    }

    /// Every record, for snapshots and digests.
    pub fn records(&self) -> impl Iterator<Item = &TxRecord> {
        self.records.values()
    }

    /// Drops one reference to a cycle's note; the note goes with the last.
    pub(super) fn release_note(&mut self, cycle: u64) {
        if cycle == 0 {
            return;
        }
        let note = self
            .cycle_notes
            .get_mut(&cycle)
            .expect("a record refers only to kept cycle notes");
        assert!(note.refs > 0);
        note.refs -= 1;
        if note.refs == 0 && !self.open_cycles.contains_key(&cycle) {
            self.cycle_notes.remove(&cycle);
        }
    }
}

/// The audit trail of a record, oldest first: what its fields imply, its
/// retries, and the cycles it took part in (`note_of` finds their facts).
pub(super) fn trail(
    r: &TxRecord,
    extra: &[ExtraEvent],
    note_of: &mut dyn FnMut(u64) -> Option<CycleNote>,
    group: GroupId,
) -> Vec<TxEvent> {
    let tx = &r.tx;
    let event = |kind, entry_index, at_us, cycle_id, actor, detail| TxEvent {
        group,
        entry_index,
        at_us,
        kind,
        cycle_id,
        batch: 0,
        amount: tx.amount,
        currency: tx.send,
        actor,
        detail,
    };
    let mut events = Vec::with_capacity(8);
    events.push(event(
        TxEventKind::TransactionSubmitted,
        r.accepted_index,
        r.accepted_at_us,
        0,
        Actor::Client,
        EventDetail::None,
    ));
    // The latest deferral (earlier ones are counted in its detail).
    if r.deferred_in != 0 {
        if let Some(note) = note_of(r.deferred_in) {
            let reason = r.defer_reason.unwrap_or(DeferReason::Unsolvable);
            let detail = EventDetail::Defer {
                reason,
                deferrals: r.deferrals,
            };
            cycle_events(&mut events, &note, r.deferred_in, group, tx, 0, detail);
            if let Some(from) = r.rolled_from {
                events.push(TxEvent {
                    group,
                    entry_index: note.apply_index,
                    at_us: note.apply_at_us,
                    kind: TxEventKind::TransactionRolled,
                    cycle_id: r.deferred_in,
                    batch: 0,
                    amount: tx.amount,
                    currency: tx.send,
                    actor: Actor::Shard,
                    detail: EventDetail::Rolled {
                        from,
                        to: r.window,
                        reason,
                    },
                });
            }
        }
    }
    if r.candidate_of != 0 {
        if let Some(note) = note_of(r.candidate_of) {
            events.push(event(
                TxEventKind::BatchCreated,
                note.close_index,
                note.close_at_us,
                r.candidate_of,
                Actor::Coordinator,
                EventDetail::Candidate { window: r.window },
            ));
        }
    }
    if r.settled_in != 0 {
        if let Some(note) = note_of(r.settled_in) {
            let detail = EventDetail::Settle {
                receive_amount: r.receive_amount,
                receive: tx.receive,
                fallback: note.decision.is_some_and(|d| d.fallback),
            };
            cycle_events(&mut events, &note, r.settled_in, group, tx, r.batch, detail);
            let base = TxEvent {
                batch: r.batch,
                ..event(
                    TxEventKind::SettlementInitiated,
                    note.apply_index,
                    note.apply_at_us,
                    r.settled_in,
                    Actor::Shard,
                    detail,
                )
            };
            events.push(base);
            match r.execution {
                Execution::Final if note.confirmed => events.push(TxEvent {
                    kind: TxEventKind::SettlementConfirmed,
                    ..base
                }),
                Execution::Final | Execution::InFlight => {}
                Execution::Confirmed { log_index, at_us } => events.push(TxEvent {
                    kind: TxEventKind::SettlementConfirmed,
                    entry_index: log_index,
                    at_us,
                    actor: Actor::Rail,
                    ..base
                }),
                Execution::Reversed {
                    log_index,
                    at_us,
                    attempts,
                } => {
                    let failed = TxEvent {
                        kind: TxEventKind::SettlementFailed,
                        entry_index: log_index,
                        at_us,
                        actor: Actor::Rail,
                        detail: EventDetail::Execution { attempts },
                        ..base
                    };
                    events.push(failed);
                    events.push(TxEvent {
                        kind: TxEventKind::SettlementReversed,
                        actor: Actor::Shard,
                        ..failed
                    });
                }
            }
        }
    }
    // Retries go where they happened in time.
    {
        for e in extra {
            let at = events
                .iter()
                .position(|x| x.at_us > e.at_us)
                .unwrap_or(events.len());
            events.insert(
                at,
                event(
                    e.kind,
                    e.log_index,
                    e.at_us,
                    0,
                    Actor::Client,
                    EventDetail::None,
                ),
            );
        }
    }
    assert!(events.len() <= MAX_TX_EVENTS);
    events
}

/// The four events of a cycle's decision about one transaction: frozen
/// at close, optimised, proposed to and made durable by the control group.
#[allow(clippy::too_many_arguments)]
fn cycle_events(
    events: &mut Vec<TxEvent>,
    note: &CycleNote,
    cycle_id: u64,
    group: GroupId,
    tx: &Transaction,
    batch: u32,
    detail: EventDetail,
) {
    let base = TxEvent {
        group,
        entry_index: note.close_index,
        at_us: note.close_at_us,
        kind: TxEventKind::BatchCreated,
        cycle_id,
        batch: 0,
        amount: tx.amount,
        currency: tx.send,
        actor: Actor::Coordinator,
        detail: EventDetail::Candidate { window: tx.window },
    };
    events.push(base);
    let Some(d) = note.decision else {
        return;
    };
    let decided = TxEvent {
        group: super::CONTROL_GROUP,
        entry_index: d.decision_index,
        batch,
        detail,
        ..base
    };
    events.push(TxEvent {
        kind: TxEventKind::BatchOptimized,
        at_us: d.optimized_at_us,
        actor: Actor::Solver,
        ..decided
    });
    events.push(TxEvent {
        kind: TxEventKind::ConsensusSubmitted,
        at_us: d.decided_at_us,
        ..decided
    });
    events.push(TxEvent {
        kind: TxEventKind::ConsensusAchieved,
        at_us: d.achieved_at_us,
        ..decided
    });
}

/// Two submissions are "the same" when everything but the client's clock
/// matches: a retry re-stamps its timestamp, and that is not a conflict.
fn same_content(a: &Transaction, b: &Transaction) -> bool {
    Transaction {
        client_timestamp_us: 0,
        ..*a
    } == Transaction {
        client_timestamp_us: 0,
        ..*b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settle_codec::{ParticipantId, Window};

    pub(crate) fn tx(id: u128, amount: u64) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount,
            send: Currency::from_code("EUR").unwrap(),
            receive: Currency::from_code("USD").unwrap(),
            window: Window::T0,
            client_timestamp_us: 5,
        }
    }

    #[test]
    fn created_then_duplicate_then_conflict() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        s.apply_submit(1, 100, Currency::EUR, [tx(1, 10), tx(2, 20)], &mut r);
        let retry = Transaction {
            client_timestamp_us: 99,
            ..tx(1, 10)
        };
        s.apply_submit(2, 200, Currency::EUR, [retry, tx(2, 21)], &mut r);
        assert_eq!(
            r,
            vec![
                TxResult::Created,
                TxResult::Created,
                TxResult::Duplicate,
                TxResult::Conflict
            ]
        );
        assert_eq!(
            s.record(2).unwrap().tx.amount,
            20,
            "a conflict never overwrites the original"
        );
        let kinds: Vec<_> = s.events(1, 2).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TxEventKind::TransactionSubmitted,
                TxEventKind::TransactionDeduped
            ]
        );
        assert_eq!(s.events(1, 2)[1].at_us, 200);
        assert_eq!(s.events(1, 2)[0].group, 2);
        assert_eq!(s.pending_count(), 2);
        assert_eq!(s.waiting_count(Window::T0), 2);
        assert_eq!(s.totals(), (2, 1, 1));
    }

    #[test]
    fn a_home_shard_orders_every_claim_on_an_id_whatever_its_currency() {
        // This shard books EUR and is the home of ids 1..=3.
        let mut s = ShardState::new();
        let mut r = Vec::new();
        let usd = Transaction {
            send: Currency::USD,
            ..tx(1, 10)
        };
        let gbp = Transaction {
            send: Currency::GBP,
            ..tx(1, 10)
        };
        // Reserved for the USD shard; a retry of it is a duplicate.
        s.apply_submit(1, 10, Currency::EUR, [usd, usd], &mut r);
        // The same id in EUR (booked here) or in GBP (reserved here): taken.
        s.apply_submit(2, 20, Currency::EUR, [tx(1, 10), gbp], &mut r);
        assert_eq!(
            r,
            vec![
                TxResult::Created,
                TxResult::Duplicate,
                TxResult::Conflict,
                TxResult::Conflict
            ]
        );
        assert!(s.record(1).is_none(), "a reservation books nothing");
        assert_eq!(s.reservation(1), Some(usd));
        assert_eq!(s.pending_count(), 0);
        // Booked here first: a reservation of the id for another shard is refused.
        r.clear();
        let gbp2 = Transaction {
            send: Currency::GBP,
            ..tx(2, 10)
        };
        s.apply_submit(3, 30, Currency::EUR, [tx(2, 10), gbp2, tx(2, 10)], &mut r);
        assert_eq!(
            r,
            vec![TxResult::Created, TxResult::Conflict, TxResult::Duplicate]
        );
        assert_eq!(s.held(), 1, "reservations are in the store, not memory");
        // The reservation lives in the store for the dedup window: a state
        // restored from a snapshot over that store still has it.
        s.end_entry().unwrap();
        let mut back = ShardState::decode_snapshot(&s.encode_snapshot()).unwrap();
        back.attach_store(super::Cold::open(s.cold_reader().store().clone(), 1 << 20).unwrap());
        assert_eq!(back.reservation(1), Some(usd));
        assert_eq!(back.encode_snapshot(), s.encode_snapshot());
        s.apply_submit(4, 10 + DEDUP_WINDOW_US, Currency::EUR, [], &mut r);
        assert_eq!(s.reservation(1), None);
    }

    #[test]
    fn duplicate_within_one_entry_is_detected() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        s.apply_submit(1, 1, Currency::EUR, [tx(7, 1), tx(7, 1), tx(7, 2)], &mut r);
        assert_eq!(
            r,
            vec![TxResult::Created, TxResult::Duplicate, TxResult::Conflict]
        );
    }

    #[test]
    fn clock_never_goes_back_and_replay_is_deterministic() {
        let entries: Vec<(u64, u64, Vec<Transaction>)> = vec![
            (1, 1_000, vec![tx(1, 1), tx(2, 2)]),
            (2, 900, vec![tx(1, 1), tx(3, 3)]),
            (4, 5_000, vec![tx(2, 9)]),
        ];
        let run = || {
            let mut s = ShardState::new();
            let mut r = Vec::new();
            for (i, ts, txs) in &entries {
                s.apply_submit(*i, *ts, Currency::EUR, txs.iter().copied(), &mut r);
            }
            (s, r)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(ra, rb);
        assert_eq!(a.clock_us(), 5_000);
        assert_eq!(
            a.record(3).unwrap().accepted_at_us,
            1_000,
            "clock held at 1,000 when the leader said 900"
        );
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
    }

    #[test]
    #[should_panic(expected = "entries apply in log order")]
    fn applying_out_of_order_is_an_invariant_violation() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        s.apply_submit(5, 1, Currency::EUR, [tx(1, 1)], &mut r);
        s.apply_submit(5, 2, Currency::EUR, [tx(2, 1)], &mut r);
    }

    #[test]
    fn wait_queue_is_first_in_first_out_across_chunks() {
        let mut q = WaitQueue::default();
        let mut model = VecDeque::new();
        let mut seq = 0;
        // Bursts of pushes and pops that cross chunk boundaries and empty it.
        for round in 0..40u64 {
            for _ in 0..(round * 97) % 3_000 {
                seq += 1 + round % 3;
                q.push(seq, u128::from(seq) << 64);
                model.push_back((seq, u128::from(seq) << 64));
            }
            for _ in 0..(round * 131) % 3_500 {
                assert_eq!(q.pop_first(), model.pop_front());
            }
            assert_eq!(q.len(), model.len());
        }
        while let Some(e) = model.pop_front() {
            assert_eq!(q.pop_first(), Some(e));
        }
        assert_eq!(q.pop_first(), None);
        assert_eq!(q.len(), 0);
        q.push(seq + 1, 1);
        assert_eq!(q.pop_first(), Some((seq + 1, 1)));

        let mut q = WaitQueue::from_unordered(vec![(9, 3), (2, 1), (5, 2)]).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop_first()).collect();
        assert_eq!(order, vec![(2, 1), (5, 2), (9, 3)]);
        assert_eq!(
            WaitQueue::from_unordered(vec![(4, 1), (7, 2), (4, 3)]).err(),
            Some(4)
        );
    }

    #[test]
    #[should_panic(expected = "queue places only grow")]
    fn wait_queue_rejects_an_older_place() {
        let mut q = WaitQueue::default();
        for seq in 1..=WAIT_CHUNK as u64 {
            q.push(seq, 0);
        }
        // The check holds across a chunk boundary too.
        q.push(WAIT_CHUNK as u64, 0);
    }

    #[test]
    fn a_slab_cell_costs_no_more_than_its_record() {
        // The table stores `Option<(id, record)>`: the record's enums leave
        // a niche for `None`, so freed-slot marking is free.
        assert_eq!(
            std::mem::size_of::<Option<(u128, TxRecord)>>(),
            std::mem::size_of::<(u128, TxRecord)>()
        );
    }

    #[test]
    fn dedup_events_are_bounded() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        for i in 1..100 {
            s.apply_submit(i, i, Currency::EUR, [tx(1, 1)], &mut r);
        }
        assert_eq!(s.events(1, 1).len(), 1 + DEDUP_EVENTS_KEPT);
    }
}
