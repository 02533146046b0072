//! The state machine of a group: openraft's `RaftStateMachine` over a
//! [`GroupState`] (the shard's or the control group's deterministic state).
//!
//! The state lives in an `Rc<RefCell<S>>` shared with the group's proposer on
//! the same core, which reads it for lookups between applies (never across
//! an await). Snapshots are `S::snapshot()` bytes plus the last applied log id
//! and membership, persisted with `settle_storage::SnapshotStore`; on open the
//! newest snapshot is restored and openraft replays the log after it.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use glommio::sync::Semaphore;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use rkyv::util::AlignedVec;
use tracing::error;

use super::digest::{Digest, DigestRing};
use super::snapshot_data::{self, frame, split};
use super::type_config::{LogId, ShardReply, TypeConfig};

/// Sizes of a group's state store (groups whose state has one).
#[derive(Debug, Clone, Copy)]
pub struct StateStoreConfig {
    pub rocks: settle_store::RocksOptions,
    /// Bytes of the in-memory filter of keys that live in the store.
    pub key_filter_bytes: usize,
    /// Most unfinished records held in memory.
    pub hot_records_max: usize,
    /// Width of a fresh shard's flow history buckets (liquidity forecasts;
    /// a shard restored from a snapshot keeps the width it has).
    pub flow_bucket_us: u64,
}

/// Bytes of memory per unfinished record (slab cell, index, queue place,
/// allocator slack): what `--memory-budget` divides the hot share by.
pub const HOT_RECORD_BYTES: usize = 256;

/// What a node uses outside its shards' budgets (executors' I/O memory,
/// log buffers, the control group, connections).
pub const NODE_OVERHEAD_BYTES: usize = 512 << 20;

impl StateStoreConfig {
    /// Splits a node's memory budget between its `shards` state stores:
    /// per shard, 1/8 block cache, 1/8 memtables, 1/4 key filter and 1/2
    /// unfinished records in memory.
    pub fn from_memory_budget(budget: usize, shards: usize) -> StateStoreConfig {
        let per_shard = budget.saturating_sub(NODE_OVERHEAD_BYTES) / shards.max(1);
        let memtables = settle_store::rocks_memtables(per_shard / 8);
        StateStoreConfig {
            rocks: settle_store::RocksOptions {
                cache_bytes: (per_shard / 8).max(8 << 20),
                write_buffer_bytes: memtables.max(1 << 20),
                background_jobs: 2,
            },
            key_filter_bytes: (per_shard / 4).max(16 << 20),
            hot_records_max: (per_shard / 2 / HOT_RECORD_BYTES).max(100_000),
            flow_bucket_us: crate::shard::flows::FLOW_BUCKET_US_DEFAULT,
        }
    }
}

impl Default for StateStoreConfig {
    fn default() -> Self {
        StateStoreConfig {
            rocks: settle_store::RocksOptions::default(),
            key_filter_bytes: 128 << 20,
            hot_records_max: 20_000_000,
            flow_bucket_us: crate::shard::flows::FLOW_BUCKET_US_DEFAULT,
        }
    }
}

/// Alignment of the bytes [`GroupState::apply`] receives: rkyv's validated
/// access needs the archive's alignment (16 for the u128 transaction id).
pub const COMMAND_ALIGN: usize = 16;

/// The deterministic, replicated state of one group.
///
/// Implementations must be pure functions of the log: same entries in the
/// same order → same state and same [`GroupState::snapshot`] bytes on every
/// replica. `Default` is the state of an empty log.
pub trait GroupState: Default + 'static {
    /// Applies one command entry (the bytes of a `ShardRequest`) at
    /// `log_index`; fills `reply`. `command` is 16-byte aligned
    /// ([`COMMAND_ALIGN`]), so rkyv archives can be accessed in place.
    ///
    /// `Err` means the entry cannot be interpreted at all (a proposer bug or
    /// a forged entry: the log is checksummed) and the state must be
    /// unchanged. The entry is then rejected: applied as a no-op on every
    /// replica alike (the same bytes fail the same way), counted, logged,
    /// and its proposer answered with the reason. A replica never stops on
    /// it. Refusals that are part of the state's rules are `Ok` with a reply
    /// saying so.
    fn apply(
        &mut self,
        log_index: u64,
        command: &[u8],
        reply: &mut ShardReply,
    ) -> Result<(), String>;

    /// A blank or membership entry: only the applied index moves. Never
    /// called for log index 0 (the initial membership entry), so a state may
    /// use 0 as "nothing applied".
    fn apply_noop(&mut self, log_index: u64);

    /// One bounded step of memory work ahead of applies (readying memory
    /// that inserts will write, so they do not pay its page faults). Run
    /// between applies by a background task; must not change what the
    /// state holds. Returns whether there may be more to do.
    fn prepare_memory(&mut self) -> bool {
        false
    }

    /// Opens the state's store in `dir` (a state without one ignores it),
    /// sealed with `at_rest` when the node has at-rest keys (the keys of its
    /// log and snapshots). `snapshot_index` is the snapshot the state was
    /// restored from: a store not flushed up to it lost data, and is refused.
    fn attach_store(
        &mut self,
        _dir: &Path,
        _config: &StateStoreConfig,
        _at_rest: Option<&Arc<settle_storage::Cipher>>,
        _snapshot_index: u64,
    ) -> Result<(), String> {
        Ok(())
    }

    /// The state's store, if it has one: flushed before each snapshot is
    /// persisted, and sent with snapshots to other replicas. What the state
    /// applied so far is in it, or on its way there, by the time a reader
    /// of the handle reads (a state writing behind hands over its writes).
    fn store(&mut self) -> Option<Arc<dyn settle_store::Store>> {
        None
    }

    /// Deterministic bytes of the state held in memory (same state → same
    /// bytes on every replica); the store's part travels separately.
    fn snapshot(&self) -> Vec<u8>;

    /// A summary of the whole state (store included) in constant time: the
    /// same log applied gives the same fingerprint on every replica, and a
    /// replica that applied it differently gives, with overwhelming
    /// likelihood, another. Called after every entry (see
    /// [`super::digest`]), so it must not grow with the state: a state
    /// keeps running checksums of what it changes.
    fn fingerprint(&self) -> u64;

    /// The state a snapshot describes.
    fn restore(bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized;

    /// Replaces the live state with one restored from a snapshot sent by the
    /// leader. The default swaps it whole; a state holding local, non
    /// replicated handles (e.g. where it publishes itself) overrides this to
    /// carry them over.
    fn install(&mut self, restored: Self)
    where
        Self: Sized,
    {
        *self = restored;
    }
}

/// Why a state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    #[error("snapshot store: {0}")]
    Storage(#[from] settle_storage::Error),
    #[error("snapshot metadata does not decode: {0}")]
    BadMeta(String),
    #[error("snapshot data does not restore: {0}")]
    BadData(String),
    #[error("state store: {0}")]
    Store(String),
}

/// Snapshot files of a group, shared by the state machine and its builders
/// (a builder writes from a task of its own while entries keep applying).
struct Snapshots {
    store: settle_storage::SnapshotStore,
    /// Meta of the newest durable snapshot.
    current: RefCell<Option<SnapshotMetaOf<TypeConfig>>>,
    /// One snapshot write at a time: the store numbers files by listing them.
    writer: Semaphore,
}

impl Snapshots {
    /// Persists a snapshot unless a newer one is already durable (a slow
    /// builder finishing after an install). Returns whether it was written.
    async fn persist(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<bool> {
        let _writer = self
            .writer
            .acquire_permit(1)
            .await
            .expect("snapshot writer semaphore is never closed");
        if self
            .current
            .borrow()
            .as_ref()
            .is_some_and(|cur| cur.last_log_id >= meta.last_log_id)
        {
            return Ok(false);
        }
        let meta_bytes = serde_json::to_vec(meta).expect("snapshot meta is plain data");
        self.store
            .write(&meta_bytes, data)
            .await
            .map_err(storage_to_io)?;
        *self.current.borrow_mut() = Some(meta.clone());
        Ok(true)
    }
}

/// How often the state is asked to prepare memory when it had nothing to do:
/// a shard fills a slab chunk (4,096 transactions) in tens of milliseconds
/// at full load and the chunk is readied when the last one is half full.
const PREPARE_MEMORY_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Runs [`GroupState::prepare_memory`] between applies (the state is
/// borrowed only synchronously, never across an await) until the state
/// machine is gone.
async fn prepare_memory<S: GroupState>(state: std::rc::Weak<RefCell<S>>) {
    loop {
        let more = match state.upgrade() {
            None => return,
            Some(state) => state
                .try_borrow_mut()
                .is_ok_and(|mut state| state.prepare_memory()),
        };
        if more {
            glommio::yield_if_needed().await;
        } else {
            glommio::timer::sleep(PREPARE_MEMORY_POLL).await;
        }
    }
}

/// openraft's state machine for a group whose state is `S`.
pub struct GroupStateMachine<S: GroupState> {
    state: Rc<RefCell<S>>,
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    snapshots: Rc<Snapshots>,
    /// Reused copy of the command being applied, aligned for rkyv.
    scratch: AlignedVec<COMMAND_ALIGN>,
    /// Committed entries that did not apply (see [`GroupState::apply`]).
    rejected_entries: u64,
    /// The state's fingerprint after each recent entry (see [`super::digest`]).
    digests: DigestRing,
    /// Entered while an entry applies: what the state logs says its group.
    span: tracing::Span,
}

impl<S: GroupState> GroupStateMachine<S> {
    /// Opens the snapshot store in `dir` and restores the newest snapshot, if
    /// any (else `S::default()`). Returns the machine and the state handle
    /// the proposer shares.
    pub async fn open(
        dir: impl Into<PathBuf>,
        store_dir: &Path,
        store_config: &StateStoreConfig,
        at_rest: Option<Arc<settle_storage::Cipher>>,
    ) -> Result<(Self, Rc<RefCell<S>>), StateMachineError> {
        // Snapshots and the state's store are sealed like the log when the
        // node has at-rest keys.
        let store = settle_storage::SnapshotStore::open_sealed(dir, at_rest.clone()).await?;
        let (mut state, meta) = match store.read_latest().await? {
            None => (S::default(), None),
            Some(snapshot) => {
                let meta: SnapshotMetaOf<TypeConfig> = serde_json::from_slice(&snapshot.meta)
                    .map_err(|e| StateMachineError::BadMeta(e.to_string()))?;
                let (hot, _) = split(&snapshot.data).map_err(StateMachineError::BadData)?;
                let state = S::restore(hot).map_err(StateMachineError::BadData)?;
                (state, Some(meta))
            }
        };
        let snapshot_index = meta
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map_or(0, |id| id.index);
        state
            .attach_store(store_dir, store_config, at_rest.as_ref(), snapshot_index)
            .map_err(StateMachineError::Store)?;
        let state = Rc::new(RefCell::new(state));
        glommio::spawn_local(prepare_memory(Rc::downgrade(&state))).detach();
        let machine = GroupStateMachine {
            state: state.clone(),
            last_applied: meta.as_ref().and_then(|m| m.last_log_id),
            membership: meta
                .as_ref()
                .map(|m| m.last_membership.clone())
                .unwrap_or_default(),
            snapshots: Rc::new(Snapshots {
                store,
                current: RefCell::new(meta),
                writer: Semaphore::new(1),
            }),
            scratch: AlignedVec::new(),
            rejected_entries: 0,
            digests: DigestRing::default(),
            span: tracing::Span::none(),
        };
        let mut machine = machine;
        if let Some(applied) = machine.last_applied {
            let fingerprint = machine.state.borrow().fingerprint();
            machine.digests.push(applied.index, fingerprint);
        }
        Ok((machine, state))
    }

    /// The state handle (the same `Rc` that [`GroupStateMachine::open`] returned).
    pub fn state(&self) -> &Rc<RefCell<S>> {
        &self.state
    }

    /// The last applied log id: what the state reflects right now.
    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    /// Names the group in the lines its state logs while applying.
    pub fn name_group(&mut self, group: u16) {
        self.span = tracing::info_span!("group", group);
    }

    fn apply_command(&mut self, log_index: u64, command: &[u8]) -> ShardReply {
        let span = self.span.clone();
        let _in_group = span.enter();
        self.scratch.clear();
        self.scratch.extend_from_slice(command);
        let mut reply = ShardReply::default();
        let applied = self
            .state
            .borrow_mut()
            .apply(log_index, &self.scratch, &mut reply);
        match applied {
            Ok(()) => {
                assert!(reply.rejected.is_none());
                reply
            }
            Err(reason) => {
                self.rejected_entries += 1;
                crate::metrics::cells::entry_rejected();
                error!(
                    log_index,
                    bytes = command.len(),
                    rejected_entries = self.rejected_entries,
                    %reason,
                    "a committed entry does not apply: rejected as a no-op on every replica, \
                     the state is unchanged"
                );
                // The state left no trace of it (its contract); only the
                // applied index moves, as for a blank entry.
                self.apply_noop(log_index);
                ShardReply {
                    results: Vec::new(),
                    rejected: Some(format!("entry {log_index} does not apply: {reason}")),
                }
            }
        }
    }

    /// Committed entries rejected since this replica started.
    pub fn rejected_entries(&self) -> u64 {
        self.rejected_entries
    }

    /// The replica's digest after applying `index` (the newest with
    /// `None`), if it still keeps it: constant time, no serialisation.
    pub fn digest_at(&self, index: Option<u64>) -> Option<Digest> {
        self.digests.at(index)
    }

    fn apply_noop(&mut self, log_index: u64) {
        if log_index > 0 {
            self.state.borrow_mut().apply_noop(log_index);
        }
    }
}

/// A consistent view of the state taken when openraft asked for a snapshot;
/// writing it to disk happens later, in openraft's builder task.
pub struct GroupSnapshotBuilder {
    snapshots: Rc<Snapshots>,
    meta: SnapshotMetaOf<TypeConfig>,
    data: Option<Vec<u8>>,
    store: Option<Arc<dyn settle_store::Store>>,
}

/// Flushes `store` (off the core) and marks it as holding everything up to
/// snapshot `index`, so that the log before it may be purged.
async fn flush_store_for(store: Arc<dyn settle_store::Store>, index: u64) -> io::Result<()> {
    crate::store_io::run(move || {
        snapshot_data::mark_flushed(&*store, &mut settle_store::Batch::new(), index)
    })
    .await
    .map_err(|e| io::Error::other(format!("state store flush: {e}")))?
    .map_err(|e| io::Error::other(format!("state store flush: {e}")))
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        // openraft builds once per builder; a second call would need a copy
        // of a possibly large state, so it is refused instead.
        let data = self
            .data
            .take()
            .ok_or_else(|| io::Error::other("snapshot builder used twice"))?;
        if let Some(store) = self.store.take() {
            let index = self.meta.last_log_id.map_or(0, |id| id.index);
            flush_store_for(store, index).await?;
        }
        self.snapshots.persist(&self.meta, &data).await?;
        Ok(SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: self.meta.clone(),
            snapshot: data,
        })
    }
}

impl<S: GroupState> RaftStateMachine<TypeConfig> for GroupStateMachine<S> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            assert!(
                self.last_applied < Some(log_id),
                "entries apply in log order"
            );
            let reply = match entry.payload {
                EntryPayload::Blank => {
                    self.apply_noop(log_id.index);
                    ShardReply::default()
                }
                EntryPayload::Normal(request) => self.apply_command(log_id.index, &request.0),
                EntryPayload::Membership(membership) => {
                    self.apply_noop(log_id.index);
                    self.membership = StoredMembership::new(Some(log_id), membership);
                    ShardReply::default()
                }
            };
            self.last_applied = Some(log_id);
            self.digests
                .push(log_id.index, self.state.borrow().fingerprint());
            if let Some(responder) = responder {
                responder.send(reply);
            }
            // A follower catching up applies many large entries in one call;
            // let the core's other tasks (network, heartbeats, other groups)
            // run between entries when this task has had its share.
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Serialised now, synchronously: later applies must not leak into it.
        let data = frame(&self.state.borrow().snapshot());
        let store = self.state.borrow_mut().store();
        GroupSnapshotBuilder {
            snapshots: self.snapshots.clone(),
            meta: SnapshotMetaOf::<TypeConfig> {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
            },
            data: Some(data),
            store,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let bad = |e: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot does not restore: {e}"),
            )
        };
        let (hot, cold) = split(&snapshot).map_err(bad)?;
        let restored = S::restore(hot).map_err(bad)?;
        let local = frame(hot);
        let store = self.state.borrow_mut().store();
        if let Some(store) = store {
            // The store's contents become the leader's, durably, before the
            // snapshot that relies on them is persisted.
            let index = meta.last_log_id.map_or(0, |id| id.index);
            let cold = cold.to_vec();
            crate::store_io::run(move || snapshot_data::load_cold(&*store, &cold, index))
                .await
                .map_err(|e| bad(e.to_string()))?
                .map_err(bad)?;
        } else if !cold.is_empty() {
            return Err(bad("a cold part for a state without a store".into()));
        }
        drop(snapshot);
        self.snapshots.persist(meta, &local).await?;
        self.state.borrow_mut().install(restored);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        // Digests before the snapshot described the replaced state.
        self.digests.clear();
        if let Some(applied) = self.last_applied {
            self.digests
                .push(applied.index, self.state.borrow().fingerprint());
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, io::Error> {
        // Under the writer permit: the newest file and `current` agree.
        let _writer = self
            .snapshots
            .writer
            .acquire_permit(1)
            .await
            .expect("snapshot writer semaphore is never closed");
        let Some(snapshot) = self
            .snapshots
            .store
            .read_latest()
            .await
            .map_err(storage_to_io)?
        else {
            return Ok(None);
        };
        let meta: SnapshotMetaOf<TypeConfig> =
            serde_json::from_slice(&snapshot.meta).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("snapshot meta: {e}"))
            })?;
        let mut data = snapshot.data;
        let store = self.state.borrow_mut().store();
        if let Some(store) = store {
            // Sent to a replica: it needs the store's part too.
            data = glommio::executor()
                .spawn_blocking(move || snapshot_data::dump_cold(&*store, &mut data).map(|()| data))
                .await
                .map_err(|e| io::Error::other(format!("state store dump: {e}")))?;
        }
        Ok(Some(SnapshotOf::<TypeConfig, Vec<u8>> {
            meta,
            snapshot: data,
        }))
    }
}

/// A storage error as the `io::Error` openraft's traits speak, keeping the
/// OS error kind when there is one; corruption is counted as a data loss event.
pub(crate) fn storage_to_io(e: settle_storage::Error) -> io::Error {
    let kind = match &e {
        settle_storage::Error::Io { source, .. } => source.kind(),
        settle_storage::Error::Corrupt { .. } | settle_storage::Error::CorruptFile { .. } => {
            // Only a read's checksum or header check finds these.
            crate::metrics::cells::data_loss_event();
            io::ErrorKind::InvalidData
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::{AsyncRuntime, Membership};

    use super::*;
    use crate::raft::runtime::GlommioRuntime;
    use crate::raft::testkit::tally::{self, Tally};
    use crate::raft::type_config::{Entry, ShardRequest};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id: 1 },
            index,
        }
    }

    fn entries(terms_and_values: &[(u64, u64, Option<u64>)]) -> Vec<Entry> {
        terms_and_values
            .iter()
            .map(|&(term, index, value)| Entry {
                log_id: log_id(term, index),
                payload: match value {
                    Some(v) => EntryPayload::Normal(tally::command(v)),
                    None if index == 0 => EntryPayload::Membership(Membership::new_with_defaults(
                        vec![BTreeSet::from([1])],
                        [],
                    )),
                    None => EntryPayload::Blank,
                },
            })
            .collect()
    }

    async fn apply(machine: &mut GroupStateMachine<Tally>, entries: Vec<Entry>) -> io::Result<()> {
        let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
        machine.apply(stream).await
    }

    #[test]
    fn a_checksum_failure_on_read_is_counted_as_a_data_loss_event() {
        std::thread::spawn(|| {
            let corrupt = settle_storage::Error::Corrupt {
                segment: "00000001.log".into(),
                offset: 4096,
                reason: settle_storage::CorruptReason::BadChecksum,
            };
            assert_eq!(storage_to_io(corrupt).kind(), io::ErrorKind::InvalidData);
            let other = settle_storage::Error::IndexGap {
                expected: 2,
                got: 3,
            };
            storage_to_io(other);
            assert_eq!(crate::metrics::cells::snapshot().data_loss_events, 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn snapshots_persist_restore_on_open_and_install_elsewhere() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let (mut a, state_a) = GroupStateMachine::<Tally>::open(
                dir_a.path(),
                &dir_a.path().join("store"),
                &StateStoreConfig::default(),
                None,
            )
            .await
            .unwrap();
            assert!(a.get_current_snapshot().await.unwrap().is_none());
            apply(
                &mut a,
                entries(&[(1, 0, None), (1, 1, None), (1, 2, Some(5)), (1, 3, Some(7))]),
            )
            .await
            .unwrap();
            assert_eq!(
                *state_a.borrow(),
                Tally {
                    last_index: 3,
                    commands: 2,
                    sum: 12
                }
            );

            let mut builder = a.get_snapshot_builder().await;
            // Applied after the builder was taken: not in this snapshot.
            apply(&mut a, entries(&[(2, 4, Some(100))])).await.unwrap();
            let snapshot = builder.build_snapshot().await.unwrap();
            assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));
            assert_eq!(
                Tally::restore(split(&snapshot.snapshot).unwrap().0)
                    .unwrap()
                    .sum,
                12
            );
            let current = a.get_current_snapshot().await.unwrap().expect("persisted");
            assert_eq!(current.meta, snapshot.meta);
            assert_eq!(current.snapshot, snapshot.snapshot);
            drop(a);

            // Reopen: the snapshot's state, not the later apply.
            let (mut a, state_a) = GroupStateMachine::<Tally>::open(
                dir_a.path(),
                &dir_a.path().join("store"),
                &StateStoreConfig::default(),
                None,
            )
            .await
            .unwrap();
            assert_eq!(
                *state_a.borrow(),
                Tally {
                    last_index: 3,
                    commands: 2,
                    sum: 12
                }
            );
            let (applied, membership) = a.applied_state().await.unwrap();
            assert_eq!(applied, Some(log_id(1, 3)));
            assert_eq!(membership.log_id(), &Some(log_id(1, 0)));

            // Install on another machine whose state handle is shared.
            let (mut b, state_b) = GroupStateMachine::<Tally>::open(
                dir_b.path(),
                &dir_b.path().join("store"),
                &StateStoreConfig::default(),
                None,
            )
            .await
            .unwrap();
            apply(&mut b, entries(&[(1, 0, None), (1, 1, Some(1))]))
                .await
                .unwrap();
            b.install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
                .await
                .unwrap();
            assert_eq!(
                *state_b.borrow(),
                Tally {
                    last_index: 3,
                    commands: 2,
                    sum: 12
                },
                "same Rc, new state"
            );
            assert_eq!(b.applied_state().await.unwrap().0, Some(log_id(1, 3)));
            apply(&mut b, entries(&[(2, 4, Some(1))])).await.unwrap();
            assert_eq!(state_b.borrow().sum, 13);
            drop(b);
            let (_b, state_b) = GroupStateMachine::<Tally>::open(
                dir_b.path(),
                &dir_b.path().join("store"),
                &StateStoreConfig::default(),
                None,
            )
            .await
            .unwrap();
            assert_eq!(
                state_b.borrow().sum,
                12,
                "the installed snapshot was persisted"
            );

            // An older snapshot finishing late never replaces a newer one.
            let mut late = a.get_snapshot_builder().await; // at index 3 again
            apply(&mut a, entries(&[(2, 4, Some(1)), (2, 5, Some(1))]))
                .await
                .unwrap();
            let newer = a
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            late.build_snapshot().await.unwrap();
            assert_eq!(
                a.get_current_snapshot().await.unwrap().unwrap().meta,
                newer.meta
            );
        });
    }

    #[test]
    fn an_entry_that_does_not_apply_is_rejected_as_a_no_op_and_the_group_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let (mut machine, state) = GroupStateMachine::<Tally>::open(
                dir.path(),
                &dir.path().join("store"),
                &StateStoreConfig::default(),
                None,
            )
            .await
            .unwrap();
            apply(&mut machine, entries(&[(1, 0, None), (1, 1, Some(3))]))
                .await
                .unwrap();
            let bad = Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Normal(ShardRequest(vec![1, 2, 3])),
            };
            // Not an error: the replica does not stop on it.
            apply(&mut machine, vec![bad]).await.unwrap();
            assert_eq!(machine.rejected_entries(), 1);
            assert_eq!(machine.applied_state().await.unwrap().0, Some(log_id(1, 2)));
            let tally = state.borrow().clone();
            assert_eq!(
                (tally.commands, tally.sum),
                (1, 3),
                "the state is unchanged but for its applied index"
            );
            // The next entry applies as usual.
            apply(&mut machine, entries(&[(1, 3, Some(4))]))
                .await
                .unwrap();
            assert_eq!((state.borrow().commands, state.borrow().sum), (2, 7));
            // Its proposer is told why, with no results.
            let reply = machine.apply_command(4, &[9, 9]);
            assert!(reply.results.is_empty());
            assert!(
                reply
                    .rejected
                    .as_deref()
                    .is_some_and(|r| r.starts_with("entry 4 does not apply")),
                "{reply:?}"
            );
        });
    }
}
