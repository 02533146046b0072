//! Snapshot bytes of a [`ShardState`] (`GroupState::snapshot`/`restore`).
//!
//! Deterministic: the same state gives the same bytes on every replica
//! (maps written sorted by key, queues in their order). A version byte,
//! then little-endian fixed-size fields; the snapshot store checksums the
//! file. Decoding refuses damage with an error, never a panic, and checks
//! the cross-references (records ↔ open cycles ↔ cycle notes) that the
//! live state relies on. The waiting queues are derived from the records.

use settle_codec::tx::{CandidateProblem, DeferReason};
use settle_codec::{Currency, ParticipantId, Transaction, TxEventKind, TxStatus, Window};

use super::cycles::{CycleNote, DecisionFacts, Execution, OpenCycle};
use super::flows::{FlowHistory, Ring, FLOW_BUCKETS, FLOW_PARTICIPANTS_MAX};
use super::ledger::{Account, Deposit, DepositKey};
use super::reservations::{Reservations, Reserved};
use super::state::{window_slot, ExtraEvent, ShardState, TxRecord, WaitQueue, DEDUP_EVENTS_KEPT};

/// Version byte of the format (2: balances, deposits and cycles added; 3:
/// ids reserved for other shards, and the reservation counter; 4: only the
/// hot state: finished records, their keys and reserved transaction ids
/// live in the state store, see [`super::cold`]; 5: the flow history of
/// liquidity forecasts, see [`super::flows`]).
const SNAPSHOT_VERSION: u8 = 5;
/// The previous version, still read: the same without the flow history (a
/// node upgraded in place starts its history empty, bucket width default).
const SNAPSHOT_VERSION_NO_FLOWS: u8 = 4;
/// Bytes of one reserved deposit id: id 16, participant 4, currency 2,
/// amount 8, index 8, at 8.
const RESERVED_DEPOSIT_BYTES: usize = 46;
/// Bytes of one encoded record: transaction 45, accepted index 8, at 8,
/// status 1, seq 8, candidate_of 8, deferred_in 8, defer reason 9,
/// deferrals 4, settled_in 8, batch 4, receive amount 8, execution 21,
/// window 1, since 8, rolled from 1, rolls 4.
pub(super) const RECORD_BYTES: usize = 154;
/// Bytes of one expiry queue item: time 8, id 16.
const EXPIRY_BYTES: usize = 24;
/// Bytes of one extra event: kind 1, log index 8, at 8.
pub(super) const EVENT_BYTES: usize = 17;
/// Bytes of one account: participant 4, seven amounts, opened 1.
const ACCOUNT_BYTES: usize = 61;
/// Bytes of one incoming batch: cycle 8, batch 4, creditor 4, amount 8.
const INCOMING_BYTES: usize = 24;
/// Least bytes of one outgoing batch: cycle 8, batch 4, count 8.
const OUTGOING_BYTES_MIN: usize = 20;
/// Bytes of one deposit: id 16, participant 4, amount 8, index 8, at 8.
const DEPOSIT_BYTES: usize = 44;
/// Least bytes of one open cycle: id, window, index, at, two counts.
const OPEN_CYCLE_BYTES_MIN: usize = 41;
/// Bytes of one cycle note.
const NOTE_BYTES: usize = 84;
/// Bytes of one participant's flow ring: participant 4, first 8, newest 8,
/// then every bucket's flow.
const RING_BYTES: usize = 20 + 8 * FLOW_BUCKETS;

impl ShardState {
    /// The scalar fields, in the order the snapshot header writes them (and
    /// `decode_snapshot` reads them); the fingerprint folds the same ones.
    pub(super) fn counters(&self) -> [u64; 12] {
        [
            self.clock_us,
            self.last_applied_index,
            self.pending_count,
            self.submitted_total,
            self.deduped_total,
            self.conflict_total,
            self.last_applied_cycle,
            self.settled_total,
            self.queue_seq,
            self.reserved_total,
            self.rolled_total,
            u64::from(self.cold_crc),
        ]
    }

    /// Deterministic bytes of the whole state.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(
            128 + self.records.len() * (RECORD_BYTES + EXPIRY_BYTES),
        ));
        w.u8(SNAPSHOT_VERSION);
        for v in self.counters() {
            w.u64(v);
        }
        let mut records: Vec<&TxRecord> = self.records.values().collect();
        records.sort_unstable_by_key(|r| r.tx.id);
        w.u64(records.len() as u64);
        for r in records {
            w.record(r);
        }
        let mut extra: Vec<(&u128, &Vec<ExtraEvent>)> = self.extra_events.iter().collect();
        extra.sort_unstable_by_key(|(id, _)| **id);
        w.u64(extra.len() as u64);
        for (id, events) in extra {
            w.u128(*id);
            w.u32(events.len() as u32);
            for e in events {
                w.event(e);
            }
        }
        w.u64(self.accounts.len() as u64);
        for (&p, a) in &self.accounts {
            w.u32(p);
            for v in [
                a.balance,
                a.opening,
                a.deposited,
                a.credited,
                a.debited,
                a.refunded,
                a.incoming,
            ] {
                w.u64(v);
            }
            w.u8(u8::from(a.opened));
        }
        let mut deposits: Vec<(&u128, &Deposit)> = self.deposits.iter().collect();
        deposits.sort_unstable_by_key(|(id, _)| **id);
        w.u64(deposits.len() as u64);
        for (&id, d) in deposits {
            w.u128(id);
            w.u32(d.participant);
            w.u64(d.amount);
            w.u64(d.log_index);
            w.u64(d.at_us);
        }
        w.u64(self.deposit_expiry.len() as u64);
        for &(at, id) in &self.deposit_expiry {
            w.u64(at);
            w.u128(id);
        }
        w.u64(self.reserved_deposits.len() as u64);
        for (id, r) in self.reserved_deposits.iter() {
            w.u128(id);
            w.u32(r.body.participant);
            w.u16(r.body.currency);
            w.u64(r.body.amount);
            w.u64(r.log_index);
            w.u64(r.at_us);
        }
        w.u64(self.open_cycles.len() as u64);
        for (&id, c) in &self.open_cycles {
            w.u64(id);
            w.u8(codes::window_tag(c.window));
            w.u64(c.close_index);
            w.u64(c.close_at_us);
            w.u64(c.candidates.len() as u64);
            for &t in &c.candidates {
                w.u128(t);
            }
            w.u64(c.balances.len() as u64);
            for &(p, b) in &c.balances {
                w.u32(p.0);
                w.u64(b);
            }
        }
        w.u64(self.cycle_notes.len() as u64);
        for (&id, n) in &self.cycle_notes {
            w.u64(id);
            w.note(n);
            w.u64(n.refs);
        }
        w.u64(self.in_flight.len() as u64);
        for (&(cycle, batch), &(creditor, amount)) in &self.in_flight {
            w.u64(cycle);
            w.u32(batch);
            w.u32(creditor.0);
            w.u64(amount);
        }
        w.u64(self.out_flight.len() as u64);
        for (&(cycle, batch), ids) in &self.out_flight {
            w.u64(cycle);
            w.u32(batch);
            w.u64(ids.len() as u64);
            for &id in ids {
                w.u128(id);
            }
        }
        w.flows(&self.flows);
        w.0
    }

    /// The state [`ShardState::encode_snapshot`] wrote.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<ShardState, String> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_NO_FLOWS {
            return Err(format!(
                "shard snapshot version {version}, expected {SNAPSHOT_VERSION} (or {SNAPSHOT_VERSION_NO_FLOWS})"
            ));
        }
        let mut s = ShardState {
            clock_us: r.u64()?,
            last_applied_index: r.u64()?,
            pending_count: r.u64()?,
            submitted_total: r.u64()?,
            deduped_total: r.u64()?,
            conflict_total: r.u64()?,
            last_applied_cycle: r.u64()?,
            settled_total: r.u64()?,
            queue_seq: r.u64()?,
            reserved_total: r.u64()?,
            rolled_total: r.u64()?,
            cold_crc: u32::try_from(r.u64()?)
                .map_err(|_| "shard snapshot: store checksum beyond 32 bits".to_string())?,
            ..ShardState::default()
        };
        let count = r.count(RECORD_BYTES)?;
        s.records.reserve(count);
        for _ in 0..count {
            let record = r.record()?;
            let tx = record.tx;
            if s.records.insert(tx.id, record).is_some() {
                return Err(format!("shard snapshot lists transaction {} twice", tx.id));
            }
        }
        let count = r.count(16 + 4)?;
        for _ in 0..count {
            let id = r.u128()?;
            let n = r.u32()? as usize;
            if n > DEDUP_EVENTS_KEPT || n * EVENT_BYTES > r.remaining() {
                return Err(format!(
                    "shard snapshot: {n} extra events for transaction {id}"
                ));
            }
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                events.push(r.event()?);
            }
            if s.extra_events.insert(id, events).is_some() {
                return Err(format!(
                    "shard snapshot lists events of transaction {id} twice"
                ));
            }
        }
        let count = r.count(ACCOUNT_BYTES)?;
        for _ in 0..count {
            let p = r.u32()?;
            let account = Account {
                balance: r.u64()?,
                opening: r.u64()?,
                deposited: r.u64()?,
                credited: r.u64()?,
                debited: r.u64()?,
                refunded: r.u64()?,
                incoming: r.u64()?,
                opened: r.bool()?,
            };
            if !account.is_consistent() {
                return Err(format!(
                    "shard snapshot: account of participant {p} does not add up"
                ));
            }
            if s.accounts.insert(p, account).is_some() {
                return Err(format!("shard snapshot lists participant {p} twice"));
            }
        }
        let count = r.count(DEPOSIT_BYTES)?;
        for _ in 0..count {
            let id = r.u128()?;
            let d = Deposit {
                participant: r.u32()?,
                amount: r.u64()?,
                log_index: r.u64()?,
                at_us: r.u64()?,
            };
            if s.deposits.insert(id, d).is_some() {
                return Err(format!("shard snapshot lists deposit {id} twice"));
            }
        }
        let count = r.count(EXPIRY_BYTES)?;
        for _ in 0..count {
            s.deposit_expiry.push_back((r.u64()?, r.u128()?));
        }
        let count = r.count(RESERVED_DEPOSIT_BYTES)?;
        let mut reserved = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.u128()?;
            let body = DepositKey {
                participant: r.u32()?,
                currency: r.u16()?,
                amount: r.u64()?,
            };
            let (log_index, at_us) = (r.u64()?, r.u64()?);
            reserved.push((
                id,
                Reserved {
                    body,
                    log_index,
                    at_us,
                },
            ));
        }
        s.reserved_deposits =
            Reservations::restore(reserved).map_err(|e| format!("shard snapshot: {e}"))?;
        let count = r.count(OPEN_CYCLE_BYTES_MIN)?;
        for _ in 0..count {
            let id = r.u64()?;
            let window = codes::window_from(r.u8()?)?;
            let close_index = r.u64()?;
            let close_at_us = r.u64()?;
            let n = r.count(16)?;
            let mut candidates = Vec::with_capacity(n);
            for _ in 0..n {
                candidates.push(r.u128()?);
            }
            let n = r.count(12)?;
            let mut balances = Vec::with_capacity(n);
            for _ in 0..n {
                balances.push((ParticipantId(r.u32()?), r.u64()?));
            }
            let cycle = OpenCycle {
                window,
                candidates,
                balances,
                close_index,
                close_at_us,
            };
            if s.open_cycles.insert(id, cycle).is_some() {
                return Err(format!("shard snapshot lists open cycle {id} twice"));
            }
        }
        let count = r.count(NOTE_BYTES)?;
        for _ in 0..count {
            let id = r.u64()?;
            let mut note = r.note()?;
            note.refs = r.u64()?;
            if s.cycle_notes.insert(id, note).is_some() {
                return Err(format!("shard snapshot lists cycle note {id} twice"));
            }
        }
        let count = r.count(INCOMING_BYTES)?;
        for _ in 0..count {
            let key = (r.u64()?, r.u32()?);
            let value = (ParticipantId(r.u32()?), r.u64()?);
            if s.in_flight.insert(key, value).is_some() {
                return Err(format!("shard snapshot lists incoming batch {key:?} twice"));
            }
        }
        let count = r.count(OUTGOING_BYTES_MIN)?;
        for _ in 0..count {
            let key = (r.u64()?, r.u32()?);
            let n = r.count(16)?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(r.u128()?);
            }
            if s.out_flight.insert(key, ids).is_some() {
                return Err(format!("shard snapshot lists outgoing batch {key:?} twice"));
            }
        }
        if version == SNAPSHOT_VERSION {
            s.flows = r.flows()?;
        }
        if r.pos != bytes.len() {
            return Err(format!(
                "shard snapshot has {} trailing bytes",
                bytes.len() - r.pos
            ));
        }
        s.derive_and_check()?;
        s.accounts_digest = super::fingerprint::accounts_digest(&s.accounts);
        s.records_digest = s.records.values().fold(0u64, |sum, r| {
            sum.wrapping_add(super::fingerprint::record_term(r))
        });
        Ok(s)
    }

    /// Rebuilds the waiting queues and checks every cross-reference the
    /// live state relies on (a damaged reference would panic later).
    fn derive_and_check(&mut self) -> Result<(), String> {
        let mut refs: std::collections::BTreeMap<u64, u64> = Default::default();
        let mut waiting: [Vec<(u64, u128)>; 4] = Default::default();
        for r in self.records.values() {
            if r.is_waiting() {
                waiting[window_slot(r.window)].push((r.seq, r.tx.id));
            }
            for cycle in [r.candidate_of, r.deferred_in, r.settled_in] {
                if cycle != 0 {
                    *refs.entry(cycle).or_default() += 1;
                }
            }
            if r.candidate_of != 0
                && !self
                    .open_cycles
                    .get(&r.candidate_of)
                    .is_some_and(|c| c.candidates.contains(&r.tx.id))
            {
                return Err(format!(
                    "shard snapshot: transaction {} is a candidate of cycle {} which does not list it",
                    r.tx.id, r.candidate_of
                ));
            }
        }
        for (queue, entries) in self.waiting.iter_mut().zip(waiting) {
            *queue = WaitQueue::from_unordered(entries).map_err(|seq| {
                format!("shard snapshot: two waiting transactions hold queue place {seq}")
            })?;
        }
        for (id, note) in &self.cycle_notes {
            if refs.get(id).copied().unwrap_or(0) != note.refs {
                return Err(format!(
                    "shard snapshot: cycle note {id} counts {} references, records make {}",
                    note.refs,
                    refs.get(id).copied().unwrap_or(0)
                ));
            }
        }
        if let Some(missing) = refs.keys().find(|c| !self.cycle_notes.contains_key(c)) {
            return Err(format!(
                "shard snapshot: records refer to cycle {missing} without a note"
            ));
        }
        if let Some(open) = self
            .open_cycles
            .keys()
            .find(|c| !self.cycle_notes.contains_key(c))
        {
            return Err(format!("shard snapshot: open cycle {open} has no note"));
        }
        Ok(())
    }
}

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    /// The flow history: width, untracked count, then each ring by participant.
    fn flows(&mut self, h: &FlowHistory) {
        self.u64(h.bucket_us);
        self.u64(h.untracked);
        self.u64(h.rings.len() as u64);
        for (&p, ring) in &h.rings {
            self.u32(p);
            self.u64(ring.first);
            self.u64(ring.newest);
            for &flow in ring.slots.iter() {
                self.u64(flow as u64);
            }
        }
    }

    /// One record: [`RECORD_BYTES`].
    pub(super) fn record(&mut self, r: &TxRecord) {
        self.transaction(&r.tx);
        self.u64(r.accepted_index);
        self.u64(r.accepted_at_us);
        self.u8(codes::status_tag(r.status));
        self.u64(r.seq);
        self.u64(r.candidate_of);
        self.u64(r.deferred_in);
        let (tag, value) = codes::reason_tag(r.defer_reason);
        self.u8(tag);
        self.u64(value);
        self.u32(r.deferrals);
        self.u64(r.settled_in);
        self.u32(r.batch);
        self.u64(r.receive_amount);
        let (tag, index, at, attempts) = codes::execution_tag(r.execution);
        self.u8(tag);
        self.u64(index);
        self.u64(at);
        self.u32(attempts);
        self.u8(codes::window_tag(r.window));
        self.u64(r.since_us);
        self.u8(r.rolled_from.map_or(0, |w| 1 + codes::window_tag(w)));
        self.u32(r.rolls);
    }

    /// One cycle note without its reference count.
    pub(super) fn note(&mut self, n: &CycleNote) {
        self.u8(codes::window_tag(n.window));
        self.u64(n.close_index);
        self.u64(n.close_at_us);
        let d = n.decision.unwrap_or(DecisionFacts {
            decision_index: 0,
            optimized_at_us: 0,
            decided_at_us: 0,
            achieved_at_us: 0,
            fallback: false,
        });
        self.u8(u8::from(n.decision.is_some()));
        self.u64(d.decision_index);
        self.u64(d.optimized_at_us);
        self.u64(d.decided_at_us);
        self.u64(d.achieved_at_us);
        self.u8(u8::from(d.fallback));
        self.u64(n.apply_index);
        self.u64(n.apply_at_us);
        self.u8(u8::from(n.confirmed));
    }

    /// One extra event: [`EVENT_BYTES`].
    pub(super) fn event(&mut self, e: &ExtraEvent) {
        self.u8(codes::event_tag(e.kind));
        self.u64(e.log_index);
        self.u64(e.at_us);
    }

    pub(super) fn transaction(&mut self, tx: &Transaction) {
        self.u128(tx.id);
        self.u32(tx.debtor.0);
        self.u32(tx.creditor.0);
        self.u64(tx.amount);
        self.u16(tx.send.0);
        self.u16(tx.receive.0);
        self.u8(codes::window_tag(tx.window));
        self.u64(tx.client_timestamp_us);
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// Little-endian reads that fail instead of panicking on short input.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Whether every byte was read.
    pub(super) fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub(super) fn record(&mut self) -> Result<TxRecord, String> {
        Ok(TxRecord {
            tx: self.transaction()?,
            accepted_index: self.u64()?,
            accepted_at_us: self.u64()?,
            status: codes::status_from(self.u8()?)?,
            seq: self.u64()?,
            candidate_of: self.u64()?,
            deferred_in: self.u64()?,
            defer_reason: codes::reason_from(self.u8()?, self.u64()?)?,
            deferrals: self.u32()?,
            settled_in: self.u64()?,
            batch: self.u32()?,
            receive_amount: self.u64()?,
            execution: codes::execution_from(self.u8()?, self.u64()?, self.u64()?, self.u32()?)?,
            window: codes::window_from(self.u8()?)?,
            since_us: self.u64()?,
            rolled_from: match self.u8()? {
                0 => None,
                tag => Some(codes::window_from(tag - 1)?),
            },
            rolls: self.u32()?,
        })
    }

    /// A note [`Writer::note`] wrote (its reference count 0).
    pub(super) fn note(&mut self) -> Result<CycleNote, String> {
        let window = codes::window_from(self.u8()?)?;
        let close_index = self.u64()?;
        let close_at_us = self.u64()?;
        let decided = self.bool()?;
        let facts = DecisionFacts {
            decision_index: self.u64()?,
            optimized_at_us: self.u64()?,
            decided_at_us: self.u64()?,
            achieved_at_us: self.u64()?,
            fallback: self.bool()?,
        };
        Ok(CycleNote {
            window,
            close_index,
            close_at_us,
            decision: decided.then_some(facts),
            apply_index: self.u64()?,
            apply_at_us: self.u64()?,
            confirmed: self.bool()?,
            refs: 0,
        })
    }

    pub(super) fn event(&mut self) -> Result<ExtraEvent, String> {
        Ok(ExtraEvent {
            kind: codes::event_from(self.u8()?)?,
            log_index: self.u64()?,
            at_us: self.u64()?,
        })
    }

    pub(super) fn transaction(&mut self) -> Result<Transaction, String> {
        Ok(Transaction {
            id: self.u128()?,
            debtor: ParticipantId(self.u32()?),
            creditor: ParticipantId(self.u32()?),
            amount: self.u64()?,
            send: Currency(self.u16()?),
            receive: Currency(self.u16()?),
            window: codes::window_from(self.u8()?)?,
            client_timestamp_us: self.u64()?,
        })
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| format!("shard snapshot truncated at byte {}", self.pos))?;
        self.pos = end;
        Ok(slice.try_into().expect("N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    pub(super) fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("shard snapshot: {other} is not a flag")),
        }
    }
    pub(super) fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    pub(super) fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_le_bytes(self.take()?))
    }
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    /// The history [`Writer::flows`] wrote.
    fn flows(&mut self) -> Result<FlowHistory, String> {
        let bucket_us = self.u64()?;
        if bucket_us == 0 {
            return Err("shard snapshot: flow buckets of zero width".into());
        }
        let mut h = FlowHistory::with_bucket_us(bucket_us);
        h.untracked = self.u64()?;
        let count = self.count(RING_BYTES)?;
        if count > FLOW_PARTICIPANTS_MAX {
            return Err(format!(
                "shard snapshot: flow history of {count} participants, more than {FLOW_PARTICIPANTS_MAX}"
            ));
        }
        for _ in 0..count {
            let p = self.u32()?;
            let (first, newest) = (self.u64()?, self.u64()?);
            if first > newest {
                return Err(format!(
                    "shard snapshot: flow history of participant {p} ends before it begins"
                ));
            }
            let mut slots = vec![0i64; FLOW_BUCKETS].into_boxed_slice();
            for slot in slots.iter_mut() {
                *slot = self.u64()? as i64;
            }
            let ring = Ring {
                first,
                newest,
                slots,
            };
            if h.rings.insert(p, ring).is_some() {
                return Err(format!(
                    "shard snapshot lists the flow history of participant {p} twice"
                ));
            }
        }
        Ok(h)
    }

    /// An item count, refused if the remaining bytes cannot hold that many
    /// items of at least `item_bytes` (a damaged count must not reserve
    /// gigabytes).
    fn count(&mut self, item_bytes: usize) -> Result<usize, String> {
        let count = self.u64()?;
        let room = self.remaining() / item_bytes;
        if count > room as u64 {
            return Err(format!(
                "shard snapshot: count {count} exceeds the {room} items the bytes can hold"
            ));
        }
        Ok(count as usize)
    }
}

/// Explicit codes of the enums in a snapshot: exhaustive matches both ways,
/// so a new variant in the codec fails to compile here until it gets a code.
mod codes {
    use super::*;

    pub(super) fn window_tag(w: Window) -> u8 {
        window_slot(w) as u8
    }

    pub(super) fn window_from(tag: u8) -> Result<Window, String> {
        Window::ALL
            .into_iter()
            .find(|&w| window_tag(w) == tag)
            .ok_or_else(|| format!("shard snapshot: unknown window code {tag}"))
    }

    pub(super) fn status_tag(s: TxStatus) -> u8 {
        match s {
            TxStatus::NotFound => 0,
            TxStatus::Pending => 1,
            TxStatus::Settled => 2,
            TxStatus::Deferred => 3,
            TxStatus::Failed => 4,
        }
    }

    pub(super) fn status_from(tag: u8) -> Result<TxStatus, String> {
        Ok(match tag {
            0 => TxStatus::NotFound,
            1 => TxStatus::Pending,
            2 => TxStatus::Settled,
            3 => TxStatus::Deferred,
            4 => TxStatus::Failed,
            _ => return Err(format!("shard snapshot: unknown status code {tag}")),
        })
    }

    pub(super) fn reason_tag(r: Option<DeferReason>) -> (u8, u64) {
        match r {
            None => (0, 0),
            Some(DeferReason::Liquidity { short }) => (1, short),
            Some(DeferReason::CounterpartyLimit { over_usd_cents }) => (2, over_usd_cents),
            Some(DeferReason::Cost {
                defer_cost_usd_micros,
            }) => (3, defer_cost_usd_micros),
            Some(DeferReason::Unsolvable) => (4, 0),
            Some(DeferReason::SetAside { problem }) => (5, problem as u64),
        }
    }

    pub(super) fn reason_from(tag: u8, value: u64) -> Result<Option<DeferReason>, String> {
        Ok(Some(match tag {
            0 => return Ok(None),
            1 => DeferReason::Liquidity { short: value },
            2 => DeferReason::CounterpartyLimit {
                over_usd_cents: value,
            },
            3 => DeferReason::Cost {
                defer_cost_usd_micros: value,
            },
            4 => DeferReason::Unsolvable,
            5 => DeferReason::SetAside {
                problem: CandidateProblem::ALL
                    .into_iter()
                    .find(|&p| p as u64 == value)
                    .ok_or_else(|| format!("shard snapshot: unknown candidate problem {value}"))?,
            },
            _ => return Err(format!("shard snapshot: unknown deferral code {tag}")),
        }))
    }

    pub(super) fn execution_tag(e: Execution) -> (u8, u64, u64, u32) {
        match e {
            Execution::Final => (0, 0, 0, 0),
            Execution::InFlight => (1, 0, 0, 0),
            Execution::Confirmed { log_index, at_us } => (2, log_index, at_us, 0),
            Execution::Reversed {
                log_index,
                at_us,
                attempts,
            } => (3, log_index, at_us, attempts),
        }
    }

    pub(super) fn execution_from(
        tag: u8,
        log_index: u64,
        at_us: u64,
        attempts: u32,
    ) -> Result<Execution, String> {
        Ok(match tag {
            0 => Execution::Final,
            1 => Execution::InFlight,
            2 => Execution::Confirmed { log_index, at_us },
            3 => Execution::Reversed {
                log_index,
                at_us,
                attempts,
            },
            _ => return Err(format!("shard snapshot: unknown execution code {tag}")),
        })
    }

    pub(super) fn event_tag(k: TxEventKind) -> u8 {
        match k {
            TxEventKind::TransactionSubmitted => 0,
            TxEventKind::TransactionDeduped => 1,
            TxEventKind::BatchCreated => 2,
            TxEventKind::BatchOptimized => 3,
            TxEventKind::ConsensusSubmitted => 4,
            TxEventKind::ConsensusAchieved => 5,
            TxEventKind::SettlementInitiated => 6,
            TxEventKind::SettlementConfirmed => 7,
            TxEventKind::SettlementFailed => 8,
            TxEventKind::SettlementReversed => 9,
            TxEventKind::TransactionRolled => 10,
        }
    }

    pub(super) fn event_from(tag: u8) -> Result<TxEventKind, String> {
        Ok(match tag {
            0 => TxEventKind::TransactionSubmitted,
            1 => TxEventKind::TransactionDeduped,
            2 => TxEventKind::BatchCreated,
            3 => TxEventKind::BatchOptimized,
            4 => TxEventKind::ConsensusSubmitted,
            5 => TxEventKind::ConsensusAchieved,
            6 => TxEventKind::SettlementInitiated,
            7 => TxEventKind::SettlementConfirmed,
            8 => TxEventKind::SettlementFailed,
            9 => TxEventKind::SettlementReversed,
            10 => TxEventKind::TransactionRolled,
            _ => return Err(format!("shard snapshot: unknown event code {tag}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::cycles::tests::{facts, funded};
    use crate::shard::cycles::{CycleApply, Leg};

    fn tx(id: u128, amount: u64, window: Window) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(3),
            creditor: ParticipantId(4),
            amount,
            send: Currency::EUR,
            receive: Currency::JPY,
            window,
            client_timestamp_us: 77,
        }
    }

    /// A state with every kind of part: records in each status, retries,
    /// accounts, deposits, an applied cycle (settled + deferred), an open one.
    fn sample() -> ShardState {
        let mut s = funded();
        let mut r = Vec::new();
        let txs: Vec<Transaction> = (1..=40u128)
            .map(|i| tx(i * 7919, i as u64, Window::ALL[i as usize % 4]))
            .collect();
        s.apply_submit(3, 1_000, Currency::EUR, txs.iter().copied(), &mut r);
        s.apply_submit(
            4,
            2_000,
            Currency::EUR,
            [txs[3], tx(txs[5].id, 999, Window::T1)],
            &mut r,
        );
        s.apply_deposit(
            5,
            2_100,
            Currency::USD,
            9,
            ParticipantId(1),
            Currency::USD,
            5,
        );
        s.apply_close(6, 2_200, 1, Window::Rtgs, 2);
        s.apply_cycle(
            7,
            2_300,
            &CycleApply {
                cycle_id: 1,
                decision: facts(3),
                confirm: false,
                legs: vec![
                    Leg::Settled {
                        batch: 1,
                        receive_amount: 60,
                    },
                    Leg::Deferred {
                        reason: DeferReason::Cost {
                            defer_cost_usd_micros: 44,
                        },
                    },
                ],
                credits: vec![],
                incoming: vec![(1, ParticipantId(2), 60)],
            },
        );
        s.apply_close(8, 2_400, 2, Window::T1, 3);
        s.apply_noop(9);
        s
    }

    #[test]
    fn snapshot_round_trips_and_is_canonical() {
        let mut s = sample();
        let bytes = s.encode_snapshot();
        let mut restored = ShardState::decode_snapshot(&bytes).expect("decodes");
        assert_eq!(
            restored.encode_snapshot(),
            bytes,
            "re-encoding gives the same bytes"
        );
        assert_eq!(restored.last_applied_index(), 9);
        assert_eq!(restored.clock_us(), 2_400);
        assert_eq!(restored.totals(), s.totals());
        assert_eq!(restored.len(), s.len());
        assert_eq!(restored.last_applied_cycle(), 1);
        for id in [11, 12, 13, 14, 7919 * 4, 7919 * 2] {
            assert_eq!(restored.record(id), s.record(id));
            assert_eq!(restored.events(id, 1), s.events(id, 1));
        }
        assert_eq!(
            restored.events(12, 1).len(),
            5,
            "the deferral's trail survives"
        );
        assert_eq!(restored.open_cycle(2), s.open_cycle(2));
        for w in Window::ALL {
            assert_eq!(restored.waiting_count(w), s.waiting_count(w), "{w}");
        }
        assert_eq!(
            restored.account(ParticipantId(1)),
            s.account(ParticipantId(1))
        );
        let payers: Vec<ParticipantId> = s.flow_participants().collect();
        assert!(!payers.is_empty(), "the settled leg is a flow");
        for p in payers {
            assert_eq!(restored.flow_series(p, 2_400), s.flow_series(p, 2_400));
        }
        // The restored state keeps applying like the original.
        let (mut a, mut b) = (s, restored);
        for state in [&mut a, &mut b] {
            state.apply_submit(
                10,
                3_000,
                Currency::EUR,
                [tx(1, 1, Window::T0), tx(7919, 1, Window::T1)],
                &mut Vec::new(),
            );
            state.apply_close(11, 3_100, 3, Window::Rtgs, 10);
            assert_eq!(
                state.apply_deposit(
                    12,
                    3_200,
                    Currency::USD,
                    9,
                    ParticipantId(1),
                    Currency::USD,
                    5
                ),
                settle_codec::TxResult::Duplicate
            );
            let confirm = crate::shard::BatchOutcome {
                cycle_id: 1,
                batch: 1,
                confirmed: true,
                attempts: 1,
            };
            let mut results = Vec::new();
            state.apply_execution(13, 3_300, &[confirm], &mut results);
            assert_eq!(results, vec![settle_codec::TxResult::Created]);
        }
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
    }

    #[test]
    fn a_version_4_snapshot_decodes_without_flow_history() {
        let s = sample();
        let bytes = s.encode_snapshot();
        let rings = s.flow_participants().count();
        assert!(rings > 0);
        let mut old = bytes[..bytes.len() - 24 - rings * RING_BYTES].to_vec();
        old[0] = SNAPSHOT_VERSION_NO_FLOWS;
        let restored = ShardState::decode_snapshot(&old).expect("a version 4 snapshot");
        assert_eq!(restored.flow_participants().count(), 0);
        assert_eq!(
            restored.account(ParticipantId(1)),
            s.account(ParticipantId(1))
        );
    }

    #[test]
    fn empty_state_round_trips() {
        let bytes = ShardState::new().encode_snapshot();
        let restored = ShardState::decode_snapshot(&bytes).unwrap();
        assert!(restored.is_empty());
        assert_eq!(restored.encode_snapshot(), bytes);
    }

    #[test]
    fn damaged_snapshots_are_errors_not_panics() {
        let bytes = sample().encode_snapshot();
        for cut in [0, 1, 10, 73, 81, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                ShardState::decode_snapshot(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(ShardState::decode_snapshot(&version).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(ShardState::decode_snapshot(&trailing).is_err());
        // The record count follows the version byte and twelve u64 counters.
        let mut huge_count = bytes.clone();
        huge_count[97..105].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ShardState::decode_snapshot(&huge_count).is_err());
        // The first record's window code (after id 16, parties 8, amount 8, currencies 4).
        let mut bad_window = bytes.clone();
        bad_window[105 + 36] = 200;
        assert!(ShardState::decode_snapshot(&bad_window).is_err());
        // Every single-byte flip decodes to an error or to a consistent
        // state (one whose own snapshot decodes again): never a panic.
        for i in (0..bytes.len()).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x5a;
            if let Ok(state) = ShardState::decode_snapshot(&flipped) {
                let again = state.encode_snapshot();
                let decoded = ShardState::decode_snapshot(&again);
                assert!(
                    decoded.is_ok_and(|d| d.encode_snapshot() == again),
                    "byte {i}: a decoded state re-encodes canonically"
                );
            }
        }
    }
}
