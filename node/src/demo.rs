//! `settle demo`: an embedded node in a temporary directory, driven by the
//! load generator with a realistic workload while its settlement cycles run
//! (RTGS every 200 ms, T0/T1/T2 every second), then drained and stopped. It
//! prints its progress while the cycles drain, and ends with the intake
//! report, settled tx/s, the cycles' costs and the savings against the naive
//! baseline, and what became of every acknowledged payment (settled,
//! deferred and why, pending, failed). The README's "run" command: it needs
//! nothing set up. While the load runs, a progress line every second on
//! stderr (elapsed, tx/s, p99, settled); `--report PATH` writes the HTML
//! report with its plots.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;
use settle_loadgen::account::account;
use settle_loadgen::participants::participants_file_with_liquidity;
use settle_loadgen::run::RunOptions;
use settle_loadgen::settle::{run_settle, SettleOptions};

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
    /// Open loop at this many transactions/s (closed loop when `None`).
    pub rate: Option<u64>,
    /// Prefunding multiplier of the participants' balances.
    pub liquidity: f64,
    /// Write the HTML report with its plots here.
    pub report: Option<std::path::PathBuf>,
}

/// A free loopback port (the node binds it per core with SO_REUSEPORT, so
/// port 0 cannot be used directly).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    if !(options.liquidity.is_finite() && options.liquidity > 0.0) {
        anyhow::bail!("--liquidity must be a positive number");
    }
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let seed = 1;
    let participants = parse_participants_file(
        &participants_file_with_liquidity(options.participants, seed, options.liquidity)
            .to_string(),
    )?;
    let listen = free_port()?;
    // Secure like any node: a throwaway CA and certificates in the
    // temporary directory, the load generator presenting the admin's.
    let tls = dir.path().join("tls");
    settle_security::generate::init_dir(
        &tls,
        &settle_security::generate::InitPlan::standard(1, &[]),
    )?;
    let credentials = crate::credentials::node(&tls, 1)?;
    settle_loadgen::net::set_tls(settle_loadgen::net::client_config(
        Some(&tls),
        "admin",
        false,
    )?);
    let config = NodeConfig {
        node_id: 1,
        data_dir: dir.path().to_path_buf(),
        listen,
        http: None,
        cores: options.cores.unwrap_or_else(crate::config::available_cores),
        shards: crate::shard::ShardMap::default_currencies(),
        participants,
        group: Default::default(),
        cycles: demo_cycles(),
        cluster: None,
        client_limits: Default::default(),
        security: Some(crate::credentials::ServerSecurity::new(
            &credentials,
            Some(tls.join(settle_security::files::TOKENS)),
        )?),
    };
    println!(
        "settle demo: one node, {} cores, shards USD EUR GBP JPY, {} participants, TLS 1.3 with throwaway certificates, data in {}",
        config.cores,
        options.participants,
        dir.path().display()
    );
    let node = server::start(config)?;
    println!(
        "settle demo: driving {listen} for {:?} with {} clients x {} transactions per request ({}); cycles: RTGS every 200 ms, T0/T1/T2 every second",
        options.duration,
        options.clients,
        options.batch,
        options
            .rate
            .map_or("closed loop".to_string(), |r| format!("open loop at {r} tx/s"))
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run_settle(
        RunOptions {
            targets: vec![listen],
            duration: options.duration,
            clients: options.clients,
            batch: options.batch,
            rate_tps: options.rate,
            participants: options.participants,
            seed,
            run_id: 1,
            scattered_ids: false,
            live: true,
            collect_acked: true,
            settled: None,
            request_timeout: settle_loadgen::run::REQUEST_TIMEOUT_DEFAULT,
            give_up_after: settle_loadgen::run::GIVE_UP_AFTER_DEFAULT,
        },
        SettleOptions {
            trigger_every: None,
            progress_every: Some(DEMO_PROGRESS_INTERVAL),
            ..SettleOptions::default()
        },
    ));
    let account = match &outcome {
        Ok((outcome, _)) => Some(runtime.block_on(account(listen, &outcome.acked))),
        Err(_) => None,
    };
    let stopped = node.stop();
    let (outcome, settled) = outcome?;
    println!("{}", outcome.report.text());
    println!("{}", settled.text());
    println!("{}", account.expect("looked up after a run")?.text());
    if let Some(path) = &options.report {
        settle_loadgen::html_report::write(
            path,
            &settle_loadgen::html_report::ReportInput {
                title: "settle demo",
                load: &outcome.report,
                timeline: &outcome.timeline,
                settle: Some(&settled),
            },
        )?;
        println!("settle demo: report written to {}", path.display());
    }
    stopped
}

/// How often the demo says how settling goes once the load has stopped.
const DEMO_PROGRESS_INTERVAL: Duration = Duration::from_secs(3);

/// The demo's schedules: every window settles within seconds.
fn demo_cycles() -> crate::cycle::CycleConfig {
    use crate::cycle::WindowSchedule;
    let every = |ms| WindowSchedule::Every(Duration::from_millis(ms));
    crate::cycle::CycleConfig {
        schedules: [every(200), every(1_000), every(1_000), every(1_000)],
        ..Default::default()
    }
}
