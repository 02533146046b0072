//! `settle-nemesis`: starts a real cluster (3 or 5 `settle` processes),
//! drives it with the load generator and deposits while settlement cycles
//! run, throws faults at it from a seeded plan (kill -9 and restart,
//! leaders more often; SIGSTOP/SIGCONT; a wiped node; a flipped byte in a
//! log segment; with network namespaces, partitions and `tc netem`), heals
//! everything, and checks the history: every acknowledged transaction
//! present exactly once through every node with a legal audit trail, equal
//! replica digests at equal applied indexes, and money that changed only
//! through deposits and the cycles' legs. It prints the seed, the fault
//! timeline, a summary, and on failure the command that replays the run.
//!
//! It must not link the node: it sees the engine through the `settle` and
//! `settle-loadgen` binaries (found beside its own executable) and their
//! ports, as an operator would.

mod check;
mod cluster;
mod damage;
mod disk;
mod exec;
mod netns;
mod plan;
mod summary;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};

use crate::cluster::{Cluster, Net, NODE_START_TIMEOUT};
use crate::plan::{Fault, Kind, PlanInput, Split, Step, Victim};
use crate::summary::Ran;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// An error once Ctrl-C (or SIGTERM) arrived: every wait loop calls it,
/// so the run unwinds and its drops remove the namespaces and kill the
/// nodes.
pub fn interrupted_check() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Namespaces {
    /// Use network namespaces if the machine allows (root, `ip`); say so
    /// loudly and run the loopback faults only if not.
    Auto,
    /// Require them.
    On,
    /// Loopback only: no partitions, no netem.
    Off,
}

#[derive(Parser, Debug)]
#[command(
    name = "settle-nemesis",
    version,
    about = "Throws seeded faults at a real settle cluster under load and checks that nothing acknowledged is lost or doubled"
)]
struct Args {
    /// Seed of the fault plan and the workload: the same seed replays the same plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cluster size: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// How long the load runs (faults stop 10 s before its end), e.g. 90s, 30m.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fault kinds to draw from: kill, kill-leader, stop, wipe, flip-byte, partition, netem,
    /// disk-full [default: all the machine supports].
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Size of each node's own file system (full-disk faults), MiB: a fill allocates it all on
    /// this machine's disk.
    #[arg(long, default_value_t = disk::DISK_MIB_DEFAULT)]
    disk_mib: u64,
    /// Network namespaces (needed for partitions and netem).
    #[arg(long, value_enum, default_value_t = Namespaces::Auto)]
    namespaces: Namespaces,
    /// Offered load, transactions per second (open loop).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Participants (banks) in the cluster and the workload.
    #[arg(long, default_value_t = 16)]
    participants: u32,
    /// Directory of the run (data, logs, acked ids) [default: a new one under the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run's directory even when every check passed.
    #[arg(long)]
    keep: bool,
    /// Where `settle` and `settle-loadgen` are [default: beside this executable].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the plan the seed gives (for the asked fault kinds, as if the machine supports
    /// them all) and exit.
    #[arg(long)]
    plan_only: bool,
}

/// Deadline of each request of the load generator during the run.
const LOAD_REQUEST_TIMEOUT: &str = "2s";

/// Load generator connections (each with one request in flight).
const LOAD_CLIENTS: usize = 4;

/// Transactions per request.
const LOAD_BATCH: usize = 50;

/// A deposit every this long while the load runs.
const DEPOSIT_EVERY: Duration = Duration::from_millis(1000);

/// Most deposits one run makes.
const DEPOSITS_MAX: u64 = 100_000;

/// After the load, unacknowledged deposits are retried for this long.
const DEPOSIT_FLUSH_MAX: Duration = Duration::from_secs(90);

/// The healed, restarted cluster must converge within this.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(180);

/// What a node prints when a group of it stopped on its own and it stops
/// whole (`settle: group 2 (EUR) stopped: ...`).
const FAIL_STOP_LINE: &str = ") stopped: ";

/// A node that said it stops must have exited within this.
const FAIL_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A node with a damaged log must refuse to start within this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = Args::parse();
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("settle-nemesis: {e:#}");
            eprintln!(
                "replay: {}",
                replay_command(&args, &kinds_or_default(&args))
            );
            ExitCode::from(2)
        }
    }
}

fn kinds_or_default(args: &Args) -> Vec<Kind> {
    if args.faults.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.faults.iter().filter_map(|f| Kind::parse(f)).collect()
    }
}

fn replay_command(args: &Args, kinds: &[Kind]) -> String {
    let namespaces = format!("{:?}", args.namespaces).to_lowercase();
    format!(
        "settle-nemesis --seed {} --nodes {} --duration {} --faults {} --namespaces {} --rate {} --participants {}",
        args.seed,
        args.nodes,
        humantime::format_duration(args.duration),
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        namespaces,
        args.rate,
        args.participants
    )
}

/// A loud banner: what this run cannot do on this machine.
fn loudly(text: &str) {
    let bar = "!".repeat(78);
    eprintln!("{bar}\n!! {text}\n{bar}");
    println!("WARNING: {text}");
}

fn bin_dir(args: &Args) -> anyhow::Result<PathBuf> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("executable without a directory"))?
            .to_path_buf(),
    };
    for name in ["settle", "settle-loadgen"] {
        if !dir.join(name).exists() {
            bail!(
                "{} is missing: build the binaries (`cargo build --bins`) or pass --bin-dir",
                dir.join(name).display()
            );
        }
    }
    Ok(dir)
}

/// The network the run gets, and the fault kinds it can therefore run.
fn network(args: &Args, asked: Vec<Kind>) -> anyhow::Result<(Net, Vec<Kind>)> {
    let mut kinds = asked;
    let net = if args.namespaces == Namespaces::Off {
        Net::Loopback
    } else {
        match netns::Netns::create(args.nodes) {
            Ok(ns) => Net::Namespaces(ns),
            Err(e) if args.namespaces == Namespaces::On => {
                return Err(e.context("--namespaces on: network namespaces are not available"))
            }
            Err(e) => {
                loudly(&format!(
                    "network namespaces are NOT available ({e:#}): NO partitions and NO netem in this run, loopback faults only"
                ));
                Net::Loopback
            }
        }
    };
    match &net {
        Net::Loopback => kinds.retain(|k| !k.needs_namespaces()),
        Net::Namespaces(ns)
            if ns.link_faults == netns::LinkFaults::LossAndQueue
                && kinds.contains(&Kind::Netem) =>
        {
            loudly(&format!(
                "this kernel has no netem qdisc: bad links are {} % random loss (nftables) and a token bucket ({}) instead: NO jitter and NO reordering in this run",
                netns::LOSSY_DROP_PERCENT,
                netns::LOSSY_TBF_ARGS.join(" ")
            ));
        }
        Net::Namespaces(ns)
            if ns.link_faults == netns::LinkFaults::None && kinds.contains(&Kind::Netem) =>
        {
            loudly("this kernel has no netem qdisc and no nftables/tbf: NO delay/loss/reorder faults in this run");
            kinds.retain(|k| *k != Kind::Netem);
        }
        Net::Namespaces(_) => {}
    }
    if kinds.is_empty() {
        bail!("no fault kind left to run");
    }
    Ok((net, kinds))
}

/// The nodes' own small file systems when the run may fill one (see
/// [`disk`]), and the fault kinds it can therefore run.
fn disks(
    args: &Args,
    dir: &Path,
    mut kinds: Vec<Kind>,
) -> anyhow::Result<(Option<disk::Disks>, Vec<Kind>)> {
    if !kinds.contains(&Kind::DiskFull) {
        return Ok((None, kinds));
    }
    match disk::Disks::create(dir, args.nodes, args.disk_mib) {
        Ok(disks) => Ok((Some(disks), kinds)),
        Err(e) => {
            loudly(&format!(
                "loop-mounted file systems are NOT available ({e:#}): NO disk-full faults in this run"
            ));
            kinds.retain(|k| *k != Kind::DiskFull);
            if kinds.is_empty() {
                bail!("no fault kind left to run");
            }
            Ok((None, kinds))
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    if !(args.nodes == 3 || args.nodes == 5) {
        bail!("--nodes must be 3 or 5");
    }
    for f in &args.faults {
        if Kind::parse(f).is_none() {
            bail!("--faults: unknown kind {f:?}");
        }
    }
    if args.plan_only {
        let kinds = kinds_or_default(args);
        println!("replay: {}", replay_command(args, &kinds));
        for s in plan::plan(&PlanInput {
            seed: args.seed,
            nodes: args.nodes,
            duration: args.duration,
            kinds,
        }) {
            println!(
                "  at {:>6.1}s for {:>4.1}s: {}",
                s.at.as_secs_f64(),
                s.hold.as_secs_f64(),
                s.fault
            );
        }
        return Ok(true);
    }
    let bin_dir = bin_dir(args)?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "settle-nemesis-{}-{}",
            args.seed,
            std::process::id()
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (net, kinds) = network(args, kinds_or_default(args))?;
    let (disks, kinds) = disks(args, &dir, kinds)?;
    let steps = plan::plan(&PlanInput {
        seed: args.seed,
        nodes: args.nodes,
        duration: args.duration,
        kinds: kinds.clone(),
    });
    let replay = replay_command(args, &kinds);
    println!(
        "settle-nemesis seed {} on {} nodes for {}",
        args.seed,
        args.nodes,
        humantime::format_duration(args.duration)
    );
    println!(
        "network: {}",
        match &net {
            Net::Loopback => "loopback (127.0.0.1)".to_string(),
            Net::Namespaces(ns) => format!(
                "a network namespace per node ({}, {}...)",
                ns.name(1),
                ns.addr(1)
            ),
        }
    );
    println!("directory: {}", dir.display());
    println!("replay: {replay}");
    println!("plan ({} faults):", steps.len());
    for s in &steps {
        println!(
            "  at {:>6.1}s for {:>4.1}s: {}",
            s.at.as_secs_f64(),
            s.hold.as_secs_f64(),
            s.fault
        );
    }

    let outcome = drive(args, &bin_dir, &dir, net, disks, &steps);
    let passed = match outcome {
        Ok(report) => {
            print!("{}", report.text);
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report.json)?)?;
            }
            if report.failures.is_empty() {
                println!("RESULT: PASS (seed {})", args.seed);
                true
            } else {
                println!("RESULT: FAIL (seed {})", args.seed);
                for f in &report.failures {
                    println!("  FAILED: {f}");
                }
                false
            }
        }
        Err(e) => {
            println!("RESULT: ERROR (seed {}): {e:#}", args.seed);
            false
        }
    };
    if passed && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!(
            "kept: {} (node logs node-N.log, acked ids acked.txt)",
            dir.display()
        );
        if !passed {
            println!("replay: {replay}");
        }
    }
    Ok(passed)
}

/// What a run found.
struct Report {
    text: String,
    json: serde_json::Value,
    failures: Vec<String>,
}

/// Deposits the nemesis made: acknowledged ones per currency, and the one
/// being tried (in doubt until acknowledged).
#[derive(Default)]
struct Deposits {
    acked: BTreeMap<String, u128>,
    count: u64,
    pending: Option<(u128, String, u64, String)>,
}

const DEPOSIT_CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];

/// One deposit attempt through node `target`; true if booked (or a
/// duplicate of the booked one).
fn deposit_once(
    cluster_settle: &Path,
    security: &[String],
    target: &str,
    d: &(u128, String, u64, String),
) -> bool {
    let (id, currency, amount, participant) = d;
    let mut command = Command::new(cluster_settle);
    command
        .args([
            "deposit",
            "--participant",
            participant,
            "--currency",
            currency,
        ])
        .args([
            "--amount",
            &amount.to_string(),
            "--id",
            &format!("{id:032x}"),
        ])
        .args(["--target", target, "--timeout", "3s"])
        .args(security)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.status().is_ok_and(|s| s.success())
}

/// Makes a deposit every `DEPOSIT_EVERY` until `stop`, then retries the one
/// in flight until booked (at most `DEPOSIT_FLUSH_MAX`).
fn deposit_loop(
    settle: PathBuf,
    security: Vec<String>,
    targets: Vec<String>,
    seed: u64,
    participants: u32,
    book: Arc<Mutex<Deposits>>,
    stop: Arc<AtomicBool>,
) {
    let mut attempt = 0usize;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            let pending = book.lock().expect("not poisoned").pending.is_none();
            if pending || since.elapsed() > DEPOSIT_FLUSH_MAX || INTERRUPTED.load(Ordering::SeqCst)
            {
                return;
            }
        }
        let next = {
            let mut b = book.lock().expect("not poisoned");
            if b.pending.is_none() && !stop.load(Ordering::SeqCst) && b.count < DEPOSITS_MAX {
                let n = b.count;
                b.pending = Some((
                    (u128::from(seed) << 64) | (0xde_u128 << 56) | u128::from(n),
                    DEPOSIT_CURRENCIES[(n % 4) as usize].to_string(),
                    1_000 + n * 7,
                    format!("bank_{:02}", n % u64::from(participants)),
                ));
            }
            b.pending.clone()
        };
        if let Some(d) = next {
            let target = &targets[attempt % targets.len()];
            attempt += 1;
            if deposit_once(&settle, &security, target, &d) {
                let mut b = book.lock().expect("not poisoned");
                *b.acked.entry(d.1.clone()).or_default() += u128::from(d.2);
                b.count += 1;
                b.pending = None;
            }
        }
        std::thread::sleep(DEPOSIT_EVERY);
    }
}

/// The load generator; killed if the run ends early (an error, Ctrl-C).
struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_load(cluster: &Cluster, args: &Args, dir: &Path) -> anyhow::Result<Load> {
    let mut command = Command::new(cluster.loadgen());
    for id in cluster.ids() {
        command
            .arg("--target")
            .arg(cluster.node(id).listen.to_string());
    }
    let give_up = args.duration + Duration::from_secs(60);
    command
        .args(["--duration", &format!("{}ms", args.duration.as_millis())])
        .args([
            "--clients",
            &LOAD_CLIENTS.to_string(),
            "--batch",
            &LOAD_BATCH.to_string(),
        ])
        .args(["--rate", &args.rate.to_string()])
        .args(["--participants", &args.participants.to_string()])
        .args([
            "--seed",
            &args.seed.to_string(),
            "--run-id",
            &(args.seed + 1).to_string(),
        ])
        .args(["--request-timeout", LOAD_REQUEST_TIMEOUT])
        .args(["--give-up-after", &format!("{}ms", give_up.as_millis())])
        .arg("--acked")
        .arg(dir.join("acked.txt"))
        .arg("--json")
        .arg(dir.join("load.json"))
        .args(cluster.security())
        .stdout(std::fs::File::create(dir.join("load.out"))?)
        .stderr(std::fs::File::create(dir.join("load.err"))?);
    Ok(Load(command.spawn().context("spawning settle-loadgen")?))
}

/// Sleeps until `at`, waking for Ctrl-C.
fn sleep_until(at: Instant) -> anyhow::Result<()> {
    while Instant::now() < at {
        interrupted_check()?;
        std::thread::sleep((at - Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

fn resolve(cluster: &Cluster, v: Victim) -> u64 {
    match v {
        Victim::Node(id) => id,
        Victim::LeaderOf(g) => cluster
            .leader_of(g)
            .unwrap_or(1 + u64::from(g) % cluster.ids().len() as u64),
    }
}

/// Pairs of nodes a split cuts.
fn cuts(cluster: &Cluster, split: &Split) -> Vec<(u64, u64)> {
    let ids = cluster.ids();
    let across = |side: &[u64]| -> Vec<(u64, u64)> {
        let mut pairs = Vec::new();
        for &a in side {
            for &b in &ids {
                if !side.contains(&b) {
                    pairs.push((a, b));
                }
            }
        }
        pairs
    };
    match split {
        Split::Isolate(v) => across(&[resolve(cluster, *v)]),
        Split::CutFromLeader { node, group } => {
            let leader = resolve(cluster, Victim::LeaderOf(*group));
            let other = if leader == *node {
                ids.iter()
                    .copied()
                    .find(|&i| i != leader)
                    .expect("3 nodes or more")
            } else {
                *node
            };
            vec![(leader, other)]
        }
        Split::Halves(side) => across(side),
        Split::Bridge { middle } => {
            let others: Vec<u64> = ids.iter().copied().filter(|i| i != middle).collect();
            let (left, right) = others.split_at(others.len() / 2);
            left.iter()
                .flat_map(|&a| right.iter().map(move |&b| (a, b)))
                .collect()
        }
    }
}

/// Applies one step, holds it, heals it; a line for the timeline, and a
/// failure if the cluster did something it must not.
fn apply(
    cluster: &mut Cluster,
    step: &Step,
    index: usize,
    seed: u64,
) -> anyhow::Result<(String, Option<String>)> {
    let mut failure = None;
    let line = match &step.fault {
        Fault::Kill(v) => {
            let id = resolve(cluster, *v);
            cluster.kill9(id);
            sleep_until(Instant::now() + step.hold)?;
            cluster.spawn(id)?;
            format!("kill -9 node {id} ({v}), restarted")
        }
        Fault::Stop(v) => {
            let id = resolve(cluster, *v);
            cluster.stop(id)?;
            sleep_until(Instant::now() + step.hold)?;
            cluster.cont(id)?;
            format!("SIGSTOP node {id} ({v}), SIGCONT")
        }
        Fault::Wipe(v) => {
            let id = resolve(cluster, *v);
            cluster.kill9(id);
            cluster.wipe(id)?;
            sleep_until(Instant::now() + step.hold)?;
            cluster.spawn(id)?;
            format!("wiped node {id} ({v}), restarted empty")
        }
        Fault::FlipByte(v) => {
            let id = resolve(cluster, *v);
            cluster.kill9(id);
            let choice = seed.wrapping_add(index as u64);
            let text = match damage::flip_byte(&cluster.node(id).data_dir, choice)? {
                None => "no segment had enough written to damage".to_string(),
                Some(flip) => {
                    sleep_until(Instant::now() + step.hold)?;
                    cluster.spawn(id)?;
                    let name = flip
                        .segment
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    match cluster.wait_refusal(id, REFUSAL_TIMEOUT) {
                        Ok(refusal) => {
                            let says = refusal
                                .lines()
                                .rev()
                                .find(|l| l.contains(&name) || l.contains("corrupt"))
                                .map(str::to_string);
                            match says {
                                Some(l) => format!("refused to start: {}", l.trim()),
                                None => {
                                    failure = Some(format!(
                                        "node {id} refused its damaged log ({}) without naming it:\n{refusal}",
                                        flip.segment.display()
                                    ));
                                    "refused without naming the damage".to_string()
                                }
                            }
                        }
                        Err(e) => {
                            let repaired = cluster.tail(id).to_lowercase();
                            if repaired.contains("damaged replica data quarantined") {
                                // Self-repair (`cluster::repair`): it rebuilds
                                // from its peers; the checker proves it.
                                return Ok((
                                    format!(
                                        "flipped a byte of node {id} ({v}) at {} of {}: it \
                                         quarantined the damage and rebuilt from its peers",
                                        flip.offset,
                                        flip.segment.display()
                                    ),
                                    None,
                                ));
                            } else {
                                cluster.kill9(id);
                                failure = Some(format!(
                                    "node {id} with a flipped byte at {} of {} ({} bytes written): {e:#}",
                                    flip.offset,
                                    flip.segment.display(),
                                    flip.written
                                ));
                                format!("did NOT refuse: {e:#}")
                            }
                        }
                    }
                }
            };
            cluster.wipe(id)?;
            cluster.spawn(id)?;
            format!("flipped a byte of node {id} ({v}): {text}; wiped, restarted")
        }
        Fault::Partition(split) => {
            let pairs = cuts(cluster, split);
            let Net::Namespaces(ns) = &mut cluster.net else {
                bail!("a partition needs network namespaces");
            };
            for &(a, b) in &pairs {
                ns.cut(a, b)?;
            }
            sleep_until(Instant::now() + step.hold)?;
            ns.heal()?;
            format!("{}: cut {pairs:?}, healed", step.fault)
        }
        Fault::DiskFull(v) => {
            let id = resolve(cluster, *v);
            let Some(disks) = &cluster.disks else {
                bail!("a full disk needs the nodes' own file systems");
            };
            let fill = disks.fill(id)?;
            let full_at = Instant::now();
            sleep_until(full_at + step.hold)?;
            let mut exited = cluster.reap(id);
            if exited.is_none() && cluster.tail(id).contains(FAIL_STOP_LINE) {
                // It said it stops: give it the time to shut its other groups.
                exited = cluster.wait_exit(id, FAIL_STOP_TIMEOUT);
            }
            let Some(disks) = &cluster.disks else {
                unreachable!("checked above");
            };
            disks.drain(id)?;
            if exited.is_none() {
                // Still up: then every group it holds must still run (a
                // node must not serve as a replica that no longer writes).
                if let Some(dead) = dead_groups(cluster, id) {
                    failure = Some(format!(
                        "node {id} kept running through a full disk with groups stopped: {dead}"
                    ));
                }
            }
            let said = cluster
                .tail(id)
                .lines()
                .rev()
                .find(|l| {
                    let l = l.to_lowercase();
                    l.contains("no space") || l.contains("enospc") || l.contains("disk full")
                })
                .map(|l| format!("; it said: {}", l.trim()))
                .unwrap_or_default();
            format!(
                "filled node {id}'s file system ({v}; {} MiB of ballast, {} bytes left), freed it; the node {}{said}",
                fill.ballast >> 20,
                fill.free_after,
                match exited {
                    None => "kept running".to_string(),
                    Some(status) => format!("exited ({status}) and is restarted"),
                }
            )
        }
        Fault::Netem(v) => {
            let id = resolve(cluster, *v);
            let Net::Namespaces(ns) = &mut cluster.net else {
                bail!("netem needs network namespaces");
            };
            let how = match ns.link_faults {
                netns::LinkFaults::Netem => format!("netem {}", netns::NETEM_ARGS.join(" ")),
                _ => format!(
                    "{} % loss (nftables) and tbf {}",
                    netns::LOSSY_DROP_PERCENT,
                    netns::LOSSY_TBF_ARGS.join(" ")
                ),
            };
            ns.netem(id)?;
            sleep_until(Instant::now() + step.hold)?;
            ns.heal()?;
            format!("bad link on node {id} ({v}: {how}), removed")
        }
    };
    Ok((line, failure))
}

/// The groups node `id` reports as shut down (its own status), if any.
fn dead_groups(cluster: &Cluster, id: u64) -> Option<String> {
    let members = cluster.status_json(id, false).ok()?;
    let dead: Vec<String> = members
        .as_array()?
        .iter()
        .filter(|m| m["node_id"].as_u64() == Some(id))
        .flat_map(|m| m["groups"].as_array().cloned().unwrap_or_default())
        .filter(|g| g["state"].as_str() == Some("Shutdown"))
        .map(|g| format!("group {}", g["group"]))
        .collect();
    (!dead.is_empty()).then(|| dead.join(", "))
}

/// Every node running and serving again (after a fault healed).
fn all_serving(cluster: &mut Cluster) -> anyhow::Result<()> {
    for id in cluster.ids() {
        let _ = cluster.reap(id);
        if cluster.is_stopped(id) {
            cluster.cont(id)?;
        }
        if !cluster.is_running(id) {
            cluster.spawn(id)?;
        }
        cluster.wait_serving(id, NODE_START_TIMEOUT)?;
    }
    Ok(())
}

fn drive(
    args: &Args,
    bin_dir: &Path,
    dir: &Path,
    net: Net,
    disks: Option<disk::Disks>,
    steps: &[Step],
) -> anyhow::Result<Report> {
    let run_start = Instant::now();
    let at = || format!("{:.1}s", run_start.elapsed().as_secs_f64());
    let mut cluster = Cluster::start(dir, bin_dir, args.nodes, args.participants, net, disks)?;
    println!("[{}] cluster: {} nodes serving", at(), args.nodes);
    let mut load = start_load(&cluster, args, dir)?;
    let load_start = Instant::now();
    let book = Arc::new(Mutex::new(Deposits::default()));
    let stop_deposits = Arc::new(AtomicBool::new(false));
    let depositor = {
        let targets = cluster
            .ids()
            .iter()
            .map(|&id| cluster.node(id).listen.to_string())
            .collect();
        let (settle, security) = (cluster.settle(), cluster.security());
        let (book, stop, seed, participants) = (
            book.clone(),
            stop_deposits.clone(),
            args.seed,
            args.participants,
        );
        std::thread::spawn(move || {
            deposit_loop(settle, security, targets, seed, participants, book, stop)
        })
    };

    let mut ran = Vec::new();
    let mut failures = Vec::new();
    let mut timeline = String::new();
    for (index, step) in steps.iter().enumerate() {
        sleep_until(load_start + step.at)?;
        all_serving(&mut cluster)?;
        // Restarts may take longer than the plan's gaps: the faults that
        // no longer fit before the load's quiet tail are left out (and
        // said so), so every fault meets load.
        if load_start.elapsed() + step.hold + plan::QUIET_TAIL > args.duration {
            let line = format!(
                "  (the last {} planned faults left out: restarts took longer than the plan's gaps, and they would end after the load's quiet tail)",
                steps.len() - index
            );
            println!("{line}");
            let _ = writeln!(timeline, "{line}");
            break;
        }
        let start_s = load_start.elapsed().as_secs() as usize;
        let started = load_start.elapsed();
        let (line, failure) = apply(&mut cluster, step, index, args.seed)?;
        let entry = format!(
            "  [{:>6.1}s → {:>6.1}s] {line}",
            started.as_secs_f64(),
            load_start.elapsed().as_secs_f64()
        );
        println!("{entry}");
        let _ = writeln!(timeline, "{entry}");
        if let Some(f) = failure {
            failures.push(f);
        }
        ran.push(Ran {
            kind: step.fault.kind(),
            start_s,
            end_s: load_start.elapsed().as_secs() as usize,
        });
    }
    all_serving(&mut cluster)?;
    println!("[{}] faults over; waiting for the load to end", at());
    let status = loop {
        interrupted_check()?;
        if let Some(status) = load.0.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        failures.push(format!(
            "the load generator failed ({status}); see {}",
            dir.join("load.out").display()
        ));
    }
    stop_deposits.store(true, Ordering::SeqCst);
    depositor
        .join()
        .map_err(|_| anyhow!("the deposit thread panicked"))?;

    // A quiet cluster for the checks: every node restarted cleanly with
    // scheduled cycles off, so the applied indexes stop moving and the
    // digests compare like with like.
    println!(
        "[{}] restarting every node without scheduled cycles for the checks",
        at()
    );
    for id in cluster.ids() {
        cluster.terminate(id)?;
    }
    cluster.set_cycles(false);
    for id in cluster.ids() {
        cluster.spawn(id)?;
    }
    all_serving(&mut cluster)?;

    println!("[{}] checking", at());
    let mut text = String::new();
    let _ = writeln!(text, "timeline:\n{timeline}");
    if let Err(e) = check::converged(&cluster, CONVERGE_TIMEOUT) {
        failures.push(format!("{e:#}"));
    } else {
        let _ = writeln!(
            text,
            "replicas: every group's replicas at one applied index with one digest"
        );
    }
    println!("[{}] converged; verifying every acknowledged id", at());
    let acked_path = dir.join("acked.txt");
    let acked = std::fs::read_to_string(&acked_path)
        .unwrap_or_default()
        .lines()
        .count();
    let verification = check::verified_everywhere(&cluster, &acked_path, dir);
    match &verification {
        Ok(lines) => {
            let _ = writeln!(text, "verify (every acknowledged id, through every node):");
            for l in lines {
                let _ = writeln!(text, "  {l}");
            }
        }
        Err(e) => failures.push(format!("{e:#}")),
    }
    let (deposited, in_doubt, deposit_count) = {
        let b = book.lock().expect("not poisoned");
        let mut doubt = BTreeMap::new();
        if let Some((_, c, amount, _)) = &b.pending {
            doubt.insert(c.clone(), u128::from(*amount));
        }
        (b.acked.clone(), doubt, b.count)
    };
    println!("[{}] verified; checking balances", at());
    match check::money(&cluster, &deposited, &in_doubt) {
        Ok(totals) => {
            let _ = writeln!(text, "money ({deposit_count} deposits; every row explains its balance; openings and deposits as made):");
            for (c, t) in &totals {
                let _ = writeln!(
                    text,
                    "  {c}: total {} = opening {} + deposited {} + credited {} + refunded {} - debited {} (incoming {})",
                    t.balance, t.opening, t.deposited, t.credited, t.refunded, t.debited, t.incoming
                );
            }
            match check::flows(&cluster).and_then(|f| check::legs_match(&totals, &f).map(|()| f)) {
                Ok(f) => {
                    let _ = writeln!(
                        text,
                        "decided legs ({} cycles, {} settling; every record re-costs and its net flows are its settled legs): credits - debits = the net flows, per currency: {}",
                        f.cycles,
                        f.settling,
                        f.net
                            .iter()
                            .map(|(c, n)| format!("{c} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                Err(e) => failures.push(format!("money against the decided cycles: {e:#}")),
            }
        }
        Err(e) => failures.push(format!("money: {e:#}")),
    }

    let load_json: serde_json::Value = std::fs::read(dir.join("load.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let series: Vec<u64> = load_json["acked_per_second"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    let verify_json: Vec<serde_json::Value> = cluster
        .ids()
        .iter()
        .filter_map(|id| std::fs::read(dir.join(format!("verify-{id}.json"))).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    let lost = verify_json
        .iter()
        .filter_map(|v| v["missing"].as_u64())
        .max()
        .unwrap_or(0);
    let duplicated = verify_json
        .iter()
        .filter_map(|v| v["duplicates"].as_u64())
        .max()
        .unwrap_or(0);
    println!("[{}] checked", at());
    let _ = writeln!(
        text,
        "summary: seed {} | {} faults | acknowledged {acked} | lost {lost} | duplicated {duplicated} | load timeouts {} resent {}",
        args.seed,
        ran.len(),
        load_json["timeouts"],
        load_json["resent"],
    );
    text.push_str(&summary::render(&series, &ran));
    let by_kind: serde_json::Map<String, serde_json::Value> = summary::by_kind(&series, &ran)
        .into_iter()
        .map(|(k, f)| {
            (
                k.name().to_string(),
                serde_json::json!({"count": f.count, "longest_unavailable_s": f.longest_unavailable_s}),
            )
        })
        .collect();
    let throughput = summary::throughput(&series, &ran);
    let json = serde_json::json!({
        "seed": args.seed,
        "nodes": args.nodes,
        "duration_s": args.duration.as_secs(),
        "faults": by_kind,
        "acknowledged": acked,
        "lost": lost,
        "duplicated": duplicated,
        "deposits": deposit_count,
        "throughput_during_faults": throughput.during_faults,
        "throughput_without": throughput.without,
        "failures": failures,
    });
    Ok(Report {
        text,
        json,
        failures,
    })
}
