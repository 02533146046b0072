//! TEST ONLY: 3-node groups on the production stores (`LogStore` over real
//! files, `GroupStateMachine` with snapshots), joined by the in-process
//! router. Covers what a single-node group never does: a deposed leader's
//! uncommitted suffix being truncated, and a lagging node catching up from
//! a snapshot because the leader purged its log.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{AsyncRuntime, SnapshotPolicy};
use tempfile::TempDir;

use super::router::Router;
use super::tally::{self, Tally};
use super::{addr, shutdown_all, WAIT_MAX};
use crate::raft::log_store::LogStore;
use crate::raft::runtime::GlommioRuntime;
use crate::raft::state_machine::GroupStateMachine;
use crate::raft::type_config::{NodeId, Raft};

type Machine = GroupStateMachine<Tally>;

fn config(snapshot_policy: SnapshotPolicy) -> Arc<openraft::Config> {
    // Elections here are caused by the tests (an isolated leader), never
    // wanted from a starved core: on a loaded 2-core box a 150 ms timeout
    // let a spurious election fail a write ("write": ForwardToLeader) about
    // one run in four. The writes these tests check are not about speed.
    let config = openraft::Config {
        cluster_name: "settle-durable-test".to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 1_000,
        election_timeout_max: 2_000,
        snapshot_policy,
        max_in_snapshot_log_to_keep: 2,
        purge_batch_size: 1,
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid test config"))
}

async fn start(
    id: NodeId,
    dir: &Path,
    router: &Router<Machine>,
    config: Arc<openraft::Config>,
) -> (Raft<Machine>, Rc<RefCell<Tally>>) {
    let store = LogStore::open(dir).await.expect("open log store");
    let (machine, state) = GroupStateMachine::open(
        dir.join("snapshots"),
        &dir.join("store"),
        &Default::default(),
        None,
    )
    .await
    .expect("open state machine");
    let raft = Raft::new(id, config, router.factory(id), store, machine)
        .await
        .expect("raft starts");
    router.add(id, raft.clone());
    (raft, state)
}

/// Every node of `dirs`, started from its files on `router`.
async fn start_all(
    dirs: &BTreeMap<NodeId, TempDir>,
    router: &Router<Machine>,
    snapshot_policy: &SnapshotPolicy,
) -> BTreeMap<NodeId, (Raft<Machine>, Rc<RefCell<Tally>>)> {
    let mut nodes = BTreeMap::new();
    for (&id, dir) in dirs {
        nodes.insert(
            id,
            start(id, dir.path(), router, config(snapshot_policy.clone())).await,
        );
    }
    nodes
}

async fn leader_of(raft: &Raft<Machine>, not: Option<NodeId>) -> NodeId {
    let metrics = raft
        .wait(Some(WAIT_MAX))
        .metrics(
            |m| m.current_leader.is_some_and(|l| Some(l) != not),
            "a leader",
        )
        .await
        .expect("a leader is elected");
    metrics.current_leader.expect("checked")
}

/// A leader that stays leader long enough to be acknowledged by a quorum
/// (right after a restart, a first winner may lose to a later candidate).
async fn writable_leader(
    nodes: &BTreeMap<NodeId, (Raft<Machine>, Rc<RefCell<Tally>>)>,
    not: Option<NodeId>,
) -> NodeId {
    let observer = nodes
        .keys()
        .find(|&&id| Some(id) != not)
        .expect("an observer");
    for _ in 0..10 {
        let leader = leader_of(&nodes[observer].0, not).await;
        let acked = nodes[&leader]
            .0
            .wait(Some(Duration::from_secs(2)))
            .leader_with_quorum_acked(None, "leader acknowledged by a quorum")
            .await;
        if acked.is_ok() {
            return leader;
        }
    }
    panic!("no leader was acknowledged by a quorum");
}

async fn write_values(leader: &Raft<Machine>, values: std::ops::RangeInclusive<u64>) -> u64 {
    let mut last = 0;
    for v in values {
        last = leader
            .client_write(tally::command(v))
            .await
            .expect("write")
            .log_id
            .index;
    }
    last
}

/// Elect, write, depose the leader while it still takes writes it cannot
/// commit, write through the new leader, heal, and check that every node
/// ends with exactly the committed writes, also after a full restart.
fn deposed_leader_converges(snapshot_policy: SnapshotPolicy) {
    // Committed writes: 1..=20 through the first leader, 21..=60 through the second.
    let expected_sum: u64 = (1..=60).sum();
    let dirs: BTreeMap<NodeId, TempDir> = (1..=3)
        .map(|id| (id, tempfile::tempdir().unwrap()))
        .collect();
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        let router = Router::<Machine>::default();
        let nodes = start_all(&dirs, &router, &snapshot_policy).await;
        nodes[&1]
            .0
            .initialize((1..=3).map(|id| (id, addr(id))).collect::<BTreeMap<_, _>>())
            .await
            .unwrap();
        let old = writable_leader(&nodes, None).await;
        write_values(&nodes[&old].0, 1..=20).await;

        router.isolate(old);
        // Appended to the deposed leader's log, never committed anywhere.
        for v in 0..5 {
            let raft = nodes[&old].0.clone();
            glommio::spawn_local(async move {
                let _ = raft.client_write(tally::command(1_000_000 + v)).await;
            })
            .detach();
        }
        let new = writable_leader(&nodes, Some(old)).await;
        let last = write_values(&nodes[&new].0, 21..=60).await;
        if snapshot_policy != SnapshotPolicy::Never {
            nodes[&new]
                .0
                .wait(Some(WAIT_MAX))
                .metrics(
                    |m| m.purged.is_some_and(|p| p.index > 25),
                    "leader purged past the deposed node's log",
                )
                .await
                .expect("the leader snapshots and purges");
        }

        router.heal(old);
        for (raft, state) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last), "caught up")
                .await
                .expect("every node catches up");
            let state = state.borrow();
            assert_eq!(
                (state.commands, state.sum),
                (60, expected_sum),
                "only committed writes"
            );
        }
        let deposed = nodes[&old].0.metrics().borrow_watched().clone();
        if snapshot_policy != SnapshotPolicy::Never {
            assert!(
                deposed.snapshot.is_some(),
                "the deposed node caught up from a snapshot"
            );
        }
        drop(nodes);
        shutdown_all(&router).await;

        // Restart every node from its files.
        let router = Router::<Machine>::default();
        let nodes = start_all(&dirs, &router, &snapshot_policy).await;
        let leader = writable_leader(&nodes, None).await;
        let last = write_values(&nodes[&leader].0, 61..=61).await;
        for (raft, state) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last), "caught up")
                .await
                .expect("applied");
            assert_eq!(state.borrow().sum, expected_sum + 61);
        }
        drop(nodes);
        shutdown_all(&router).await;
    });
}

#[test]
fn deposed_leader_truncates_its_uncommitted_suffix() {
    deposed_leader_converges(SnapshotPolicy::Never);
}

#[test]
fn deposed_leader_catches_up_from_a_snapshot_after_purge() {
    deposed_leader_converges(SnapshotPolicy::LogsSinceLast(10));
}

/// A committed entry that does not apply (forged or buggy bytes) is
/// rejected as a no-op on every replica: its proposer is told why, no
/// replica stops, the group takes the next writes, and every replica
/// restarts from its files (issue 17).
#[test]
fn an_entry_that_does_not_apply_is_rejected_everywhere_and_bricks_nothing() {
    let dirs: BTreeMap<NodeId, TempDir> = (1..=3)
        .map(|id| (id, tempfile::tempdir().unwrap()))
        .collect();
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        let router = Router::<Machine>::default();
        let nodes = start_all(&dirs, &router, &SnapshotPolicy::Never).await;
        nodes[&1]
            .0
            .initialize((1..=3).map(|id| (id, addr(id))).collect::<BTreeMap<_, _>>())
            .await
            .unwrap();
        let leader = writable_leader(&nodes, None).await;
        write_values(&nodes[&leader].0, 1..=5).await;
        let poison = nodes[&leader]
            .0
            .client_write(crate::raft::type_config::ShardRequest(vec![0xde, 0xad]))
            .await
            .expect("committed");
        let reason = poison.data.into_results().expect_err("rejected");
        assert!(
            reason.starts_with(&format!("entry {} does not apply", poison.log_id.index)),
            "{reason}"
        );
        let last = write_values(&nodes[&leader].0, 6..=10).await;
        for (raft, state) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last), "past the rejected entry")
                .await
                .expect("every replica applies past it");
            let state = state.borrow();
            assert_eq!((state.commands, state.sum), (10, (1..=10).sum::<u64>()));
        }
        drop(nodes);
        shutdown_all(&router).await;

        // Every replica replays the rejected entry from its log on restart.
        let router = Router::<Machine>::default();
        let nodes = start_all(&dirs, &router, &SnapshotPolicy::Never).await;
        let leader = writable_leader(&nodes, None).await;
        let last = write_values(&nodes[&leader].0, 11..=11).await;
        for (raft, state) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last), "restarted and caught up")
                .await
                .expect("applied");
            assert_eq!(state.borrow().sum, (1..=11).sum::<u64>());
        }
        drop(nodes);
        shutdown_all(&router).await;
    });
}
