//! A running node: one glommio executor pinned per core, the Raft groups each
//! core owns, a TCP listener per core and the HTTP thread.
//!
//! Start-up order matters: every group is opened (log replayed, leader
//! elected) and the control group has published the participants before any
//! listener accepts a connection, so the first request sees a ready engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use arc_swap::ArcSwap;
use glommio::{LocalExecutorBuilder, Placement};
use tokio::sync::mpsc;
use tracing::{error, info, Instrument};

use crate::control::{ControlCommand, ControlState};
use crate::intake::router::{ControlMsg, ShardInbox};
use crate::intake::{tcp, Intake, ShardRouter};
use crate::participants::{Participant, Registry};
use crate::raft::{open_group, GroupConfig, ShardRequest};
use crate::shard::{proposer, GroupId, ShardMap, ShardState, CONTROL_GROUP};

/// How often idle cores look at the stop flag: bounds shutdown latency.
const STOP_POLL: Duration = Duration::from_millis(20);

/// io_uring memory per executor: DMA buffers of the logs come from here.
const EXECUTOR_IO_MEMORY_BYTES: usize = 64 << 20;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    pub cores: usize,
    pub shards: ShardMap,
    /// Participants to add or update at start (from `--participants`).
    pub participants: Vec<Participant>,
    pub group: GroupConfig,
    /// Settlement cycles: schedules per window, candidate bound, solver budget.
    pub cycles: crate::cycle::CycleConfig,
    /// The cluster this node is a member of (`--peers`); `None` runs every
    /// group as a single-member group.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// TLS of the client ports (binary and HTTP); `None` only with `--insecure`.
    pub security: Option<crate::credentials::ServerSecurity>,
    /// Bounds of the binary client port, per core.
    pub client_limits: crate::intake::limits::ClientLimits,
}

/// A started node; dropping it does not stop it, [`RunningNode::stop`] does.
pub struct RunningNode {
    stop: Arc<AtomicBool>,
    cores: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
    /// Cores still running; each core decrements it when it returns.
    cores_running: Arc<AtomicUsize>,
    http: Option<crate::http::HttpServer>,
    pub listen: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// The data directory is ours until the node is dropped.
    _dir_lock: crate::ownership::DirLock,
}

impl RunningNode {
    /// Asks every core to stop, waits for the groups to shut down.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(http) = self.http {
            http.stop();
        }
        let mut first_error = None;
        for core in self.cores {
            match core.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %e, "core failed");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(anyhow!("a core failed: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// True once a core has stopped on its own (a failure).
    pub fn any_core_finished(&self) -> bool {
        self.cores_running.load(Ordering::SeqCst) < self.cores.len()
    }
}

/// Starts the node and returns once it accepts connections.
pub fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    assert!(config.cores >= 1);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Before anything reads or recovers the directory: one owner only.
    let dir_lock = crate::ownership::DirLock::acquire(&config.data_dir)?;
    crate::ownership::ensure_port_free("client", config.listen)?;
    if let Some(cluster) = &config.cluster {
        crate::ownership::ensure_port_free("peer", cluster.own_addr())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let participants = Arc::new(ArcSwap::from_pointee(Registry::default()));
    let (router, inboxes, control_inbox) = ShardRouter::new(config.shards.shard_count());
    let mut control_inbox = Some(control_inbox);
    let intake = Intake {
        shards: config.shards.clone(),
        participants: participants.clone(),
        router,
    };

    // Inboxes go to the core that owns their shard.
    let mut inboxes_by_core: Vec<Vec<(GroupId, ShardInbox)>> =
        (0..config.cores).map(|_| Vec::new()).collect();
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let group = (i + 1) as GroupId;
        inboxes_by_core[config.shards.core_of(group, config.cores)].push((group, inbox));
    }

    // Cluster members start their peer listeners with the cores; how the
    // groups start (formation rule) is decided below, while they listen.
    let pristine = crate::cluster::init::is_pristine(&config.data_dir);
    let cluster = config.cluster.as_ref().map(|c| {
        crate::cluster::NodeCluster::new(
            c.clone(),
            config.cores,
            config
                .shards
                .currencies()
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            pristine,
        )
    });

    // One metrics slot per core, and the last for the HTTP thread.
    let mut group_names = vec!["control".to_string()];
    group_names.extend(
        config
            .shards
            .currencies()
            .iter()
            .map(|c| c.as_str().to_string()),
    );
    let metrics = crate::metrics::Hub::new(config.cores + 1, group_names);

    let groups_ready = Arc::new(AtomicUsize::new(0));
    let cores_running = Arc::new(AtomicUsize::new(config.cores));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, String>>();
    let mut cores = Vec::with_capacity(config.cores);
    for (core, inboxes) in inboxes_by_core.into_iter().enumerate() {
        let ctx = CoreContext {
            core,
            config: config.clone(),
            intake: intake.clone(),
            participants: participants.clone(),
            stop: stop.clone(),
            groups_ready: groups_ready.clone(),
            ready: ready_tx.clone(),
            cluster: cluster.clone(),
        };
        let publisher = metrics.publisher(core);
        let running = cores_running.clone();
        let control_inbox = if config.shards.core_of(CONTROL_GROUP, config.cores) == core {
            control_inbox.take()
        } else {
            None
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core))
            .name(&format!("settle-core-{core}"))
            .io_memory(EXECUTOR_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let result = run_core(ctx, inboxes, control_inbox, publisher).await;
                running.fetch_sub(1, Ordering::SeqCst);
                result
            })
            .map_err(|e| anyhow!("starting the executor of core {core}: {e}"))?;
        cores.push(handle);
    }
    drop(ready_tx);
    if let Some(node) = &cluster {
        match crate::cluster::init::decide(&node.config, &node.hello(0), pristine, &stop) {
            Some(formation) => {
                info!(?formation, "cluster formation");
                node.set_formation(formation);
            }
            None => return Err(anyhow!("stopped while waiting for the cluster's members")),
        }
    }
    for _ in 0..config.cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::SeqCst);
                return Err(anyhow!(e));
            }
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                for core in cores {
                    if let Ok(Err(e)) = core.join() {
                        return Err(e);
                    }
                }
                return Err(anyhow!("a core stopped during start-up"));
            }
        }
    }
    let http = match config.http {
        Some(addr) => Some(crate::http::HttpServer::start(
            addr,
            intake.clone(),
            config.security.clone(),
            config.client_limits,
            metrics.publisher(config.cores),
        )?),
        None => None,
    };
    let http_addr = http.as_ref().map(|h| h.addr);
    info!(listen = %config.listen, http = ?http_addr, cores = config.cores, shards = config.shards.shard_count(), "node ready");
    Ok(RunningNode {
        stop,
        cores,
        cores_running,
        http,
        listen: config.listen,
        http_addr,
        _dir_lock: dir_lock,
    })
}

struct CoreContext {
    core: usize,
    config: NodeConfig,
    intake: Intake,
    participants: Arc<ArcSwap<Registry>>,
    stop: Arc<AtomicBool>,
    groups_ready: Arc<AtomicUsize>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
    cluster: Option<Arc<crate::cluster::NodeCluster>>,
}

async fn run_core(
    ctx: CoreContext,
    inboxes: Vec<(GroupId, ShardInbox)>,
    control_inbox: Option<mpsc::Receiver<ControlMsg>>,
    publisher: crate::metrics::Publisher,
) -> anyhow::Result<()> {
    let result = open_and_serve(&ctx, inboxes, control_inbox, publisher).await;
    if let Err(e) = &result {
        let _ = ctx.ready.send(Err(format!(
            "core {}: {}",
            ctx.core,
            crate::error_text::one_line(e)
        )));
    }
    result
}

async fn open_and_serve(
    ctx: &CoreContext,
    inboxes: Vec<(GroupId, ShardInbox)>,
    control_inbox: Option<mpsc::Receiver<ControlMsg>>,
    publisher: crate::metrics::Publisher,
) -> anyhow::Result<()> {
    let config = &ctx.config;
    let mut shutdowns = Vec::new();
    // Per group of this core: why its Raft core stopped on its own, if it did.
    let mut fatal_probes: Vec<(GroupId, String, FatalProbe)> = Vec::new();
    let mut sampler = crate::core_metrics::CoreSampler::default();
    settle_storage::stats::observe(Some(crate::metrics::cells::durable_write));
    // In a cluster: this core's peer listener and links; groups are opened
    // as replicas once the formation rule has decided how.
    let cluster = match &ctx.cluster {
        None => {
            crate::cluster::solo::register_core(
                config.node_id,
                ctx.core,
                config.cores,
                config.listen,
            );
            None
        }
        Some(node) => {
            let cluster = crate::cluster::CoreCluster::start(node.clone(), ctx.core)?;
            if node.formation(&ctx.stop).await.is_none() {
                return Ok(());
            }
            Some(cluster)
        }
    };
    let mut participants_to_record = Vec::new();

    if let Some(control_inbox) = control_inbox {
        let dir = config.data_dir.join("group-0-control");
        let (raft, state) = match &cluster {
            None => {
                open_group::<ControlState>(CONTROL_GROUP, config.node_id, &dir, &config.group).await
            }
            Some(c) => {
                c.open_group::<ControlState>(CONTROL_GROUP, "control", &dir, &config.group)
                    .await
            }
        }
        .context("opening the control group")?;
        if cluster.is_none() {
            crate::cluster::solo::register_group(CONTROL_GROUP, "control", Rc::new(raft.clone()));
        }
        sampler.add_group(CONTROL_GROUP, "control", Rc::new(raft.clone()));
        let probed = raft.clone();
        fatal_probes.push((
            CONTROL_GROUP,
            "control".into(),
            Box::new(move || crate::raft::group::fatal_stop(&probed)),
        ));
        state.borrow_mut().publish_to(ctx.participants.clone());
        let current = state.borrow().registry();
        let changed: Vec<Participant> = config
            .participants
            .iter()
            .filter(|p| current.get(p.id) != Some(*p))
            .cloned()
            .collect();
        if cluster.is_some() {
            // Recorded through the control leader once the groups are ready.
            participants_to_record = changed;
        } else if !changed.is_empty() {
            for chunk in changed.chunks(crate::control::UPSERT_PARTICIPANTS_MAX) {
                let command = ControlCommand::UpsertParticipants(chunk.to_vec()).encode();
                raft.client_write(ShardRequest(command))
                    .await
                    .map_err(|e| anyhow!("recording participants: {e}"))?
                    .data
                    .into_results()
                    .map_err(|e| anyhow!("recording participants: {e}"))?;
            }
            info!(count = changed.len(), "participants added or updated");
        }
        let control_inbox = match &cluster {
            Some(c) => c.interpose_control(control_inbox),
            None => control_inbox,
        };
        let (coordinator_tx, coordinator_rx) = mpsc::channel(crate::cycle::COORDINATOR_INBOX_MAX);
        glommio::spawn_local(crate::control::proposer::run(
            raft.clone(),
            state.clone(),
            control_inbox,
            coordinator_tx,
        ))
        .detach();
        let coordinator = crate::cycle::coordinator::Coordinator::new(
            raft.clone(),
            state.clone(),
            ctx.intake.router.clone(),
            config.shards.clone(),
            config.cycles.clone(),
        );
        glommio::spawn_local(coordinator.run(coordinator_rx)).detach();
        let raft_for_shutdown = raft.clone();
        shutdowns.push(Box::pin(async move {
            let _ = raft_for_shutdown.shutdown().await;
        })
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>);
        ctx.groups_ready.fetch_add(1, Ordering::SeqCst);
    }

    for (group, inbox) in inboxes {
        let currency = config
            .shards
            .currency_of(group)
            .expect("shard groups have a currency");
        let dir = config.data_dir.join(format!(
            "group-{group}-{}",
            currency.as_str().to_ascii_lowercase()
        ));
        let (raft, state) = match &cluster {
            None => open_group::<ShardState>(group, config.node_id, &dir, &config.group)
                .await
                .map_err(|e| {
                    let damage = e.is_damage();
                    let e = anyhow::Error::from(e);
                    if damage {
                        // A cluster's replica rebuilds itself from its peers
                        // (`cluster::repair`); alone, the operator decides.
                        e.context(format!(
                            "{} is damaged and this node has no peer to rebuild it from: \
                             restore it from a backup, or move it aside to start the shard \
                             empty (its history would be lost)",
                            dir.display()
                        ))
                    } else {
                        e
                    }
                }),
            Some(c) => c
                .open_group::<ShardState>(group, currency.as_str(), &dir, &config.group)
                .await
                .map_err(anyhow::Error::from),
        }
        .with_context(|| format!("opening shard {group} ({currency})"))?;
        if cluster.is_none() {
            crate::cluster::solo::register_group(group, currency.as_str(), Rc::new(raft.clone()));
        }
        info!(group, %currency, transactions = state.borrow().len(), "shard open");
        sampler.add_group(group, currency.as_str(), Rc::new(raft.clone()));
        let probed = raft.clone();
        fatal_probes.push((
            group,
            currency.as_str().to_string(),
            Box::new(move || crate::raft::group::fatal_stop(&probed)),
        ));
        sampler.add_shard(group, currency.as_str(), state.clone());
        let mut inbox = inbox;
        if let Some(c) = &cluster {
            // Submits go through the forwarder (to the leader's node when
            // this one does not lead); priority messages stay local.
            inbox.submits = c.interpose_shard(group, inbox.submits);
            inbox.priority = c.interpose_shard_priority(group, inbox.priority);
        }
        let span = tracing::info_span!("shard", group, %currency);
        glommio::spawn_local(
            proposer::run(group, currency, raft.clone(), state, inbox).instrument(span),
        )
        .detach();
        shutdowns.push(Box::pin(async move {
            let _ = raft.shutdown().await;
        }));
        ctx.groups_ready.fetch_add(1, Ordering::SeqCst);
    }

    if let Some(c) = &cluster {
        // Serve clients only once every group here has a leader and this
        // replica has applied what it knows to be committed.
        if !c.wait_ready(&ctx.stop).await {
            return Ok(());
        }
        record_participants(&ctx.intake, participants_to_record).await?;
    }

    // Accept nothing before every group of every core is open.
    let groups_total = config.shards.shard_count() + 1;
    while ctx.groups_ready.load(Ordering::SeqCst) < groups_total {
        if ctx.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    glommio::spawn_local(crate::core_metrics::run(
        publisher,
        sampler,
        ctx.stop.clone(),
    ))
    .detach();
    let listener = glommio::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow!("listening on {}: {e}", config.listen))?;
    glommio::spawn_local(tcp::serve(
        listener,
        Rc::new(ctx.intake.clone()),
        config.security.clone(),
        crate::intake::limits::CoreClients::new(config.client_limits),
    ))
    .detach();
    let _ = ctx.ready.send(Ok(ctx.core));

    let mut died = None;
    while !ctx.stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(STOP_POLL).await;
        died = fatal_probes
            .iter()
            .find_map(|(group, name, probe)| probe().map(|why| (*group, name.clone(), why)));
        if died.is_some() {
            break;
        }
    }
    for shutdown in shutdowns {
        shutdown.await;
    }
    match died {
        None => Ok(()),
        Some((group, name, why)) => {
            tracing::error!(group, %name, reason = %why, "a Raft group stopped on its own: the node stops");
            Err(anyhow!(
                "group {group} ({name}) stopped: {why}; the node stops rather than serve without it (fix the cause, e.g. free disk space, and start it again: it recovers from its log)"
            ))
        }
    }
}

/// Why a group's Raft core stopped on its own, if it did
/// ([`crate::raft::group::fatal_stop`]).
type FatalProbe = Box<dyn Fn() -> Option<String>>;

/// Records participants through the control group's leader (cluster mode),
/// retrying while leadership settles.
async fn record_participants(intake: &Intake, changed: Vec<Participant>) -> anyhow::Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    for chunk in changed.chunks(crate::control::UPSERT_PARTICIPANTS_MAX) {
        intake
            .router
            .upsert_participants(chunk.to_vec())
            .await
            .map_err(|e| anyhow!("recording participants: {e}"))?;
    }
    info!(count = changed.len(), "participants added or updated");
    Ok(())
}
