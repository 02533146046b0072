//! The `settle` binary: one node of the settlement engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use settle_node::cluster::ClusterConfig;
use settle_node::config::LogFormat;
use settle_node::cycle::{CycleConfig, WindowSchedule};
use settle_node::participants::parse_participants_file;
use settle_node::raft::GroupConfig;
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
    Start(Box<StartArgs>),
    /// Start an embedded node in a temporary directory, drive it with the load generator, run cycles, print the report.
    Demo(DemoArgs),
    /// Settlement cycles: run one now, or list recent ones.
    #[command(subcommand)]
    Cycle(CycleCommand),
    /// Print a transaction's audit trail, or a cycle's decision re-costed by the solver's checker.
    Audit(AuditArgs),
    /// Deposit into a participant's balance (idempotent by --id).
    Deposit(DepositArgs),
    /// Print balances per participant and currency.
    Balances(BalancesArgs),
    /// Forecast a participant's balance in a currency over the next hours, with 80/90/95 %
    /// prediction intervals, and what to pre-fund by when if the 95 % lower bound goes below zero.
    Forecast(ForecastArgs),
    /// Show a cluster: members, each group's leader, and every replica's term, log, commit and apply indexes and lag.
    Status(StatusArgs),
    /// Credentials: a throwaway CA with node and client certificates and tokens.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make DIR (it must not hold a CA yet): ca.pem/ca.key, node-<id>.pem/.key per node,
    /// <name>.pem/.key/.token for the clients admin, operator, auditor and each submitter, and
    /// tokens.toml (the tokens' hashes, for the nodes).
    Init {
        dir: PathBuf,
        /// Node certificates for ids 1..=N.
        #[arg(long, default_value_t = 1)]
        nodes: u64,
        /// Submitter (bank) client certificates, e.g. bank_01,bank_02.
        #[arg(long, value_delimiter = ',')]
        submitters: Vec<String>,
        /// Extra DNS names or IP addresses for the node certificates (they always carry
        /// settle-node, localhost, 127.0.0.1 and ::1).
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
    },
}

/// How a tool finds its credentials.
#[derive(Args, Clone)]
struct ClientSecurityArgs {
    /// Credentials directory: ca.pem and <identity>.pem/.key (a node's <data-dir>/tls, or one
    /// made by `settle certs init`).
    #[arg(long, env = "SETTLE_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// A node's data directory: its credentials are in <data-dir>/tls.
    #[arg(long, conflicts_with = "tls_dir")]
    data_dir: Option<PathBuf>,
    /// Whose certificate to present: admin, operator, auditor or a submitter's name.
    #[arg(long, env = "SETTLE_IDENTITY", default_value = "admin")]
    identity: String,
    /// Plaintext, no credentials: only for a node started --insecure.
    #[arg(long)]
    insecure: bool,
}

impl ClientSecurityArgs {
    fn load(&self) -> anyhow::Result<settle_node::credentials::ClientSecurity> {
        let dir = self.tls_dir.clone().or_else(|| {
            self.data_dir
                .as_deref()
                .map(settle_node::credentials::data_dir_tls)
        });
        settle_node::credentials::client(dir.as_deref(), &self.identity, self.insecure)
    }
}

#[derive(Args)]
struct StatusArgs {
    /// Peer (Raft) address of any member, the others are found through it; for a node started
    /// without --peers, its --listen address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: std::net::SocketAddr,
    /// Also compare replica digests, at one index every replica of a group applied (constant time on the nodes: never stalls them).
    #[arg(long)]
    digest: bool,
    /// Print every member's raw status as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Per-request timeout.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    security: ClientSecurityArgs,
}

#[derive(Args)]
struct TargetArgs {
    /// Node address (its binary protocol listener).
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: std::net::SocketAddr,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Deadline of each request (connect, handshake, answer): past it the command fails
    /// saying so instead of waiting on a stalled node.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    security: ClientSecurityArgs,
}

impl TargetArgs {
    fn connect(&self) -> anyhow::Result<settle_node::cycle::client::ControlClient> {
        let security = self.security.load()?;
        Ok(settle_node::cycle::client::ControlClient::connect(
            self.target,
            security.tls.as_ref(),
            self.timeout,
        )?)
    }
}

#[derive(Subcommand)]
enum CycleCommand {
    /// Run a cycle of a window now and wait until it is applied.
    Run {
        /// RTGS, T0, T1 or T2.
        #[arg(long, value_parser = parse_window)]
        window: settle_codec::Window,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the summaries of cycles, newest first: the most recent ones, or those after --after.
    List {
        /// Only cycles with a larger id (paging forward) [default: the most recent --max cycles].
        #[arg(long)]
        after: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        max: u32,
        /// Print the oldest cycle first.
        #[arg(long)]
        oldest_first: bool,
        /// With --json: each cycle's recorded FX trades and net flows per currency, and whether
        /// its record re-costs and its net flows are exactly its settled legs (one record read per
        /// cycle; at most 1,000 cycles a call).
        #[arg(long, requires = "json")]
        flows: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Most cycles `settle cycle list --flows` reads records of in one call.
const CYCLE_FLOWS_MAX: u32 = 1_000;

#[derive(Args)]
struct AuditArgs {
    /// The transaction id (32 hex digits, a UUID or a decimal number).
    #[arg(required_unless_present = "cycle", conflicts_with = "cycle")]
    transaction: Option<String>,
    /// Audit cycle K instead: its decision, costs, naive cost and savings, re-costed from the recorded inputs.
    #[arg(long)]
    cycle: Option<u64>,
    /// With --cycle: write the recorded inputs as a batching instance (spec JSON) here.
    #[arg(long, requires = "cycle")]
    instance_out: Option<PathBuf>,
    /// With --cycle: write the recorded decision as a solution file (spec JSON) here.
    #[arg(long, requires = "cycle")]
    solution_out: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct DepositArgs {
    /// Participant, e.g. bank_07.
    #[arg(long)]
    participant: String,
    /// Currency, e.g. EUR.
    #[arg(long)]
    currency: String,
    /// Amount in minor units (cents for EUR).
    #[arg(long)]
    amount: u64,
    /// Idempotency key: the same id again is a duplicate, never a second deposit [default: a fresh one, printed].
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct BalancesArgs {
    /// Only this participant.
    #[arg(long)]
    participant: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct ForecastArgs {
    /// The participant, e.g. bank_07.
    #[arg(long)]
    participant: String,
    /// The currency, e.g. USD.
    #[arg(long)]
    currency: String,
    /// Hours ahead, in the shard's buckets (at most one day of buckets) [default: 8].
    #[arg(long)]
    hours: Option<u32>,
    /// Buckets ahead instead of hours.
    #[arg(long, conflicts_with = "hours")]
    steps: Option<u32>,
    #[command(flatten)]
    target: TargetArgs,
}

fn parse_window(text: &str) -> Result<settle_codec::Window, String> {
    settle_codec::Window::from_name(&text.to_ascii_uppercase())
        .ok_or_else(|| format!("{text:?} is not one of RTGS, T0, T1, T2"))
}

/// Every setting of `settle start`. The same struct is the `--config` TOML
/// file (keys are the flags' names with `_` for `-`), so a flag cannot exist
/// without its file key: flags override the file, field by field
/// ([`StartArgs::over`]). Defaults are applied after merging, which is why
/// every value is optional here and its default is named in its help.
#[derive(Args, Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// A TOML file with any of these settings (keys are the flags' names with `_` for `-`,
    /// e.g. `rtgs_cycle_ms = 500`, `window_schedule = ["T0=off"]`); flags override it.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// This node's id in its cluster [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
    /// Currencies to shard by, one shard each [default: USD,EUR,GBP,JPY].
    #[arg(long, value_delimiter = ',')]
    currencies: Option<Vec<String>>,
    /// Period of the continuous RTGS cycles, in milliseconds (0: only on request) [default: 200].
    #[arg(long)]
    rtgs_cycle_ms: Option<u64>,
    /// When a window's cycles run: W=HH:MM[,HH:MM…] (UTC cut-offs), W=every:2s, or W=off.
    /// Repeatable. [default: T0=16:00, T1=17:00, T2=17:30]
    #[arg(long = "window-schedule", value_name = "W=SCHEDULE")]
    #[serde(rename = "window_schedule")]
    window_schedules: Vec<String>,
    /// The most an RTGS payment waits before it is due: waiting gets dearer as the deadline
    /// nears and prohibitive at it, so a fundable payment settles by then; one that cannot be
    /// funded then rolls to T0 with an event saying why [default: 60s].
    #[arg(long)]
    rtgs_max_wait: Option<String>,
    /// Most candidates one cycle takes (all shards together), at most 10,000 [default: 10000].
    #[arg(long)]
    cycle_candidates_max: Option<usize>,
    /// A fixed solver time budget in milliseconds [default: grows with the candidates, 10–200 ms].
    #[arg(long)]
    solver_budget_ms: Option<u64>,
    /// Send every settled batch as a wire over simulated payment rails (FedWire-like for USD,
    /// SWIFT-like otherwise, with alternates, retries and breakers): a settlement is final when
    /// its wire is confirmed, and reversed if it fails. `off`: final when the cycle applies
    /// [default: off].
    #[arg(long, value_parser = ["off", "simulated"])]
    execution: Option<String>,
    /// Seed of the simulated rails [default: 7].
    #[arg(long)]
    execution_seed: Option<u64>,
    /// Every rail fails this many attempts per million (overrides the rails' own rates).
    #[arg(long)]
    execution_failure_ppm: Option<u32>,
    /// A participant no rail can reach (its wires fail and are reversed). Repeatable.
    #[arg(long = "execution-unreachable", value_name = "PARTICIPANT")]
    execution_unreachable: Vec<String>,
    /// Delays before each retry of a wire, in milliseconds, e.g. 50,100,200 [default: 5 s, 15 s, 31 s].
    #[arg(long, value_delimiter = ',')]
    execution_retry_ms: Vec<u64>,
    /// Every cluster member's Raft (peer) address, this node's included: `1=host:port,2=host:port,…`.
    /// This node listens on its own entry. The first start with every member's data directory empty
    /// forms the cluster (the lowest id initializes it); a node that lost its data rejoins empty.
    /// Without --peers the node is a one-member cluster.
    #[arg(long)]
    peers: Option<String>,
    /// Leader heartbeat period in milliseconds [default: 50].
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Election timeout range in milliseconds, `MIN-MAX` [default: 150-300].
    #[arg(long)]
    election_timeout_ms: Option<String>,
    /// Build a snapshot every this many log entries [default: 20000].
    #[arg(long)]
    snapshot_entries: Option<u64>,
    /// Log entries kept behind a snapshot for lagging followers; keep at least --snapshot-entries,
    /// or a follower installing a snapshot while the leader builds the next one needs another
    /// [default: 20000].
    #[arg(long)]
    keep_entries: Option<u64>,
    /// Memory the node may use, e.g. 8GiB or 512MiB: split between each shard's block cache,
    /// memtables, key filter and unfinished transactions; beyond it intake answers "overloaded"
    /// [default: half of the machine's memory].
    #[arg(long)]
    memory_budget: Option<String>,
    /// Client connections served at once: per core on the binary port, in all on the HTTP port;
    /// more are closed at accept [default: 1024].
    #[arg(long)]
    client_connections_max: Option<usize>,
    /// A client connection (binary or HTTP) with no request in progress closes after this many
    /// milliseconds [default: 300000].
    #[arg(long)]
    client_idle_timeout_ms: Option<u64>,
    /// A request (a binary frame, an HTTP request) must arrive whole within this many
    /// milliseconds of its first byte; a slower sender is closed (told why on the binary port)
    /// [default: 10000].
    #[arg(long)]
    client_frame_timeout_ms: Option<u64>,
    /// Width in milliseconds of the time buckets of settlement history that liquidity forecasts
    /// read (a forecast's day is 96 buckets, four days are kept). Only a shard without history
    /// takes it (one restored from a snapshot keeps its own); every cluster member must use the
    /// same. Small widths compress a day for tests and demos [default: 900000, 15 minutes].
    #[arg(long)]
    forecast_bucket_ms: Option<u64>,
    /// A request slower than this many milliseconds logs one line with its stages and their
    /// durations (0: every request) [default: 200].
    #[arg(long)]
    slow_request_ms: Option<u64>,
    /// Leave each group's leadership where elections put it (by default a leader hands its group
    /// to the group's preferred member, so the shards' leaders are spread over the nodes).
    #[arg(long)]
    no_leader_balancing: bool,
    /// Credentials directory (see `settle certs init`): ca.pem, node-<id>.pem/.key, tokens.toml.
    /// Peer links are mutual TLS 1.3 against ca.pem.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Plaintext everywhere, no authentication: only for local experiments. Logs a warning on
    /// every start.
    #[arg(long)]
    insecure: bool,
    /// Seal the Raft log records, snapshots and state stores with AES-256-GCM: a file of 256-bit
    /// keys, 64 hex digits each (the first seals, all open: rotate by putting a new key first;
    /// keep an old key while anything sealed under it is kept). Also read from the
    /// SETTLE_ENCRYPTION_KEY environment variable [default: off].
    #[arg(long)]
    encryption_key_file: Option<PathBuf>,
}

/// Default of `--rtgs-cycle-ms`.
const RTGS_CYCLE_MS_DEFAULT: u64 = 200;
/// Default of `--execution-seed`.
const EXECUTION_SEED_DEFAULT: u64 = 7;

impl StartArgs {
    /// Reads a `--config` file.
    fn load(path: &std::path::Path) -> anyhow::Result<StartArgs> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// These flags over `file`: every setting given on the command line
    /// (a value, a non-empty list, a switch that is on) replaces the file's.
    /// Done on the serialized forms so that it covers every field there is.
    fn over(self, file: StartArgs) -> anyhow::Result<StartArgs> {
        let config = self.config.clone();
        let serde_json::Value::Object(flags) = serde_json::to_value(&self)? else {
            unreachable!("a struct serializes to an object");
        };
        let mut merged = serde_json::to_value(&file)?;
        for (key, value) in flags {
            let unset = value.is_null()
                || value == serde_json::Value::Bool(false)
                || value.as_array().is_some_and(Vec::is_empty);
            if !unset {
                merged[key] = value;
            }
        }
        let mut merged: StartArgs = serde_json::from_value(merged)?;
        merged.config = config;
        Ok(merged)
    }
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
    /// Open loop at this many transactions/s in total [default: closed loop].
    #[arg(long)]
    rate: Option<u64>,
    /// Multiply the participants' prefunded balances by this: at the default the workload's
    /// cross-currency payments drain home currencies within seconds and settlement waits for
    /// liquidity instead of showing the engine's speed.
    #[arg(long, default_value_t = 100.0)]
    liquidity: f64,
    /// Write an HTML report with SVG plots to this file: throughput and latency over time, the
    /// cost breakdown and the cumulative cost against naive.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    settle_node::config::init_logging(cli.log_format);
    if !matches!(cli.command, Command::Start(_) | Command::Demo(_)) {
        // Operator commands print and exit: `settle balances | head` should
        // end quietly like any Unix tool, not panic on the closed pipe. (The
        // node itself keeps Rust's default, SIGPIPE ignored: a peer closing a
        // socket is an error to handle, not a reason to die.)
        // SAFETY: restoring the default disposition of a signal touches no memory.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let outcome = match cli.command {
        Command::Start(args) => start(*args),
        Command::Demo(args) => settle_node::demo::run(settle_node::demo::DemoOptions {
            duration: args.duration,
            clients: args.clients,
            batch: args.batch,
            participants: args.participants,
            cores: args.cores,
            rate: args.rate,
            liquidity: args.liquidity,
            report: args.report,
        }),
        Command::Cycle(command) => cli::cycle(command),
        Command::Audit(args) => cli::audit(args),
        Command::Deposit(args) => cli::deposit(args),
        Command::Balances(args) => cli::balances(args),
        Command::Forecast(args) => cli::forecast(args),
        Command::Status(args) => status(args),
        Command::Certs(command) => certs(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            settle_node::config::say(&format!(
                "settle: {}",
                settle_node::error_text::one_line(&e)
            ));
            ExitCode::from(2)
        }
    }
}

/// The cycle settings of `settle start`'s flags.
fn cycle_config(args: &StartArgs) -> anyhow::Result<CycleConfig> {
    let mut config = CycleConfig::default();
    config.schedules[0] = match args.rtgs_cycle_ms.unwrap_or(RTGS_CYCLE_MS_DEFAULT) {
        0 => WindowSchedule::Off,
        ms => WindowSchedule::Every(Duration::from_millis(ms)),
    };
    for spec in &args.window_schedules {
        let (window, schedule) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--window-schedule {spec:?}: expected W=SCHEDULE"))?;
        let window = parse_window(window).map_err(|e| anyhow!("--window-schedule: {e}"))?;
        let slot = settle_codec::Window::ALL
            .iter()
            .position(|&w| w == window)
            .expect("a window");
        config.schedules[slot] = WindowSchedule::parse(schedule)
            .map_err(|e| anyhow!("--window-schedule {spec:?}: {e}"))?;
    }
    let candidates_max = args
        .cycle_candidates_max
        .unwrap_or(settle_codec::messages::MAX_CYCLE_TRANSACTIONS);
    if candidates_max == 0 || candidates_max > settle_codec::messages::MAX_CYCLE_TRANSACTIONS {
        return Err(anyhow!(
            "--cycle-candidates-max: between 1 and {}",
            settle_codec::messages::MAX_CYCLE_TRANSACTIONS
        ));
    }
    config.candidates_max = candidates_max;
    if let Some(text) = &args.rtgs_max_wait {
        let wait =
            humantime::parse_duration(text).map_err(|e| anyhow!("rtgs_max_wait: {text:?}: {e}"))?;
        if wait < Duration::from_secs(1) {
            return Err(anyhow!("rtgs_max_wait: at least 1s, got {text:?}"));
        }
        config.rtgs_max_wait = wait;
    }
    config.solver_budget = args.solver_budget_ms.map(Duration::from_millis);
    let execution = args.execution.as_deref().unwrap_or("off");
    if !matches!(execution, "off" | "simulated") {
        // The flag's parser checks this; a --config file is only read here.
        return Err(anyhow!("execution: {execution:?} is not off or simulated"));
    }
    if execution == "simulated" {
        if args
            .execution_failure_ppm
            .is_some_and(|ppm| ppm > 1_000_000)
        {
            return Err(anyhow!("--execution-failure-ppm: at most 1000000"));
        }
        let mut unreachable = Vec::new();
        for name in &args.execution_unreachable {
            unreachable.push(settle_codec::ParticipantId::from_name(name).ok_or_else(|| {
                anyhow!("--execution-unreachable {name:?} is not a name like bank_07")
            })?);
        }
        let retry_delays: Vec<Duration> = args
            .execution_retry_ms
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        if !retry_delays.is_empty() {
            settle_node::execution::BackoffSchedule::new(
                retry_delays.iter().map(|d| d.as_micros() as u64).collect(),
            )
            .map_err(|e| anyhow!("--execution-retry-ms: {e}"))?;
        }
        config.wires = Some(settle_node::cycle::wires::WiresConfig {
            seed: args.execution_seed.unwrap_or(EXECUTION_SEED_DEFAULT),
            failure_ppm: args.execution_failure_ppm,
            unreachable,
            retry_delays,
        });
    }
    Ok(config)
}

/// The peer map (`--peers`) and Raft tuning flags of `settle start`.
fn cluster_config(args: &StartArgs) -> anyhow::Result<(Option<PeerMap>, GroupConfig)> {
    let cluster = match &args.peers {
        None => None,
        Some(text) => Some(settle_node::cluster::parse_peers(text)?),
    };
    // openraft's 150-300 ms election timeouts (3 to 6 heartbeats): measured
    // on the shared 2-core box, three release nodes at full load kept their
    // leaders, and a failover takes ~0.5 s (300-600 ms: ~1.1 s, because a
    // follower only campaigns once its leader lease, the timeout's maximum,
    // has run out). `--election-timeout-ms 300-600` for slower machines.
    let mut group = GroupConfig::default();
    if let Some(ms) = args.heartbeat_ms {
        group.heartbeat_interval_ms = ms;
    }
    if let Some(range) = &args.election_timeout_ms {
        let (min, max) = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .ok_or_else(|| anyhow!("--election-timeout-ms: expected MIN-MAX, got {range:?}"))?;
        group.election_timeout_min_ms = min;
        group.election_timeout_max_ms = max;
    }
    if let Some(n) = args.snapshot_entries {
        group.snapshot_logs_since_last = n;
    }
    if let Some(n) = args.keep_entries {
        group.logs_kept_after_snapshot = n;
    }
    let budget = match &args.memory_budget {
        Some(text) => parse_bytes(text).map_err(|e| anyhow!("memory_budget: {e}"))?,
        None => default_memory_budget(),
    };
    if budget < MEMORY_BUDGET_MIN {
        return Err(anyhow!(
            "memory_budget: at least {} MiB, got {budget} bytes",
            MEMORY_BUDGET_MIN >> 20
        ));
    }
    let shards = args
        .currencies
        .as_ref()
        .map_or(settle_node::shard::DEFAULT_CURRENCIES.len(), Vec::len);
    group.store = settle_node::raft::StateStoreConfig::from_memory_budget(budget, shards);
    match args.forecast_bucket_ms {
        Some(0) => return Err(anyhow!("forecast_bucket_ms: at least 1")),
        Some(ms) => group.store.flow_bucket_us = ms.saturating_mul(1_000),
        None => {}
    }
    group.at_rest = at_rest_cipher(args)?;
    group.raft_config(0).map_err(|e| anyhow!("{e}"))?;
    Ok((cluster, group))
}

type PeerMap = std::collections::BTreeMap<u64, std::net::SocketAddr>;

/// The binary port's bounds from the flags (defaults in `intake::limits`).
fn client_limits(args: &StartArgs) -> anyhow::Result<settle_node::intake::limits::ClientLimits> {
    let mut limits = settle_node::intake::limits::ClientLimits::default();
    if let Some(n) = args.client_connections_max {
        if n == 0 {
            return Err(anyhow!("client_connections_max: at least 1"));
        }
        limits.connections_per_core = n;
    }
    if let Some(ms) = args.slow_request_ms {
        limits.slow_request = Duration::from_millis(ms);
    }
    for (name, value, slot) in [
        (
            "client_idle_timeout_ms",
            args.client_idle_timeout_ms,
            &mut limits.idle_timeout,
        ),
        (
            "client_frame_timeout_ms",
            args.client_frame_timeout_ms,
            &mut limits.frame_timeout,
        ),
    ] {
        match value {
            Some(0) => return Err(anyhow!("{name}: at least 1 ms")),
            Some(ms) => *slot = Duration::from_millis(ms),
            None => {}
        }
    }
    Ok(limits)
}

/// The least `--memory-budget`: the node's fixed overhead and a little per shard.
const MEMORY_BUDGET_MIN: usize = 1 << 30;

/// Half of the machine's memory (`MemTotal`), at least [`MEMORY_BUDGET_MIN`].
fn default_memory_budget() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(4 << 30);
    (total / 2).max(MEMORY_BUDGET_MIN)
}

/// `8GiB`, `512MiB`, `1048576` (bytes); K/M/G and KB/MB/GB mean powers of 1024 too.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 8GiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    n.checked_mul(1usize << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The at-rest keys: `--encryption-key-file`, else `SETTLE_ENCRYPTION_KEY`.
fn at_rest_cipher(
    args: &StartArgs,
) -> anyhow::Result<Option<std::sync::Arc<settle_storage::Cipher>>> {
    let (text, source) = match &args.encryption_key_file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var("SETTLE_ENCRYPTION_KEY") {
            Ok(text) => (text, "SETTLE_ENCRYPTION_KEY".to_string()),
            Err(_) => return Ok(None),
        },
    };
    let cipher = settle_storage::Cipher::from_hex(&text).with_context(|| format!("in {source}"))?;
    tracing::info!(
        key_id = format!("{:08x}", cipher.seal_key_id()),
        "Raft log, snapshots and state stores sealed with AES-256-GCM (keys from {source})"
    );
    Ok(Some(std::sync::Arc::new(cipher)))
}

/// The settings of `settle start`: its flags over its `--config` file.
fn settings(args: StartArgs) -> anyhow::Result<StartArgs> {
    match &args.config {
        Some(path) => {
            let file = StartArgs::load(path)?;
            args.over(file)
        }
        None => Ok(args),
    }
}

/// The node's credentials: from `--tls-dir`, else from `<data-dir>/tls`,
/// made there on a one-member node's first start; none with `--insecure`.
fn security(
    args: &StartArgs,
    data_dir: &std::path::Path,
    node_id: u64,
) -> anyhow::Result<Option<(settle_security::Credentials, PathBuf)>> {
    if args.insecure {
        if args.tls_dir.is_some() {
            return Err(anyhow!("--insecure and --tls-dir: pick one"));
        }
        tracing::warn!(
            "INSECURE: started with --insecure: every port is plaintext and unauthenticated; \
             anyone who can reach this node can submit as any bank, deposit, change participants \
             and FX, and inject Raft messages. For local experiments only."
        );
        return Ok(None);
    }
    let dir = match &args.tls_dir {
        Some(dir) => dir.clone(),
        None => settle_node::credentials::bootstrap(data_dir, node_id, args.peers.is_some())?,
    };
    let credentials = settle_node::credentials::node(&dir, node_id)?;
    tracing::info!(dir = %dir.display(), "TLS 1.3 on every port with the credentials in {}", dir.display());
    Ok(Some((credentials, dir)))
}

fn start(args: StartArgs) -> anyhow::Result<()> {
    let args = settings(args)?;
    let cycles = cycle_config(&args)?;
    let client_limits = client_limits(&args)?;
    let (peers, group) = cluster_config(&args)?;
    let data_dir = args
        .data_dir
        .clone()
        .ok_or_else(|| anyhow!("--data-dir is required (or data_dir in --config)"))?;
    let node_id = args.node_id.unwrap_or(1);
    let credentials = security(&args, &data_dir, node_id)?;
    let participants = match args.participants {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_participants_file(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Vec::new(),
    };
    let currencies = args.currencies;
    let balance_leaders = !args.no_leader_balancing;
    let peer_tls = credentials
        .as_ref()
        .map(|(c, _)| settle_node::cluster::PeerTls::new(c))
        .transpose()?;
    let cluster = peers
        .map(|peers| {
            ClusterConfig::new(node_id, peers).map(|c| ClusterConfig {
                balance_leaders,
                tls: peer_tls.clone(),
                ..c
            })
        })
        .transpose()?;
    let config = NodeConfig {
        node_id,
        data_dir,
        listen: args
            .listen
            .unwrap_or_else(|| "127.0.0.1:7000".parse().expect("valid address")),
        http: args.http,
        cores: args
            .cores
            .unwrap_or_else(settle_node::config::available_cores),
        shards: settle_node::config::shard_map(currencies.as_deref())?,
        participants,
        group,
        cycles,
        cluster,
        client_limits,
        security: credentials
            .as_ref()
            .map(|(c, dir)| {
                settle_node::credentials::ServerSecurity::new(
                    c,
                    Some(dir.join(settle_security::files::TOKENS)),
                )
            })
            .transpose()?,
    };
    let node = server::start(config)?;
    settle_node::config::say(&format!(
        "settle: listening on {} (http: {:?})",
        node.listen, node.http_addr
    ));

    // SIGTERM/SIGINT stop the node cleanly; kill -9 loses nothing acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    // SIGHUP re-reads the node's certificate and key (every port presents
    // the new one from its next handshake on).
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
        .context("installing signal handlers")?;
    while !stop.load(Ordering::SeqCst) {
        if hangup.swap(false, Ordering::SeqCst) {
            match credentials.as_ref().map(|(c, _)| c.reload()) {
                Some(Ok(identity)) => {
                    tracing::info!(%identity, "SIGHUP: certificate and key reloaded")
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "SIGHUP: certificate not reloaded; the previous one stays")
                }
                None => tracing::warn!("SIGHUP: --insecure, no certificate to reload"),
            }
        }
        if node.any_core_finished() {
            return node
                .stop()
                .and_then(|()| Err(anyhow!("a core stopped unexpectedly")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    settle_node::config::say("settle: stopping");
    node.stop()
}

/// The operator commands: one request each to a running node.
mod cli {
    use anyhow::{anyhow, Context};
    use serde_json::json;
    use settle_codec::messages::CycleStatus;
    use settle_codec::{format_id, parse_id, Currency, ParticipantId, TxResult, TxStatus};
    use settle_node::cycle::audit::{money, recost, render_cycle, render_trail, trail_json};
    use settle_node::cycle::instance::{instance_json, solution_file};

    use super::{AuditArgs, BalancesArgs, CycleCommand, DepositArgs, ForecastArgs};

    fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    fn summary_line(s: &settle_codec::messages::CycleSummary) -> String {
        if s.cycle_id == 0 {
            return format!("no {} transaction is waiting: no cycle ran", s.window);
        }
        format!(
            "cycle {} {:<4} {:?} {:?}: candidates {} settled {} deferred {} batches {}; cost {:.2} USD, naive {:.2} USD, savings {:.2} %; latency {}",
            s.cycle_id,
            s.window.as_str(),
            s.status,
            s.method,
            s.candidates,
            s.settled,
            s.deferred,
            s.batches,
            s.cost.total,
            s.naive_cost.total,
            s.savings_pct(),
            s.latency_us()
                .map_or("-".to_string(), |us| format!("{:.1} ms", us as f64 / 1e3)),
        )
    }

    pub fn cycle(command: CycleCommand) -> anyhow::Result<()> {
        match command {
            CycleCommand::Run { window, target } => {
                let mut client = target.connect()?;
                let summary = client.run_cycle(window)?;
                if target.json {
                    print_json(&serde_json::to_value(summary)?)
                } else {
                    println!("{}", summary_line(&summary));
                    Ok(())
                }
            }
            CycleCommand::List {
                after,
                max,
                oldest_first,
                flows,
                target,
            } => {
                if flows && max > super::CYCLE_FLOWS_MAX {
                    return Err(anyhow!(
                        "--flows reads a record per cycle: --max at most {}",
                        super::CYCLE_FLOWS_MAX
                    ));
                }
                let mut client = target.connect()?;
                let after = match after {
                    Some(after) => after,
                    None => {
                        // Cycle ids are 1, 2, …: the newest `max` are the
                        // ones after `next - 1 - max`.
                        let (_, next) = client.cycle_list(0, 0)?;
                        next.saturating_sub(u64::from(max) + 1)
                    }
                };
                let (mut cycles, next) = client.cycle_list(after, max)?;
                cycles.sort_by_key(|s| s.cycle_id);
                if !oldest_first {
                    cycles.reverse();
                }
                if target.json && flows {
                    let mut rows = Vec::with_capacity(cycles.len());
                    for s in &cycles {
                        let mut row = serde_json::to_value(s)?;
                        let record = match s.status {
                            CycleStatus::Started => None,
                            _ => Some(client.cycle_record(s.cycle_id)?),
                        };
                        if let Some(record) = record {
                            let checked = recost(&record);
                            row["fx_trades"] = serde_json::to_value(&record.fx_trades)?;
                            row["net_flows"] = serde_json::to_value(&record.net_flows)?;
                            row["verified"] = json!(checked.as_ref().is_ok_and(|r| r.agrees));
                            row["flows_agree"] =
                                json!(checked.as_ref().is_ok_and(|r| r.flows_agree));
                        }
                        rows.push(row);
                    }
                    return print_json(&json!({ "cycles": rows, "next_cycle_id": next }));
                }
                if target.json {
                    return print_json(&json!({ "cycles": cycles, "next_cycle_id": next }));
                }
                for s in &cycles {
                    println!("{}", summary_line(s));
                }
                println!("next cycle id: {next}");
                Ok(())
            }
        }
    }

    pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
        let mut client = args.target.connect()?;
        if let Some(cycle_id) = args.cycle {
            let record = client.cycle_record(cycle_id)?;
            let checked = recost(&record);
            if let Some(path) = &args.instance_out {
                std::fs::write(path, serde_json::to_vec_pretty(&instance_json(&record))?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &args.solution_out {
                std::fs::write(path, serde_json::to_vec_pretty(&solution_file(&record))?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let agrees = checked.as_ref().is_ok_and(|r| r.agrees);
            if args.target.json {
                print_json(&json!({
                    "summary": record.summary,
                    "savings_pct": record.summary.savings_pct(),
                    "fallback_reason": record.fallback_reason,
                    "fx_trades": record.fx_trades,
                    "net_flows": record.net_flows,
                    "flows_agree": checked.as_ref().is_ok_and(|r| r.flows_agree),
                    "checker": checked.as_ref().ok().map(|r| json!({
                        "valid": r.report.valid,
                        "errors": r.report.errors,
                        "cost": r.report.cost,
                        "naive_cost": r.naive,
                    })),
                    "verified": agrees,
                }))?;
            } else {
                print!("{}", render_cycle(&record, &checked));
            }
            if !agrees {
                return Err(anyhow!(
                    "cycle {cycle_id}: the recorded costs do not check out"
                ));
            }
            return Ok(());
        }
        let text = args
            .transaction
            .expect("clap requires a transaction or --cycle");
        let id = parse_id(&text).ok_or_else(|| {
            anyhow!(
                "{text:?} is not a transaction id ({})",
                settle_codec::ID_FORMAT
            )
        })?;
        let item = client
            .lookup(&[id])?
            .pop()
            .ok_or_else(|| anyhow!("no answer for {text}"))?;
        if item.status == TxStatus::NotFound {
            return Err(anyhow!("transaction {} is not known", format_id(id)));
        }
        if args.target.json {
            print_json(&trail_json(&item))
        } else {
            print!("{}", render_trail(&item));
            Ok(())
        }
    }

    pub fn deposit(args: DepositArgs) -> anyhow::Result<()> {
        let participant = ParticipantId::from_name(&args.participant).ok_or_else(|| {
            anyhow!(
                "--participant {:?} is not a name like bank_07",
                args.participant
            )
        })?;
        let currency = Currency::from_code(&args.currency)
            .ok_or_else(|| anyhow!("--currency {:?} is not a known code", args.currency))?;
        let deposit_id = match &args.id {
            Some(text) => parse_id(text).ok_or_else(|| {
                anyhow!("--id {text:?} is not an id ({})", settle_codec::ID_FORMAT)
            })?,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos()),
        };
        let mut client = args.target.connect()?;
        let (result, balance) = client.deposit(deposit_id, participant, currency, args.amount)?;
        if args.target.json {
            print_json(&json!({
                "deposit_id": format_id(deposit_id),
                "result": result,
                "balance": balance,
            }))?;
            return refused(deposit_id, result);
        }
        println!(
            "deposit {} of {} to {participant}: {result:?}; balance now {}",
            format_id(deposit_id),
            money(args.amount, currency),
            money(balance, currency)
        );
        refused(deposit_id, result)
    }

    /// A deposit the node did not book is a failure for the shell: a
    /// script must not carry on as if the money had arrived.
    fn refused(deposit_id: u128, result: TxResult) -> anyhow::Result<()> {
        match result {
            TxResult::Created | TxResult::Duplicate => Ok(()),
            TxResult::Conflict => Err(anyhow!(
                "deposit {} was already booked with another participant, currency or amount: nothing was deposited",
                format_id(deposit_id)
            )),
            TxResult::Rejected { reason, field } => Err(anyhow!(
                "deposit {} rejected: {field}: {reason}: nothing was deposited",
                format_id(deposit_id)
            )),
        }
    }

    pub fn balances(args: BalancesArgs) -> anyhow::Result<()> {
        let participant = match &args.participant {
            Some(name) => Some(
                ParticipantId::from_name(name)
                    .ok_or_else(|| anyhow!("--participant {name:?} is not a name like bank_07"))?,
            ),
            None => None,
        };
        let mut client = args.target.connect()?;
        let balances = client.balances(participant)?;
        if args.target.json {
            return print_json(&json!({ "balances": balances }));
        }
        println!(
            "{:<12} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}",
            "participant",
            "balance",
            "opening",
            "deposited",
            "credited",
            "debited",
            "refunded",
            "incoming"
        );
        for b in &balances {
            println!(
                "{:<12} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}",
                b.participant.name(),
                money(b.balance, b.currency),
                money(b.opening, b.currency),
                money(b.deposited, b.currency),
                money(b.credited, b.currency),
                money(b.debited, b.currency),
                money(b.refunded, b.currency),
                money(b.incoming, b.currency)
            );
        }
        Ok(())
    }

    pub fn forecast(args: ForecastArgs) -> anyhow::Result<()> {
        use settle_node::forecast::{rfc3339, shortfall_message, to_json};
        let participant = ParticipantId::from_name(&args.participant).ok_or_else(|| {
            anyhow!(
                "--participant {:?} is not a name like bank_07",
                args.participant
            )
        })?;
        let currency = Currency::from_code(&args.currency)
            .ok_or_else(|| anyhow!("--currency {:?} is not a currency code", args.currency))?;
        let mut client = args.target.connect()?;
        let f = client.forecast(
            participant,
            currency,
            args.hours.unwrap_or(0),
            args.steps.unwrap_or(0),
        )?;
        if args.target.json {
            return print_json(&to_json(&f));
        }
        println!(
            "{} {}: balance {} at {}; {} buckets of {} s of history",
            participant.name(),
            currency,
            money(f.balance, currency),
            rfc3339(f.now_us),
            f.history_buckets,
            f.bucket_us as f64 / 1e6
        );
        println!(
            "{:<22} {:>20} {:>43} {:>43} {:>43}",
            "until", "point", "80 %", "90 %", "95 %"
        );
        let range = |lo: i64, hi: i64| format!("[{lo}, {hi}]");
        for s in &f.steps {
            println!(
                "{:<22} {:>20} {:>43} {:>43} {:>43}",
                rfc3339(s.end_us),
                s.point,
                range(s.lower[0], s.upper[0]),
                range(s.lower[1], s.upper[1]),
                range(s.lower[2], s.upper[2])
            );
        }
        match &f.shortfall {
            Some(s) => println!("shortfall: {}", shortfall_message(&f, s)),
            None => println!("no shortfall: the 95 % lower bound stays at or above zero"),
        }
        Ok(())
    }
}

fn certs(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            nodes,
            submitters,
            sans,
        } => {
            let mut plan = settle_security::generate::InitPlan::standard(nodes, &submitters);
            plan.extra_names = sans;
            settle_security::generate::init_dir(&dir, &plan)?;
            println!(
                "{}: a CA, {nodes} node certificate(s), client certificates and tokens for {}",
                dir.display(),
                plan.clients
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
    }
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    use settle_node::cluster::status;
    let security = args.security.load()?;
    let views = status::cluster_status(
        args.target,
        args.digest,
        args.timeout,
        security.tls.as_ref(),
    )?;
    if args.json {
        let all: Vec<serde_json::Value> = views
            .iter()
            .map(|v| match &v.groups {
                Ok(groups) => serde_json::json!({
                    "node_id": v.node_id, "addr": v.addr.to_string(), "groups": groups
                }),
                Err(e) => serde_json::json!({
                    "node_id": v.node_id, "addr": v.addr.to_string(), "error": e
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let summary = status::summarize(&views);
    print!("{}", summary.text);
    if args.digest && !summary.converged {
        return Err(anyhow!(
            "not converged: replicas differ, lag, or a member is unreachable"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    /// A value for every setting of `settle start`, none of them its default.
    fn every_setting() -> StartArgs {
        StartArgs {
            data_dir: Some("/var/lib/settle".into()),
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            http: Some("127.0.0.1:8081".parse().unwrap()),
            cores: Some(3),
            participants: Some("participants.json".into()),
            config: None,
            node_id: Some(2),
            currencies: Some(vec!["EUR".into(), "CHF".into()]),
            rtgs_cycle_ms: Some(0),
            window_schedules: vec!["T0=off".into(), "T1=every:2s".into()],
            rtgs_max_wait: Some("90s".into()),
            cycle_candidates_max: Some(500),
            solver_budget_ms: Some(20),
            execution: Some("simulated".into()),
            execution_seed: Some(9),
            execution_failure_ppm: Some(1000),
            execution_unreachable: vec!["bank_03".into()],
            execution_retry_ms: vec![50, 100],
            peers: Some("1=127.0.0.1:7101,2=127.0.0.1:7102".into()),
            heartbeat_ms: Some(60),
            election_timeout_ms: Some("300-600".into()),
            snapshot_entries: Some(5000),
            keep_entries: Some(100),
            memory_budget: Some("2GiB".into()),
            client_connections_max: Some(16),
            client_idle_timeout_ms: Some(1_000),
            client_frame_timeout_ms: Some(500),
            forecast_bucket_ms: Some(60_000),
            slow_request_ms: Some(50),
            no_leader_balancing: true,
            tls_dir: Some("/etc/settle/tls".into()),
            insecure: true,
            encryption_key_file: Some("/etc/settle/at-rest.keys".into()),
        }
    }

    #[test]
    fn sizes_parse_with_binary_units_and_errors_say_why() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("8 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
        let small = StartArgs {
            memory_budget: Some("100MiB".into()),
            ..StartArgs::default()
        };
        assert!(cluster_config(&small)
            .unwrap_err()
            .to_string()
            .contains("at least"));
        let four = StartArgs {
            memory_budget: Some("4GiB".into()),
            ..StartArgs::default()
        };
        let (_, group) = cluster_config(&four).unwrap();
        // 4 GiB less the node's overhead, over four shards.
        let per_shard = ((4 << 30) - settle_node::raft::state_machine::NODE_OVERHEAD_BYTES) / 4;
        assert_eq!(group.store.rocks.cache_bytes, per_shard / 8);
        assert_eq!(group.store.key_filter_bytes, per_shard / 4);
        assert!(group.store.rocks.memory_bound() <= per_shard / 4);
        assert_eq!(
            group.store.hot_records_max,
            per_shard / 2 / settle_node::raft::state_machine::HOT_RECORD_BYTES
        );
    }

    /// `settle start`'s flags: (long name, whether it takes a value).
    fn start_flags() -> Vec<(String, bool)> {
        let cli = Cli::command();
        let start = cli.find_subcommand("start").expect("a start command");
        start
            .get_arguments()
            .filter_map(|a| {
                let long = a.get_long()?;
                (long != "config" && long != "help")
                    .then(|| (long.to_string(), a.get_action().takes_values()))
            })
            .collect()
    }

    /// `settings` written as command-line flags, generically: each file key
    /// is a flag's name.
    fn as_flags(settings: &StartArgs) -> Vec<String> {
        let json = serde_json::to_value(settings).unwrap();
        let mut flags = Vec::new();
        for (long, _) in start_flags() {
            let flag = format!("--{long}");
            match &json[long.replace('-', "_")] {
                serde_json::Value::Null | serde_json::Value::Bool(false) => {}
                serde_json::Value::Bool(true) => flags.push(flag),
                serde_json::Value::Array(items) => {
                    for item in items {
                        flags.push(flag.clone());
                        flags.push(plain(item));
                    }
                }
                value => {
                    flags.push(flag);
                    flags.push(plain(value));
                }
            }
        }
        flags
    }

    fn plain(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    fn parse_start(args: &[String]) -> StartArgs {
        let cli = Cli::try_parse_from(
            ["settle", "start"]
                .into_iter()
                .map(String::from)
                .chain(args.iter().cloned()),
        )
        .unwrap();
        match cli.command {
            Command::Start(args) => *args,
            _ => unreachable!("parsed a start command"),
        }
    }

    #[test]
    fn every_start_flag_is_a_config_key_and_round_trips_through_the_file() {
        let every = every_setting();
        let keys: BTreeSet<String> = serde_json::to_value(&every)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let flags: BTreeSet<String> = start_flags()
            .into_iter()
            .map(|(long, _)| long.replace('-', "_"))
            .collect();
        assert_eq!(keys, flags, "the --config keys are the flags' names");

        // The flags give exactly these settings...
        assert_eq!(parse_start(&as_flags(&every)), every);
        // ...and so does a file holding them, alone.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settle.toml");
        std::fs::write(&path, toml::to_string(&every).unwrap()).unwrap();
        let config = ["--config".to_string(), path.display().to_string()];
        let from_file = settings(parse_start(&config)).unwrap();
        assert_eq!(
            StartArgs {
                config: None,
                ..from_file
            },
            every
        );

        // A flag overrides its key; the file's other keys stay.
        let mut flags = vec!["--cores".to_string(), "5".to_string()];
        flags.extend(config.iter().cloned());
        let merged = settings(parse_start(&flags)).unwrap();
        assert_eq!(merged.cores, Some(5));
        assert_eq!(merged.window_schedules, every.window_schedules);
        assert_eq!(merged.peers, every.peers);
    }

    #[test]
    fn config_file_refuses_unknown_keys() {
        assert!(toml::from_str::<StartArgs>("listen = \"127.0.0.1:7\"\ncores = 2").is_ok());
        let typo = toml::from_str::<StartArgs>("lisen = \"x\"").unwrap_err();
        assert!(typo.to_string().contains("lisen"), "{typo}");
        assert!(
            toml::from_str::<StartArgs>("config = \"other.toml\"").is_err(),
            "a config file does not name another"
        );
    }
}
