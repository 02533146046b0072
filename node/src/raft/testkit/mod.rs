//! TEST ONLY: in-memory log, state machine and in-process network, used to
//! prove that openraft runs on [`GlommioRuntime`] end to end (elections,
//! replication, client writes), and [`tally::Tally`], a tiny `GroupState`
//! for testing the production stores. Nothing here is durable or wire-encoded.

mod durable_cluster;
mod mem_log;
mod mem_sm;
mod router;
pub mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{AsyncRuntime, ServerState};

use self::mem_log::MemLogStore;
use self::mem_sm::{Counters, MemStateMachine};
use self::router::{RoutableMachine, Router};
use crate::raft::runtime::GlommioRuntime;
use crate::raft::type_config::{NodeAddr, NodeId, Raft, ShardRequest, TypeConfig};

/// How long a test waits for a Raft condition before failing: generous, as
/// the test machine is shared, and an election needs ≤ 2 × election_timeout_max.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// Bytes of each test request payload.
const REQUEST_BYTES: u64 = 10;

fn test_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "settle-test".to_string(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    Arc::new(config.validate().expect("test Raft config is valid"))
}

fn addr(id: NodeId) -> NodeAddr {
    NodeAddr {
        addr: format!("in-process-{id}"),
    }
}

async fn start_node(
    id: NodeId,
    router: &Router<MemStateMachine>,
) -> (Raft<MemStateMachine>, MemStateMachine) {
    let state_machine = MemStateMachine::default();
    let raft = Raft::new(
        id,
        test_config(),
        router.factory(id),
        MemLogStore::default(),
        state_machine.clone(),
    )
    .await
    .expect("raft node starts");
    router.add(id, raft.clone());
    (raft, state_machine)
}

async fn shutdown_all<SM: RoutableMachine>(router: &Router<SM>) {
    for raft in router.clear() {
        raft.shutdown().await.expect("raft node shuts down");
    }
}

/// A freshly elected leader refuses writes (`ForwardToLeader`, reason
/// `LeaseExpired`) until a quorum has acknowledged it.
async fn wait_writable<SM: RoutableMachine>(leader: &Raft<SM>) {
    leader
        .wait(Some(WAIT_MAX))
        .leader_with_quorum_acked(None, "leader acknowledged by a quorum")
        .await
        .expect("leader becomes writable");
}

/// Writes `count` requests through `leader`, checking after each that the
/// leader's machine has applied exactly `number` requests (client_write
/// returns after apply, so order and exactly-once hold).
/// Returns the log index of the last write.
async fn write_and_check(
    leader: &Raft<MemStateMachine>,
    leader_machine: &MemStateMachine,
    first_number: u64,
    count: u64,
) -> u64 {
    assert!(count > 0);
    let mut last_index = 0;
    for number in first_number..first_number + count {
        let request = ShardRequest(vec![number as u8; REQUEST_BYTES as usize]);
        let response = leader.client_write(request).await.expect("client_write");
        assert_eq!(leader_machine.counters(), counters_after(number));
        assert!(response.log_id.index > last_index, "log indexes grow");
        last_index = response.log_id.index;
    }
    last_index
}

fn counters_after(requests: u64) -> Counters {
    Counters {
        requests_applied: requests,
        request_bytes_applied: requests * REQUEST_BYTES,
    }
}

#[test]
fn one_node_group_applies_client_writes_in_order() {
    const WRITES: u64 = 50;
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        let router = Router::default();
        let (raft, state_machine) = start_node(1, &router).await;
        raft.initialize(BTreeMap::from([(1, addr(1))]))
            .await
            .expect("initialize");
        raft.wait(Some(WAIT_MAX))
            .state(ServerState::Leader, "single node elects itself")
            .await
            .expect("leader");

        let last_index = write_and_check(&raft, &state_machine, 1, WRITES).await;

        // Index 0 holds the initial membership, 1 the new leader's blank entry.
        assert_eq!(last_index, WRITES + 1);
        assert_eq!(state_machine.counters(), counters_after(WRITES));
        // Metrics trail the state machine a little: wait, then check.
        raft.wait(Some(WAIT_MAX))
            .applied_index_at_least(Some(last_index), "metrics catch up")
            .await
            .expect("applied");
        shutdown_all(&router).await;
    });
}

#[test]
fn three_node_group_elects_replicates_and_fails_over() {
    const WRITES: u64 = 20;
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        let router = Router::default();
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            nodes.insert(id, start_node(id, &router).await);
        }
        let members: BTreeMap<NodeId, NodeAddr> = (1..=3).map(|id| (id, addr(id))).collect();
        nodes[&1].0.initialize(members).await.expect("initialize");

        let metrics = nodes[&1]
            .0
            .wait(Some(WAIT_MAX))
            .metrics(|m| m.current_leader.is_some(), "first leader elected")
            .await
            .expect("first leader");
        let old_leader = metrics.current_leader.expect("leader known");
        wait_writable(&nodes[&old_leader].0).await;
        let last_index =
            write_and_check(&nodes[&old_leader].0, &nodes[&old_leader].1, 1, WRITES).await;
        for (raft, state_machine) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last_index), "replicated")
                .await
                .expect("every node applies the writes");
            assert_eq!(state_machine.counters(), counters_after(WRITES));
        }

        // Fail the leader: the other two must elect one of themselves.
        router.isolate(old_leader);
        let survivor = *nodes
            .keys()
            .find(|&&id| id != old_leader)
            .expect("a survivor");
        let metrics = nodes[&survivor]
            .0
            .wait(Some(WAIT_MAX))
            .metrics(
                |m| m.current_leader.is_some_and(|leader| leader != old_leader),
                "new leader after isolating the old one",
            )
            .await
            .expect("failover");
        let new_leader = metrics.current_leader.expect("leader known");
        assert_ne!(new_leader, old_leader);
        wait_writable(&nodes[&new_leader].0).await;

        let last_index = write_and_check(
            &nodes[&new_leader].0,
            &nodes[&new_leader].1,
            WRITES + 1,
            WRITES,
        )
        .await;
        for (_, (raft, state_machine)) in nodes.iter().filter(|(&id, _)| id != old_leader) {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last_index), "replicated")
                .await
                .expect("the surviving majority applies the new writes");
            assert_eq!(state_machine.counters(), counters_after(2 * WRITES));
        }
        // The isolated node cannot have seen anything written after its isolation.
        assert_eq!(nodes[&old_leader].1.counters(), counters_after(WRITES));

        shutdown_all(&router).await;
    });
}

#[test]
fn one_node_group_grows_to_three_voters_by_membership_change() {
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(async {
        let router = Router::default();
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            nodes.insert(id, start_node(id, &router).await);
        }
        let (leader, leader_machine) = (nodes[&1].0.clone(), nodes[&1].1.clone());
        leader
            .initialize(BTreeMap::from([(1, addr(1))]))
            .await
            .expect("initialize");
        wait_writable(&leader).await;
        let first_index = write_and_check(&leader, &leader_machine, 1, 3).await;

        // Learners first (blocking: returns once they caught up), then promote.
        for id in [2, 3] {
            leader
                .add_learner(id, addr(id), true)
                .await
                .expect("add_learner");
        }
        let response = leader
            .change_membership(BTreeSet::from([1, 2, 3]), false)
            .await
            .expect("change_membership");
        let membership = response.membership.expect("a membership entry");
        assert_eq!(
            membership.voter_ids().collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 2, 3])
        );
        assert!(response.log_id.index > first_index);

        let last_index = write_and_check(&leader, &leader_machine, 4, 3).await;
        for (raft, state_machine) in nodes.values() {
            raft.wait(Some(WAIT_MAX))
                .applied_index_at_least(Some(last_index), "replicated to new voters")
                .await
                .expect("every voter applies");
            assert_eq!(state_machine.counters(), counters_after(6));
        }
        shutdown_all(&router).await;
    });
}

/// Builds fresh test stores for openraft's storage conformance suite.
struct MemStoreBuilder;

impl openraft::testing::log::StoreBuilder<TypeConfig, MemLogStore, MemStateMachine>
    for MemStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<((), MemLogStore, MemStateMachine), openraft::StorageError<TypeConfig>> {
        Ok(((), MemLogStore::default(), MemStateMachine::default()))
    }
}

#[test]
fn test_stores_pass_openraft_storage_suite() {
    // The same suite must pass for the production adapter over settle-storage.
    let mut rt = GlommioRuntime::new(1);
    rt.block_on(openraft::testing::log::Suite::test_all(MemStoreBuilder))
        .expect("storage suite");
}

#[test]
fn runtime_sleep_is_usable_by_raft_tasks() {
    // Guards the premise of the tests above: a spawned task's timer fires.
    let mut rt = GlommioRuntime::new(1);
    let fired = rt.block_on(async {
        GlommioRuntime::spawn(async {
            GlommioRuntime::sleep(Duration::from_millis(2)).await;
            true
        })
        .await
    });
    assert_eq!(fired, Ok(true));
}
