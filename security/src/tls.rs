//! TLS 1.3 configurations from PEM files: the cluster CA, and this
//! process's own certificate chain and key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::identity::{Identity, IdentityError};

/// Only TLS 1.3: a TLS 1.2 client gets a protocol-version alert.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Why credentials could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: no certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("the CA file holds no usable certificate: {0}")]
    Roots(String),
    #[error("own certificate: {0}")]
    Identity(#[from] IdentityError),
}

/// The cluster CA and, unless anonymous, this process's certificate.
#[derive(Debug, Clone)]
pub struct Credentials {
    ca: Vec<CertificateDer<'static>>,
    own: Option<Arc<OwnCert>>,
}

/// This process's certificate and key, shared by every configuration made
/// from one [`Credentials`], and replaceable while serving
/// ([`Credentials::reload`], on SIGHUP): new handshakes use the new one.
#[derive(Debug)]
pub struct OwnCert {
    current: RwLock<Arc<CertifiedKey>>,
    identity: Identity,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl OwnCert {
    fn load(cert_path: &Path, key_path: &Path) -> Result<(Arc<CertifiedKey>, Identity), TlsError> {
        let chain = certs(cert_path)?;
        let identity = Identity::from_cert_der(&chain[0])?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::File {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // A key that is not its certificate's fails here, not at a handshake.
        let certified = CertifiedKey::from_der(chain, key, &provider())?;
        Ok((Arc::new(certified), identity))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("never poisoned").clone()
    }
}

impl rustls::server::ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The ring provider. rustls 0.23.48 deprecates it for lacking post-quantum
/// key exchange, which only its aws-lc-rs provider has (a cmake build of a C
/// library, minutes more per clean build); classical X25519/P-256 key
/// exchange is what the cluster's threat model (recorded traffic decrypted
/// years later) accepts for now.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Credentials {
    /// The CA at `ca`, and this process's chain and key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Credentials, TlsError> {
        let (certified, identity) = OwnCert::load(cert, key)?;
        Ok(Credentials {
            ca: certs(ca)?,
            own: Some(Arc::new(OwnCert {
                current: RwLock::new(certified),
                identity,
                cert_path: cert.to_path_buf(),
                key_path: key.to_path_buf(),
            })),
        })
    }

    /// Re-reads this process's certificate and key from their files (the
    /// CA is not re-read: changing it needs a restart). The identity must
    /// stay the same. Every configuration made from these credentials
    /// presents the new certificate from its next handshake on.
    pub fn reload(&self) -> Result<&Identity, TlsError> {
        let own = self.own.as_ref().ok_or_else(|| {
            TlsError::Config(rustls::Error::General("no certificate to reload".into()))
        })?;
        let (certified, identity) = OwnCert::load(&own.cert_path, &own.key_path)?;
        if identity != own.identity {
            return Err(TlsError::Config(rustls::Error::General(format!(
                "the new certificate is {identity}'s, not {}'s: refused",
                own.identity
            ))));
        }
        *own.current.write().expect("never poisoned") = certified;
        Ok(&own.identity)
    }

    /// Only the CA: a client with no certificate (it authenticates by token).
    pub fn anonymous(ca: &Path) -> Result<Credentials, TlsError> {
        Ok(Credentials {
            ca: certs(ca)?,
            own: None,
        })
    }

    /// The identity of this process's certificate.
    pub fn identity(&self) -> Option<&Identity> {
        self.own.as_ref().map(|o| &o.identity)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in &self.ca {
            roots
                .add(cert.clone())
                .map_err(|e| TlsError::Roots(e.to_string()))?;
        }
        Ok(Arc::new(roots))
    }

    fn own(&self) -> Result<&Arc<OwnCert>, TlsError> {
        self.own.as_ref().ok_or_else(|| {
            TlsError::Config(rustls::Error::General(
                "a server needs its own certificate".into(),
            ))
        })
    }

    /// A server that requires a client certificate of the CA (peer port).
    pub fn server_mutual(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        self.server_with(verifier)
    }

    /// A server that verifies a client certificate if one is offered
    /// (client ports: a caller may authenticate by token instead).
    pub fn server_optional(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        self.server_with(verifier)
    }

    fn server_with(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let own = self.own()?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(own.clone());
        config.alpn_protocols = Vec::new();
        Ok(Arc::new(config))
    }

    /// A client that verifies the server against the CA (and the name
    /// [`crate::SERVER_NAME`]) and offers this process's certificate, if any.
    pub fn client(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Roots(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)?
            .with_webpki_verifier(verifier);
        let config = match &self.own {
            Some(own) => builder.with_client_cert_resolver(own.clone()),
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The name our clients verify in a node's certificate.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(crate::SERVER_NAME).expect("a valid DNS name")
}

/// The identity of a verified peer's certificate chain (its first
/// certificate), if it offered one.
pub fn peer_identity(
    chain: Option<&[CertificateDer<'_>]>,
) -> Option<Result<Identity, IdentityError>> {
    chain
        .and_then(|c| c.first())
        .map(|cert| Identity::from_cert_der(cert))
}
