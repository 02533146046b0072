//! openraft's log storage over `settle_storage::Log`, one per group directory.
//!
//! Group commit: [`RaftLogStorage::append`] only stages entries in the log
//! (readable at once from an in-memory tail) and queues openraft's
//! `IOFlushed` callback; a flusher task on the same core makes everything
//! staged durable with one durable (O_DSYNC) write, then fires every
//! callback it covered. Appends that arrive while a flush is in flight go
//! into the next one, so one write covers whatever openraft appended
//! meanwhile.
//!
//! Layout of a group directory: `log/` (segments), `raft.meta` (vote,
//! committed and purged log ids, replaced atomically).
//!
//! Record encoding: record index = log index, record term = term, payload =
//! `[tag u8: 0 blank, 1 normal, 2 membership][leader node id u64 LE][body]`,
//! body = the `ShardRequest` bytes (normal) or JSON (membership).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::mem;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, Membership, OptionalSend};
use serde::{Deserialize, Serialize};
use settle_storage::{Log, LogOptions, MetaFile, Record, GROUP_BYTES_MAX};

use super::state_machine::storage_to_io;
use super::type_config::{Entry, LogId, NodeAddr, NodeId, ShardRequest, TypeConfig, Vote};

/// Bytes before the body of every record payload: tag + leader node id.
const PAYLOAD_PREFIX_BYTES: usize = 9;
const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;

/// Recent entries kept decoded in memory (approximate bytes). Entries not yet
/// durable are always kept (the log bounds them: at most one staged and one
/// in-flight group of `GROUP_BYTES_MAX`); durable ones are kept up to this
/// much so that replication reads of just-appended entries never hit the disk.
pub const TAIL_BYTES_MAX: usize = 2 * GROUP_BYTES_MAX;

/// In-memory overhead charged per tail entry on top of its body (log id,
/// enum, vector header), so tiny entries are not free.
const TAIL_ENTRY_OVERHEAD_BYTES: usize = 64;

/// Flusher wake-ups queued: one is enough, as a flush covers everything
/// staged before it starts; a wake while one is queued is coalesced.
const FLUSH_WAKE_CAPACITY: usize = 1;

/// How often the committed log id is persisted at most. It is a recovery
/// hint (openraft re-commits anything after it), but writing it is a file
/// replace with two fsyncs: once per commit would double the fsyncs of the
/// write path.
pub const COMMITTED_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

const LOG_DIR: &str = "log";
const META_FILE: &str = "raft.meta";

/// Why a log store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log storage: {0}")]
    Storage(#[from] settle_storage::Error),
    #[error("raft meta file {path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("log record {index}: {reason}")]
    BadRecord { index: u64, reason: String },
    #[error("log in {dir} ends at index {last:?}, below the committed index {committed} raft.meta records: segments are missing or truncated")]
    BelowCommitted {
        dir: PathBuf,
        last: Option<u64>,
        committed: u64,
    },
    #[error("log purged up to {log_purged} but raft.meta says {meta_purged:?}: files from different states")]
    PurgeMismatch {
        log_purged: u64,
        meta_purged: Option<u64>,
    },
}

/// What `raft.meta` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    /// Set when an empty log was restarted at this index by an append that
    /// did not start at the log's next index (see `LogStore::append`): the
    /// log's own purge point is then `base - 1` with no Raft log id.
    #[serde(default)]
    base: Option<u64>,
}

struct State {
    meta: Meta,
    /// Last entry's log id, or the purge point when the log is empty.
    last_log_id: Option<LogId>,
    /// Contiguous recent entries ending at `last_log_id`; includes every
    /// entry that is not durable yet.
    tail: VecDeque<Entry>,
    tail_bytes: usize,
    /// Callbacks of staged appends, fired by the next flush. Bounded by the
    /// log's staging bound (an append stages at least one record).
    waiting: Vec<IOFlushed<TypeConfig>>,
    committed_persisted_at: Option<Instant>,
}

struct Shared {
    log: Log,
    meta_file: MetaFile,
    state: RefCell<State>,
    wake: LocalSender<()>,
}

/// The log store of one group: hand it to `Raft::new`.
pub struct LogStore {
    shared: Rc<Shared>,
    /// Reused buffer for encoding a record payload.
    scratch: Vec<u8>,
}

/// A reader of the same log (openraft's replication tasks use these).
#[derive(Clone)]
pub struct LogReader {
    shared: Rc<Shared>,
}

fn tail_cost(entry: &Entry) -> usize {
    let body = match &entry.payload {
        EntryPayload::Normal(request) => request.0.len(),
        _ => 0,
    };
    body + TAIL_ENTRY_OVERHEAD_BYTES
}

fn encode_payload(entry: &Entry, out: &mut Vec<u8>) {
    out.clear();
    let log_id = entry.log_id();
    let tag = match &entry.payload {
        EntryPayload::Blank => TAG_BLANK,
        EntryPayload::Normal(_) => TAG_NORMAL,
        EntryPayload::Membership(_) => TAG_MEMBERSHIP,
    };
    out.push(tag);
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(request) => out.extend_from_slice(&request.0),
        EntryPayload::Membership(membership) => {
            serde_json::to_writer(&mut *out, membership).expect("membership is plain data")
        }
    }
}

fn decode_record(record: Record) -> Result<Entry, String> {
    let payload = record.payload;
    if payload.len() < PAYLOAD_PREFIX_BYTES {
        return Err(format!(
            "payload of {} bytes is shorter than its prefix",
            payload.len()
        ));
    }
    let node_id = NodeId::from_le_bytes(
        payload[1..PAYLOAD_PREFIX_BYTES]
            .try_into()
            .expect("8 bytes"),
    );
    let log_id = LogId {
        leader_id: LeaderId {
            term: record.term,
            node_id,
        },
        index: record.index,
    };
    let body = &payload[PAYLOAD_PREFIX_BYTES..];
    let payload = match payload[0] {
        TAG_BLANK if body.is_empty() => EntryPayload::Blank,
        TAG_NORMAL => EntryPayload::Normal(ShardRequest(body.to_vec())),
        TAG_MEMBERSHIP => {
            let membership: Membership<NodeId, NodeAddr> =
                serde_json::from_slice(body).map_err(|e| format!("membership: {e}"))?;
            EntryPayload::Membership(membership)
        }
        tag => return Err(format!("unknown tag {tag} with {} body bytes", body.len())),
    };
    Ok(Entry { log_id, payload })
}

fn bad_record(index: u64, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("log record {index}: {reason}"),
    )
}

impl Shared {
    async fn persist_meta(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.state.borrow().meta).expect("meta is plain data");
        self.meta_file.store(&bytes).await.map_err(storage_to_io)
    }

    /// Makes everything staged durable and fires the callbacks of the
    /// appends it covered (all that were queued when it started).
    async fn flush(&self) -> io::Result<()> {
        let callbacks = mem::take(&mut self.state.borrow_mut().waiting);
        match self.log.flush().await {
            Ok(durable_last) => {
                self.trim_tail(durable_last);
                for callback in callbacks {
                    callback.io_completed(Ok(()));
                }
                Ok(())
            }
            Err(e) => {
                // The log is poisoned now: every later write fails too.
                let message = e.to_string();
                for callback in callbacks {
                    callback.io_completed(Err(io::Error::other(message.clone())));
                }
                Err(storage_to_io(e))
            }
        }
    }

    /// Drops the oldest durable entries beyond the tail's byte budget.
    fn trim_tail(&self, durable_last: Option<u64>) {
        let Some(durable_last) = durable_last else {
            return;
        };
        let mut state = self.state.borrow_mut();
        while state.tail_bytes > TAIL_BYTES_MAX {
            match state.tail.front() {
                Some(front) if front.log_id.index <= durable_last => {
                    let cost = tail_cost(front);
                    state.tail.pop_front();
                    state.tail_bytes -= cost;
                }
                _ => break,
            }
        }
    }

    async fn read(&self, start: Bound<&u64>, end: Bound<&u64>) -> io::Result<Vec<Entry>> {
        let first = self.log.first_index();
        let next = self.log.next_index();
        let start = match start {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first);
        let end = match end {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        }
        .min(next);
        if start >= end {
            return Ok(Vec::new());
        }
        // Take the in-memory part now: the tail may be trimmed during the disk read.
        let (disk_end, from_tail) = {
            let state = self.state.borrow();
            let tail_first = state.tail.front().map_or(next, |e| e.log_id.index);
            let disk_end = end.min(tail_first);
            let from = start.max(tail_first);
            let skip = (from - tail_first) as usize;
            let take = end.saturating_sub(from) as usize;
            let part: Vec<Entry> = state.tail.iter().skip(skip).take(take).cloned().collect();
            (disk_end, part)
        };
        let mut out = Vec::with_capacity((end - start) as usize);
        if start < disk_end {
            for record in self
                .log
                .read(start..disk_end)
                .await
                .map_err(storage_to_io)?
            {
                let index = record.index;
                out.push(decode_record(record).map_err(|reason| bad_record(index, reason))?);
            }
        }
        out.extend(from_tail);
        debug_assert!(out
            .windows(2)
            .all(|w| w[1].log_id.index == w[0].log_id.index + 1));
        Ok(out)
    }
}

impl LogStore {
    /// Opens (creating if needed) the log store in `dir` and spawns its
    /// flusher on the current glommio executor. Must run inside the executor
    /// that will run the group.
    pub async fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        LogStore::open_sealed(dir, None).await
    }

    /// [`LogStore::open`], sealing every record it writes with `cipher`
    /// (and opening sealed ones with it).
    pub async fn open_sealed(
        dir: &Path,
        cipher: Option<std::sync::Arc<settle_storage::Cipher>>,
    ) -> Result<LogStore, LogStoreError> {
        let options = LogOptions {
            cipher,
            ..LogOptions::default()
        };
        let (log, report) = Log::open(dir.join(LOG_DIR), options).await?;
        if report.truncated_bytes > 0 || report.removed_segments > 0 {
            // A torn last write (never acknowledged) or an interrupted
            // purge/truncation finished: expected after a crash, worth a line.
            tracing::warn!(dir = %dir.display(), ?report, "raft log recovered");
        }
        let meta_file = MetaFile::new(dir.join(META_FILE));
        let meta: Meta = match meta_file.load().await? {
            None => Meta::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogStoreError::BadMeta {
                path: meta_file.path().to_path_buf(),
                reason: e.to_string(),
            })?,
        };
        // The purge point is written to raft.meta before the log purges, so
        // the log may lag behind it (a crash in between), never lead it.
        let log_purged = log.purged().map(|p| p.index);
        let meta_purged = meta
            .purged
            .map(|p| p.index)
            .max(meta.base.and_then(|b| b.checked_sub(1)));
        if log_purged > meta_purged {
            return Err(LogStoreError::PurgeMismatch {
                log_purged: log_purged.expect("greater than something"),
                meta_purged,
            });
        }
        if let Some(purged) = meta.purged {
            if log_purged < Some(purged.index) {
                log.purge_prefix(purged.index, purged.leader_id.term)
                    .await?;
            }
        }
        let last_log_id = match log.last_index() {
            Some(last) if last >= log.first_index() => {
                let record = log
                    .read(last..last + 1)
                    .await?
                    .pop()
                    .expect("one record read");
                Some(
                    decode_record(record)
                        .map_err(|reason| LogStoreError::BadRecord {
                            index: last,
                            reason,
                        })?
                        .log_id,
                )
            }
            _ => meta.purged,
        };
        // Committed entries were durable here before they were committed: a
        // log that ends below the committed index lost some (a truncated or
        // missing segment). Refused here, in our words, not later by Raft.
        if let Some(committed) = meta.committed {
            let last = last_log_id.map(|l| l.index);
            if last < Some(committed.index) {
                return Err(LogStoreError::BelowCommitted {
                    dir: dir.to_path_buf(),
                    last,
                    committed: committed.index,
                });
            }
        }
        let (wake, wakes) = local_channel::new_bounded(FLUSH_WAKE_CAPACITY);
        let shared = Rc::new(Shared {
            log,
            meta_file,
            state: RefCell::new(State {
                meta,
                last_log_id,
                tail: VecDeque::new(),
                tail_bytes: 0,
                waiting: Vec::new(),
                committed_persisted_at: None,
            }),
            wake,
        });
        glommio::spawn_local(run_flusher(Rc::downgrade(&shared), wakes)).detach();
        glommio::spawn_local(run_preallocator(Rc::downgrade(&shared))).detach();
        Ok(LogStore {
            shared,
            scratch: Vec::new(),
        })
    }

    /// Index after the last entry (staged ones included).
    pub fn next_index(&self) -> u64 {
        self.shared.log.next_index()
    }
}

impl LogStore {
    /// openraft may append to an *empty* log at any index (its storage suite
    /// does; in a cluster a follower only accepts an append that continues
    /// its log, or restarts after a snapshot purge). `settle_storage::Log`
    /// only appends at its next index and has no "restart empty at N"
    /// operation, so an empty log is moved there with a purge of `index - 1`,
    /// recorded first in raft.meta as the log's base so reopening accepts it.
    async fn restart_empty_log_at(&mut self, index: u64) -> io::Result<()> {
        let log = &self.shared.log;
        let empty = log.first_index() == log.next_index();
        if !empty || index <= log.next_index() {
            return Ok(()); // the log reports a real gap as IndexGap
        }
        self.shared.state.borrow_mut().meta.base = Some(index);
        self.shared.persist_meta().await?;
        log.purge_prefix(index - 1, 0).await.map_err(storage_to_io)
    }
}

/// Flushes whenever woken; exits once the store and its readers are gone.
async fn run_flusher(shared: Weak<Shared>, wakes: LocalReceiver<()>) {
    while wakes.recv().await.is_some() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // An error reached the callbacks (openraft stops the group); the
        // poisoned log refuses later appends, so there is nothing to retry.
        let _ = shared.flush().await;
    }
}

/// How often the preallocator looks whether the log needs a new spare
/// segment: a segment lasts seconds at full load, zeroing one takes ~0.2 s.
const PREALLOCATE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Keeps a zero-filled spare segment ready for the log's next rotation (see
/// `settle_storage::Log::preallocate_step`), one chunk at a time between
/// other tasks; exits once the store and its readers are gone.
async fn run_preallocator(shared: Weak<Shared>) {
    loop {
        let step = match shared.upgrade() {
            Some(shared) => shared.log.preallocate_step().await,
            None => return,
        };
        match step {
            Ok(true) => glommio::yield_if_needed().await,
            Ok(false) => glommio::timer::sleep(PREALLOCATE_POLL).await,
            Err(settle_storage::Error::Poisoned) => return,
            Err(e) => {
                // Only costs speed: rotation then creates an empty segment.
                tracing::warn!(error = %e, "segment preallocation failed; retrying later");
                glommio::timer::sleep(PREALLOCATE_POLL * 50).await;
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared
            .read(range.start_bound(), range.end_bound())
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.borrow().meta.vote)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared
            .read(range.start_bound(), range.end_bound())
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.state.borrow().meta.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let state = self.shared.state.borrow();
        Ok(LogState {
            last_purged_log_id: state.meta.purged,
            last_log_id: state.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.shared.state.borrow_mut().meta.vote = Some(*vote);
        self.shared.persist_meta().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let due = {
            let mut state = self.shared.state.borrow_mut();
            state.meta.committed = committed;
            let due = state
                .committed_persisted_at
                .is_none_or(|at| at.elapsed() >= COMMITTED_PERSIST_INTERVAL);
            if due {
                state.committed_persisted_at = Some(Instant::now());
            }
            due
        };
        if due {
            self.shared.persist_meta().await?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.state.borrow().meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let shared = self.shared.clone();
        for entry in entries {
            self.restart_empty_log_at(entry.log_id.index).await?;
            encode_payload(&entry, &mut self.scratch);
            let record = settle_storage::Entry {
                index: entry.log_id.index,
                term: entry.log_id.leader_id.term,
                payload: &self.scratch,
            };
            loop {
                match shared.log.append([record]) {
                    Ok(()) => break,
                    // The group is full: make room by flushing it here (this
                    // also completes the appends it held), then retry.
                    Err(settle_storage::Error::StagingFull { .. }) => shared.flush().await?,
                    Err(e) => return Err(storage_to_io(e)),
                }
            }
            let mut state = shared.state.borrow_mut();
            state.last_log_id = Some(entry.log_id);
            state.tail_bytes += tail_cost(&entry);
            state.tail.push_back(entry);
        }
        shared.state.borrow_mut().waiting.push(callback);
        // Full means a wake is already queued, and that flush will cover this.
        let _ = shared.wake.try_send(());
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        // Complete what is staged first: truncating never races a pending
        // flush, and every callback still reports real durability.
        let shared = self.shared.clone();
        shared.flush().await?;
        let from = last_log_id
            .map_or(0, |id| id.index + 1)
            .max(shared.log.first_index());
        if from >= shared.log.next_index() {
            return Ok(()); // nothing after it
        }
        shared
            .log
            .truncate_suffix(from)
            .await
            .map_err(storage_to_io)?;
        let mut state = shared.state.borrow_mut();
        while state.tail.back().is_some_and(|e| e.log_id.index >= from) {
            let cost = tail_cost(state.tail.back().expect("checked"));
            state.tail.pop_back();
            state.tail_bytes -= cost;
        }
        state.last_log_id = if from > shared.log.first_index() {
            last_log_id
        } else {
            state.meta.purged
        };
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        if shared.state.borrow().meta.purged >= Some(log_id) {
            return Ok(());
        }
        // raft.meta first: on restart the log catches up with it.
        shared.state.borrow_mut().meta.purged = Some(log_id);
        shared.persist_meta().await?;
        shared
            .log
            .purge_prefix(log_id.index, log_id.leader_id.term)
            .await
            .map_err(storage_to_io)?;
        let mut state = shared.state.borrow_mut();
        while state
            .tail
            .front()
            .is_some_and(|e| e.log_id.index <= log_id.index)
        {
            let cost = tail_cost(state.tail.front().expect("checked"));
            state.tail.pop_front();
            state.tail_bytes -= cost;
        }
        if state.last_log_id < Some(log_id) {
            state.last_log_id = Some(log_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::AsyncRuntime;
    use openraft_rt::Oneshot;
    use tempfile::TempDir;

    use super::*;
    use crate::raft::runtime::GlommioRuntime;
    use crate::raft::state_machine::GroupStateMachine;
    use crate::raft::testkit::tally::Tally;

    struct Builder;

    impl
        openraft::testing::log::StoreBuilder<
            TypeConfig,
            LogStore,
            GroupStateMachine<Tally>,
            TempDir,
        > for Builder
    {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, GroupStateMachine<Tally>), openraft::StorageError<TypeConfig>>
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = LogStore::open(dir.path()).await.expect("open log store");
            let (machine, _state) = GroupStateMachine::open(
                dir.path().join("snapshots"),
                &dir.path().join("store"),
                &Default::default(),
                None,
            )
            .await
            .expect("open state machine");
            Ok((dir, store, machine))
        }
    }

    #[test]
    fn log_store_passes_openraft_storage_suite() {
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(openraft::testing::log::Suite::test_all(Builder))
            .expect("storage suite");
    }

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id },
            index,
        }
    }

    fn normal(term: u64, index: u64, body: Vec<u8>) -> Entry {
        Entry {
            log_id: log_id(term, 2, index),
            payload: EntryPayload::Normal(ShardRequest(body)),
        }
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 2, index),
            payload: EntryPayload::Blank,
        }
    }

    fn membership(term: u64, index: u64) -> Entry {
        let voters = BTreeSet::from([1, 2, 3]);
        Entry {
            log_id: log_id(term, 2, index),
            payload: EntryPayload::Membership(Membership::new_with_defaults(vec![voters], [4])),
        }
    }

    /// A callback and the receiver that learns when it fired.
    fn callback() -> (
        IOFlushed<TypeConfig>,
        impl std::future::Future<Output = io::Result<()>>,
    ) {
        let (tx, rx) = <GlommioRuntime as AsyncRuntime>::Oneshot::channel::<io::Result<()>>();
        (IOFlushed::signal(tx), async move {
            rx.await.expect("the callback fires")
        })
    }

    async fn append_durable(store: &mut LogStore, entries: Vec<Entry>) {
        let (cb, flushed) = callback();
        store.append(entries, cb).await.expect("append");
        flushed.await.expect("flushed");
    }

    async fn read_all(store: &mut LogStore) -> Vec<Entry> {
        store.try_get_log_entries(..).await.expect("read")
    }

    /// A log that lost committed entries (a truncated or missing last
    /// segment) is refused at open in our words, naming the indexes, and
    /// counts as damage a replica repairs from its peers.
    #[test]
    fn a_log_ending_below_its_committed_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            {
                let mut store = LogStore::open(dir.path()).await.unwrap();
                let mut entries = vec![membership(1, 0), blank(1, 1)];
                entries.extend((2..40).map(|i| normal(1, i, vec![i as u8; 8])));
                append_durable(&mut store, entries).await;
                store.save_committed(Some(log_id(1, 2, 35))).await.unwrap();
                // What a lost tail looks like on disk: the log ends at 30.
                store.truncate_after(Some(log_id(1, 2, 30))).await.unwrap();
            }
            let refused = LogStore::open(dir.path()).await.err().expect("refused");
            assert!(
                matches!(
                    refused,
                    LogStoreError::BelowCommitted {
                        last: Some(30),
                        committed: 35,
                        ..
                    }
                ),
                "{refused}"
            );
            assert!(refused.to_string().contains("below the committed index 35"));
            let group = crate::raft::GroupError::Log {
                group: 1,
                source: refused,
            };
            assert!(group.is_damage());
        });
    }

    #[test]
    fn entries_vote_and_purge_point_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let expected = {
                let mut store = LogStore::open(dir.path()).await.unwrap();
                let mut entries = vec![membership(1, 0), blank(1, 1)];
                entries
                    .extend((2..40).map(|i| normal(1 + i / 20, i, vec![i as u8; i as usize * 3])));
                append_durable(&mut store, entries[..10].to_vec()).await;
                append_durable(&mut store, entries[10..].to_vec()).await;
                store.save_vote(&Vote::new_committed(2, 2)).await.unwrap();
                store.save_committed(Some(log_id(2, 2, 35))).await.unwrap();
                store.purge(log_id(1, 2, 4)).await.unwrap();
                assert_eq!(read_all(&mut store).await, entries[5..]);
                entries[5..].to_vec()
            };
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(read_all(&mut store).await, expected);
            assert_eq!(
                store.read_vote().await.unwrap(),
                Some(Vote::new_committed(2, 2))
            );
            assert_eq!(
                store.read_committed().await.unwrap(),
                Some(log_id(2, 2, 35))
            );
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 2, 4)));
            assert_eq!(state.last_log_id, Some(log_id(2, 2, 39)));
            // Ranges in the middle, and past the end, read what exists.
            let middle = store.try_get_log_entries(7..=9).await.unwrap();
            assert_eq!(middle, expected[2..5]);
            assert_eq!(
                store.try_get_log_entries(38..100).await.unwrap(),
                expected[33..]
            );
            assert!(store.try_get_log_entries(0..3).await.unwrap().is_empty());
        });
    }

    #[test]
    fn truncation_is_durable_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            {
                let mut store = LogStore::open(dir.path()).await.unwrap();
                append_durable(
                    &mut store,
                    (0..20).map(|i| normal(1, i, vec![1; 10])).collect(),
                )
                .await;
                // Staged, not yet flushed: truncation flushes and completes it first.
                let (cb, flushed) = callback();
                store
                    .append(
                        (20..25)
                            .map(|i| normal(1, i, vec![2; 10]))
                            .collect::<Vec<_>>(),
                        cb,
                    )
                    .await
                    .unwrap();
                store.truncate_after(Some(log_id(1, 2, 14))).await.unwrap();
                flushed
                    .await
                    .expect("the truncated append still reports its flush");
                assert_eq!(
                    store.get_log_state().await.unwrap().last_log_id,
                    Some(log_id(1, 2, 14))
                );
                append_durable(
                    &mut store,
                    (15..18).map(|i| normal(2, i, vec![3; 10])).collect(),
                )
                .await;
            }
            let mut store = LogStore::open(dir.path()).await.unwrap();
            let all = read_all(&mut store).await;
            assert_eq!(all.len(), 18);
            assert_eq!(all[14], normal(1, 14, vec![1; 10]));
            assert_eq!(all[15], normal(2, 15, vec![3; 10]));
            assert_eq!(
                store.get_log_state().await.unwrap().last_log_id,
                Some(log_id(2, 2, 17))
            );
            store.truncate_after(None).await.unwrap();
            assert!(read_all(&mut store).await.is_empty());
            assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
        });
    }

    #[test]
    fn an_open_store_prepares_a_preallocated_segment_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join(LOG_DIR);
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async move {
            let mut store = LogStore::open(dir.path()).await.unwrap();
            append_durable(&mut store, vec![normal(1, 0, vec![1; 100])]).await;
            // The first segment grows by appends: a spare is started at once.
            let spare = || {
                std::fs::read_dir(&log_dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().ends_with(".log.tmp"))
            };
            for _ in 0..500 {
                if spare() {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(spare(), "no spare segment in {}", log_dir.display());
        });
    }

    #[test]
    fn appends_are_readable_before_they_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let mut store = LogStore::open(dir.path()).await.unwrap();
            let mut reader = store.get_log_reader().await;
            let mut pending = Vec::new();
            for i in 0..50 {
                let (cb, flushed) = callback();
                store
                    .append([normal(1, i, vec![i as u8; 100])], cb)
                    .await
                    .unwrap();
                // Readable at once through every reader, flushed or not.
                assert_eq!(
                    reader.try_get_log_entries(i..i + 1).await.unwrap(),
                    [normal(1, i, vec![i as u8; 100])]
                );
                pending.push(flushed);
            }
            for flushed in pending {
                flushed.await.expect("every append is flushed");
            }
            assert_eq!(store.shared.log.durable_last_index(), Some(49));
        });
    }

    #[test]
    fn appends_larger_than_one_group_flush_in_several_and_read_back_from_disk() {
        // 12 entries of 1 MiB: three times the log's group bound and more
        // than the in-memory tail keeps, so reads cross disk and tail.
        const ENTRY_BYTES: usize = 1 << 20;
        let body = |i: u64| vec![(i * 37 % 251) as u8; ENTRY_BYTES];
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            {
                let mut store = LogStore::open(dir.path()).await.unwrap();
                append_durable(&mut store, (0..12).map(|i| normal(1, i, body(i))).collect()).await;
                assert!(store.shared.state.borrow().tail_bytes <= TAIL_BYTES_MAX);
                assert!(
                    store.shared.state.borrow().tail.len() < 12,
                    "the tail was trimmed"
                );
                let all = read_all(&mut store).await;
                assert_eq!(all.len(), 12);
                for (i, entry) in all.iter().enumerate() {
                    assert_eq!(*entry, normal(1, i as u64, body(i as u64)));
                }
            }
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(
                store.try_get_log_entries(11..12).await.unwrap(),
                [normal(1, 11, body(11))]
            );
        });
    }
}
