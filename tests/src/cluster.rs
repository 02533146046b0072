//! Clusters of real `settle` processes on loopback: start, kill -9, wipe,
//! restart, partition (a TCP proxy between every pair of nodes), and the
//! checks the fault tests share (status, convergence, verify, failover).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};

use crate::{bin_path, free_port, write_participants, NODE_START_TIMEOUT};

/// `settle start` flags that turn every scheduled settlement cycle off.
pub const NO_CYCLES: [&str; 8] = [
    "--rtgs-cycle-ms",
    "0",
    "--window-schedule",
    "T0=off",
    "--window-schedule",
    "T1=off",
    "--window-schedule",
    "T2=off",
];

/// How a test cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub cores: usize,
    pub participants: u32,
    /// Put a fault-injecting proxy between every pair of nodes.
    pub proxied: bool,
    /// More `settle start` flags for every node.
    pub extra_args: Vec<String>,
    /// Run the nodes' scheduled settlement cycles (off by default: most
    /// tests compare replicas once the load has stopped, and cycles keep
    /// writing).
    pub cycles: bool,
    /// Credentials from `settle certs init` for every node and for `settle
    /// status` (peer links over mutual TLS); off: `--insecure`.
    pub tls: bool,
    /// Give every member an HTTP port (`--http`, [`Member::http`]).
    pub http: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            cores: 2,
            participants: 16,
            proxied: false,
            // Extra flags for experiments, e.g. SETTLE_CLUSTER_ARGS="--election-timeout-ms 200-400".
            extra_args: std::env::var("SETTLE_CLUSTER_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            cycles: false,
            tls: true,
            http: false,
        }
    }
}

/// One member.
pub struct Member {
    pub id: u64,
    pub listen: SocketAddr,
    /// The address this member's peer listener binds.
    pub peer: SocketAddr,
    /// Its HTTP port, when the cluster was started with `http`.
    pub http: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// The `--peers` value this member is started with (proxies in between
    /// when the cluster is proxied).
    peers_arg: String,
    child: Option<Child>,
    stderr: Option<mpsc::Receiver<String>>,
    /// Lines read from stderr since the last start (kept for assertions).
    seen: Vec<String>,
}

impl Member {
    /// The member's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The member's resident memory, bytes (`VmRSS`), while it runs.
    pub fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// A running cluster; dropping it kills every member.
pub struct Cluster {
    pub members: Vec<Member>,
    pub participants: PathBuf,
    options: ClusterOptions,
    pub mesh: Option<ProxyMesh>,
    /// The credentials directory (`settle certs init`), unless `--insecure`.
    pub tls_dir: Option<PathBuf>,
}

impl Cluster {
    /// Starts every member at once and waits until all serve clients.
    pub fn start(dir: &Path, options: ClusterOptions) -> anyhow::Result<Cluster> {
        let participants = write_participants(dir, options.participants)?;
        let ids: Vec<u64> = (1..=options.nodes as u64).collect();
        let peers: BTreeMap<u64, SocketAddr> = ids.iter().map(|&id| (id, free_port())).collect();
        let mesh = if options.proxied {
            Some(ProxyMesh::new(&peers)?)
        } else {
            None
        };
        let members = ids
            .iter()
            .map(|&id| {
                let view: Vec<String> = peers
                    .iter()
                    .map(|(&other, &addr)| {
                        let addr = match &mesh {
                            Some(mesh) if other != id => mesh.addr(id, other),
                            _ => addr,
                        };
                        format!("{other}={addr}")
                    })
                    .collect();
                Member {
                    id,
                    listen: free_port(),
                    peer: peers[&id],
                    http: options.http.then(free_port),
                    data_dir: dir.join(format!("node-{id}")),
                    peers_arg: view.join(","),
                    child: None,
                    stderr: None,
                    seen: Vec::new(),
                }
            })
            .collect();
        let tls_dir = if options.tls {
            let tls = dir.join("tls");
            crate::certs_init(&tls, options.nodes)?;
            for m in &members {
                let m: &Member = m;
                crate::register_tls(m.listen, &tls);
            }
            Some(tls)
        } else {
            None
        };
        let mut cluster = Cluster {
            members,
            participants,
            options,
            mesh,
            tls_dir,
        };
        for id in ids.clone() {
            cluster.spawn(id)?;
        }
        for id in ids {
            cluster.wait_serving(id)?;
        }
        Ok(cluster)
    }

    pub fn member(&mut self, id: u64) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .expect("a member of this cluster")
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub fn listen(&self, id: u64) -> SocketAddr {
        self.members
            .iter()
            .find(|m| m.id == id)
            .expect("a member")
            .listen
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let cores = self.options.cores;
        let extra = self.options.extra_args.clone();
        let cycle_flags: &[&str] = if self.options.cycles { &[] } else { &NO_CYCLES };
        let participants = self.participants.clone();
        let security = crate::security_args(self.tls_dir.as_deref());
        let member = self.member(id);
        let mut command = Command::new(bin_path("settle"));
        command
            .arg("start")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--peers")
            .arg(&member.peers_arg)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--listen")
            .arg(member.listen.to_string())
            .arg("--cores")
            .arg(cores.to_string())
            .arg("--participants")
            .arg(&participants)
            .args(
                member
                    .http
                    .iter()
                    .flat_map(|h| ["--http".to_string(), h.to_string()]),
            )
            .args(cycle_flags)
            .args(&security)
            .args(&extra)
            .env(
                "RUST_LOG",
                std::env::var("SETTLE_TEST_LOG")
                    .unwrap_or_else(|_| "info,openraft=error,settle_node::cycle=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("spawning settle")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [node {id}] {line}");
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        member.child = Some(child);
        member.stderr = Some(lines);
        member.seen.clear();
        Ok(())
    }

    fn wait_serving(&mut self, id: u64) -> anyhow::Result<()> {
        let member = self.member(id);
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            let lines = member.stderr.as_ref().expect("spawned");
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let serving = line.contains("settle: listening on");
                    member.seen.push(line);
                    if serving {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("node {id} exited during start-up")
                }
            }
            if Instant::now() > deadline {
                bail!("node {id} did not serve within {NODE_START_TIMEOUT:?}");
            }
        }
    }

    /// True if member `id` has written a stderr line containing `needle`
    /// since it was last started.
    pub fn logged(&mut self, id: u64, needle: &str) -> bool {
        let member = self.member(id);
        if let Some(lines) = &member.stderr {
            member.seen.extend(lines.try_iter());
        }
        member.seen.iter().any(|l| l.contains(needle))
    }

    /// kill -9 one member.
    pub fn kill9(&mut self, id: u64) {
        let member = self.member(id);
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped member again (same directory, ports and peers) and
    /// waits until it serves.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill9(id);
        self.spawn(id)?;
        self.wait_serving(id)
    }

    /// Starts a stopped member again without waiting for it.
    pub fn restart_nowait(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill9(id);
        self.spawn(id)
    }

    pub fn wait_until_serving(&mut self, id: u64) -> anyhow::Result<()> {
        self.wait_serving(id)
    }

    /// kill -9 one member and delete its data directory.
    pub fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill9(id);
        let dir = self.member(id).data_dir.clone();
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }

    /// `settle status` through member `via` (its table, or an error).
    pub fn status(&self, via: u64, digest: bool) -> anyhow::Result<(bool, String)> {
        let peer = self
            .members
            .iter()
            .find(|m| m.id == via)
            .expect("a member")
            .peer;
        let mut command = Command::new(bin_path("settle"));
        command.args(["status", "--target", &peer.to_string()]);
        command.args(crate::security_args(self.tls_dir.as_deref()));
        if digest {
            command.arg("--digest");
        }
        let output = command.output().context("running settle status")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.is_empty() {
            bail!(
                "settle status failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok((output.status.success(), text))
    }

    /// The leader of `group` as member `via` sees it.
    pub fn leader_of(&self, via: u64, group: u16) -> Option<u64> {
        let (_, text) = self.status(via, false).ok()?;
        parse_leader(&text, group)
    }

    /// Waits until `group` has a leader other than `not` (seen through `via`).
    pub fn wait_leader(
        &self,
        via: u64,
        group: u16,
        not: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader_of(via, group) {
                if Some(leader) != not {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                bail!("group {group} has no leader (other than {not:?}) after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every group is led by its preferred member (ids in
    /// order, round-robin over groups 0..=shards): the nodes hand leadership
    /// over shortly after forming or after a restarted node caught up.
    pub fn wait_balanced(&self, via: u64, groups: u16, timeout: Duration) -> anyhow::Result<()> {
        let ids = self.ids();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((_, text)) = self.status(via, false) {
                let balanced = (0..groups)
                    .all(|g| parse_leader(&text, g) == Some(ids[g as usize % ids.len()]));
                if balanced {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("leaders not on their preferred members after {timeout:?}:\n{text}");
                }
            } else if Instant::now() > deadline {
                bail!("no status within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every member answers and every group's replicas have the
    /// same applied index and state digest; returns the last status table.
    pub fn wait_converged(&self, via: u64, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status(via, true) {
                Ok((true, text)) => return Ok(text),
                Ok((false, text)) => text,
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("replicas did not converge within {timeout:?}:\n{last}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `settle-loadgen verify` of `acked` through every member; each must
    /// find every id exactly once.
    pub fn verify_everywhere(&self, acked: &Path) -> anyhow::Result<usize> {
        let expected = std::fs::read_to_string(acked)?.lines().count();
        for m in &self.members {
            let output = Command::new(bin_path("settle-loadgen"))
                .args(["verify", "--target", &m.listen.to_string(), "--acked"])
                .arg(acked)
                .args(crate::security_args(self.tls_dir.as_deref()))
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let errors = String::from_utf8_lossy(&output.stderr);
            eprintln!("verify via node {}: {}", m.id, text.trim());
            let want = format!("found={expected} missing=0 duplicates=0");
            if !output.status.success() || !text.contains(&want) {
                bail!(
                    "verify through node {} failed: {text} {}",
                    m.id,
                    errors.trim()
                );
            }
        }
        Ok(expected)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill9(id);
        }
    }
}

/// The leader of `group` in a `settle status` table.
pub fn parse_leader(status: &str, group: u16) -> Option<u64> {
    let prefix = format!("group {group} (");
    let line = status.lines().find(|l| l.starts_with(&prefix))?;
    let rest = line.split("leader ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A load generator run in the background.
pub struct Load {
    child: Child,
    pub acked: PathBuf,
}

impl Load {
    /// `settle-loadgen` against `targets` for `duration`, recording acknowledged ids.
    pub fn start(
        targets: &[SocketAddr],
        duration: Duration,
        clients: usize,
        batch: usize,
        participants: u32,
        acked: PathBuf,
    ) -> anyhow::Result<Load> {
        Load::start_with(targets, duration, clients, batch, participants, acked, &[])
    }

    /// [`Load::start`] with more `settle-loadgen` flags.
    pub fn start_with(
        targets: &[SocketAddr],
        duration: Duration,
        clients: usize,
        batch: usize,
        participants: u32,
        acked: PathBuf,
        extra: &[&str],
    ) -> anyhow::Result<Load> {
        let mut command = Command::new(bin_path("settle-loadgen"));
        command.args(extra);
        let tls_dir = targets.first().and_then(|t| crate::tls_dir_of(*t));
        command.args(crate::security_args(tls_dir.as_deref()));
        for t in targets {
            command.arg("--target").arg(t.to_string());
        }
        command
            .args([
                "--duration",
                &format!("{}ms", duration.as_millis()),
                "--clients",
                &clients.to_string(),
                "--batch",
                &batch.to_string(),
                "--participants",
                &participants.to_string(),
                "--acked",
            ])
            .arg(&acked)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Ok(Load {
            child: command.spawn().context("spawning settle-loadgen")?,
            acked,
        })
    }

    /// Waits for the run to end; returns its report and the acked count.
    pub fn finish(self) -> anyhow::Result<(String, usize)> {
        let output = self.child.wait_with_output()?;
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("loadgen failed: {report}");
        }
        let acked = std::fs::read_to_string(&self.acked)?.lines().count();
        Ok((report, acked))
    }
}

/// Submits small batches of one currency through one node, one at a time,
/// and records when each was acknowledged: the failover clock.
pub struct Prober {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Instant>>>,
    thread: Option<JoinHandle<anyhow::Result<Vec<u128>>>>,
}

impl Prober {
    /// Probes shard `currency` through `target`; ids start at `first_id`.
    pub fn start(target: SocketAddr, currency: &str, first_id: u128, participants: u32) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let currency = Currency::from_code(currency).expect("a known currency");
        let (stop_t, acks_t) = (stop.clone(), acks.clone());
        let thread = std::thread::spawn(move || -> anyhow::Result<Vec<u128>> {
            let mut acked = Vec::new();
            let mut next_id = first_id;
            let mut client = None;
            while !stop_t.load(Ordering::SeqCst) {
                if client.is_none() {
                    match crate::client(target) {
                        Ok(c) => {
                            client = Some(c);
                        }
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    }
                }
                let batch: Vec<Transaction> = (0..8u128)
                    .map(|i| Transaction {
                        id: next_id + i,
                        debtor: ParticipantId(((next_id + i) % participants as u128) as u32),
                        creditor: ParticipantId(((next_id + i + 1) % participants as u128) as u32),
                        amount: 100,
                        send: currency,
                        receive: currency,
                        window: Window::T1,
                        client_timestamp_us: 1,
                    })
                    .collect();
                match client.as_mut().expect("connected").submit(&batch) {
                    Ok(results) => {
                        let now = Instant::now();
                        for (tx, r) in batch.iter().zip(&results) {
                            if matches!(r, TxResult::Created | TxResult::Duplicate) {
                                acked.push(tx.id);
                            }
                        }
                        if results
                            .iter()
                            .all(|r| matches!(r, TxResult::Created | TxResult::Duplicate))
                        {
                            acks_t.lock().expect("not poisoned").push(now);
                            next_id += 8;
                        }
                    }
                    Err(_) => {
                        // Retry the same ids (idempotent); reconnect.
                        client = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            Ok(acked)
        });
        Prober {
            stop,
            acks,
            thread: Some(thread),
        }
    }

    /// Acknowledgements so far.
    pub fn acks(&self) -> usize {
        self.acks.lock().expect("not poisoned").len()
    }

    /// Waits until at least `n` more acknowledgements arrived.
    pub fn wait_acks(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let target = self.acks() + n;
        let deadline = Instant::now() + timeout;
        while self.acks() < target {
            if Instant::now() > deadline {
                bail!("prober: {n} acknowledgements did not arrive within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Last acknowledgement before `at` → first after it.
    pub fn gap_around(&self, at: Instant) -> Option<Duration> {
        let acks = self.acks.lock().expect("not poisoned");
        let before = acks.iter().rev().find(|&&t| t <= at)?;
        let after = acks.iter().find(|&&t| t > at)?;
        Some(*after - *before)
    }

    /// Acknowledgements inside `[from, to]`.
    pub fn acks_between(&self, from: Instant, to: Instant) -> usize {
        self.acks
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|&&t| t >= from && t <= to)
            .count()
    }

    /// Stops and returns every acknowledged id.
    pub fn stop(mut self) -> anyhow::Result<Vec<u128>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .map_err(|_| anyhow!("prober panicked"))?
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Appends ids to an acked file (the loadgen's format).
pub fn append_acked(path: &Path, ids: &[u128]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for id in ids {
        writeln!(file, "{}", settle_codec::format_id(*id))?;
    }
    Ok(())
}

/// A TCP proxy for each ordered pair of nodes, so any pair can be cut.
pub struct ProxyMesh {
    proxies: BTreeMap<(u64, u64), Proxy>,
}

impl ProxyMesh {
    fn new(peers: &BTreeMap<u64, SocketAddr>) -> anyhow::Result<ProxyMesh> {
        let mut proxies = BTreeMap::new();
        for &from in peers.keys() {
            for (&to, &addr) in peers {
                if from != to {
                    proxies.insert((from, to), Proxy::start(addr)?);
                }
            }
        }
        Ok(ProxyMesh { proxies })
    }

    /// The address `from` dials to reach `to`.
    pub fn addr(&self, from: u64, to: u64) -> SocketAddr {
        self.proxies[&(from, to)].addr
    }

    /// Cuts every link between `side` and the other nodes (both ways):
    /// open connections are reset, new ones refused.
    pub fn partition(&self, side: &[u64]) {
        for ((from, to), proxy) in &self.proxies {
            if side.contains(from) != side.contains(to) {
                proxy.set_blocked(true);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.set_blocked(false);
        }
    }
}

/// One proxy: accepts on `addr`, relays to the target while not blocked.
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

/// How often a relay thread looks at the blocked flag.
const RELAY_POLL: Duration = Duration::from_millis(20);

impl Proxy {
    fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let blocked = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (blocked_t, conns_t) = (blocked.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if blocked_t.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                {
                    let mut list = conns_t.lock().expect("not poisoned");
                    list.retain(|s| s.peer_addr().is_ok());
                    for s in [&inbound, &outbound] {
                        if let Ok(c) = s.try_clone() {
                            list.push(c);
                        }
                    }
                }
                for (from, to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let blocked = blocked_t.clone();
                    std::thread::spawn(move || relay(from, to, &blocked));
                }
            }
        });
        Ok(Proxy {
            addr,
            blocked,
            conns,
        })
    }

    fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
        if blocked {
            for s in self.conns.lock().expect("not poisoned").drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, blocked: &AtomicBool) {
    let _ = from.set_read_timeout(Some(RELAY_POLL));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if blocked.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
