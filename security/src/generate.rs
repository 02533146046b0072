//! A throwaway CA with node and client certificates (`settle certs init`,
//! and a node's first start without credentials).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::identity::{Identity, Role};
use crate::{files, tokens};

/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a generated node or client certificate is valid.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Backdating, for clocks a little behind this one.
const CLOCK_SKEW: Duration = Duration::from_secs(24 * 3600);

/// Why credentials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already holds credentials ({1}): not overwritten")]
    Exists(PathBuf, &'static str),
}

/// A CA able to issue certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn validity(params: &mut CertificateParams, length: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + length;
}

impl Ca {
    pub fn new(name: &str) -> Result<Ca, GenerateError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "settle");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_VALIDITY);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for `identity`: `(certificate PEM, key PEM)`. A node's
    /// also serves (its DNS names are [`crate::SERVER_NAME`], `localhost`
    /// and `extra_names`, addresses or names); a client's only authenticates.
    pub fn issue(
        &self,
        identity: &Identity,
        extra_names: &[String],
    ) -> Result<(String, String), GenerateError> {
        let node = identity.role == Role::Node;
        let names: Vec<String> = if node {
            [crate::SERVER_NAME, "localhost", "127.0.0.1", "::1"]
                .iter()
                .map(|s| s.to_string())
                .chain(extra_names.iter().cloned())
                .collect()
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.name.as_str());
        dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
        dn.push(DnType::OrganizationName, "settle");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if node {
            // Nodes dial each other: both ends of a peer link.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        validity(&mut params, LEAF_VALIDITY);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// What to put in a credentials directory.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// Node ids to issue node certificates for.
    pub nodes: Vec<u64>,
    /// Client identities: a certificate and a bearer token each.
    pub clients: Vec<Identity>,
    /// Extra names or addresses for the node certificates.
    pub extra_names: Vec<String>,
}

impl InitPlan {
    /// Nodes `1..=nodes`, and one client of each role but node and
    /// submitter (`admin`, `operator`, `auditor`), plus `submitters`.
    pub fn standard(nodes: u64, submitters: &[String]) -> InitPlan {
        let mut clients = vec![
            Identity::new(Role::Admin, "admin"),
            Identity::new(Role::Operator, "operator"),
            Identity::new(Role::Auditor, "auditor"),
        ];
        clients.extend(
            submitters
                .iter()
                .map(|name| Identity::new(Role::Submitter, name.as_str())),
        );
        InitPlan {
            nodes: (1..=nodes).collect(),
            clients,
            extra_names: Vec::new(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> Result<(), GenerateError> {
    let path = dir.join(name);
    let io = |source| GenerateError::Write {
        path: path.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes `dir` (which must not hold a CA yet): the CA, a certificate and
/// key per node and client, a token per client (`<name>.token`, in clear,
/// for the client) and `tokens.toml` (their hashes, for the nodes).
pub fn init_dir(dir: &Path, plan: &InitPlan) -> Result<(), GenerateError> {
    std::fs::create_dir_all(dir).map_err(|source| GenerateError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    if dir.join(files::CA_CERT).exists() {
        return Err(GenerateError::Exists(dir.to_path_buf(), files::CA_CERT));
    }
    let ca = Ca::new("settle cluster CA")?;
    for &id in &plan.nodes {
        let (cert, key) = ca.issue(&Identity::node(id), &plan.extra_names)?;
        write(dir, &files::node_cert(id), &cert, false)?;
        write(dir, &files::node_key(id), &key, true)?;
    }
    let mut table = tokens::TokenTable::default();
    for client in &plan.clients {
        let (cert, key) = ca.issue(client, &[])?;
        write(dir, &files::client_cert(&client.name), &cert, false)?;
        write(dir, &files::client_key(&client.name), &key, true)?;
        let token = tokens::new_token();
        table.add(client.clone(), &token);
        write(dir, &files::client_token(&client.name), &token, true)?;
    }
    write(dir, files::TOKENS, &table.to_toml(), false)?;
    write(dir, files::CA_KEY, &ca.key_pem(), true)?;
    // The CA certificate last: its presence means the directory is complete.
    write(dir, files::CA_CERT, &ca.cert_pem(), false)
}
