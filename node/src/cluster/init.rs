//! Forming a cluster: the first-start rule.
//!
//! A node whose data directory holds no Raft state asks every other member
//! (`OP_PROBE`) whether it has any. If one has committed entries (a leader
//! was elected by a quorum: the cluster was formed before this node
//! started), this node joins it empty: a wiped node, caught up by the
//! leaders (from a snapshot if their logs were purged), which refuses votes
//! until then, so it cannot help elect a leader that lacks entries it had
//! acknowledged before losing them. If a member has state but nothing
//! committed, the cluster is being formed right now: join it. If every
//! member answers that it is pristine, the cluster is new, and the member
//! with the lowest id initializes every group with all of `--peers`; the
//! others wait to be contacted by the leaders. Requiring an answer from
//! *every* member (not a majority) is what keeps a minority of wiped nodes
//! from forming a second cluster.
//!
//! A node with Raft state simply resumes from it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::info;

use super::proto::{Hello, ProbeAnswer, OP_PROBE, STATUS_OK};
use super::status::BlockingPeer;
use super::ClusterConfig;
use crate::raft::NodeId;

/// How long one probe of one peer may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Between rounds of probing the peers that have not answered yet.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
const PROBE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What a starting node does with its groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// It has Raft state: resume.
    Resume,
    /// New cluster, lowest id: initialize every group with every member.
    Initialize,
    /// New cluster, not the lowest id: wait for the leaders.
    Join,
    /// Existing cluster, no local state: wait for the leaders, refuse votes
    /// until caught up.
    Rejoin,
}

/// True if no group under `data_dir` has Raft state (a vote or a log).
pub fn is_pristine(data_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return true;
    };
    !entries.filter_map(Result::ok).any(|entry| {
        entry.file_name().to_string_lossy().starts_with("group-")
            && entry.path().join("raft.meta").exists()
    })
}

/// Decides how a node starts (see the module doc). Blocks while a pristine
/// node waits for every peer to answer; returns `None` if `stop` is raised
/// meanwhile.
pub fn decide(
    config: &ClusterConfig,
    hello: &Hello,
    pristine: bool,
    stop: &AtomicBool,
) -> Option<Formation> {
    if !pristine {
        return Some(Formation::Resume);
    }
    let lowest = config.peers.keys().next() == Some(&config.node_id);
    let mut pending: Vec<(NodeId, std::net::SocketAddr)> = config.others().collect();
    let mut forming = false;
    let started = Instant::now();
    let mut next_log = started + PROBE_LOG_INTERVAL;
    while !pending.is_empty() {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let mut still = Vec::new();
        for (id, addr) in pending {
            match probe(addr, hello, config.tls.as_ref().map(|t| &t.client)) {
                Ok(answer) if answer.formed => {
                    info!(
                        peer = id,
                        "the cluster already exists: joining it with empty state"
                    );
                    return Some(Formation::Rejoin);
                }
                Ok(answer) => forming |= answer.initialized,
                Err(e) => {
                    if Instant::now() >= next_log {
                        info!(peer = id, %addr, error = %e, "waiting for peer to answer the formation probe");
                    }
                    still.push((id, addr));
                }
            }
        }
        if Instant::now() >= next_log {
            next_log += PROBE_LOG_INTERVAL;
        }
        pending = still;
        if !pending.is_empty() {
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
    Some(if lowest && !forming {
        info!(
            members = config.peers.len(),
            "every member is pristine: forming the cluster"
        );
        Formation::Initialize
    } else {
        Formation::Join
    })
}

fn probe(
    addr: std::net::SocketAddr,
    hello: &Hello,
    tls: Option<&std::sync::Arc<futures_rustls::rustls::ClientConfig>>,
) -> Result<ProbeAnswer, String> {
    let mut peer =
        BlockingPeer::connect(addr, hello, PROBE_TIMEOUT, tls).map_err(|e| e.to_string())?;
    let (status, payload) = peer.call(0, OP_PROBE, &[]).map_err(|e| e.to_string())?;
    if status != STATUS_OK {
        return Err(String::from_utf8_lossy(&payload).into_owned());
    }
    serde_json::from_slice(&payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pristine_means_no_group_has_raft_meta() {
        let dir = tempfile::tempdir().unwrap();
        assert!(is_pristine(&dir.path().join("missing")));
        assert!(is_pristine(dir.path()));
        std::fs::create_dir_all(dir.path().join("group-1-usd/log")).unwrap();
        assert!(is_pristine(dir.path()), "an empty group directory");
        std::fs::write(dir.path().join("group-1-usd/raft.meta"), b"{}").unwrap();
        assert!(!is_pristine(dir.path()));
    }

    #[test]
    fn a_single_member_cluster_forms_alone_and_a_node_with_state_resumes() {
        let peers = crate::cluster::parse_peers("5=127.0.0.1:1").unwrap();
        let config = ClusterConfig::new(5, peers).unwrap();
        let hello = Hello {
            node_id: 5,
            core: 0,
            cores: 1,
            currencies: vec![],
        };
        let stop = AtomicBool::new(false);
        assert_eq!(
            decide(&config, &hello, true, &stop),
            Some(Formation::Initialize)
        );
        assert_eq!(
            decide(&config, &hello, false, &stop),
            Some(Formation::Resume)
        );
    }
}
