//! The cold part of a shard's state: what the next cycles do not need, kept
//! in the state store ([`settle_store`]) instead of memory.
//!
//! - A transaction leaves memory when it is finished (settled and final or
//!   confirmed, or failed and reversed): its record and retry events go to
//!   [`Column::Ledger`] (kept for the retention), its idempotency key to
//!   [`Column::Keys`] (kept for the dedup window, by leader time).
//! - An id this shard reserves for another shard (it is the id's home) goes
//!   to [`Column::Keys`] at once: it never changes.
//! - Facts of every cycle applied here go to [`Column::Cycles`], so a cold
//!   record's trail can be told in full.
//!
//! Writes are staged entry by entry and handed, [`WRITE_BEHIND_OPS`] at a
//! time with the index of the last entry they cover
//! ([`settle_store::META_APPLIED`]), to the shard's writer thread
//! ([`WriteBehind`]): random ids make every key land somewhere else in the
//! store, and inserting them on the core, one entry at a time, cost about
//! 40 % of a node's intake. The keys of staged and handed-over batches stay
//! here until written, so the core's lookups never wait for the writer;
//! readers off the core read through the writer ([`Cold::store`]), which
//! waits for what was handed over, and the core hands over what it staged
//! before it gives them the store ([`Cold::hand_over`]).
//!
//! Why lookups compare log indexes: the store may be ahead of the snapshot
//! the shard restarted from (writes after it, flushed before the crash).
//! Replaying the log from the snapshot then meets keys written by entries
//! it has not replayed yet. A key written by the entry being applied or a
//! later one is not there yet, as far as this entry is concerned: the
//! replay writes it again, identically. So the answer to every lookup is
//! the same as when the entry was first applied.
//!
//! Lookups of new ids stay in memory ([`KeyFilter`]); the store is read only
//! when the filter may hold the id (a retry, or ~1 % false positives).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use settle_codec::{Transaction, TxEvent, TxStatus};
use settle_store::{
    Batch, Column, MemStore, Op, Store, StoreError, WriteBehind, META_APPLIED, WRITE_BEHIND_OPS,
};

use super::cycles::CycleNote;
use super::filter::KeyFilter;
use super::snapshot::{Reader, Writer, EVENT_BYTES, RECORD_BYTES};
use super::state::{trail, ExtraEvent, TxRecord, DEDUP_EVENTS_KEPT, DEDUP_WINDOW_US};
use super::visibility::Visibility;
use super::GroupId;

/// Bytes of key filter a shard keeps by default (a few generations).
pub const KEY_FILTER_BYTES_DEFAULT: usize = 128 << 20;

/// Bytes of a [`Column::Keys`] value: expiry 8, kind 1, index 8, body 45.
const KEY_VALUE_BYTES: usize = 62;

/// What a cold idempotency key says the id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Booked here; its record is in the ledger.
    Booked,
    /// Reserved here for the shard that books it.
    Reserved,
}

/// An idempotency key in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdKey {
    pub kind: KeyKind,
    /// Log index of the entry that accepted (or reserved) it.
    pub index: u64,
    /// Leader time at which it leaves the dedup window.
    pub expires_at: u64,
    /// The transaction as first accepted.
    pub body: Transaction,
}

/// The columns whose keys begin with a transaction id ([`key_bytes`],
/// [`versioned`]): a sealed store hides those ids
/// ([`settle_store::SealedStore`]). The lookups below read one id's
/// versions at a time, which a hidden id keeps in order.
pub const ID_COLUMNS: [Column; 2] = [Column::Keys, Column::Ledger];

const _: () = assert!(settle_store::ID_BYTES == 16, "a key begins with a u128 id");

fn key_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

/// Keys and ledger records are versioned by the log index that wrote them:
/// an id reused after its dedup window gets a new version, and a replay
/// from an older snapshot reads the version it saw the first time.
fn versioned(id: u128, accepted_index: u64) -> [u8; 24] {
    let mut k = [0; 24];
    k[..16].copy_from_slice(&id.to_be_bytes());
    k[16..].copy_from_slice(&accepted_index.to_be_bytes());
    k
}

fn ledger_key(id: u128, accepted_index: u64) -> [u8; 24] {
    versioned(id, accepted_index)
}

fn encode_key(k: &ColdKey) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(KEY_VALUE_BYTES));
    w.u64(k.expires_at);
    w.u8(match k.kind {
        KeyKind::Booked => 1,
        KeyKind::Reserved => 2,
    });
    w.u64(k.index);
    w.transaction(&k.body);
    debug_assert_eq!(w.0.len(), KEY_VALUE_BYTES);
    w.0
}

fn decode_key(bytes: &[u8]) -> Result<ColdKey, String> {
    let mut r = Reader::new(bytes);
    let expires_at = r.u64()?;
    let kind = match r.u8()? {
        1 => KeyKind::Booked,
        2 => KeyKind::Reserved,
        other => return Err(format!("key kind {other}")),
    };
    let key = ColdKey {
        kind,
        index: r.u64()?,
        expires_at,
        body: r.transaction()?,
    };
    if !r.done() {
        return Err("trailing bytes after a key".into());
    }
    Ok(key)
}

/// A finished record as the ledger holds it.
pub fn encode_ledger(record: &TxRecord, extra: &[ExtraEvent]) -> Vec<u8> {
    assert!(extra.len() <= DEDUP_EVENTS_KEPT);
    let mut w = Writer(Vec::with_capacity(
        RECORD_BYTES + 1 + extra.len() * EVENT_BYTES,
    ));
    w.record(record);
    w.u8(extra.len() as u8);
    for e in extra {
        w.event(e);
    }
    w.0
}

pub fn decode_ledger(bytes: &[u8]) -> Result<(TxRecord, Vec<ExtraEvent>), String> {
    let mut r = Reader::new(bytes);
    let record = r.record()?;
    let n = r.u8()? as usize;
    if n > DEDUP_EVENTS_KEPT {
        return Err(format!("{n} retry events in a ledger record"));
    }
    let extra = (0..n).map(|_| r.event()).collect::<Result<Vec<_>, _>>()?;
    if !r.done() {
        return Err("trailing bytes after a ledger record".into());
    }
    Ok((record, extra))
}

fn encode_note(note: &CycleNote) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(96));
    w.note(note);
    w.0
}

fn decode_note(bytes: &[u8]) -> Result<CycleNote, String> {
    let mut r = Reader::new(bytes);
    let note = r.note()?;
    if !r.done() {
        return Err("trailing bytes after a cycle note".into());
    }
    Ok(note)
}

/// Why the cold part could not answer: the shard's group stops rather than
/// guess (see `GroupState::apply`).
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state store: {what} does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
}

/// The shard's handle on its store (see the module docs).
pub struct Cold {
    behind: Arc<WriteBehind>,
    filter: KeyFilter,
    filter_bytes: usize,
    /// Keys of the batch being staged (not handed over yet).
    staged: FxHashMap<u128, ColdKey>,
    /// Keys of the batches handed over and not written yet, by batch number.
    in_flight: VecDeque<(u64, FxHashMap<u128, ColdKey>)>,
    batch: Batch,
    /// Operations of `batch` staged before the entry being applied.
    entry_first_op: usize,
    /// The last entry whose writes are all staged or handed over.
    staged_index: u64,
    /// Operations staged before they are handed over ([`WRITE_BEHIND_OPS`];
    /// tests hand over smaller batches).
    pub(super) hand_over_ops: usize,
    /// The first error met since the last [`Cold::take_error`].
    error: Option<ColdError>,
    /// Store reads made for lookups the filter could not answer.
    pub(super) store_reads: u64,
    /// Most unfinished transactions the shard holds in memory (the
    /// proposer refuses more: "overloaded"); from the memory budget.
    pub records_max: usize,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold")
            .field("filter_keys", &self.filter.keys())
            .field("staged", &self.staged.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl Default for Cold {
    /// A store in memory (unit tests, and a state not attached to disk yet).
    fn default() -> Self {
        Cold::empty(Arc::new(MemStore::new()))
    }
}

impl Cold {
    fn empty(store: Arc<dyn Store>) -> Cold {
        Cold::empty_behind(Arc::new(WriteBehind::new(store, "shard")))
    }

    fn empty_behind(behind: Arc<WriteBehind>) -> Cold {
        Cold {
            behind,
            filter: KeyFilter::new(KEY_FILTER_BYTES_DEFAULT),
            filter_bytes: KEY_FILTER_BYTES_DEFAULT,
            staged: FxHashMap::default(),
            in_flight: VecDeque::new(),
            batch: Batch::new(),
            entry_first_op: 0,
            staged_index: 0,
            hand_over_ops: WRITE_BEHIND_OPS,
            error: None,
            store_reads: 0,
            records_max: super::proposer::SHARD_RECORDS_MAX,
        }
    }

    /// The cold part over `store` (written behind the core by a thread of
    /// its own), its key filter rebuilt from the keys the store holds.
    pub fn open(store: Arc<dyn Store>, filter_bytes: usize) -> Result<Cold, ColdError> {
        Cold::open_as(store, filter_bytes, "shard")
    }

    /// [`Cold::open`], its writer thread named `settle-wb-{name}`.
    pub fn open_as(
        store: Arc<dyn Store>,
        filter_bytes: usize,
        name: &str,
    ) -> Result<Cold, ColdError> {
        Cold::open_behind(Arc::new(WriteBehind::new(store, name)), filter_bytes)
    }

    fn open_behind(behind: Arc<WriteBehind>, filter_bytes: usize) -> Result<Cold, ColdError> {
        let mut cold = Cold::empty_behind(behind);
        cold.filter = KeyFilter::new(filter_bytes);
        cold.filter_bytes = filter_bytes;
        let mut bad = None;
        let filter = &mut cold.filter;
        cold.behind.scan(
            Column::Keys,
            &mut |k, v| match (<[u8; 24]>::try_from(k), decode_key(v)) {
                (Ok(versioned), Ok(key)) => {
                    let id = u128::from_be_bytes(versioned[..16].try_into().expect("16 bytes"));
                    filter.insert(id, key.expires_at);
                    true
                }
                (_, Err(e)) => {
                    bad = Some(e);
                    false
                }
                (Err(_), _) => {
                    bad = Some(format!("a key of {} bytes", k.len()));
                    false
                }
            },
        )?;
        if let Some(reason) = bad {
            return Err(ColdError::Decode {
                what: "an idempotency key",
                reason,
            });
        }
        Ok(cold)
    }

    /// The store as readers off the core use it: every read waits for the
    /// batches handed over before it. Call [`Cold::hand_over`] first for a
    /// reader that must see every write applied so far.
    pub fn store(&self) -> Arc<dyn Store> {
        self.behind.clone()
    }

    /// Hands the staged writes to the writer now (a reader, a flush or a
    /// snapshot is about to need them in the store).
    pub fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // Between entries on a node (the core applies an entry whole); unit
        // tests may read mid-entry, which hands over part of an entry under
        // the index before it: harmless, a replay writes the same again.
        if let Err(e) = self
            .batch
            .put(Column::Meta, META_APPLIED, &self.staged_index.to_le_bytes())
        {
            self.fail(e.into());
        }
        let batch = std::mem::take(&mut self.batch);
        let keys = std::mem::take(&mut self.staged);
        self.entry_first_op = 0;
        match self.behind.hand_over(batch) {
            Ok(seq) => self.in_flight.push_back((seq, keys)),
            Err(e) => self.fail(e.into()),
        }
    }

    /// Hands over what is staged and waits until the writer has written
    /// it all. Blocks: for tests and for work off the core.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.hand_over();
        self.behind.wait()?;
        self.settle_in_flight();
        Ok(())
    }

    /// Forgets the keys of batches the writer has written (the store has
    /// them now), and takes up the writer's failure.
    fn settle_in_flight(&mut self) {
        let written = self.behind.written();
        while self
            .in_flight
            .front()
            .is_some_and(|(seq, _)| *seq <= written)
        {
            self.in_flight.pop_front();
        }
        if !self.in_flight.is_empty() {
            if let Some(e) = self.behind.error() {
                self.fail(e.into());
            }
        }
    }

    /// The same store with its filter rebuilt (its contents were replaced).
    /// A filter that cannot be rebuilt trusts nothing: every lookup then
    /// reads the store.
    pub fn reopened(self) -> Cold {
        let records_max = self.records_max;
        match Cold::open_behind(self.behind.clone(), self.filter_bytes) {
            Ok(cold) => Cold {
                records_max,
                ..cold
            },
            Err(e) => {
                tracing::error!(error = %e, "key filter not rebuilt: every lookup reads the store");
                let mut cold = Cold::empty_behind(self.behind.clone());
                cold.filter.distrust();
                cold.records_max = records_max;
                cold
            }
        }
    }

    fn fail(&mut self, e: ColdError) {
        if self.error.is_none() {
            tracing::error!(error = %e, "state store failed: the shard stops applying");
            self.error = Some(e);
        }
    }

    /// The first failure since the last call: the entry that met it must
    /// not count as applied.
    pub fn take_error(&mut self) -> Option<ColdError> {
        self.error.take()
    }

    /// The live key of `id` as of the entry at `log_index` (see the module
    /// docs), or `None`: never seen, expired at `now_us`, or only written
    /// by this entry's future.
    pub fn key(&mut self, id: u128, log_index: u64, now_us: u64) -> Option<ColdKey> {
        let live = |k: &ColdKey| k.expires_at > now_us;
        if let Some(k) = self.staged.get(&id) {
            return Some(*k).filter(live);
        }
        for (_, keys) in self.in_flight.iter().rev() {
            if let Some(k) = keys.get(&id) {
                return Some(*k).filter(live);
            }
        }
        if !self.filter.may_contain(id, now_us) {
            return None;
        }
        self.store_reads += 1;
        // The newest version written before this entry. No batch in flight
        // holds a key of `id` (its keys are above until written), so the
        // store under the writer has every one there is: no wait.
        let at_most = versioned(id, log_index.saturating_sub(1));
        match self
            .behind
            .inner()
            .last_at_or_below(Column::Keys, &key_bytes(id), &at_most)
        {
            Ok(None) => None,
            Ok(Some((_, bytes))) => match decode_key(&bytes) {
                Ok(k) => Some(k).filter(|k| live(k) && k.index < log_index),
                Err(reason) => {
                    self.fail(ColdError::Decode {
                        what: "an idempotency key",
                        reason,
                    });
                    None
                }
            },
            Err(e) => {
                self.fail(e.into());
                None
            }
        }
    }

    fn put_key(&mut self, id: u128, key: ColdKey) {
        let value = encode_key(&key);
        if let Err(e) = self
            .batch
            .put(Column::Keys, &versioned(id, key.index), &value)
        {
            self.fail(e.into());
        }
        self.filter.insert(id, key.expires_at);
        self.staged.insert(id, key);
    }

    /// A finished record leaves memory: its key for the rest of the dedup
    /// window, its record and retries for the retention.
    pub fn put_finished(&mut self, record: &TxRecord, extra: &[ExtraEvent], finished_at: u64) {
        let id = record.tx.id;
        let value = encode_ledger(record, extra);
        if let Err(e) = self.batch.put(
            Column::Ledger,
            &ledger_key(id, record.accepted_index),
            &value,
        ) {
            self.fail(e.into());
        }
        self.put_key(
            id,
            ColdKey {
                kind: KeyKind::Booked,
                index: record.accepted_index,
                expires_at: finished_at.saturating_add(DEDUP_WINDOW_US),
                body: record.tx,
            },
        );
    }

    /// `body`'s id is reserved here, at `index`, for the shard that books it.
    pub fn put_reservation(&mut self, body: Transaction, index: u64, at_us: u64) {
        self.put_key(
            body.id,
            ColdKey {
                kind: KeyKind::Reserved,
                index,
                expires_at: at_us.saturating_add(DEDUP_WINDOW_US),
                body,
            },
        );
    }

    /// The facts of an applied cycle, for the trails of its records.
    pub fn put_note(&mut self, cycle_id: u64, note: &CycleNote) {
        let value = encode_note(note);
        if let Err(e) = self
            .batch
            .put(Column::Cycles, &cycle_id.to_be_bytes(), &value)
        {
            self.fail(e.into());
        }
    }

    /// Ends the entry at `log_index`: its changes stay staged, and the
    /// staged batch goes to the writer once it holds [`WRITE_BEHIND_OPS`]
    /// (failures are kept for [`Cold::take_error`]).
    ///
    /// Returns `crc` extended with what the entry wrote: replicas that
    /// applied the same log wrote the same, so equal running checksums say
    /// their stores received the same writes (the replica digest).
    pub fn commit(&mut self, log_index: u64, now_us: u64, crc: u32) -> u32 {
        assert!(log_index >= self.staged_index, "entries end in log order");
        let mut crc = crc;
        for op in self.batch.ops_from(self.entry_first_op) {
            if let Op::Put { column, key, value } = op {
                crc = crc32c::crc32c_append(crc, column.name().as_bytes());
                crc = crc32c::crc32c_append(crc, key);
                crc = crc32c::crc32c_append(crc, value);
            }
        }
        self.entry_first_op = self.batch.len();
        self.staged_index = log_index;
        self.behind.set_clock(now_us);
        if self.batch.len() >= self.hand_over_ops {
            self.hand_over();
        }
        self.settle_in_flight();
        self.filter.expire(now_us);
        crc
    }

    pub fn filter_bytes(&self) -> usize {
        self.filter.bytes()
    }
}

/// Reads of the ledger, made off the shard's core (they may touch the disk).
#[derive(Clone)]
pub struct ColdReader {
    store: Arc<dyn Store>,
}

impl ColdReader {
    pub fn new(store: Arc<dyn Store>) -> ColdReader {
        ColdReader { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The newest finished record of `id`, with its retries.
    pub fn record(&self, id: u128) -> Result<Option<(TxRecord, Vec<ExtraEvent>)>, ColdError> {
        match self
            .store
            .last_with_prefix(Column::Ledger, &key_bytes(id))?
        {
            None => Ok(None),
            Some((_, bytes)) => {
                decode_ledger(&bytes)
                    .map(Some)
                    .map_err(|reason| ColdError::Decode {
                        what: "a ledger record",
                        reason,
                    })
            }
        }
    }

    /// The status and audit trail of a finished transaction (`None` if the
    /// store has no record of it, or `visibility` does not show it). `group`
    /// is the shard's group id.
    pub fn lookup(
        &self,
        id: u128,
        group: GroupId,
        visibility: Visibility,
    ) -> Result<Option<(TxStatus, Vec<TxEvent>)>, ColdError> {
        let Some((record, extra)) = self.record(id)? else {
            return Ok(None);
        };
        if !visibility.shows(&record.tx) {
            return Ok(None);
        }
        let mut failed = None;
        let events = trail(
            &record,
            &extra,
            &mut |cycle| match self.note(cycle) {
                Ok(note) => note,
                Err(e) => {
                    failed.get_or_insert(e);
                    None
                }
            },
            group,
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(Some((record.status, events))),
        }
    }

    /// The facts of cycle `cycle_id` as this shard applied it.
    pub fn note(&self, cycle_id: u64) -> Result<Option<CycleNote>, ColdError> {
        match self.store.get(Column::Cycles, &cycle_id.to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => decode_note(&bytes)
                .map(Some)
                .map_err(|reason| ColdError::Decode {
                    what: "a cycle note",
                    reason,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use settle_codec::{Currency, ParticipantId, Transaction, TxResult, TxStatus, Window};

    use super::*;
    use crate::shard::cycles::tests::{facts, tx};
    use crate::shard::{BatchOutcome, CycleApply, Leg, ShardState};

    /// One log entry of the script below.
    #[derive(Clone)]
    enum Step {
        Open,
        Submit(Vec<Transaction>),
        Close(u64),
        Apply(CycleApply),
        Execution(Vec<BatchOutcome>),
    }

    fn eur(t: Transaction) -> Transaction {
        Transaction {
            send: Currency::EUR,
            ..t
        }
    }

    /// Every way a key reaches the store and is looked up again: finished
    /// records (final, confirmed), a reservation, retries and conflicts of
    /// both, a reuse after the dedup window.
    fn script() -> Vec<(u64, Step)> {
        let rtgs = |id, amount| tx(id, 1, 2, amount, Window::Rtgs);
        let settle = |batch| Leg::Settled {
            batch,
            receive_amount: 1,
        };
        let apply = |cycle_id, confirm, legs: Vec<Leg>| CycleApply {
            cycle_id,
            decision: facts(cycle_id),
            confirm,
            legs,
            credits: vec![],
            incoming: vec![],
        };
        let later = DEDUP_WINDOW_US * 3;
        vec![
            (10, Step::Open),
            (
                20,
                Step::Submit(vec![rtgs(1, 10), rtgs(2, 20), eur(rtgs(100, 5))]),
            ),
            (30, Step::Close(1)),
            (
                40,
                Step::Apply(apply(
                    1,
                    true,
                    vec![
                        settle(1),
                        Leg::Deferred {
                            reason: settle_codec::tx::DeferReason::Unsolvable,
                        },
                    ],
                )),
            ),
            (
                50,
                Step::Submit(vec![
                    rtgs(1, 10),
                    rtgs(1, 11),
                    eur(rtgs(100, 5)),
                    rtgs(100, 5),
                    rtgs(3, 30),
                    rtgs(3, 30),
                ]),
            ),
            (60, Step::Close(2)),
            (70, Step::Apply(apply(2, false, vec![settle(1), settle(2)]))),
            (80, Step::Submit(vec![rtgs(2, 20), rtgs(3, 30)])),
            (
                90,
                Step::Execution(vec![
                    BatchOutcome {
                        cycle_id: 2,
                        batch: 1,
                        confirmed: true,
                        attempts: 1,
                    },
                    BatchOutcome {
                        cycle_id: 2,
                        batch: 2,
                        confirmed: false,
                        attempts: 3,
                    },
                ]),
            ),
            (
                100,
                Step::Submit(vec![rtgs(2, 20), rtgs(3, 31), eur(rtgs(100, 5))]),
            ),
            // Past the dedup window: the ids are free again.
            (
                later,
                Step::Submit(vec![rtgs(1, 99), eur(rtgs(100, 6)), rtgs(2, 20)]),
            ),
        ]
    }

    fn run(s: &mut ShardState, index: u64, ts: u64, step: &Step) -> Vec<TxResult> {
        let mut r = Vec::new();
        match step {
            Step::Open => {
                s.apply_open(index, ts, [(ParticipantId(1), 1_000)], &mut r);
            }
            Step::Submit(txs) => s.apply_submit(index, ts, Currency::USD, txs.clone(), &mut r),
            Step::Close(cycle) => r.push(s.apply_close(index, ts, *cycle, Window::Rtgs, 10)),
            Step::Apply(apply) => r.push(s.apply_cycle(index, ts, apply)),
            Step::Execution(outcomes) => s.apply_execution(index, ts, outcomes, &mut r),
        }
        s.end_entry().unwrap();
        r
    }

    fn attached(s: &mut ShardState, store: &Arc<MemStore>) {
        let store: Arc<dyn Store> = store.clone();
        s.attach_store(Cold::open(store, 1 << 20).unwrap());
    }

    #[test]
    fn finished_records_leave_memory_and_still_answer_for_their_ids() {
        let store = Arc::new(MemStore::new());
        let mut s = ShardState::new();
        attached(&mut s, &store);
        let results: Vec<_> = script()
            .iter()
            .enumerate()
            .map(|(i, (ts, step))| run(&mut s, i as u64 + 1, *ts, step))
            .collect();
        use TxResult::{Conflict as X, Created as C, Duplicate as D};
        assert_eq!(results[1], vec![C, C, C]);
        // 1 settled and left memory; 100 is reserved in the store.
        assert_eq!(results[4], vec![D, X, D, X, C, D]);
        assert_eq!(results[7], vec![D, D], "in flight: still in memory");
        assert_eq!(results[9], vec![D, X, D], "finished: answered by the store");
        assert_eq!(results[10], vec![C, C, C], "past the window, booked anew");
        assert_eq!(s.held(), 2, "only the two new bookings in memory");
        s.sync_store().unwrap();
        assert!(store.len(Column::Ledger) >= 3);
        // The old trails are still there; the newest booking answers.
        assert_eq!(s.lookup_record(1).unwrap().tx.amount, 99);
        let failed = ColdReader::new(store.clone()).record(3).unwrap().unwrap().0;
        assert_eq!(failed.status, TxStatus::Failed);
        let reader = ColdReader::new(store.clone());
        let (status, events) = reader.lookup(3, 1, Visibility::All).unwrap().unwrap();
        // Its parties see it; another participant is answered as if unknown.
        for (viewer, shown) in [(1, true), (2, true), (3, false)] {
            let found = reader
                .lookup(3, 1, Visibility::PartyTo(ParticipantId(viewer)))
                .unwrap();
            assert_eq!(found.is_some(), shown, "participant {viewer}");
        }
        assert_eq!(status, TxStatus::Failed);
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        use settle_codec::TxEventKind::*;
        assert_eq!(
            kinds,
            vec![
                TransactionSubmitted,
                TransactionDeduped,
                BatchCreated,
                BatchOptimized,
                ConsensusSubmitted,
                ConsensusAchieved,
                SettlementInitiated,
                TransactionDeduped,
                SettlementFailed,
                SettlementReversed,
            ]
        );
    }

    /// The store may be ahead of the snapshot a shard restarts from (it was
    /// flushed after the snapshot, before a crash). Replaying the log from
    /// any snapshot over such a store gives every entry the answers it had
    /// the first time, and the same state.
    #[test]
    fn replay_from_any_snapshot_over_a_store_ahead_of_it_answers_the_same() {
        let steps = script();
        let reference = {
            let mut s = ShardState::new();
            let results: Vec<_> = steps
                .iter()
                .enumerate()
                .map(|(i, (ts, step))| run(&mut s, i as u64 + 1, *ts, step))
                .collect();
            (results, s.encode_snapshot())
        };
        // The replica digest after each entry (index i + 1 at [i]).
        let fingerprints: Vec<u64> = {
            let mut s = ShardState::new();
            let store = Arc::new(MemStore::new());
            attached(&mut s, &store);
            steps
                .iter()
                .enumerate()
                .map(|(i, (ts, step))| {
                    run(&mut s, i as u64 + 1, *ts, step);
                    s.fingerprint()
                })
                .collect()
        };
        // Batches handed to the writer every entry, every few operations, or
        // only when synced; and at the crash, every later write in the store,
        // or only those handed over (the staged ones die with the memory).
        let cases = [
            (WRITE_BEHIND_OPS, true),
            (1, true),
            (3, false),
            (WRITE_BEHIND_OPS, false),
        ];
        for (cut, (hand_over_ops, all_written)) in
            (0..=steps.len()).flat_map(|cut| cases.map(|case| (cut, case)))
        {
            let store = Arc::new(MemStore::new());
            let mut a = ShardState::new();
            attached(&mut a, &store);
            a.cold.hand_over_ops = hand_over_ops;
            let mut snapshot = ShardState::new().encode_snapshot();
            for (i, (ts, step)) in steps.iter().enumerate() {
                if i == cut {
                    // As a node does: the store flushed for the snapshot.
                    a.sync_store().unwrap();
                    snapshot = a.encode_snapshot();
                }
                run(&mut a, i as u64 + 1, *ts, step);
            }
            if cut == steps.len() {
                a.sync_store().unwrap();
                snapshot = a.encode_snapshot();
            }
            // Crash: the memory is gone, the store stays.
            if all_written {
                a.sync_store().unwrap();
            }
            drop(a);
            let mut b = ShardState::decode_snapshot(&snapshot).unwrap();
            attached(&mut b, &store);
            if cut > 0 {
                assert_eq!(
                    b.fingerprint(),
                    fingerprints[cut - 1],
                    "a restored state has the digest it was snapshotted with"
                );
            }
            for (i, (ts, step)) in steps.iter().enumerate().skip(cut) {
                assert_eq!(
                    run(&mut b, i as u64 + 1, *ts, step),
                    reference.0[i],
                    "entry {} replayed from a snapshot at {cut}",
                    i + 1
                );
                assert_eq!(
                    b.fingerprint(),
                    fingerprints[i],
                    "digest after entry {} replayed from a snapshot at {cut}",
                    i + 1
                );
            }
            assert_eq!(b.encode_snapshot(), reference.1, "snapshot at {cut}");
        }
    }

    /// Replicas that applied the same entries differently have different
    /// digests: another balance, another accepted transaction, another
    /// write to the store each change the fingerprint.
    #[test]
    fn a_replica_that_differs_in_any_part_has_another_fingerprint() {
        let build = || {
            let store = Arc::new(MemStore::new());
            let mut s = ShardState::new();
            attached(&mut s, &store);
            for (i, (ts, step)) in script().iter().enumerate() {
                run(&mut s, i as u64 + 1, *ts, step);
            }
            s
        };
        let reference = build().fingerprint();
        assert_eq!(build().fingerprint(), reference, "deterministic");

        let mut balance = build();
        let p = *balance.accounts.keys().next().unwrap();
        balance.account_changing(p, |s| {
            let a = s.accounts.get_mut(&p).unwrap();
            a.balance += 1;
            a.credited += 1;
        });
        assert_ne!(balance.fingerprint(), reference, "a balance");

        let mut accepted = build();
        let id = accepted.records.iter().next().map(|(&id, _)| id);
        if let Some(id) = id {
            let mut r = accepted.records.remove(&id).unwrap();
            accepted.records_digest = accepted
                .records_digest
                .wrapping_sub(super::super::fingerprint::record_term(&r));
            r.tx.amount += 1;
            accepted.records_digest = accepted
                .records_digest
                .wrapping_add(super::super::fingerprint::record_term(&r));
            accepted.records.insert(id, r);
            assert_ne!(accepted.fingerprint(), reference, "an unfinished record");
        }

        let mut stored = build();
        stored.cold_crc ^= 1;
        assert_ne!(stored.fingerprint(), reference, "a write to the store");
    }

    /// A gate a store's writes wait at, so batches stay in flight.
    #[derive(Default)]
    struct Gate {
        open: std::sync::Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl Gate {
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }

        fn pass(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
    }

    /// While the writer is stuck on a batch, the ids in it still answer
    /// from memory: a finished payment is a duplicate, a reserved id a
    /// conflict, exactly as when the batch is written.
    #[test]
    fn keys_in_flight_answer_while_the_writer_is_stuck() {
        let steps = script();
        let reference: Vec<_> = {
            let mut s = ShardState::new();
            attached(&mut s, &Arc::new(MemStore::new()));
            steps
                .iter()
                .enumerate()
                .map(|(i, (ts, step))| run(&mut s, i as u64 + 1, *ts, step))
                .collect()
        };
        let gate = Arc::new(Gate::default());
        let gated = {
            let gate = gate.clone();
            Arc::new(MemStore::with_write_hook(move || {
                gate.pass();
                Ok(())
            }))
        };
        let mut s = ShardState::new();
        s.attach_store(Cold::open(gated.clone(), 1 << 20).unwrap());
        // Dropped before `s` (declared after it): a failing assertion opens
        // the gate, so the writer finishes and the test fails, not hangs.
        struct OpenOnDrop(Arc<Gate>);
        impl Drop for OpenOnDrop {
            fn drop(&mut self) {
                self.0.open();
            }
        }
        let _gate = OpenOnDrop(gate.clone());
        for (i, (ts, step)) in steps.iter().enumerate() {
            if i == 4 {
                // Id 1 finished and id 100 was reserved: both go to a
                // writer that cannot write.
                s.cold.hand_over();
                assert_eq!(s.cold.in_flight.len(), 1);
                assert!(s.cold.staged.is_empty());
            }
            assert_eq!(
                run(&mut s, i as u64 + 1, *ts, step),
                reference[i],
                "entry {}",
                i + 1
            );
            if i == 4 {
                assert_eq!(
                    s.cold.in_flight.len(),
                    1,
                    "still stuck: answered from memory"
                );
                assert_eq!(gated.len(Column::Keys), 0, "nothing written yet");
                gate.open();
            }
        }
        s.sync_store().unwrap();
        assert!(s.cold.in_flight.is_empty());
        assert!(gated.len(Column::Keys) > 0);
    }

    /// The same script over a sealed store: the same answers, the same
    /// trails, the same replica digest (it covers what was given to the
    /// store, not the ciphertext), and no id in the keys underneath.
    #[test]
    fn a_sealed_store_answers_exactly_like_a_plain_one() {
        let cipher = Arc::new(settle_storage::Cipher::new(&[[3; 32]]).unwrap());
        let sealed = Arc::new(
            settle_store::SealedStore::open(MemStore::new(), "memory", cipher, &ID_COLUMNS)
                .unwrap(),
        );
        let plain = Arc::new(MemStore::new());
        let mut a = ShardState::new();
        let mut b = ShardState::new();
        attached(&mut a, &plain);
        b.attach_store(Cold::open(sealed.clone(), 1 << 20).unwrap());
        // Batches reach the writer every other operation: lookups meet keys
        // in flight, staged and written.
        b.cold.hand_over_ops = 2;
        for (i, (ts, step)) in script().iter().enumerate() {
            let index = i as u64 + 1;
            assert_eq!(run(&mut a, index, *ts, step), run(&mut b, index, *ts, step));
        }
        assert_eq!(a.encode_snapshot(), b.encode_snapshot());
        a.sync_store().unwrap();
        b.sync_store().unwrap();
        for id in [1, 2, 3, 100] {
            let plain_answer = ColdReader::new(plain.clone()).lookup(id, 1, Visibility::All);
            let sealed_answer = ColdReader::new(sealed.clone()).lookup(id, 1, Visibility::All);
            assert_eq!(plain_answer.unwrap(), sealed_answer.unwrap(), "id {id}");
        }
        // The key filter is rebuilt from the revealed keys.
        let reopened = Cold::open(sealed.clone(), 1 << 20).unwrap();
        assert_eq!(reopened.filter.keys(), b.take_cold().filter.keys());
        for column in ID_COLUMNS {
            sealed
                .inner()
                .scan(column, &mut |k, _| {
                    for id in [1u128, 2, 3, 100] {
                        assert!(!k.starts_with(&key_bytes(id)), "{column:?}");
                    }
                    true
                })
                .unwrap();
        }
        // A flipped byte of a sealed record: the lookup is an error (the
        // proposer answers it as one), never a record and never "unknown".
        let mut tampered = Batch::new();
        sealed
            .inner()
            .scan(Column::Ledger, &mut |k, v| {
                let mut v = v.to_vec();
                let middle = v.len() / 2;
                v[middle] ^= 0x10;
                tampered.put(Column::Ledger, k, &v).unwrap();
                true
            })
            .unwrap();
        sealed.inner().write(&tampered).unwrap();
        let refused = ColdReader::new(sealed.clone())
            .lookup(3, 1, Visibility::All)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                ColdError::Store(StoreError::Sealed {
                    column: "ledger",
                    source: settle_storage::SealError::Forged,
                    ..
                })
            ),
            "{refused}"
        );
    }

    #[test]
    fn keys_and_ledger_records_round_trip_and_damage_is_an_error() {
        let key = ColdKey {
            kind: KeyKind::Reserved,
            index: 7,
            expires_at: 99,
            body: tx(5, 1, 2, 3, Window::T0),
        };
        let bytes = encode_key(&key);
        assert_eq!(bytes.len(), KEY_VALUE_BYTES);
        assert_eq!(settle_store::key_expiry(&bytes), Some(99));
        assert_eq!(decode_key(&bytes).unwrap(), key);
        for cut in 0..bytes.len() {
            assert!(decode_key(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[8] = 9;
        assert!(decode_key(&bad).is_err());
    }
}
