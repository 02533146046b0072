//! Who may talk to a settle node, and how.
//!
//! Owns: the TLS 1.3 configurations (rustls, ring provider, TLS 1.2 not
//! compiled in), loading certificates and keys from PEM files, the identity
//! a certificate carries (a role and a name), making a throwaway CA with
//! node and client certificates (`settle certs init`), and access tokens
//! (stored hashed), and a blocking client stream for the tools. It must not
//! know about async runtimes or the wire format: servers wrap their own
//! streams with the configurations it gives.
//!
//! A certificate's identity is in its subject: the organizational unit is
//! the role (`node`, `submitter`, `operator`, `auditor`, `admin`), the
//! common name the name (`node-3`, `bank_01`, `ops`). Every node
//! certificate also names [`SERVER_NAME`], the name our own clients verify,
//! so a node's certificate need not list the addresses it is reached at.

pub mod blocking;
pub mod generate;
pub mod identity;
pub mod tls;
pub mod tokens;

pub use identity::{Identity, IdentityError, Role};
/// The rustls this crate configures, for callers that name its types.
pub use rustls;
pub use tls::{Credentials, TlsError};

/// The DNS name every node certificate carries and our clients verify.
pub const SERVER_NAME: &str = "settle-node";

/// File names inside a credentials directory (`settle certs init DIR`, or a
/// node's `<data-dir>/tls`).
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca.key";
    /// Hashed tokens, read by the nodes.
    pub const TOKENS: &str = "tokens.toml";

    /// `node-<id>.pem`
    pub fn node_cert(id: u64) -> String {
        format!("node-{id}.pem")
    }

    /// `node-<id>.key`
    pub fn node_key(id: u64) -> String {
        format!("node-{id}.key")
    }

    /// `<name>.pem` of a client identity.
    pub fn client_cert(name: &str) -> String {
        format!("{name}.pem")
    }

    /// `<name>.key` of a client identity.
    pub fn client_key(name: &str) -> String {
        format!("{name}.key")
    }

    /// `<name>.token`: a client's bearer token, in clear (only clients read it).
    pub fn client_token(name: &str) -> String {
        format!("{name}.token")
    }
}

#[cfg(test)]
mod tests {
    use super::generate::{init_dir, InitPlan};
    use super::*;

    #[test]
    fn an_initialized_directory_gives_working_credentials_with_their_identities() {
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path(), &InitPlan::standard(2, &["bank_01".into()])).unwrap();
        let p = |name: &str| dir.path().join(name);
        let node = Credentials::load(
            &p(files::CA_CERT),
            &p(&files::node_cert(2)),
            &p(&files::node_key(2)),
        )
        .unwrap();
        assert_eq!(node.identity(), Some(&Identity::node(2)));
        assert_eq!(node.identity().unwrap().node_id(), Some(2));
        node.server_mutual().unwrap();
        node.server_optional().unwrap();
        let bank = Credentials::load(
            &p(files::CA_CERT),
            &p(&files::client_cert("bank_01")),
            &p(&files::client_key("bank_01")),
        )
        .unwrap();
        assert_eq!(
            bank.identity(),
            Some(&Identity::new(Role::Submitter, "bank_01"))
        );
        let table =
            tokens::TokenTable::parse(&std::fs::read_to_string(p(files::TOKENS)).unwrap()).unwrap();
        let token = std::fs::read_to_string(p(&files::client_token("operator"))).unwrap();
        assert_eq!(table.lookup(&token, 0).unwrap().role, Role::Operator);
        // A second init of the same directory is refused, nothing overwritten.
        assert!(init_dir(dir.path(), &InitPlan::standard(1, &[])).is_err());
        // A key that is not the certificate's is refused at load.
        assert!(Credentials::load(
            &p(files::CA_CERT),
            &p(&files::node_cert(1)),
            &p(&files::node_key(2)),
        )
        .is_err());
    }
}
