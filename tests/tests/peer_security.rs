//! The peer port admits only members: a process without a node certificate
//! of the cluster's CA (none, another CA's, a client's) that connects to it
//! and sends a vote, a heartbeat, an AppendEntries and control commands is
//! refused, and the cluster's terms and leaders do not move.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use settle_codec::{FrameBuf, FrameReader, MessageKind, PeerRequest, PeerResponse, ReadStatus};
use settle_security::blocking::Stream;
use settle_security::rustls::ClientConfig;
use settle_security::{files, Credentials};
use settle_tests::certs_init;
use settle_tests::cluster::{Cluster, ClusterOptions};

// The peer protocol's operations (node/src/cluster/proto.rs).
const OP_HELLO: u8 = 1;
const OP_APPEND: u8 = 2;
const OP_HEARTBEAT: u8 = 3;
const OP_VOTE: u8 = 4;
const OP_PRE_VOTE: u8 = 5;
const OP_STATUS: u8 = 8;
const OP_PROBE: u8 = 9;
const OP_FORWARD_CONTROL: u8 = 10;
const OP_CONTROL_COMMAND: u8 = 12;
const STATUS_OK: u8 = 0;
const STATUS_REFUSED: u8 = 4;
const STARTTLS: &[u8] = b"starttls";

const TIMEOUT: Duration = Duration::from_secs(3);

/// What a connection got for its requests.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Closed (or a TLS alert) before any answer to a request.
    Closed(String),
    /// Answered each request with these statuses.
    Answered(Vec<u8>),
}

fn frame(id: u64, group: u16, op: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = FrameBuf::new();
    buf.push(
        id,
        &PeerRequest {
            group,
            op,
            more: false,
            payload: payload.to_vec(),
        },
    )
    .unwrap();
    buf.as_slice().to_vec()
}

/// A member's hello (a tool's, node id 0, names no cores).
fn hello(node_id: u64, core: usize, cores: usize) -> Vec<u8> {
    let cores = if node_id == 0 { 0 } else { cores };
    let body = serde_json::json!({
        "node_id": node_id,
        "core": core,
        "cores": cores,
        "currencies": ["USD", "EUR", "GBP", "JPY"],
    });
    frame(0, 0, OP_HELLO, body.to_string().as_bytes())
}

/// Reads the answer to one request: `(status, payload)`, or why there was none.
fn answer(stream: &mut Stream, reader: &mut FrameReader) -> Result<(u8, Vec<u8>), String> {
    loop {
        match reader.next_frame() {
            Ok(ReadStatus::Frame(f)) if f.kind() == MessageKind::PeerResponse => {
                let body =
                    settle_codec::decode_body::<PeerResponse>(&f).map_err(|e| e.to_string())?;
                return Ok((body.status, body.payload.as_slice().to_vec()));
            }
            Ok(ReadStatus::Frame(f)) => return Ok((255, format!("{:?}", f.kind()).into_bytes())),
            Ok(ReadStatus::NeedMore(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        match reader.read_from(stream) {
            Ok(0) => return Err("closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The forged requests: a vote and a pre-vote with a huge term, a heartbeat,
/// an AppendEntries with an entry, a participant with 10 trillion USD, a
/// cycle run.
fn forged() -> Vec<(u16, u8, Vec<u8>)> {
    let vote = serde_json::json!({
        "vote": {"leader_id": {"term": 3050, "node_id": 1}, "committed": false},
        "last_log_id": {"leader_id": {"term": 3050, "node_id": 1}, "index": 1_000_000}
    })
    .to_string()
    .into_bytes();
    let participant = serde_json::json!([{
        "id": 7, "counterparty_limit_usd": 1e15, "balances": {"840": 1_000_000_000_000_000u64}
    }])
    .to_string()
    .into_bytes();
    vec![
        (1, OP_VOTE, vote.clone()),
        (0, OP_PRE_VOTE, vote),
        (1, OP_HEARTBEAT, vec![0; 64]),
        (2, OP_APPEND, vec![1; 256]),
        (0, OP_FORWARD_CONTROL, participant),
        (
            0,
            OP_CONTROL_COMMAND,
            br#"{"RunCycle":{"window":"RTGS"}}"#.to_vec(),
        ),
    ]
}

/// Connects to a peer port, says hello as `node_id` (a member of `cores`
/// cores, calling core 0), and starts TLS as a
/// member does (or at once, as a tool does) with `tls`: the open stream,
/// or why it was closed or refused.
fn open(
    addr: SocketAddr,
    node_id: u64,
    cores: usize,
    tls: Option<&Arc<ClientConfig>>,
    tls_first: bool,
) -> Result<(Stream, FrameReader), String> {
    let mut reader = FrameReader::new();
    let mut stream = if tls_first {
        Stream::connect(addr, TIMEOUT, tls).map_err(|e| format!("connect: {e}"))?
    } else {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        Stream::Plain(tcp)
    };
    if stream.write_all(&hello(node_id, 0, cores)).is_err() {
        return Err("hello not written".into());
    }
    let (status, payload) = answer(&mut stream, &mut reader).map_err(|e| format!("hello: {e}"))?;
    if status != STATUS_OK {
        return Err(format!(
            "hello refused: {}",
            String::from_utf8_lossy(&payload)
        ));
    }
    if payload == STARTTLS {
        assert!(!tls_first, "a TLS-first connection is answered inside TLS");
        if let Some(config) = tls {
            let tcp = stream.into_plain().unwrap();
            stream = Stream::start_tls(tcp, config).map_err(|e| format!("TLS: {e}"))?;
            match answer(&mut stream, &mut reader) {
                Ok((STATUS_OK, _)) => {}
                Ok((status, payload)) => {
                    return Err(format!(
                        "hello refused inside TLS ({status}): {}",
                        String::from_utf8_lossy(&payload)
                    ))
                }
                Err(e) => return Err(format!("hello inside TLS: {e}")),
            }
        }
        // Without TLS: go on in plaintext, as the old attack did.
    }
    Ok((stream, reader))
}

/// [`open`], then sends `requests`: the statuses they were answered with.
fn attempt(
    addr: SocketAddr,
    node_id: u64,
    tls: Option<&Arc<ClientConfig>>,
    tls_first: bool,
    requests: &[(u16, u8, Vec<u8>)],
) -> Outcome {
    let (mut stream, mut reader) = match open(addr, node_id, 2, tls, tls_first) {
        Ok(open) => open,
        Err(e) => return Outcome::Closed(e),
    };
    let mut statuses = Vec::new();
    for (i, (group, op, payload)) in requests.iter().enumerate() {
        if stream
            .write_all(&frame(i as u64 + 1, *group, *op, payload))
            .is_err()
        {
            return Outcome::Closed(format!("request {op} not written"));
        }
        match answer(&mut stream, &mut reader) {
            Ok((status, _)) => statuses.push(status),
            Err(e) if statuses.is_empty() => return Outcome::Closed(e),
            Err(_) => break,
        }
    }
    Outcome::Answered(statuses)
}

fn client(ca: &Path, dir: &Path, cert: &str, key: &str) -> Arc<ClientConfig> {
    Credentials::load(ca, &dir.join(cert), &dir.join(key))
        .unwrap()
        .client()
        .unwrap()
}

/// Every group's term and leader, and every replica's term, from `settle status`.
fn terms(cluster: &Cluster) -> BTreeMap<String, String> {
    let (_, text) = cluster.status(1, false).unwrap();
    text.lines()
        .filter(|l| l.starts_with("group ") || l.trim_start().starts_with("node "))
        .enumerate()
        .map(|(i, l)| {
            // Only the role and term of each line: logs move, terms must not.
            let words: Vec<&str> = l.split_whitespace().collect();
            let keep: Vec<&str> = words
                .windows(2)
                .filter(|w| matches!(w[0], "term" | "leader") || w[0].ends_with(':'))
                .flat_map(|w| [w[0], w[1]])
                .collect();
            (format!("{i:03}"), keep.join(" "))
        })
        .collect()
}

/// Three members of `cores` cores each, with long election timeouts (a busy
/// test machine must not cause elections of its own while the terms are
/// compared), once each group leads on its preferred member.
fn quiet_cluster(dir: &Path, cores: usize) -> Cluster {
    let options = ClusterOptions {
        nodes: 3,
        cores,
        participants: 8,
        extra_args: [
            "--election-timeout-ms",
            "1500-3000",
            "--heartbeat-ms",
            "100",
        ]
        .map(String::from)
        .to_vec(),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(dir, options).unwrap();
    cluster
        .wait_balanced(1, 5, Duration::from_secs(60))
        .unwrap();
    cluster
}

#[test]
fn peer_port_refuses_every_process_without_a_member_certificate_and_terms_do_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = quiet_cluster(dir.path(), 2);
    let tls = cluster.tls_dir.clone().unwrap();
    let ca = tls.join(files::CA_CERT);
    let other = dir.path().join("other-ca");
    certs_init(&other, 3).unwrap();

    let before = terms(&cluster);
    let member_cert = client(&ca, &tls, &files::node_cert(1), &files::node_key(1));
    let foreign_node = client(&ca, &other, &files::node_cert(1), &files::node_key(1));
    let foreign_admin = client(&ca, &other, "admin.pem", "admin.key");
    let operator = client(&ca, &tls, "operator.pem", "operator.key");
    let anonymous = Credentials::anonymous(&ca).unwrap().client().unwrap();

    let attacks = forged();
    for target in [2u64, 3] {
        let addr = cluster
            .members
            .iter()
            .find(|m| m.id == target)
            .unwrap()
            .peer;
        for (name, node_id, tls, tls_first) in [
            ("plaintext as member 1", 1, None, false),
            ("plaintext as a tool", 0, None, false),
            (
                "another CA's node-1 certificate",
                1,
                Some(&foreign_node),
                false,
            ),
            (
                "another CA's node-1 certificate, TLS first",
                1,
                Some(&foreign_node),
                true,
            ),
            (
                "another CA's admin certificate, as a tool",
                0,
                Some(&foreign_admin),
                true,
            ),
            ("no client certificate", 1, Some(&anonymous), false),
            (
                "no client certificate, as a tool",
                0,
                Some(&anonymous),
                true,
            ),
            (
                "this CA's operator certificate, as member 1",
                1,
                Some(&operator),
                false,
            ),
            (
                "this CA's node-1 certificate, as member 2",
                2,
                Some(&member_cert),
                false,
            ),
        ] {
            let outcome = attempt(addr, node_id, tls, tls_first, &attacks);
            eprintln!("node {target}, {name}: {outcome:?}");
            assert!(
                matches!(outcome, Outcome::Closed(_)),
                "node {target}, {name}: {outcome:?}"
            );
        }
        // A tool with this CA's operator certificate gets status, and
        // nothing else.
        let mut requests = vec![(0, OP_STATUS, br#"{"digest":false}"#.to_vec())];
        requests.extend(attacks.iter().cloned());
        let outcome = attempt(addr, 0, Some(&operator), true, &requests);
        let mut expected = vec![STATUS_OK];
        expected.extend(attacks.iter().map(|_| STATUS_REFUSED));
        assert_eq!(outcome, Outcome::Answered(expected), "node {target}");
        // The harness speaks the protocol: a member's certificate gets its
        // harmless probe answered.
        let outcome = attempt(addr, 1, Some(&member_cert), false, &[(0, OP_PROBE, vec![])]);
        assert_eq!(outcome, Outcome::Answered(vec![STATUS_OK]), "node {target}");
    }

    let after = terms(&cluster);
    assert_eq!(before, after, "terms or leaders moved");
    for id in [2, 3] {
        assert!(
            cluster.logged(id, "peer connection refused"),
            "node {id} logs the refusals"
        );
    }
}

/// Connections one core admits while they say hello, and connections one
/// member may hold to one core (`node/src/cluster/bounds.rs`:
/// `PEER_HANDSHAKES_PER_CORE_MAX`, `PEER_CONNECTIONS_PER_NODE_MAX`).
const HANDSHAKES_MAX: usize = 64;
const PER_NODE_MAX: usize = 8;

/// Many processes' worth of connections at a member's peer port: 200 that
/// never say hello, and more member connections (with a real member's
/// certificate) than a member may hold. The node closes what is over each
/// bound at once, says why, its memory stays put, and the cluster's terms
/// do not move.
#[test]
fn peer_port_bounds_hold_against_many_connections_and_terms_do_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = quiet_cluster(dir.path(), 1);
    let tls = cluster.tls_dir.clone().unwrap();
    let ca = tls.join(files::CA_CERT);
    let member_cert = client(&ca, &tls, &files::node_cert(1), &files::node_key(1));
    let target = cluster.members.iter().find(|m| m.id == 2).unwrap();
    let addr = target.peer;
    let rss_before = target.rss().unwrap();
    let before = terms(&cluster);

    // 200 connections that say nothing: at most HANDSHAKES_MAX stay. The
    // rest are closed at accept; the node's hello timeout (5 s) would close
    // them all later, so the count is taken before it.
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect_timeout(&addr, TIMEOUT).unwrap())
        .collect();
    let connected = std::time::Instant::now();
    for s in &silent {
        s.set_nonblocking(true).unwrap();
    }
    let closed_by_node = |s: &TcpStream| {
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut &*s, &mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    let mut open_now = silent.len();
    while connected.elapsed() < Duration::from_secs(4) {
        open_now = silent.iter().filter(|s| !closed_by_node(s)).count();
        if open_now <= HANDSHAKES_MAX {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "silent connections still open: {open_now} of 200 after {:?}",
        connected.elapsed()
    );
    assert!(
        open_now <= HANDSHAKES_MAX,
        "{open_now} silent connections held, the bound is {HANDSHAKES_MAX}"
    );
    drop(silent);

    // Member connections as node 1 (its own links to node 2 count too).
    let mut held = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..PER_NODE_MAX + 4 {
        match open(addr, 1, 1, Some(&member_cert), false) {
            Ok(stream) => held.push(stream),
            Err(e) => refusals.push(e),
        }
    }
    eprintln!(
        "member connections held {}, refused {}: {:?}",
        held.len(),
        refusals.len(),
        refusals.first()
    );
    assert!(held.len() <= PER_NODE_MAX, "{} held", held.len());
    assert!(refusals.len() >= 4, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|r| r.contains("holds as many connections")),
        "each refusal says why: {refusals:?}"
    );
    drop(held);

    let target = cluster.members.iter().find(|m| m.id == 2).unwrap();
    let rss_after = target.rss().unwrap();
    eprintln!(
        "node 2 RSS {} MiB before, {} MiB after",
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(
        rss_after < rss_before + (128 << 20),
        "node 2 grew from {rss_before} to {rss_after} bytes"
    );
    assert_eq!(before, terms(&cluster), "terms or leaders moved");
    assert!(
        cluster.logged(2, "peer connection refused"),
        "node 2 logs the refusals"
    );
}
