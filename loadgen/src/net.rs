//! Connections to the node: TLS 1.3 (the node's default) or plaintext (a
//! node started `--insecure`). The load generator drives one cluster per
//! process, so its TLS client configuration is set once for the process
//! ([`set_tls`]) instead of being threaded through every connect.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, Context};
use settle_security::rustls::ClientConfig;
use settle_security::{files, Credentials};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection's stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

static TLS: RwLock<Option<Arc<ClientConfig>>> = RwLock::new(None);

/// Connect over TLS with `config` from now on (`None`: plaintext).
pub fn set_tls(config: Option<Arc<ClientConfig>>) {
    *TLS.write().expect("never poisoned") = config;
}

/// The TLS client configuration of `identity` in the credentials directory
/// `dir` (see `settle certs init`); `None` with `insecure`.
pub fn client_config(
    dir: Option<&Path>,
    identity: &str,
    insecure: bool,
) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    if insecure {
        return Ok(None);
    }
    let dir = dir.ok_or_else(|| {
        anyhow!(
            "no credentials: pass --tls-dir DIR (a node's <data-dir>/tls, or one made by \
             `settle certs init`), set SETTLE_TLS_DIR, or --insecure for a node started --insecure"
        )
    })?;
    let credentials = Credentials::load(
        &dir.join(files::CA_CERT),
        &dir.join(files::client_cert(identity)),
        &dir.join(files::client_key(identity)),
    )
    .with_context(|| format!("loading {identity}'s credentials from {}", dir.display()))?;
    Ok(Some(credentials.client()?))
}

/// Connects to `addr` (TLS if [`set_tls`] gave a configuration).
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Box<dyn Io>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let tls = TLS.read().expect("never poisoned").clone();
    let Some(config) = tls else {
        return Ok(Box::new(stream));
    };
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(settle_security::tls::server_name(), stream)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    Ok(Box::new(stream))
}
