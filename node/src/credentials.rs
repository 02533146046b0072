//! Where a node and the tools find their credentials: a directory made by
//! `settle certs init` (or by a node's first start in `<data-dir>/tls`),
//! holding the CA, node and client certificates and the token hashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use futures_rustls::rustls::ClientConfig;
use settle_security::tokens::TokenTable;
use settle_security::{files, Credentials};

/// The credentials directory of a node's data directory.
pub fn data_dir_tls(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The credentials directory of a node started without `--tls-dir`:
/// `<data-dir>/tls`, made on the first start of a one-member node (a CA,
/// this node's certificate, admin, operator and auditor client certificates
/// and tokens), like a database that bootstraps its own certificates. A
/// cluster member needs the cluster's one CA, so it is told to get one.
pub fn bootstrap(data_dir: &Path, node_id: u64, clustered: bool) -> anyhow::Result<PathBuf> {
    let dir = data_dir_tls(data_dir);
    if dir.join(files::CA_CERT).exists() {
        return Ok(dir);
    }
    if clustered {
        return Err(anyhow!(
            "a cluster member needs the cluster's credentials: make them once with \
             `settle certs init DIR --nodes N` and start every member with --tls-dir DIR \
             (or --insecure, for a local experiment only)"
        ));
    }
    let mut plan = settle_security::generate::InitPlan::standard(1, &[]);
    plan.nodes = vec![node_id];
    settle_security::generate::init_dir(&dir, &plan)
        .with_context(|| format!("making credentials in {}", dir.display()))?;
    tracing::warn!(
        dir = %dir.display(),
        "first start: made a CA, a certificate for node {node_id}, and client certificates and \
         tokens for admin, operator and auditor in {}; the CLI and the load generator find them \
         with --data-dir {} (or SETTLE_TLS_DIR={}); keep ca.key and the *.key/*.token files private",
        dir.display(),
        data_dir.display(),
        dir.display()
    );
    Ok(dir)
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

/// The client ports' TLS (binary protocol and HTTP): TLS 1.3 only, a client
/// certificate of the CA verified when offered; and the bearer tokens HTTP
/// accepts (hashed, re-read when their file changes: no restart).
#[derive(Clone)]
pub struct ServerSecurity {
    pub tls: Arc<futures_rustls::rustls::ServerConfig>,
    pub tokens: Arc<arc_swap::ArcSwap<TokenTable>>,
    tokens_path: Option<PathBuf>,
}

impl ServerSecurity {
    /// With the tokens of `tokens_path` (none if it does not exist).
    pub fn new(credentials: &Credentials, tokens_path: Option<PathBuf>) -> anyhow::Result<Self> {
        let security = ServerSecurity {
            tls: credentials.server_optional()?,
            tokens: Arc::new(arc_swap::ArcSwap::from_pointee(TokenTable::default())),
            tokens_path,
        };
        security.reload_tokens(None)?;
        Ok(security)
    }

    /// Re-reads the tokens file if it changed since `seen` (its last
    /// modification time); returns the time now seen.
    pub fn reload_tokens(
        &self,
        seen: Option<std::time::SystemTime>,
    ) -> anyhow::Result<Option<std::time::SystemTime>> {
        let Some(path) = &self.tokens_path else {
            return Ok(None);
        };
        let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
            return Ok(seen);
        };
        if Some(modified) == seen {
            return Ok(seen);
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table = TokenTable::parse(&text).with_context(|| format!("in {}", path.display()))?;
        self.tokens.store(Arc::new(table));
        tracing::info!(path = %path.display(), "bearer tokens (re)loaded");
        Ok(Some(modified))
    }
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecurity")
    }
}

/// What a plaintext client of a TLS port is told before the connection closes.
pub const PLAINTEXT_REFUSED: &str =
    "this port speaks TLS 1.3 only (the node was not started --insecure): connect with TLS";

/// The first byte of a TLS record carrying a handshake (a ClientHello).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

// The ports tell a TLS client from a plaintext one by the first byte: a
// frame must never start like a TLS record.
const _: () = assert!(settle_codec::MAGIC.to_le_bytes()[0] != TLS_HANDSHAKE_RECORD);
