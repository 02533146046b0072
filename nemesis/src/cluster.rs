//! The nodes under test: real `settle start` processes, on loopback or
//! each in its own network namespace, with their stderr in a log file per
//! node (kept across restarts, in the run's directory).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::netns::Netns;

/// A node opens its groups and listens within this, or the run fails.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(90);

/// A SIGTERM-ed node exits within this, or it is killed.
pub const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Last stderr lines kept per node (quoted when it refuses to start).
const TAIL_LINES_MAX: usize = 40;

/// Client and peer ports of a node in its own namespace (its own address).
const NS_CLIENT_PORT: u16 = 7000;
const NS_PEER_PORT: u16 = 7100;

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

/// Cycles while the nemesis runs: RTGS on its default 200 ms timer, the
/// deferred windows every few seconds (their real cut-offs are hours
/// away).
pub const CYCLES: [&str; 6] = [
    "--window-schedule",
    "T0=every:3s",
    "--window-schedule",
    "T1=every:5s",
    "--window-schedule",
    "T2=every:7s",
];

/// Leaders snapshot often, so a wiped node needs a snapshot to rejoin,
/// and keep two intervals of log behind each (a node that was down a few
/// seconds catches up from the log; one installing a snapshot survives the
/// leader building the next: with 20 kept, a restarted node installed
/// snapshots for minutes and never served).
pub const SNAPSHOTS: [&str; 4] = ["--snapshot-entries", "200", "--keep-entries", "400"];

/// Where the nodes run.
pub enum Net {
    Loopback,
    Namespaces(Netns),
}

/// One node.
pub struct Node {
    pub id: u64,
    pub listen: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
    serving: Arc<AtomicBool>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The cluster; dropping it kills every node.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub net: Net,
    /// The nodes' own file systems, when the run may fill one (dropped
    /// after the nodes are killed: fields drop after `Drop::drop`).
    pub disks: Option<crate::disk::Disks>,
    pub tls_dir: PathBuf,
    pub participants: PathBuf,
    bin_dir: PathBuf,
    peers_arg: String,
    cycles: bool,
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(probe.local_addr()?)
}

/// Runs a tool to completion; its stdout, or an error with its stderr.
pub fn tool(program: &Path, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Cluster {
    /// Makes credentials and a participants file in `dir` and starts
    /// `count` nodes (all at once: they form the cluster together), then
    /// waits until every one serves.
    pub fn start(
        dir: &Path,
        bin_dir: &Path,
        count: u64,
        participants: u32,
        net: Net,
        disks: Option<crate::disk::Disks>,
    ) -> anyhow::Result<Cluster> {
        let settle = bin_dir.join("settle");
        let tls_dir = dir.join("tls");
        tool(
            &settle,
            &[
                "certs".into(),
                "init".into(),
                tls_dir.display().to_string(),
                "--nodes".into(),
                count.to_string(),
            ],
        )?;
        let file = tool(
            &bin_dir.join("settle-loadgen"),
            &[
                "participants".into(),
                "--count".into(),
                participants.to_string(),
            ],
        )?;
        let participants_path = dir.join("participants.json");
        std::fs::write(&participants_path, file)?;
        let mut nodes = Vec::new();
        for id in 1..=count {
            let (listen, peer) = match &net {
                Net::Loopback => (free_loopback_port()?, free_loopback_port()?),
                Net::Namespaces(ns) => (
                    SocketAddr::new(ns.addr(id).into(), NS_CLIENT_PORT),
                    SocketAddr::new(ns.addr(id).into(), NS_PEER_PORT),
                ),
            };
            nodes.push(Node {
                id,
                listen,
                peer,
                data_dir: disks
                    .as_ref()
                    .map_or_else(|| dir.join(format!("node-{id}")), |d| d.data_dir(id)),
                log: dir.join(format!("node-{id}.log")),
                child: None,
                stopped: false,
                serving: Arc::new(AtomicBool::new(false)),
                tail: Arc::default(),
            });
        }
        let peers_arg = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes,
            net,
            disks,
            tls_dir,
            participants: participants_path,
            bin_dir: bin_dir.to_path_buf(),
            peers_arg,
            cycles: true,
        };
        for id in 1..=count {
            cluster.spawn(id)?;
        }
        for id in 1..=count {
            cluster.wait_serving(id, NODE_START_TIMEOUT)?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn settle(&self) -> PathBuf {
        self.bin_dir.join("settle")
    }

    pub fn loadgen(&self) -> PathBuf {
        self.bin_dir.join("settle-loadgen")
    }

    /// `--tls-dir DIR` for the tools.
    pub fn security(&self) -> Vec<String> {
        vec!["--tls-dir".into(), self.tls_dir.display().to_string()]
    }

    /// Scheduled cycles on (default) or off for the nodes started from now on.
    pub fn set_cycles(&mut self, on: bool) {
        self.cycles = on;
    }

    /// Starts node `id` (not waiting for it to serve).
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let settle = self.settle();
        let mut args: Vec<String> = vec![
            "start".into(),
            "--node-id".into(),
            id.to_string(),
            "--peers".into(),
            self.peers_arg.clone(),
            "--cores".into(),
            "1".into(),
            "--participants".into(),
            self.participants.display().to_string(),
        ];
        args.extend(self.security());
        let cycle_flags: &[&str] = if self.cycles { &CYCLES } else { &NO_CYCLES };
        args.extend(cycle_flags.iter().map(|s| s.to_string()));
        args.extend(SNAPSHOTS.iter().map(|s| s.to_string()));
        let namespace = match &self.net {
            Net::Loopback => None,
            Net::Namespaces(ns) => Some(ns.name(id)),
        };
        let node = self.node_mut(id);
        args.extend([
            "--data-dir".into(),
            node.data_dir.display().to_string(),
            "--listen".into(),
            node.listen.to_string(),
        ]);
        let mut command = match namespace {
            None => Command::new(&settle),
            Some(ns) => {
                // `ip netns exec` enters the namespace and execs settle: the
                // child's pid is settle's (kill, stop and continue reach it).
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns]).arg(&settle);
                c
            }
        };
        command
            .args(&args)
            .env("RUST_LOG", "info,openraft=error,settle_node::cycle=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("spawning settle")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let _ = writeln!(
            log,
            "=== nemesis: starting node {id}: settle {}",
            args.join(" ")
        );
        node.serving = Arc::new(AtomicBool::new(false));
        node.tail = Arc::default();
        let (serving, tail) = (node.serving.clone(), node.tail.clone());
        std::thread::spawn(move || copy_log(stderr, log, &serving, &tail));
        node.child = Some(child);
        node.stopped = false;
        Ok(())
    }

    /// Waits until node `id` logs that it listens; an error with its last
    /// log lines if it exits first.
    pub fn wait_serving(&mut self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            crate::interrupted_check()?;
            let node = self.node_mut(id);
            if node.serving.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(status) = node
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                node.child = None;
                bail!(
                    "node {id} exited during start-up ({status}):\n{}",
                    self.tail(id)
                );
            }
            if node.child.is_none() {
                bail!("node {id} is not running");
            }
            if Instant::now() > deadline {
                bail!(
                    "node {id} did not serve within {timeout:?}:\n{}",
                    self.tail(id)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `id` exits on its own (a refusal to start); its
    /// exit status and last log lines, or an error if it serves instead.
    pub fn wait_refusal(&mut self, id: u64, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            crate::interrupted_check()?;
            let node = self.node_mut(id);
            if let Some(status) = node
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                node.child = None;
                return Ok(format!("{status}\n{}", self.tail(id)));
            }
            if node.serving.load(Ordering::SeqCst) {
                bail!("node {id} started serving on a damaged log");
            }
            if Instant::now() > deadline {
                bail!("node {id} neither refused nor served within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines node `id` logged since its last start.
    pub fn tail(&self, id: u64) -> String {
        let tail = self.node(id).tail.lock().expect("not poisoned");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub fn is_serving(&self, id: u64) -> bool {
        let node = self.node(id);
        node.child.is_some() && !node.stopped && node.serving.load(Ordering::SeqCst)
    }

    fn signal(&self, id: u64, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .node(id)
            .pid()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        // SAFETY: a signal to our own child process.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            bail!("kill({pid}, {signal}) failed");
        }
        Ok(())
    }

    /// kill -9 (a stopped node is continued first, so it dies at once).
    pub fn kill9(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            // SAFETY: a signal to our own (killed) child process.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
            let _ = child.wait();
        }
        node.stopped = false;
    }

    /// SIGTERM and wait for a clean exit (kill -9 past the timeout).
    pub fn terminate(&mut self, id: u64) -> anyhow::Result<()> {
        if self.node(id).stopped {
            self.cont(id)?;
        }
        if self.node(id).child.is_none() {
            return Ok(());
        }
        self.signal(id, libc::SIGTERM)?;
        let deadline = Instant::now() + NODE_STOP_TIMEOUT;
        loop {
            let exited = match self.node_mut(id).child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.node_mut(id).child = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9(id);
                bail!("node {id} did not stop within {NODE_STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGSTOP)?;
        self.node_mut(id).stopped = true;
        Ok(())
    }

    pub fn cont(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, libc::SIGCONT)?;
        self.node_mut(id).stopped = false;
        Ok(())
    }

    /// Whether node `id` exited on its own; if so it counts as down from
    /// now on (its exit status is returned once).
    pub fn reap(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.node_mut(id);
        let status = node.child.as_mut()?.try_wait().ok()??;
        node.child = None;
        node.stopped = false;
        node.serving.store(false, Ordering::SeqCst);
        Some(status)
    }

    /// Waits up to `timeout` for node `id` to exit on its own ([`Self::reap`]).
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.reap(id) {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    pub fn is_stopped(&self, id: u64) -> bool {
        self.node(id).stopped
    }

    /// Deletes node `id`'s data directory (the node must be down).
    pub fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        assert!(!self.is_running(id), "wipe a node that is down");
        let dir = self.node(id).data_dir.clone();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
        }
    }

    /// `settle status --json [--digest]` through node `via`'s peer port.
    pub fn status_json(&self, via: u64, digest: bool) -> anyhow::Result<serde_json::Value> {
        let mut args = vec![
            "status".to_string(),
            "--json".into(),
            "--target".into(),
            self.node(via).peer.to_string(),
        ];
        if digest {
            args.extend(["--digest".into(), "--timeout".into(), "10s".into()]);
        }
        args.extend(self.security());
        let text = tool(&self.settle(), &args)?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The leader of `group`, asked of the serving nodes in turn.
    pub fn leader_of(&self, group: u16) -> Option<u64> {
        for id in self.ids() {
            if !self.is_serving(id) {
                continue;
            }
            let Ok(members) = self.status_json(id, false) else {
                continue;
            };
            for m in members.as_array().into_iter().flatten() {
                for g in m["groups"].as_array().into_iter().flatten() {
                    if g["group"] == group && g["state"] == "Leader" {
                        return m["node_id"].as_u64();
                    }
                }
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill9(id);
        }
    }
}

/// Copies a node's stderr to its log file, keeps the last lines, and
/// notes when it serves.
fn copy_log(
    stderr: impl std::io::Read,
    mut log: File,
    serving: &AtomicBool,
    tail: &Mutex<VecDeque<String>>,
) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("settle: listening on") {
            serving.store(true, Ordering::SeqCst);
        }
        let _ = writeln!(log, "{line}");
        let mut tail = tail.lock().expect("not poisoned");
        if tail.len() == TAIL_LINES_MAX {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
