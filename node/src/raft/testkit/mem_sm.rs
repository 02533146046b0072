//! TEST ONLY: an in-memory state machine that counts applied requests.
//!
//! Replies are empty; a test checks order and exactly-once apply by reading
//! the counters right after each write returns (it returns after apply).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use futures_util::{Stream, TryStreamExt};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, SnapshotMeta, StoredMembership};

use crate::raft::type_config::{LogId, ShardReply, TypeConfig};

/// Bytes of an encoded [`Counters`] snapshot: two u64.
const SNAPSHOT_BYTES: usize = 16;

/// The whole application state of the test machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Normal entries applied.
    pub requests_applied: u64,
    /// Sum of their payload lengths.
    pub request_bytes_applied: u64,
}

impl Counters {
    fn encode(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SNAPSHOT_BYTES);
        bytes.extend_from_slice(&self.requests_applied.to_le_bytes());
        bytes.extend_from_slice(&self.request_bytes_applied.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Self, io::Error> {
        let bytes: &[u8; SNAPSHOT_BYTES] = bytes
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "snapshot is not 16 bytes"))?;
        let (requests, request_bytes) = bytes.split_at(8);
        Ok(Self {
            requests_applied: u64::from_le_bytes(requests.try_into().expect("8 bytes")),
            request_bytes_applied: u64::from_le_bytes(request_bytes.try_into().expect("8 bytes")),
        })
    }
}

#[derive(Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    counters: Counters,
    snapshot: Option<SnapshotOf<TypeConfig, Vec<u8>>>,
}

/// Shared handle, so a test can read the counters while Raft owns the machine.
#[derive(Clone, Default)]
pub struct MemStateMachine {
    state: Rc<RefCell<SmState>>,
}

impl MemStateMachine {
    /// What has been applied so far.
    pub fn counters(&self) -> Counters {
        self.state.borrow().counters
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, io::Error> {
        let mut state = self.state.borrow_mut();
        let snapshot = SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
            },
            snapshot: state.counters.encode(),
        };
        state.snapshot = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        let state = self.state.borrow();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let mut state = self.state.borrow_mut();
            assert!(
                state.last_applied < Some(log_id),
                "entries must apply in log order"
            );
            state.last_applied = Some(log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(request) => {
                    state.counters.requests_applied += 1;
                    state.counters.request_bytes_applied += request.0.len() as u64;
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(log_id), membership);
                }
            }
            drop(state);
            if let Some(responder) = responder {
                responder.send(ShardReply::default());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let counters = Counters::decode(&snapshot)?;
        let mut state = self.state.borrow_mut();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.counters = counters;
        state.snapshot = Some(SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, io::Error> {
        Ok(self.state.borrow().snapshot.clone())
    }
}
