//! Multi-process tests (real processes, real files, real sockets) live in
//! tests/tests/; this library is their harness: find the built binaries,
//! start and kill nodes, pick free ports.
//!
//! The binaries are built by the test command before the tests run
//! (`cargo build --workspace --bins`), and found next to the test executable.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use settle_security::blocking::Stream;
use settle_security::rustls::ClientConfig;
use std::sync::Arc;

pub mod cluster;

/// How long a node may take to open its groups and listen.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary in the same profile directory as this test.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// A free loopback port. The node binds it once per core with SO_REUSEPORT,
/// so it cannot be given port 0.
pub fn free_port() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("loopback is available");
    probe.local_addr().expect("a bound socket has an address")
}

/// Writes a participants file for `count` banks (via `settle-loadgen participants`).
pub fn write_participants(dir: &Path, count: u32) -> anyhow::Result<PathBuf> {
    let output = Command::new(bin_path("settle-loadgen"))
        .args(["participants", "--count", &count.to_string()])
        .output()
        .context("running settle-loadgen participants")?;
    if !output.status.success() {
        bail!(
            "settle-loadgen participants failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = dir.join("participants.json");
    std::fs::write(&path, output.stdout)?;
    Ok(path)
}

/// `settle certs init DIR --nodes N`: a CA, node certificates 1..=N,
/// client certificates and tokens (admin, operator, auditor).
pub fn certs_init(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    let output = Command::new(bin_path("settle"))
        .args(["certs", "init"])
        .arg(dir)
        .args(["--nodes", &nodes.to_string()])
        .output()
        .context("running settle certs init")?;
    if !output.status.success() {
        bail!(
            "settle certs init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The flags that give a node or a tool its credentials: `--tls-dir DIR`,
/// or `--insecure` without one.
pub fn security_args(tls_dir: Option<&Path>) -> Vec<String> {
    match tls_dir {
        Some(dir) => vec!["--tls-dir".into(), dir.display().to_string()],
        None => vec!["--insecure".into()],
    }
}

/// Credentials directories of the client ports the harness started with
/// TLS, by address (ports are unique, so tests running at once never share
/// an entry): load generators, probers and clients find them here.
static TLS_DIRS: std::sync::Mutex<std::collections::BTreeMap<SocketAddr, PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Clients of `addr` use the credentials in `dir`.
pub fn register_tls(addr: SocketAddr, dir: &Path) {
    TLS_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(addr, dir.to_path_buf());
}

/// The credentials directory registered for `addr`.
pub fn tls_dir_of(addr: SocketAddr) -> Option<PathBuf> {
    TLS_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&addr)
        .cloned()
}

/// A client of `addr`'s binary port: TLS 1.3 with the admin's certificate
/// if `addr` was registered, plaintext otherwise.
pub fn client(addr: SocketAddr) -> anyhow::Result<settle_codec::Client<Stream>> {
    let tls = match tls_dir_of(addr) {
        Some(dir) => Some(admin_tls(&dir)?),
        None => None,
    };
    let stream = Stream::connect(addr, Duration::from_secs(5), tls.as_ref())?;
    stream
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(settle_codec::Client::over(stream))
}

/// Submits one T0 payment `id` of 1.00 USD from bank_01 to bank_02 over a
/// fresh connection to `addr`; its result.
pub fn submit_one(addr: SocketAddr, id: u128) -> settle_codec::TxResult {
    let tx = settle_codec::Transaction {
        id,
        debtor: settle_codec::ParticipantId(1),
        creditor: settle_codec::ParticipantId(2),
        amount: 100,
        send: settle_codec::Currency::USD,
        receive: settle_codec::Currency::USD,
        window: settle_codec::Window::T0,
        client_timestamp_us: 0,
    };
    client(addr).unwrap().submit(&[tx]).unwrap()[0]
}

/// The admin's TLS client configuration in a credentials directory.
pub fn admin_tls(dir: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    identity_tls(dir, "admin")
}

/// The TLS client configuration of client `name` (its certificate) in a
/// credentials directory.
pub fn identity_tls(dir: &Path, name: &str) -> anyhow::Result<Arc<ClientConfig>> {
    use settle_security::files;
    let credentials = settle_security::Credentials::load(
        &dir.join(files::CA_CERT),
        &dir.join(files::client_cert(name)),
        &dir.join(files::client_key(name)),
    )?;
    Ok(credentials.client()?)
}

/// A `settle start` child process.
pub struct Node {
    pub child: Child,
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    pub data_dir: PathBuf,
    stderr: mpsc::Receiver<String>,
    /// Lines read while waiting for the node to listen.
    early: Vec<String>,
    participants: Option<PathBuf>,
    cores: usize,
    extra: Vec<String>,
}

impl Node {
    /// Starts a node and waits until it listens.
    pub fn start(
        data_dir: &Path,
        participants: Option<&Path>,
        http: bool,
        cores: usize,
    ) -> anyhow::Result<Node> {
        Node::start_with(data_dir, participants, http, cores, &[])
    }

    /// [`Node::start`] with more `settle start` flags.
    pub fn start_with(
        data_dir: &Path,
        participants: Option<&Path>,
        http: bool,
        cores: usize,
        extra: &[&str],
    ) -> anyhow::Result<Node> {
        let listen = free_port();
        let http = http.then(free_port);
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Node::start_at(data_dir, participants, listen, http, cores, extra)
    }

    fn start_at(
        data_dir: &Path,
        participants: Option<&Path>,
        listen: SocketAddr,
        http: Option<SocketAddr>,
        cores: usize,
        extra: Vec<String>,
    ) -> anyhow::Result<Node> {
        let mut command = Command::new(bin_path("settle"));
        command
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--cores")
            .arg(cores.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(p) = participants {
            command.arg("--participants").arg(p);
        }
        if let Some(h) = http {
            command.arg("--http").arg(h.to_string());
        }
        // A test about something else runs its node --insecure; the TLS
        // tests pass --tls-dir.
        if !extra.iter().any(|a| a == "--tls-dir" || a == "--insecure") {
            command.arg("--insecure");
        }
        command.args(&extra);
        let mut child = command.spawn().context("spawning settle")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [node] {line}");
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            listen,
            http,
            data_dir: data_dir.to_path_buf(),
            stderr: lines,
            early: Vec::new(),
            participants: participants.map(Path::to_path_buf),
            cores,
            extra,
        };
        node.wait_listening()?;
        Ok(node)
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            match self.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("settle: listening on") => {
                    self.early.push(line);
                    return Ok(());
                }
                Ok(line) => self.early.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("settle exited during start-up: {status}");
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("settle exited during start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("settle did not listen within {NODE_START_TIMEOUT:?}");
            }
        }
    }

    /// Waits until the node logs a line containing `pattern` (lines read
    /// before are gone), and returns it.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the node logged no line with {pattern:?} within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the node exited before logging {pattern:?}")
                }
            }
        }
    }

    /// Every line the node logged since it started (or since the last
    /// call) up to and including the first one containing each of
    /// `patterns` (all in one line).
    pub fn lines_until(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let mut lines = std::mem::take(&mut self.early);
        if lines.iter().any(|l| patterns.iter().all(|p| l.contains(p))) {
            return Ok(lines);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let done = patterns.iter().all(|p| line.contains(p));
                    lines.push(line);
                    if done {
                        return Ok(lines);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the node logged no line with {patterns:?} within {timeout:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the node exited before logging {patterns:?}")
                }
            }
        }
    }

    /// The lines logged and not read yet, once the node has exited.
    pub fn rest_of_lines(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.early);
        lines.extend(self.stderr.iter());
        lines
    }

    /// kill -9: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        // SAFETY: sending a signal to our own child process id.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            return Err(anyhow!("kill(SIGTERM) failed"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!("settle did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same directory and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.kill9();
        }
        let next = Node::start_at(
            &self.data_dir,
            self.participants.as_deref(),
            self.listen,
            self.http,
            self.cores,
            self.extra.clone(),
        )?;
        *self = next;
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends raw bytes to `addr` and reads until the peer closes or `timeout`.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// A minimal HTTP/1.1 request (the tests' client; the server side is a real
/// HTTP stack). Returns status code and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    http_over(Stream::Plain(stream), addr, method, path, body, None)
}

/// [`http_request`] over TLS 1.3 with `tls` (a client certificate or
/// none), with a bearer token if given.
pub fn https_request(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let stream = Stream::connect(addr, Duration::from_secs(10), Some(tls))?;
    http_over(stream, addr, method, path, body, bearer)
}

fn http_over(
    mut stream: Stream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    use std::io::Write;
    let body = body.unwrap_or("");
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // A TLS peer that closes without close_notify: what came is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    let response = String::from_utf8_lossy(&bytes).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
