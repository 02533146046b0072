//! The state of one shard: every transaction it accepted, its idempotency
//! keys and the audit events of intake.
//!
//! Changed only by [`ShardState::apply_submit`], a plain function of (state,
//! entry) → (state, results): the same log gives the same state on every
//! replica. Time comes from the leader's timestamp in the entry, never from
//! this machine's clock.

use std::collections::VecDeque;

use super::table::Table;
use rustc_hash::FxHashMap;
use settle_codec::{Transaction, TxEvent, TxEventKind, TxResult, TxStatus, MAX_TX_EVENTS};

/// Idempotency keys are kept at least this long after the transaction's last
/// state change (24 h, as promised to clients).
pub const DEDUP_WINDOW_US: u64 = 24 * 60 * 60 * 1_000_000;

/// What the shard remembers of one accepted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRecord {
    pub tx: Transaction,
    /// Log index of the entry that accepted it (its audit entry id).
    pub accepted_index: u64,
    /// Leader timestamp of that entry.
    pub accepted_at_us: u64,
    pub status: TxStatus,
}

/// One audit event that is not implied by the record itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraEvent {
    pub kind: TxEventKind,
    pub log_index: u64,
    pub at_us: u64,
}

/// The deterministic state of one shard.
#[derive(Debug, Default)]
pub struct ShardState {
    /// The largest leader timestamp applied: the shard's clock. Monotonic even
    /// if a new leader's clock is behind the old one's.
    clock_us: u64,
    last_applied_index: u64,
    /// Partitioned so that growth never stalls the core (see `table`).
    records: Table<u128, TxRecord>,
    /// Ids in the order they became expirable, with that time.
    expiry: VecDeque<(u64, u128)>,
    /// Events beyond acceptance (dedups now; cycle events later), bounded per
    /// transaction by `MAX_TX_EVENTS`.
    extra_events: FxHashMap<u128, Vec<ExtraEvent>>,
    pending_count: u64,
    submitted_total: u64,
    deduped_total: u64,
    conflict_total: u64,
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

    pub fn pending_count(&self) -> u64 {
        self.pending_count
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
    pub fn apply_submit(
        &mut self,
        log_index: u64,
        leader_ts_us: u64,
        transactions: impl IntoIterator<Item = Transaction>,
        results: &mut Vec<TxResult>,
    ) {
        self.advance(log_index, leader_ts_us);
        let (at_us, index) = (self.clock_us, log_index);
        for tx in transactions {
            let result = match self.records.get(&tx.id) {
                None => {
                    self.records.insert(
                        tx.id,
                        TxRecord {
                            tx,
                            accepted_index: index,
                            accepted_at_us: at_us,
                            status: TxStatus::Pending,
                        },
                    );
                    self.pending_count += 1;
                    self.submitted_total += 1;
                    TxResult::Created
                }
                Some(existing) if same_content(&existing.tx, &tx) => {
                    self.deduped_total += 1;
                    let events = self.extra_events.entry(tx.id).or_default();
                    // A client retrying forever must not grow memory: keep the first few.
                    if events.len() < MAX_TX_EVENTS - 1 {
                        events.push(ExtraEvent {
                            kind: TxEventKind::TransactionDeduped,
                            log_index: index,
                            at_us,
                        });
                    }
                    TxResult::Duplicate
                }
                Some(_) => {
                    self.conflict_total += 1;
                    TxResult::Conflict
                }
            };
            results.push(result);
        }
    }

    /// Moves the clock and the applied index forward and forgets idempotency
    /// keys of finished transactions older than the dedup window.
    fn advance(&mut self, log_index: u64, leader_ts_us: u64) {
        assert!(
            log_index > self.last_applied_index,
            "entries apply in log order: {log_index} after {}",
            self.last_applied_index
        );
        self.last_applied_index = log_index;
        self.clock_us = self.clock_us.max(leader_ts_us);
        while let Some(&(expirable_at, id)) = self.expiry.front() {
            if expirable_at.saturating_add(DEDUP_WINDOW_US) > self.clock_us {
                break;
            }
            self.expiry.pop_front();
            self.records.remove(&id);
            self.extra_events.remove(&id);
        }
    }

    /// Records a non-data entry (blank, membership) so the applied index moves.
    pub fn apply_noop(&mut self, log_index: u64) {
        assert!(log_index > self.last_applied_index);
        self.last_applied_index = log_index;
    }

    /// The audit trail of a transaction, oldest first (empty if unknown).
    pub fn events(&self, id: u128) -> Vec<TxEvent> {
        let Some(record) = self.records.get(&id) else {
            return Vec::new();
        };
        let mut events = Vec::with_capacity(1 + self.extra_events.get(&id).map_or(0, Vec::len));
        events.push(TxEvent {
            entry_index: record.accepted_index,
            at_us: record.accepted_at_us,
            kind: TxEventKind::TransactionSubmitted,
            cycle_id: 0,
        });
        if let Some(extra) = self.extra_events.get(&id) {
            events.extend(extra.iter().map(|e| TxEvent {
                entry_index: e.log_index,
                at_us: e.at_us,
                kind: e.kind,
                cycle_id: 0,
            }));
        }
        assert!(events.len() <= MAX_TX_EVENTS);
        events
    }

    /// Every record, for snapshots and digests.
    pub fn records(&self) -> impl Iterator<Item = &TxRecord> {
        self.records.values()
    }
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
    use settle_codec::{Currency, ParticipantId, Window};

    fn tx(id: u128, amount: u64) -> Transaction {
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
        s.apply_submit(1, 100, [tx(1, 10), tx(2, 20)], &mut r);
        let retry = Transaction {
            client_timestamp_us: 99,
            ..tx(1, 10)
        };
        s.apply_submit(2, 200, [retry, tx(2, 21)], &mut r);
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
        let kinds: Vec<_> = s.events(1).iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TxEventKind::TransactionSubmitted,
                TxEventKind::TransactionDeduped
            ]
        );
        assert_eq!(s.events(1)[1].at_us, 200);
        assert_eq!(s.pending_count(), 2);
        assert_eq!(s.totals(), (2, 1, 1));
    }

    #[test]
    fn duplicate_within_one_entry_is_detected() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        s.apply_submit(1, 1, [tx(7, 1), tx(7, 1), tx(7, 2)], &mut r);
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
                s.apply_submit(*i, *ts, txs.iter().copied(), &mut r);
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
        let mut ka: Vec<_> = a
            .records()
            .copied()
            .map(|r| (r.tx.id, r.accepted_index))
            .collect();
        let mut kb: Vec<_> = b
            .records()
            .copied()
            .map(|r| (r.tx.id, r.accepted_index))
            .collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb);
    }

    #[test]
    #[should_panic(expected = "entries apply in log order")]
    fn applying_out_of_order_is_an_invariant_violation() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        s.apply_submit(5, 1, [tx(1, 1)], &mut r);
        s.apply_submit(5, 2, [tx(2, 1)], &mut r);
    }

    #[test]
    fn dedup_events_are_bounded() {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        for i in 1..100 {
            s.apply_submit(i, i, [tx(1, 1)], &mut r);
        }
        assert_eq!(s.events(1).len(), MAX_TX_EVENTS);
    }
}

// ---- Snapshot encoding (added by the Raft storage glue: `GroupState::snapshot`/`restore`). ----

/// Version byte of [`ShardState::encode_snapshot`]'s format.
const SNAPSHOT_VERSION: u8 = 1;
/// Bytes of one encoded record: id 16, debtor 4, creditor 4, amount 8, send 2,
/// receive 2, window 1, client ts 8, accepted index 8, accepted at 8, status 1.
const SNAPSHOT_RECORD_BYTES: usize = 62;
/// Bytes of one expiry queue item: time 8, id 16.
const SNAPSHOT_EXPIRY_BYTES: usize = 24;
/// Bytes of one extra event: kind 1, log index 8, at 8.
const SNAPSHOT_EVENT_BYTES: usize = 17;

impl ShardState {
    /// Deterministic bytes of the whole state: the same state gives the same
    /// bytes on every replica (records and events sorted by id, the expiry
    /// queue in its order). Format: a version byte, then little-endian
    /// fixed-size fields; the snapshot store checksums the file.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.records.len() * (SNAPSHOT_RECORD_BYTES + SNAPSHOT_EXPIRY_BYTES),
        );
        out.push(SNAPSHOT_VERSION);
        for v in [
            self.clock_us,
            self.last_applied_index,
            self.pending_count,
            self.submitted_total,
            self.deduped_total,
            self.conflict_total,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut records: Vec<&TxRecord> = self.records.values().collect();
        records.sort_unstable_by_key(|r| r.tx.id);
        out.extend_from_slice(&(records.len() as u64).to_le_bytes());
        for r in records {
            let tx = &r.tx;
            out.extend_from_slice(&tx.id.to_le_bytes());
            out.extend_from_slice(&tx.debtor.0.to_le_bytes());
            out.extend_from_slice(&tx.creditor.0.to_le_bytes());
            out.extend_from_slice(&tx.amount.to_le_bytes());
            out.extend_from_slice(&tx.send.0.to_le_bytes());
            out.extend_from_slice(&tx.receive.0.to_le_bytes());
            out.push(snapshot_codes::window_tag(tx.window));
            out.extend_from_slice(&tx.client_timestamp_us.to_le_bytes());
            out.extend_from_slice(&r.accepted_index.to_le_bytes());
            out.extend_from_slice(&r.accepted_at_us.to_le_bytes());
            out.push(snapshot_codes::status_tag(r.status));
        }
        out.extend_from_slice(&(self.expiry.len() as u64).to_le_bytes());
        for &(at, id) in &self.expiry {
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        let mut extra: Vec<(&u128, &Vec<ExtraEvent>)> = self.extra_events.iter().collect();
        extra.sort_unstable_by_key(|(id, _)| **id);
        out.extend_from_slice(&(extra.len() as u64).to_le_bytes());
        for (id, events) in extra {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(events.len() as u32).to_le_bytes());
            for e in events {
                out.push(snapshot_codes::event_tag(e.kind));
                out.extend_from_slice(&e.log_index.to_le_bytes());
                out.extend_from_slice(&e.at_us.to_le_bytes());
            }
        }
        out
    }

    /// The state [`ShardState::encode_snapshot`] wrote. Any damage or
    /// unknown code is an error, never a panic.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<ShardState, String> {
        let mut r = snapshot_codes::Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!(
                "shard snapshot version {version}, expected {SNAPSHOT_VERSION}"
            ));
        }
        let mut state = ShardState {
            clock_us: r.u64()?,
            last_applied_index: r.u64()?,
            pending_count: r.u64()?,
            submitted_total: r.u64()?,
            deduped_total: r.u64()?,
            conflict_total: r.u64()?,
            ..ShardState::default()
        };
        let count = r.count(SNAPSHOT_RECORD_BYTES)?;
        state.records.reserve(count);
        for _ in 0..count {
            let tx = Transaction {
                id: r.u128()?,
                debtor: settle_codec::ParticipantId(r.u32()?),
                creditor: settle_codec::ParticipantId(r.u32()?),
                amount: r.u64()?,
                send: settle_codec::Currency(r.u16()?),
                receive: settle_codec::Currency(r.u16()?),
                window: snapshot_codes::window_from(r.u8()?)?,
                client_timestamp_us: r.u64()?,
            };
            let record = TxRecord {
                tx,
                accepted_index: r.u64()?,
                accepted_at_us: r.u64()?,
                status: snapshot_codes::status_from(r.u8()?)?,
            };
            if state.records.insert(tx.id, record).is_some() {
                return Err(format!("shard snapshot lists transaction {} twice", tx.id));
            }
        }
        let count = r.count(SNAPSHOT_EXPIRY_BYTES)?;
        state.expiry.reserve(count);
        for _ in 0..count {
            state.expiry.push_back((r.u64()?, r.u128()?));
        }
        let count = r.count(16 + 4)?;
        for _ in 0..count {
            let id = r.u128()?;
            let n = r.u32()? as usize;
            if n > MAX_TX_EVENTS || n * SNAPSHOT_EVENT_BYTES > r.remaining() {
                return Err(format!(
                    "shard snapshot: {n} extra events for transaction {id}"
                ));
            }
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                events.push(ExtraEvent {
                    kind: snapshot_codes::event_from(r.u8()?)?,
                    log_index: r.u64()?,
                    at_us: r.u64()?,
                });
            }
            if state.extra_events.insert(id, events).is_some() {
                return Err(format!(
                    "shard snapshot lists events of transaction {id} twice"
                ));
            }
        }
        if r.pos != bytes.len() {
            return Err(format!(
                "shard snapshot has {} trailing bytes",
                bytes.len() - r.pos
            ));
        }
        Ok(state)
    }
}

/// Explicit codes of the enums in a snapshot: exhaustive matches both ways,
/// so a new variant in the codec fails to compile here until it gets a code.
mod snapshot_codes {
    use settle_codec::{TxEventKind, TxStatus, Window};

    pub(super) fn window_tag(w: Window) -> u8 {
        match w {
            Window::Rtgs => 0,
            Window::T0 => 1,
            Window::T1 => 2,
            Window::T2 => 3,
        }
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
            _ => return Err(format!("shard snapshot: unknown event code {tag}")),
        })
    }

    /// Little-endian reads that fail instead of panicking on short input.
    pub(super) struct Reader<'a> {
        pub bytes: &'a [u8],
        pub pos: usize,
    }

    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
            let end = self.pos + N;
            let slice = self
                .bytes
                .get(self.pos..end)
                .ok_or_else(|| format!("shard snapshot truncated at byte {}", self.pos))?;
            self.pos = end;
            Ok(slice.try_into().expect("N bytes"))
        }
        pub fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take::<1>()?[0])
        }
        pub fn u16(&mut self) -> Result<u16, String> {
            Ok(u16::from_le_bytes(self.take()?))
        }
        pub fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_le_bytes(self.take()?))
        }
        pub fn u64(&mut self) -> Result<u64, String> {
            Ok(u64::from_le_bytes(self.take()?))
        }
        pub fn u128(&mut self) -> Result<u128, String> {
            Ok(u128::from_le_bytes(self.take()?))
        }
        pub fn remaining(&self) -> usize {
            self.bytes.len() - self.pos
        }
        /// An item count, refused if the remaining bytes cannot hold that
        /// many items of at least `item_bytes` (a damaged count must not
        /// reserve gigabytes).
        pub fn count(&mut self, item_bytes: usize) -> Result<usize, String> {
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
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use settle_codec::{Currency, ParticipantId, Window};

    fn tx(id: u128, amount: u64, window: Window) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(3),
            creditor: ParticipantId(4),
            amount,
            send: Currency::from_code("EUR").unwrap(),
            receive: Currency::from_code("JPY").unwrap(),
            window,
            client_timestamp_us: 77,
        }
    }

    fn sample() -> ShardState {
        let mut s = ShardState::new();
        let mut r = Vec::new();
        let txs: Vec<Transaction> = (1..=40u128)
            .map(|i| tx(i * 7919, i as u64, Window::ALL[i as usize % 4]))
            .collect();
        s.apply_submit(1, 1_000, txs.iter().copied(), &mut r);
        s.apply_submit(2, 2_000, [txs[3], tx(txs[5].id, 999, Window::T1)], &mut r);
        s.apply_noop(3);
        s
    }

    #[test]
    fn snapshot_round_trips_and_is_canonical() {
        let s = sample();
        let bytes = s.encode_snapshot();
        let restored = ShardState::decode_snapshot(&bytes).expect("decodes");
        assert_eq!(
            restored.encode_snapshot(),
            bytes,
            "re-encoding gives the same bytes"
        );
        assert_eq!(restored.last_applied_index(), 3);
        assert_eq!(restored.clock_us(), 2_000);
        assert_eq!(restored.totals(), s.totals());
        assert_eq!(restored.len(), 40);
        assert_eq!(restored.record(7919 * 4), s.record(7919 * 4));
        assert_eq!(restored.events(7919 * 4), s.events(7919 * 4));
        assert_eq!(
            restored.events(7919 * 4).len(),
            2,
            "the dedup event survives"
        );
        // The restored state keeps applying like the original.
        let (mut a, mut b) = (s, restored);
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        a.apply_submit(
            4,
            3_000,
            [tx(1, 1, Window::T0), tx(7919, 1, Window::T1)],
            &mut ra,
        );
        b.apply_submit(
            4,
            3_000,
            [tx(1, 1, Window::T0), tx(7919, 1, Window::T1)],
            &mut rb,
        );
        assert_eq!(ra, rb);
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
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
        for cut in [0, 1, 10, 49, 57, bytes.len() / 2, bytes.len() - 1] {
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
        let mut huge_count = bytes.clone();
        huge_count[49..57].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ShardState::decode_snapshot(&huge_count).is_err());
        // The first record's window code (offset 49 + 8 + 36).
        let mut bad_window = bytes;
        bad_window[49 + 8 + 36] = 200;
        assert!(ShardState::decode_snapshot(&bad_window).is_err());
    }
}
