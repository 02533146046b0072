//! Where a node and the tools find their credentials: a directory made by
//! `settle certs init` (or by a node's first start in `<data-dir>/tls`),
//! holding the CA, node and client certificates and the token hashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use futures_rustls::rustls::ClientConfig;
use settle_security::{files, Credentials};

/// The credentials directory of a node's data directory.
pub fn data_dir_tls(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Node `node_id`'s credentials in `dir`.
pub fn node(dir: &Path, node_id: u64) -> anyhow::Result<Credentials> {
    let credentials = Credentials::load(
        &dir.join(files::CA_CERT),
        &dir.join(files::node_cert(node_id)),
        &dir.join(files::node_key(node_id)),
    )
    .with_context(|| {
        format!(
            "loading node {node_id}'s credentials from {}",
            dir.display()
        )
    })?;
    match credentials.identity().and_then(|i| i.node_id()) {
        Some(id) if id == node_id => Ok(credentials),
        _ => Err(anyhow!(
            "{}: the certificate is not node {node_id}'s",
            dir.join(files::node_cert(node_id)).display()
        )),
    }
}

/// How a tool (CLI, load generator) reaches a node.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// `None`: plaintext (`--insecure`).
    pub tls: Option<Arc<ClientConfig>>,
}

/// A tool's TLS client configuration: the CA of `dir` and the certificate
/// of `identity` (`admin`, `operator`, `bank_01`...); plaintext only with
/// `insecure`.
pub fn client(
    dir: Option<&Path>,
    identity: &str,
    insecure: bool,
) -> anyhow::Result<ClientSecurity> {
    if insecure {
        return Ok(ClientSecurity { tls: None });
    }
    let dir = dir.ok_or_else(|| {
        anyhow!(
            "no credentials: pass --tls-dir DIR (a node's <data-dir>/tls, or a directory made by \
             `settle certs init`), set SETTLE_TLS_DIR, or --insecure for a node started --insecure"
        )
    })?;
    let credentials = Credentials::load(
        &dir.join(files::CA_CERT),
        &dir.join(files::client_cert(identity)),
        &dir.join(files::client_key(identity)),
    )
    .with_context(|| format!("loading {identity}'s credentials from {}", dir.display()))?;
    Ok(ClientSecurity {
        tls: Some(credentials.client()?),
    })
}
