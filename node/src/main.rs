//! The `settle` binary: one node of the settlement engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use settle_node::config::{FileConfig, LogFormat};
use settle_node::participants::parse_participants_file;
use settle_node::server::{self, NodeConfig};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "settle",
    version,
    about = "A real-time transaction settlement engine"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node. With no cluster flags it is a one-member cluster.
    Start(StartArgs),
    /// Start an embedded node in a temporary directory, drive it with the load generator, print the report.
    Demo(DemoArgs),
}

#[derive(Args)]
struct StartArgs {
    /// Directory of the node's logs, snapshots and metadata (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the binary protocol listener [default: 127.0.0.1:7000].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Address of the HTTP/JSON listener (off unless given).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Cores to run on, one pinned executor each [default: all available].
    #[arg(long)]
    cores: Option<usize>,
    /// Participants file (JSON, the participants format of the batching spec) to add or update at start.
    #[arg(long)]
    participants: Option<PathBuf>,
    /// A TOML file with any of these settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id in its cluster [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
    /// Currencies to shard by, one shard each [default: USD,EUR,GBP,JPY].
    #[arg(long, value_delimiter = ',')]
    currencies: Option<Vec<String>>,
}

#[derive(Args)]
struct DemoArgs {
    /// How long to drive the node.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load generator connections.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Transactions per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Participants (banks) in the demo.
    #[arg(long, default_value_t = 32)]
    participants: u32,
    /// Cores for the node [default: all available].
    #[arg(long)]
    cores: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    settle_node::config::init_logging(cli.log_format);
    let outcome = match cli.command {
        Command::Start(args) => start(args),
        Command::Demo(args) => settle_node::demo::run(settle_node::demo::DemoOptions {
            duration: args.duration,
            clients: args.clients,
            batch: args.batch,
            participants: args.participants,
            cores: args.cores,
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settle: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn start(args: StartArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .ok_or_else(|| anyhow!("--data-dir is required"))?;
    let participants_path = args.participants.or(file.participants);
    let participants = match participants_path {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_participants_file(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Vec::new(),
    };
    let currencies = args.currencies.or(file.currencies);
    let config = NodeConfig {
        node_id: args.node_id.or(file.node_id).unwrap_or(1),
        data_dir,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7000".parse().expect("valid address")),
        http: args.http.or(file.http),
        cores: args
            .cores
            .or(file.cores)
            .unwrap_or_else(settle_node::config::available_cores),
        shards: settle_node::config::shard_map(currencies.as_deref())?,
        participants,
        group: Default::default(),
    };
    let node = server::start(config)?;
    eprintln!(
        "settle: listening on {} (http: {:?})",
        node.listen, node.http_addr
    );

    // SIGTERM/SIGINT stop the node cleanly; kill -9 loses nothing acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    while !stop.load(Ordering::SeqCst) {
        if node.any_core_finished() {
            return node
                .stop()
                .and_then(|()| Err(anyhow!("a core stopped unexpectedly")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("settle: stopping");
    node.stop()
}
