//! `settle status`: every member's view of every group (role, term, log,
//! commit and apply indexes, lag behind the leader, optionally a digest of
//! the replica's state), gathered over the peer protocol with blocking
//! sockets, and [`BlockingPeer`], the client it (and the formation probe)
//! uses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::ClientConfig;
use settle_security::blocking::Stream;

use settle_codec::{FrameBuf, FrameReader, PeerRequest, MAX_PEER_CHUNK_BYTES};

use super::link::{decode_answer, Answer};
use super::proto::*;
use crate::raft::NodeId;

/// Why a tool's request to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error("{addr}: refused: {reason}")]
    Refused { addr: SocketAddr, reason: String },
}

/// A blocking connection to one core of a node.
pub struct BlockingPeer {
    addr: SocketAddr,
    stream: Stream,
    reader: FrameReader,
    out: FrameBuf,
    next_id: u64,
    pub ack: HelloAck,
}

impl BlockingPeer {
    /// Connects to core `hello.core` of the node at `addr`. With `tls`, a
    /// member (hello node id > 0) says its hello in plaintext, to be routed
    /// to that core, and starts TLS on the answer; a tool starts TLS at once
    /// and is answered by whichever core accepted it.
    pub fn connect(
        addr: SocketAddr,
        hello: &Hello,
        timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Self, ToolError> {
        let io = |source| ToolError::Io { addr, source };
        let tool = hello.node_id == 0;
        let stream = Stream::connect(addr, timeout, tls.filter(|_| tool)).map_err(io)?;
        let mut peer = BlockingPeer {
            addr,
            stream,
            reader: FrameReader::new(),
            out: FrameBuf::new(),
            next_id: 0,
            ack: HelloAck {
                node_id: 0,
                core: 0,
                cores: 0,
            },
        };
        let payload = serde_json::to_vec(hello).expect("plain data");
        let (mut status, mut answer) = peer.call_raw(0, OP_HELLO, &payload)?;
        if status == STATUS_OK && answer == STARTTLS {
            let Some(tls) = tls.filter(|_| !tool) else {
                return Err(ToolError::Refused {
                    addr,
                    reason: "the node requires TLS: pass --tls-dir (or its data directory)".into(),
                });
            };
            let plain = peer
                .stream
                .into_plain()
                .expect("a member starts in plaintext");
            peer.stream = Stream::start_tls(plain, tls).map_err(io)?;
            (status, answer) = peer.read_answer(0)?;
            if status == STATUS_OK {
                peer.check_server()?;
            }
        } else if status == STATUS_OK && tls.is_some() && !tool {
            return Err(ToolError::Refused {
                addr,
                reason: "the node serves plaintext (--insecure): refusing to talk to it".into(),
            });
        }
        if status != STATUS_OK {
            return Err(ToolError::Refused {
                addr,
                reason: String::from_utf8_lossy(&answer).into_owned(),
            });
        }
        peer.ack = serde_json::from_slice(&answer).map_err(|e| ToolError::Protocol {
            addr,
            reason: format!("hello answer: {e}"),
        })?;
        Ok(peer)
    }

    /// The server's certificate is a node's (any member's: a probe does
    /// not know which member answers at an address).
    fn check_server(&self) -> Result<(), ToolError> {
        match self.stream.peer_identity() {
            Some(Ok(id)) if id.role == settle_security::Role::Node => Ok(()),
            other => Err(ToolError::Refused {
                addr: self.addr,
                reason: format!("not a node certificate: {other:?}"),
            }),
        }
    }

    /// Sends one request and waits for its answer: `(status, payload)`.
    pub fn call(&mut self, group: u16, op: u8, payload: &[u8]) -> Result<(u8, Vec<u8>), ToolError> {
        self.call_raw(group, op, payload)
    }

    fn call_raw(&mut self, group: u16, op: u8, payload: &[u8]) -> Result<(u8, Vec<u8>), ToolError> {
        let addr = self.addr;
        let id = self.next_id;
        self.next_id += 1;
        if payload.len() > MAX_PEER_CHUNK_BYTES {
            return Err(ToolError::Protocol {
                addr,
                reason: "request too large for a tool".into(),
            });
        }
        self.out.clear();
        self.out
            .push(
                id,
                &PeerRequest {
                    group,
                    op,
                    more: false,
                    payload: payload.to_vec(),
                },
            )
            .map_err(|e| ToolError::Protocol {
                addr,
                reason: e.to_string(),
            })?;
        self.stream
            .write_all(self.out.as_slice())
            .map_err(|source| ToolError::Io { addr, source })?;
        self.read_answer(id)
    }

    /// Reads frames until the answer to request `id`.
    fn read_answer(&mut self, id: u64) -> Result<(u8, Vec<u8>), ToolError> {
        let addr = self.addr;
        loop {
            match self.reader.next_frame() {
                Ok(settle_codec::ReadStatus::Frame(frame)) => {
                    let (got, answer) = decode_answer(&frame);
                    if got != id {
                        continue;
                    }
                    return match answer {
                        Ok(Answer::Peer { status, payload }) => Ok((status, payload)),
                        Ok(other) => Err(ToolError::Protocol {
                            addr,
                            reason: format!("unexpected answer {other:?}"),
                        }),
                        Err(reason) => Err(ToolError::Protocol { addr, reason }),
                    };
                }
                Ok(settle_codec::ReadStatus::NeedMore(_)) => {}
                Err(e) => {
                    return Err(ToolError::Protocol {
                        addr,
                        reason: e.to_string(),
                    })
                }
            }
            let n = self
                .reader
                .read_from(&mut self.stream)
                .map_err(|source| ToolError::Io { addr, source })?;
            if n == 0 {
                return Err(ToolError::Protocol {
                    addr,
                    reason: "connection closed".into(),
                });
            }
        }
    }
}

/// The hello of a tool (not a member) asking for `core`.
pub fn tool_hello(core: usize) -> Hello {
    Hello {
        node_id: 0,
        core,
        cores: 0,
        currencies: Vec::new(),
    }
}

/// Every core's status of the node at `addr`.
pub fn node_status(
    addr: SocketAddr,
    request: &StatusRequest,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Vec<CoreStatus>, ToolError> {
    let request = serde_json::to_vec(request).expect("plain data");
    let mut next = Some(BlockingPeer::connect(addr, &tool_hello(0), timeout, tls)?);
    let cores = next.as_ref().map_or(0, |p| p.ack.cores);
    let mut out: BTreeMap<usize, CoreStatus> = BTreeMap::new();
    let mut connections = 1;
    while out.len() < cores {
        let wanted = (0..cores)
            .find(|c| !out.contains_key(c))
            .expect("a core not heard from");
        let mut peer = match next.take() {
            Some(peer) => peer,
            None => {
                // A peer port hands the connection to the core named in the
                // hello; a one-member node's client port (see `solo`) answers
                // on whichever core the kernel picked: connect again.
                if connections >= STATUS_CONNECTIONS_MAX {
                    return Err(ToolError::Protocol {
                        addr,
                        reason: format!(
                            "core {wanted} did not answer in {connections} connections"
                        ),
                    });
                }
                connections += 1;
                BlockingPeer::connect(addr, &tool_hello(wanted), timeout, tls)?
            }
        };
        if out.contains_key(&peer.ack.core) {
            continue;
        }
        let (status, payload) = peer.call(0, OP_STATUS, &request)?;
        if status != STATUS_OK {
            return Err(ToolError::Protocol {
                addr,
                reason: String::from_utf8_lossy(&payload).into_owned(),
            });
        }
        let core_status: CoreStatus =
            serde_json::from_slice(&payload).map_err(|e| ToolError::Protocol {
                addr,
                reason: format!("status: {e}"),
            })?;
        out.insert(peer.ack.core, core_status);
    }
    Ok(out.into_values().collect())
}

/// Connections the status tool makes to one node before giving up on
/// hearing from each of its cores (a client port spreads them at random).
const STATUS_CONNECTIONS_MAX: usize = 64;

/// One member as the status tool reached it.
pub struct MemberView {
    pub node_id: NodeId,
    pub addr: SocketAddr,
    pub groups: Result<Vec<GroupStatus>, String>,
}

/// Asks `target` for its peers, then every member for its groups. With
/// `digest`, a second round asks every replica of each group for its digest
/// at one index all of them have applied (the lowest applied index the
/// first round saw), so that replicas are compared at the same position
/// even while the cluster is busy.
pub fn cluster_status(
    target: SocketAddr,
    digest: bool,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Vec<MemberView>, ToolError> {
    let views = members_status(target, &StatusRequest::default(), timeout, tls)?;
    if !digest {
        return Ok(views);
    }
    let mut digest_at: BTreeMap<u16, u64> = BTreeMap::new();
    for v in &views {
        for g in v.groups.iter().flatten() {
            let applied = g.applied.unwrap_or(0);
            digest_at
                .entry(g.group)
                .and_modify(|at| *at = (*at).min(applied))
                .or_insert(applied);
        }
    }
    let request = StatusRequest {
        digest: true,
        digest_at,
    };
    members_status(target, &request, timeout, tls)
}

/// One round of [`cluster_status`]: `target`'s peers, then every member.
fn members_status(
    target: SocketAddr,
    request: &StatusRequest,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Vec<MemberView>, ToolError> {
    let first = node_status(target, request, timeout, tls)?;
    let me = first.first().map_or(0, |c| c.node_id);
    let peers: BTreeMap<NodeId, String> =
        first.first().map(|c| c.peers.clone()).unwrap_or_default();
    let mut views = vec![MemberView {
        node_id: me,
        addr: target,
        groups: Ok(first.into_iter().flat_map(|c| c.groups).collect()),
    }];
    for (id, addr) in peers {
        if id == me {
            continue;
        }
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            continue;
        };
        let groups = node_status(addr, request, timeout, tls)
            .map(|cores| cores.into_iter().flat_map(|c| c.groups).collect())
            .map_err(|e| e.to_string());
        views.push(MemberView {
            node_id: id,
            addr,
            groups,
        });
    }
    views.sort_by_key(|v| v.node_id);
    Ok(views)
}

/// What the status tool concluded.
pub struct Summary {
    pub text: String,
    /// Every member answered and, per group, every replica has the same
    /// applied index (and the same digest, when asked).
    pub converged: bool,
    /// When digests were asked: every replica of every group gave one at
    /// the group's agreed index, and they are equal (lag is not a
    /// difference: replicas are compared at an index all of them applied).
    pub consistent: Option<bool>,
}

/// The human-readable report: per group, each member's replica.
pub fn summarize(views: &[MemberView]) -> Summary {
    let mut text = String::new();
    let mut converged = true;
    let asked_digests = views
        .iter()
        .flat_map(|v| v.groups.iter().flatten())
        .any(|g| g.digest.is_some());
    let mut consistent = asked_digests.then_some(true);
    let reachable = views.iter().filter(|v| v.groups.is_ok()).count();
    let _ = writeln!(
        text,
        "members: {} ({} reachable)",
        views
            .iter()
            .map(|v| format!("{}={}", v.node_id, v.addr))
            .collect::<Vec<_>>()
            .join(" "),
        reachable
    );
    for v in views {
        if let Err(e) = &v.groups {
            converged = false;
            let _ = writeln!(text, "node {}: unreachable: {e}", v.node_id);
        }
    }
    let mut by_group: BTreeMap<u16, Vec<(NodeId, &GroupStatus)>> = BTreeMap::new();
    for v in views {
        if let Ok(groups) = &v.groups {
            for g in groups {
                by_group.entry(g.group).or_default().push((v.node_id, g));
            }
        }
    }
    for (group, replicas) in &by_group {
        let name = &replicas[0].1.name;
        let leader_status = replicas.iter().find(|(_, g)| g.state == "Leader");
        let leader_last = leader_status.and_then(|(_, g)| g.last_log);
        let _ = writeln!(
            text,
            "group {group} ({name}): leader {} term {}",
            leader_status.map_or("none".to_string(), |(id, _)| id.to_string()),
            leader_status.map_or(0, |(_, g)| g.term),
        );
        let first_applied = replicas[0].1.applied;
        let first_digest = replicas[0].1.digest;
        if replicas.iter().any(|(_, g)| g.digest.is_some()) || asked_digests {
            // Every replica was asked for the same index: all must have
            // answered with it, and agree.
            let agreed = replicas.iter().all(|(_, g)| {
                g.digest.is_some_and(|d| {
                    first_digest
                        .is_some_and(|f| d.applied == f.applied && d.fingerprint == f.fingerprint)
                })
            });
            if !agreed {
                consistent = Some(false);
            }
        }
        for (node, g) in replicas {
            let lag = match (leader_last, g.last_log) {
                (Some(l), Some(mine)) => l.saturating_sub(mine).to_string(),
                (Some(l), None) => (l + 1).to_string(),
                _ => "-".to_string(),
            };
            let digest = match g.digest {
                Some(d) => format!(
                    "  digest {:016x} at {}",
                    d.fingerprint,
                    d.applied.map_or("-".into(), |a| a.to_string())
                ),
                None if asked_digests => "  digest not kept at the agreed index".to_string(),
                None => String::new(),
            };
            let _ = writeln!(
                text,
                "  node {node}: {:<9} term {:<4} last_log {:<8} committed {:<8} applied {:<8} lag {:<6}{digest}",
                g.state,
                g.term,
                opt(g.last_log),
                opt(g.committed),
                opt(g.applied),
                lag,
            );
            if g.applied != first_applied {
                converged = false;
            }
        }
        if leader_status.is_none() {
            converged = false;
        }
    }
    if let Some(consistent) = consistent {
        converged &= consistent;
        let _ = writeln!(
            text,
            "digests: {}",
            if consistent {
                "equal at the agreed indexes"
            } else {
                "DIFFER (or a replica kept none at the agreed index)"
            }
        );
    }
    let _ = writeln!(text, "converged: {}", if converged { "yes" } else { "no" });
    Summary {
        text,
        converged,
        consistent,
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica's status whose digest was taken at `digest_at`.
    fn group(state: &str, applied: u64, digest_at: u64, fingerprint: u64) -> GroupStatus {
        GroupStatus {
            group: 1,
            name: "USD".into(),
            state: state.into(),
            term: 2,
            leader: Some(1),
            last_log: Some(applied),
            committed: Some(applied),
            applied: Some(applied),
            snapshot: None,
            purged: None,
            voters: vec![1, 2],
            replication: BTreeMap::new(),
            millis_since_quorum_ack: None,
            digest: Some(Digest {
                applied: Some(digest_at),
                fingerprint,
                kept_from: 1,
            }),
        }
    }

    fn views(a: GroupStatus, b: GroupStatus) -> Vec<MemberView> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        vec![
            MemberView {
                node_id: 1,
                addr,
                groups: Ok(vec![a]),
            },
            MemberView {
                node_id: 2,
                addr,
                groups: Ok(vec![b]),
            },
        ]
    }

    #[test]
    fn summary_shows_lag_and_detects_divergence() {
        let lagging = summarize(&views(
            group("Leader", 10, 8, 7),
            group("Follower", 8, 8, 7),
        ));
        assert!(
            lagging.text.contains("group 1 (USD): leader 1 term 2"),
            "{}",
            lagging.text
        );
        assert!(lagging.text.contains("lag 2"), "{}", lagging.text);
        assert!(!lagging.converged, "applied indexes differ");
        assert_eq!(
            lagging.consistent,
            Some(true),
            "lag is not a difference: equal at the agreed index 8"
        );

        let same = summarize(&views(
            group("Leader", 10, 10, 7),
            group("Follower", 10, 10, 7),
        ));
        assert!(same.converged && same.consistent == Some(true));

        let diverged = summarize(&views(
            group("Leader", 10, 10, 7),
            group("Follower", 10, 10, 8),
        ));
        assert!(!diverged.converged, "same index, other state");
        assert_eq!(diverged.consistent, Some(false));
        assert!(diverged.text.contains("DIFFER"), "{}", diverged.text);

        let elsewhere = summarize(&views(
            group("Leader", 10, 10, 7),
            group("Follower", 10, 9, 7),
        ));
        assert_eq!(
            elsewhere.consistent,
            Some(false),
            "digests at different indexes are not compared as equal"
        );

        let mut missing = group("Follower", 10, 10, 7);
        missing.digest = None;
        let missing = summarize(&views(group("Leader", 10, 10, 7), missing));
        assert_eq!(missing.consistent, Some(false), "{}", missing.text);
        assert!(missing.text.contains("not kept"), "{}", missing.text);

        let mut plain = (group("Leader", 10, 10, 7), group("Follower", 10, 10, 7));
        plain.0.digest = None;
        plain.1.digest = None;
        let plain = summarize(&views(plain.0, plain.1));
        assert!(plain.converged);
        assert_eq!(plain.consistent, None, "no digests asked");
    }
}
