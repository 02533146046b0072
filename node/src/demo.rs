//! `settle demo`: an embedded node in a temporary directory, driven by the
//! load generator with a realistic workload, then stopped. The README's
//! "run" command: it needs nothing set up.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;
use settle_loadgen::participants::participants_file;
use settle_loadgen::run::{run as run_load, RunOptions};

use crate::participants::parse_participants_file;
use crate::server::{self, NodeConfig};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub clients: usize,
    pub batch: usize,
    pub participants: u32,
    pub cores: Option<usize>,
}

/// A free loopback port (the node binds it per core with SO_REUSEPORT, so
/// port 0 cannot be used directly).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let seed = 1;
    let participants =
        parse_participants_file(&participants_file(options.participants, seed).to_string())?;
    let listen = free_port()?;
    let config = NodeConfig {
        node_id: 1,
        data_dir: dir.path().to_path_buf(),
        listen,
        http: None,
        cores: options.cores.unwrap_or_else(crate::config::available_cores),
        shards: crate::shard::ShardMap::default_currencies(),
        participants,
        group: Default::default(),
    };
    println!(
        "settle demo: one node, {} cores, shards USD EUR GBP JPY, {} participants, data in {}",
        config.cores,
        options.participants,
        dir.path().display()
    );
    let node = server::start(config)?;
    println!(
        "settle demo: driving {listen} for {:?} with {} clients x {} transactions per request (closed loop)",
        options.duration, options.clients, options.batch
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run_load(RunOptions {
        targets: vec![listen],
        duration: options.duration,
        clients: options.clients,
        batch: options.batch,
        rate_tps: None,
        participants: options.participants,
        seed,
        run_id: 1,
        live: true,
        collect_acked: false,
    }));
    let stopped = node.stop();
    let outcome = outcome?;
    println!("{}", outcome.report.text());
    stopped
}
