//! The cluster side of a node: what is shared by every core
//! ([`NodeCluster`]) and what each core keeps ([`CoreCluster`]: its links,
//! its groups' handles for the peer server, the proposers' inboxes for
//! forwarded requests).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::forward;
use super::handle::GroupHandle;
use super::init::Formation;
use super::link::Links;
use super::server::Handoff;
use super::ClusterConfig;
use crate::intake::router::{ControlMsg, ShardMsg, SHARD_INBOX_REQUESTS_MAX};
use crate::raft::network::TcpNetwork;
use crate::raft::{
    open_replica, GroupConfig, GroupError, GroupState, GroupStateMachine, NodeAddr, NodeId, Raft,
};
use crate::shard::GroupId;

/// Connections handed from the core that accepted them to the core they
/// are for, queued: peers connect rarely (once per core pair, again after a
/// failure), so a few suffice.
pub const HANDOFFS_QUEUED_MAX: usize = 64;

/// Entries per AppendEntries in a cluster (see [`CoreCluster::open_group`]).
pub const CLUSTER_PAYLOAD_ENTRIES_MAX: u64 = 32;

/// How often readiness and leadership are re-checked while waiting.
const POLL: Duration = Duration::from_millis(10);

/// How often a node still waiting for its groups to be ready says so.
const READY_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How often a core checks whether its groups' leaders sit on their
/// preferred members.
const BALANCE_INTERVAL: Duration = Duration::from_secs(2);

/// After handing a group's leadership over, leave that group alone this
/// long: a preferred member that keeps failing must not make it flap.
const BALANCE_COOLDOWN: Duration = Duration::from_secs(20);

/// A leader hands a group over only once it has led it this long without
/// interruption. A hand-over is an election, and an election only ends when
/// its vote round trips fit in the election timeout (150–300 ms): on a
/// starved machine (a 2-core box running 7 members and a build) they do
/// not, every member's timer fires, the candidates split the votes, and the
/// group stays leaderless for as long as that lasts (`cluster_sizes` saw
/// terms climb past 30 with no leader for over a minute, all started by
/// the hand-overs of the first seconds). So the balancer waits for the
/// cluster to be calm: not in the seconds after forming, and not right
/// after another election (a failed hand-over included: the member that won
/// instead waits this long too, which spaces the attempts out).
const BALANCE_LEADER_FOR_MIN: Duration = Duration::from_secs(10);

/// ...and only while the preferred member acknowledges heartbeats promptly
/// (two heartbeat periods): a member that answers slower would not finish
/// the election quickly either. Balance is an optimisation; it must never
/// cost a group its leader.
const BALANCE_ACK_AGE_MAX: Duration = Duration::from_millis(100);

/// The member that should lead `group`: members in id order, round-robin
/// over the groups (the control group 0 on the lowest id).
pub fn preferred_leader(members: &[NodeId], group: GroupId) -> NodeId {
    assert!(!members.is_empty());
    members[group as usize % members.len()]
}

/// Cluster state shared by every core of the node.
pub struct NodeCluster {
    pub config: ClusterConfig,
    pub cores: usize,
    /// Shard currencies in order (the peers must agree).
    pub currencies: Vec<String>,
    /// How this node starts (decided by the formation probe while the cores
    /// already serve the peer port). `Rejoin`: this node started empty into
    /// a formed cluster (its data was lost), so each of its groups refuses
    /// votes until it has caught up with a leader: it must not help elect a
    /// leader missing entries that it acknowledged before it lost them.
    formation: OnceLock<Formation>,
    /// The node had Raft state at start, or some group holds a log now (the
    /// answer to a formation probe).
    initialized: AtomicBool,
    handoffs: Vec<mpsc::Sender<Handoff>>,
    handoff_inboxes: Mutex<Vec<Option<mpsc::Receiver<Handoff>>>>,
}

impl NodeCluster {
    pub fn new(
        config: ClusterConfig,
        cores: usize,
        currencies: Vec<String>,
        pristine: bool,
    ) -> Arc<NodeCluster> {
        let (handoffs, inboxes) = (0..cores)
            .map(|_| {
                let (tx, rx) = mpsc::channel(HANDOFFS_QUEUED_MAX);
                (tx, Some(rx))
            })
            .unzip();
        Arc::new(NodeCluster {
            config,
            cores,
            currencies,
            formation: OnceLock::new(),
            initialized: AtomicBool::new(!pristine),
            handoffs,
            handoff_inboxes: Mutex::new(inboxes),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::SeqCst)
    }

    /// Records the formation decision; the cores wait for it.
    pub fn set_formation(&self, formation: Formation) {
        let _ = self.formation.set(formation);
    }

    /// The formation decision, once made; `None` if `stop` is raised first.
    pub async fn formation(&self, stop: &AtomicBool) -> Option<Formation> {
        loop {
            if let Some(f) = self.formation.get() {
                return Some(*f);
            }
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            glommio::timer::sleep(POLL).await;
        }
    }

    fn initializes(&self) -> bool {
        self.formation.get() == Some(&Formation::Initialize)
    }

    fn rejoining(&self) -> bool {
        self.formation.get() == Some(&Formation::Rejoin)
    }

    /// The hello this node's links and probes send to `core` of a peer.
    pub fn hello(&self, core: usize) -> super::proto::Hello {
        super::proto::Hello {
            node_id: self.node_id(),
            core,
            cores: self.cores,
            currencies: self.currencies.clone(),
        }
    }

    pub(crate) fn handoff_to(&self, core: usize) -> Option<&mpsc::Sender<Handoff>> {
        self.handoffs.get(core)
    }

    /// Every member with its peer address, as a Raft membership.
    pub fn members(&self) -> BTreeMap<NodeId, NodeAddr> {
        self.config
            .peers
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    NodeAddr {
                        addr: addr.to_string(),
                    },
                )
            })
            .collect()
    }
}

/// A group registered with its core.
pub(crate) struct GroupEntry {
    pub name: String,
    pub handle: Rc<dyn GroupHandle>,
    /// False while a rejoining node's group has not caught up (see
    /// [`NodeCluster::rejoining`]).
    pub votes_allowed: Rc<Cell<bool>>,
}

/// One core's part of the cluster.
pub struct CoreCluster {
    pub node: Arc<NodeCluster>,
    pub core: usize,
    pub links: Rc<Links>,
    groups: RefCell<BTreeMap<GroupId, GroupEntry>>,
    /// Where forwarded submits for a shard of this core go (its proposer).
    shard_inboxes: RefCell<BTreeMap<GroupId, mpsc::Sender<ShardMsg>>>,
    /// Where forwarded shard commands go (the proposer's priority inbox).
    shard_priority: RefCell<BTreeMap<GroupId, mpsc::Sender<ShardMsg>>>,
    control_inbox: RefCell<Option<mpsc::Sender<ControlMsg>>>,
    /// This core's bounds on its peer connections.
    pub peer_bounds: Rc<super::bounds::PeerBounds>,
}

impl CoreCluster {
    /// The core's cluster state; starts its peer listener.
    pub fn start(node: Arc<NodeCluster>, core: usize) -> anyhow::Result<Rc<CoreCluster>> {
        let links = Rc::new(Links::new(
            node.node_id(),
            core,
            node.cores,
            node.currencies.clone(),
            node.config.peers.clone(),
            node.config.tls.as_ref().map(|t| t.client.clone()),
        ));
        let cluster = Rc::new(CoreCluster {
            node: node.clone(),
            core,
            links,
            groups: RefCell::new(BTreeMap::new()),
            shard_inboxes: RefCell::new(BTreeMap::new()),
            shard_priority: RefCell::new(BTreeMap::new()),
            control_inbox: RefCell::new(None),
            peer_bounds: super::bounds::PeerBounds::new(),
        });
        let handoffs = node
            .handoff_inboxes
            .lock()
            .expect("no core panicked holding the lock")
            .get_mut(core)
            .and_then(Option::take)
            .ok_or_else(|| anyhow::anyhow!("core {core} started twice"))?;
        super::server::start(cluster.clone(), handoffs)?;
        if node.config.balance_leaders && node.config.peers.len() > 1 {
            glommio::spawn_local(balance_leaders(Rc::downgrade(&cluster))).detach();
        }
        Ok(cluster)
    }

    pub(crate) fn group(&self, group: GroupId) -> Option<(Rc<dyn GroupHandle>, bool)> {
        self.groups
            .borrow()
            .get(&group)
            .map(|e| (e.handle.clone(), e.votes_allowed.get()))
    }

    /// Every group of this core: id, name, handle.
    pub(crate) fn groups(&self) -> Vec<(GroupId, String, Rc<dyn GroupHandle>)> {
        self.groups
            .borrow()
            .iter()
            .map(|(g, e)| (*g, e.name.clone(), e.handle.clone()))
            .collect()
    }

    pub(crate) fn shard_inbox(&self, group: GroupId) -> Option<mpsc::Sender<ShardMsg>> {
        self.shard_inboxes.borrow().get(&group).cloned()
    }

    pub(crate) fn shard_priority_inbox(&self, group: GroupId) -> Option<mpsc::Sender<ShardMsg>> {
        self.shard_priority.borrow().get(&group).cloned()
    }

    pub(crate) fn control_inbox(&self) -> Option<mpsc::Sender<ControlMsg>> {
        self.control_inbox.borrow().clone()
    }

    /// Opens a replica of `group` (networked over this core's links),
    /// registers it with the peer server, and initializes it with every
    /// member if this node forms the cluster. Does not wait for a leader.
    pub async fn open_group<S: GroupState>(
        &self,
        group: GroupId,
        name: &str,
        dir: &Path,
        config: &GroupConfig,
    ) -> Result<(Raft<GroupStateMachine<S>>, Rc<RefCell<S>>), GroupError> {
        let node_id = self.node.node_id();
        let mut config = config.clone();
        config.pre_vote = true;
        config.allow_log_reversion = true;
        // An entry already holds a group commit of up to thousands of
        // transactions; a few dozen per AppendEntries keep one RPC (and the
        // follower's apply of it) to a few megabytes.
        config.max_payload_entries = config.max_payload_entries.min(CLUSTER_PAYLOAD_ENTRIES_MAX);
        config.advertise_addr = self.node.config.own_addr().to_string();
        let network = TcpNetwork::new(group, self.links.clone());
        let members = self.node.config.peers.len();
        let (opened, repaired) =
            match open_replica::<S, _>(group, node_id, dir, &config, network).await {
                Err(e) if super::repair::repairable(&e, members) => {
                    let moved = super::repair::quarantine(dir).map_err(|q| GroupError::Raft {
                        group,
                        message: format!("{e}; and it could not be quarantined: {q}"),
                    })?;
                    crate::metrics::cells::replica_repaired();
                    warn!(
                        group,
                        name,
                        damage = %e,
                        quarantined = %moved.display(),
                        "damaged replica data quarantined: rebuilding this replica from its peers \
                         (it votes again once caught up)"
                    );
                    let network = TcpNetwork::new(group, self.links.clone());
                    (
                        open_replica::<S, _>(group, node_id, dir, &config, network).await,
                        true,
                    )
                }
                other => (other, false),
            };
        let (raft, state) = opened?;
        let raft_error = |message: String| GroupError::Raft { group, message };
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        if !initialized && self.node.initializes() {
            raft.initialize(self.node.members())
                .await
                .map_err(|e| raft_error(e.to_string()))?;
            info!(group, name, "group initialized with every member");
        }
        let votes_allowed = Rc::new(Cell::new(!self.node.rejoining() && !repaired));
        let handle: Rc<dyn GroupHandle> = Rc::new(raft.clone());
        glommio::spawn_local(watch_group(
            group,
            raft.clone(),
            self.node.clone(),
            votes_allowed.clone(),
        ))
        .detach();
        self.groups.borrow_mut().insert(
            group,
            GroupEntry {
                name: name.to_string(),
                handle,
                votes_allowed,
            },
        );
        Ok((raft, state))
    }

    /// Puts the forwarder between intake and a shard's proposer: returns the
    /// inbox the proposer must read (intake's inbox goes to the forwarder).
    pub fn interpose_shard(
        self: &Rc<Self>,
        group: GroupId,
        intake_inbox: mpsc::Receiver<ShardMsg>,
    ) -> mpsc::Receiver<ShardMsg> {
        let (to_proposer, proposer_inbox) = mpsc::channel(SHARD_INBOX_REQUESTS_MAX);
        self.shard_inboxes
            .borrow_mut()
            .insert(group, to_proposer.clone());
        let handle = self
            .group(group)
            .expect("the group is opened before its proposer")
            .0;
        glommio::spawn_local(forward::run_shard(
            group,
            self.clone(),
            handle,
            intake_inbox,
            to_proposer,
        ))
        .detach();
        proposer_inbox
    }

    /// As [`CoreCluster::interpose_shard`], for a shard's priority inbox
    /// (deposits, openings, cycle commands).
    pub fn interpose_shard_priority(
        self: &Rc<Self>,
        group: GroupId,
        intake_inbox: mpsc::Receiver<ShardMsg>,
    ) -> mpsc::Receiver<ShardMsg> {
        let (to_proposer, proposer_inbox) =
            mpsc::channel(crate::intake::router::SHARD_PRIORITY_REQUESTS_MAX);
        self.shard_priority
            .borrow_mut()
            .insert(group, to_proposer.clone());
        let handle = self
            .group(group)
            .expect("the group is opened before its proposer")
            .0;
        glommio::spawn_local(forward::run_shard_priority(
            group,
            self.clone(),
            handle,
            intake_inbox,
            to_proposer,
        ))
        .detach();
        proposer_inbox
    }

    /// As [`CoreCluster::interpose_shard`], for the control group.
    pub fn interpose_control(
        self: &Rc<Self>,
        intake_inbox: mpsc::Receiver<ControlMsg>,
    ) -> mpsc::Receiver<ControlMsg> {
        let (to_proposer, proposer_inbox) =
            mpsc::channel(crate::intake::router::CONTROL_INBOX_REQUESTS_MAX);
        *self.control_inbox.borrow_mut() = Some(to_proposer.clone());
        let handle = self
            .group(crate::shard::CONTROL_GROUP)
            .expect("the control group is opened before its proposer")
            .0;
        glommio::spawn_local(forward::run_control(
            self.clone(),
            handle,
            intake_inbox,
            to_proposer,
        ))
        .detach();
        proposer_inbox
    }

    /// Waits until every group of this core knows a leader and has applied
    /// everything it knows to be committed, so lookups and validation see a
    /// current state. Returns false if `stop` was raised first.
    pub async fn wait_ready(&self, stop: &std::sync::atomic::AtomicBool) -> bool {
        let started = Instant::now();
        let mut next_log = started + READY_LOG_INTERVAL;
        loop {
            let waiting: Vec<String> = self
                .groups()
                .into_iter()
                .filter(|(_, _, handle)| !is_ready(handle.as_ref()))
                .map(|(_, name, _)| name)
                .collect();
            if waiting.is_empty() {
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            if Instant::now() >= next_log {
                info!(
                    core = self.core,
                    ?waiting,
                    waited_s = started.elapsed().as_secs(),
                    "waiting for group leaders (are a majority of --peers up?)"
                );
                next_log += READY_LOG_INTERVAL;
            }
            glommio::timer::sleep(POLL).await;
        }
    }
}

/// A leader is known and everything known committed is applied.
fn is_ready(handle: &dyn GroupHandle) -> bool {
    let m = handle.metrics();
    m.current_leader.is_some()
        && m.last_applied.map(|l| l.index) >= m.local_committed.map(|l| l.index)
        && m.local_committed.is_some()
}

/// Follows a group's metrics: marks the node initialized once any group has
/// a log, and lets a rejoining replica vote again once it has caught up.
async fn watch_group<S: GroupState>(
    group: GroupId,
    raft: Raft<GroupStateMachine<S>>,
    node: Arc<NodeCluster>,
    votes_allowed: Rc<Cell<bool>>,
) {
    let mut metrics = raft.metrics();
    loop {
        let (has_log, caught_up, running) = {
            let m = metrics.borrow_watched();
            let has_log = m.last_log_index.is_some() || m.vote.leader_id.term > 0;
            let caught_up = m.current_leader.is_some()
                && m.current_leader != Some(node.node_id())
                && m.local_committed.is_some()
                && m.last_applied.map(|l| l.index) >= m.local_committed.map(|l| l.index);
            (has_log, caught_up, m.running_state.is_ok())
        };
        if has_log {
            node.initialized.store(true, Ordering::SeqCst);
        }
        if caught_up && !votes_allowed.get() {
            info!(group, "rejoined replica caught up; it votes again");
            votes_allowed.set(true);
        }
        if !running {
            warn!(group, "raft group stopped");
            return;
        }
        if has_log && votes_allowed.get() {
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// How long this replica has led its group in the current term.
#[derive(Debug, Default)]
struct Leading {
    /// The term this replica leads and since when it has been seen leading.
    since: Option<(u64, Instant)>,
}

impl Leading {
    /// Notes whether the replica leads, in which term, at `now`; how long
    /// it has led without interruption.
    fn observe(&mut self, leads: bool, term: u64, now: Instant) -> Duration {
        if !leads {
            self.since = None;
            return Duration::ZERO;
        }
        match self.since {
            Some((led_term, since)) if led_term == term => now.saturating_duration_since(since),
            _ => {
                self.since = Some((term, now));
                Duration::ZERO
            }
        }
    }
}

/// What the balancer knows of a group it leads and of the group's
/// preferred member.
#[derive(Debug, Clone, Copy)]
struct HandOver {
    /// The preferred member has every entry (the hand-over costs no
    /// catch-up).
    caught_up: bool,
    /// Age of the preferred member's last heartbeat acknowledgement.
    ack_age: Option<Duration>,
    /// How long this replica has led the group without interruption.
    led_for: Duration,
}

impl HandOver {
    fn of(
        m: &openraft::RaftMetrics<crate::raft::TypeConfig>,
        preferred: NodeId,
        led_for: Duration,
    ) -> HandOver {
        let caught_up = m.state == openraft::ServerState::Leader
            && m.last_log_index.is_some()
            && m.replication
                .as_ref()
                .and_then(|r| r.get(&preferred))
                .and_then(|matched| matched.as_ref())
                .map(|l| l.index)
                == m.last_log_index;
        let ack_age = m
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(&preferred))
            .and_then(|acked| acked.as_ref())
            .map(|acked| acked.elapsed());
        HandOver {
            caught_up,
            ack_age,
            led_for,
        }
    }

    /// Whether to hand over now: the preferred member is caught up and
    /// answers promptly ([`BALANCE_ACK_AGE_MAX`]: it would win the election
    /// quickly), and this replica has led calmly for
    /// [`BALANCE_LEADER_FOR_MIN`].
    fn may(&self) -> bool {
        self.caught_up
            && self.ack_age.is_some_and(|age| age <= BALANCE_ACK_AGE_MAX)
            && self.led_for >= BALANCE_LEADER_FOR_MIN
    }
}

/// Hands each group this core leads to its preferred member once that
/// member has every entry (so the hand-over costs one quick election and no
/// catch-up) and the cluster is calm (see [`HandOver::may`]), at most once
/// per [`BALANCE_COOLDOWN`] per group.
async fn balance_leaders(cluster: std::rc::Weak<CoreCluster>) {
    let mut handed: BTreeMap<GroupId, Instant> = BTreeMap::new();
    let mut leading: BTreeMap<GroupId, Leading> = BTreeMap::new();
    loop {
        glommio::timer::sleep(BALANCE_INTERVAL).await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let me = cluster.node.node_id();
        let members: Vec<NodeId> = cluster.node.config.peers.keys().copied().collect();
        for (group, name, handle) in cluster.groups() {
            let m = handle.metrics();
            let leads = m.state == openraft::ServerState::Leader;
            let led_for =
                leading
                    .entry(group)
                    .or_default()
                    .observe(leads, m.current_term, Instant::now());
            let preferred = preferred_leader(&members, group);
            if preferred == me
                || handed
                    .get(&group)
                    .is_some_and(|at| at.elapsed() < BALANCE_COOLDOWN)
            {
                continue;
            }
            if !HandOver::of(&m, preferred, led_for).may() {
                continue;
            }
            handed.insert(group, Instant::now());
            info!(
                group,
                name,
                to = preferred,
                "handing leadership to the preferred member"
            );
            if let Err(e) = handle.trigger_transfer(preferred).await {
                warn!(group, error = %e, "leadership hand-over failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_is_timed_from_the_first_sight_of_this_term() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut leading = Leading::default();
        assert_eq!(leading.observe(true, 3, at(0)), Duration::ZERO);
        assert_eq!(leading.observe(true, 3, at(12)), Duration::from_secs(12));
        // An election in between (a failed hand-over won back, a new term)
        // starts the clock again.
        assert_eq!(leading.observe(true, 5, at(13)), Duration::ZERO);
        assert_eq!(leading.observe(false, 5, at(14)), Duration::ZERO);
        assert_eq!(leading.observe(true, 5, at(15)), Duration::ZERO);
        assert_eq!(leading.observe(true, 5, at(16)), Duration::from_secs(1));
    }

    #[test]
    fn no_hand_over_right_after_forming_nor_to_a_slow_member() {
        let calm = HandOver {
            caught_up: true,
            ack_age: Some(Duration::from_millis(20)),
            led_for: BALANCE_LEADER_FOR_MIN,
        };
        assert!(calm.may());
        // The seconds after the cluster formed (or another election): the
        // hand-overs of the first seconds are what left groups leaderless.
        let fresh = HandOver {
            led_for: Duration::from_secs(2),
            ..calm
        };
        assert!(!fresh.may());
        let slow = HandOver {
            ack_age: Some(Duration::from_millis(400)),
            ..calm
        };
        assert!(!slow.may(), "a starved member would not win quickly");
        let unheard = HandOver {
            ack_age: None,
            ..calm
        };
        assert!(!unheard.may());
        let behind = HandOver {
            caught_up: false,
            ..calm
        };
        assert!(!behind.may());
    }
}
