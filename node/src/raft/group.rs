//! Opening a group: log store + state machine + network → a running `Raft`
//! that is leader and caught up, so the first `client_write` succeeds.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::SnapshotPolicy;

use super::log_store::{LogStore, LogStoreError};
use super::network::SoloNetwork;
use super::state_machine::{GroupState, GroupStateMachine, StateMachineError, StateStoreConfig};
use super::type_config::{NodeAddr, NodeId, Raft, TypeConfig};

const SNAPSHOT_DIR: &str = "snapshots";
/// Where a group's state store lives, in its directory.
const STORE_DIR: &str = "store";

/// Raft tuning of every group of a node.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Seal the Raft log's records with AES-256-GCM (`--encryption-key-file`,
    /// `SETTLE_ENCRYPTION_KEY`).
    pub at_rest: Option<std::sync::Arc<settle_storage::Cipher>>,
    /// Leader heartbeat period (ms).
    pub heartbeat_interval_ms: u64,
    /// Election timeout range (ms); must exceed the heartbeat.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries per AppendEntries RPC. A shard entry already batches up to
    /// 65,536 transactions, so a few hundred entries is megabytes.
    pub max_payload_entries: u64,
    /// Entries openraft merges into one `LogStore::append` (one flush).
    pub max_append_entries: u64,
    /// Build a snapshot after this many entries since the last one. Building
    /// serialises the whole state on the group's core, so not too often.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for lagging followers.
    /// At least one snapshot interval: openraft purges the log behind each
    /// new snapshot even while a follower is still installing an older one,
    /// and a follower whose next entry was purged meanwhile needs another
    /// snapshot, and another (the nemesis caught a restarted node installing
    /// snapshots for minutes, never serving, with 20 kept behind snapshots
    /// every 200). Keeping an interval's worth lets it survive one new
    /// snapshot during its install.
    pub logs_kept_after_snapshot: u64,
    /// How long [`open_group`] waits for the group to be leader and caught up.
    pub ready_timeout: Duration,
    /// This node's Raft address, recorded in the group's membership.
    pub advertise_addr: String,
    /// Ask peers whether they would vote before starting an election
    /// (clusters: a node that was cut off does not disrupt a healthy leader
    /// when it returns).
    pub pre_vote: bool,
    /// Let a leader restart replication from scratch to a follower whose log
    /// went backwards. Clusters need it for a node that lost its data
    /// directory and rejoins (that node refuses votes until it caught up,
    /// see `cluster::core`); single-node groups never see it.
    pub allow_log_reversion: bool,
    /// Sizes of each group's state store.
    pub store: StateStoreConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            max_payload_entries: 256,
            max_append_entries: 1024,
            snapshot_logs_since_last: 20_000,
            logs_kept_after_snapshot: 20_000,
            ready_timeout: Duration::from_secs(10),
            advertise_addr: String::new(),
            pre_vote: false,
            allow_log_reversion: false,
            store: StateStoreConfig::default(),
            at_rest: None,
        }
    }
}

impl GroupConfig {
    /// openraft's config for group `group`.
    pub fn raft_config(&self, group: u16) -> Result<Arc<openraft::Config>, GroupError> {
        let config = openraft::Config {
            cluster_name: format!("settle-group-{group}"),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            max_payload_entries: self.max_payload_entries,
            max_append_entries: Some(self.max_append_entries),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // A restarted leader must win a new election rather than resume:
            // resuming is only safe when the committed log id is persisted on
            // every commit, and ours is persisted at most once a second.
            enable_leader_restore: Some(false),
            enable_pre_vote: Some(self.pre_vote),
            allow_log_reversion: Some(self.allow_log_reversion),
            ..Default::default()
        };
        Ok(Arc::new(
            config
                .validate()
                .map_err(|e| GroupError::Config(e.to_string()))?,
        ))
    }
}

/// Why a group could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group {group}: log store: {source}")]
    Log {
        group: u16,
        #[source]
        source: LogStoreError,
    },
    #[error("group {group}: state machine: {source}")]
    StateMachine {
        group: u16,
        #[source]
        source: StateMachineError,
    },
    #[error("invalid Raft config: {0}")]
    Config(String),
    /// openraft refused to start or initialize (its errors are not `Send`,
    /// so only the message is kept).
    #[error("group {group}: raft: {message}")]
    Raft { group: u16, message: String },
    #[error("group {group}: not leader and caught up within {timeout:?}: {message}")]
    NotReady {
        group: u16,
        timeout: Duration,
        message: String,
    },
}

impl GroupError {
    /// Whether the group's files are damaged (corrupt, truncated or
    /// missing pieces, files from different states), as opposed to a
    /// configuration or I/O problem: damage a replica can repair by
    /// rebuilding the group from its peers (see `cluster::repair`).
    pub fn is_damage(&self) -> bool {
        use settle_storage::Error as S;
        let storage = |e: &S| matches!(e, S::Corrupt { .. } | S::CorruptFile { .. });
        match self {
            GroupError::Log { source, .. } => match source {
                LogStoreError::Storage(e) => storage(e),
                LogStoreError::BadMeta { .. }
                | LogStoreError::BadRecord { .. }
                | LogStoreError::PurgeMismatch { .. }
                | LogStoreError::BelowCommitted { .. } => true,
            },
            GroupError::StateMachine { source, .. } => match source {
                StateMachineError::Storage(e) => storage(e),
                StateMachineError::BadMeta(_)
                | StateMachineError::BadData(_)
                | StateMachineError::Store(_) => true,
            },
            GroupError::Config(_) | GroupError::Raft { .. } | GroupError::NotReady { .. } => false,
        }
    }
}

/// Opens group `group` of node `node_id` from `dir` as a single-node group:
/// restores the newest snapshot, lets openraft replay the log after it,
/// initializes the group with `{node_id}` if it is pristine, and returns once
/// this node is leader (acknowledged by its quorum) and has applied every
/// entry it holds. Must run on the executor that will run the group.
pub async fn open_group<S: GroupState>(
    group: u16,
    node_id: u64,
    dir: &Path,
    config: &GroupConfig,
) -> Result<(Raft<GroupStateMachine<S>>, Rc<RefCell<S>>), GroupError> {
    let members = BTreeMap::from([(
        node_id,
        NodeAddr {
            addr: config.advertise_addr.clone(),
        },
    )]);
    open_group_with(
        group,
        node_id,
        dir,
        config,
        SoloNetwork::new(group, node_id),
        members,
    )
    .await
}

/// Opens group `group` of node `node_id` from `dir` (newest snapshot, then
/// openraft replays the log after it) and starts its Raft, without
/// initializing it or waiting for a leader: a replica of a multi-node group,
/// which learns its membership and leader from its peers (or is initialized
/// by the caller). Must run on the executor that will run the group.
pub async fn open_replica<S, N>(
    group: u16,
    node_id: NodeId,
    dir: &Path,
    config: &GroupConfig,
    network: N,
) -> Result<(Raft<GroupStateMachine<S>>, Rc<RefCell<S>>), GroupError>
where
    S: GroupState,
    N: RaftNetworkFactory<TypeConfig>,
    N::Network: NetSnapshot<TypeConfig, SnapshotData = Vec<u8>>,
{
    let raft_config = config.raft_config(group)?;
    let log_store = LogStore::open_sealed(dir, config.at_rest.clone())
        .await
        .map_err(|source| GroupError::Log { group, source })?;
    let (mut state_machine, state) = GroupStateMachine::<S>::open(
        dir.join(SNAPSHOT_DIR),
        &dir.join(STORE_DIR),
        &config.store,
        config.at_rest.clone(),
    )
    .await
    .map_err(|source| GroupError::StateMachine { group, source })?;
    state_machine.name_group(group);
    let raft = Raft::new(node_id, raft_config, network, log_store, state_machine)
        .await
        .map_err(|e| GroupError::Raft {
            group,
            message: e.to_string(),
        })?;
    Ok((raft, state))
}

/// [`open_group`] with any network. `initial_members` is used only if the
/// group is pristine; with several members this node waits until it leads,
/// so for multi-node groups a caller that is not meant to lead needs a
/// different wait (that arrives with the TCP network).
pub async fn open_group_with<S, N>(
    group: u16,
    node_id: NodeId,
    dir: &Path,
    config: &GroupConfig,
    network: N,
    initial_members: BTreeMap<NodeId, NodeAddr>,
) -> Result<(Raft<GroupStateMachine<S>>, Rc<RefCell<S>>), GroupError>
where
    S: GroupState,
    N: RaftNetworkFactory<TypeConfig>,
    N::Network: NetSnapshot<TypeConfig, SnapshotData = Vec<u8>>,
{
    let raft_error = |message: String| GroupError::Raft { group, message };
    let (raft, state) = open_replica::<S, N>(group, node_id, dir, config, network).await?;
    if !raft
        .is_initialized()
        .await
        .map_err(|e| raft_error(e.to_string()))?
    {
        raft.initialize(initial_members)
            .await
            .map_err(|e| raft_error(e.to_string()))?;
    }
    let not_ready = |message: String| GroupError::NotReady {
        group,
        timeout: config.ready_timeout,
        message,
    };
    let metrics = raft
        .wait(Some(config.ready_timeout))
        .leader_with_quorum_acked(None, "group leads with its quorum")
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    // Leading means this term's blank entry is committed; wait until it (and
    // so every older entry) is applied, so the state answers lookups.
    let last_index = metrics.last_log_index;
    raft.wait(Some(config.ready_timeout))
        .applied_index_at_least(last_index, "group applied its log")
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    debug_assert!(
        raft.metrics()
            .borrow_watched()
            .last_applied
            .map(|l| l.index)
            >= last_index
    );
    Ok((raft, state))
}

/// Why a group's Raft core stopped on its own (a storage error it cannot
/// go on from, such as a full disk, or a panic), once it has; `None` while
/// it runs and after a normal shutdown. A node does not serve with a dead
/// group: it stops whole (fail-stop), so that its supervisor restarts it
/// once the cause is fixed, instead of answering as a replica that no
/// longer replicates.
pub fn fatal_stop<SM>(raft: &Raft<SM>) -> Option<String>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig>,
{
    match &raft.metrics().borrow_watched().running_state {
        Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
        Err(fatal) => Some(fatal.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use openraft::AsyncRuntime;
    use settle_codec::TxResult;

    use super::*;
    use crate::raft::runtime::GlommioRuntime;
    use crate::raft::testkit::tally::{self, Tally};
    use crate::raft::type_config::ShardReply;

    const WAIT_MAX: Duration = Duration::from_secs(10);

    #[test]
    fn group_restores_from_snapshot_plus_log_after_purge() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig {
            snapshot_logs_since_last: 40,
            logs_kept_after_snapshot: 5,
            ..GroupConfig::default()
        };
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            let expected = {
                let (raft, state) = open_group::<Tally>(1, 7, dir.path(), &config)
                    .await
                    .expect("open");
                for v in 1..=150u64 {
                    let response = raft.client_write(tally::command(v)).await.expect("write");
                    assert_eq!(
                        response.data,
                        ShardReply {
                            results: vec![TxResult::Created],
                            rejected: None,
                        }
                    );
                }
                let last = raft.metrics().borrow_watched().last_log_index;
                raft.wait(Some(WAIT_MAX))
                    .metrics(
                        |m| {
                            m.snapshot.is_some_and(|s| s.index >= 100)
                                && m.purged.is_some_and(|p| p.index >= 90)
                        },
                        "snapshot and purge",
                    )
                    .await
                    .expect("the snapshot policy builds snapshots and purges the log");
                let expected = state.borrow().clone();
                assert_eq!((expected.commands, expected.sum), (150, 150 * 151 / 2));
                assert_eq!(Some(expected.last_index), last);
                raft.shutdown().await.expect("shutdown");
                expected
            };
            let (raft, state) = open_group::<Tally>(1, 7, dir.path(), &config)
                .await
                .expect("reopen");
            let metrics = raft.metrics().borrow_watched().clone();
            assert!(
                metrics.purged.is_some_and(|p| p.index >= 90),
                "reopened from a purged log"
            );
            assert_eq!(state.borrow().commands, expected.commands);
            assert_eq!(state.borrow().sum, expected.sum);
            assert!(
                state.borrow().last_index >= expected.last_index,
                "every entry held at open is applied"
            );
            let response = raft
                .client_write(tally::command(1_000))
                .await
                .expect("write after reopen");
            assert!(
                response.log_id.index > expected.last_index + 1,
                "after the new term's blank entry"
            );
            assert_eq!(state.borrow().sum, expected.sum + 1_000);
            raft.shutdown().await.expect("shutdown");
        });
    }

    #[test]
    fn invalid_timeouts_are_a_config_error() {
        let config = GroupConfig {
            election_timeout_min_ms: 40,
            ..GroupConfig::default()
        };
        assert!(matches!(config.raft_config(1), Err(GroupError::Config(_))));
        assert!(GroupConfig::default().raft_config(1).is_ok());
    }
}
