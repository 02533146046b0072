//! The identity a certificate carries: a role and a name.

use std::fmt;

/// What a caller may do (see the node's access rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A cluster member: the peer port.
    Node,
    /// A bank: submits payments with itself as debtor, reads its own.
    Submitter,
    /// Deposits, participants, limits, FX, cycles.
    Operator,
    /// Read-only: audit trails, cycles, balances.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Node,
        Role::Submitter,
        Role::Operator,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A caller: its role and its name (a node's is `node-<id>`, a bank's its
/// participant name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

/// Why a certificate names no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("certificate subject has no common name")]
    NoName,
    #[error("certificate subject has no organizational unit (the role)")]
    NoRole,
    #[error("certificate role {0:?} is not one of node, submitter, operator, auditor, admin")]
    UnknownRole(String),
    #[error("node certificate name {0:?} is not node-<id>")]
    BadNodeName(String),
}

impl Identity {
    pub fn new(role: Role, name: impl Into<String>) -> Identity {
        Identity {
            role,
            name: name.into(),
        }
    }

    pub fn node(id: u64) -> Identity {
        Identity::new(Role::Node, format!("node-{id}"))
    }

    /// The member id of a node identity.
    pub fn node_id(&self) -> Option<u64> {
        if self.role != Role::Node {
            return None;
        }
        self.name.strip_prefix("node-")?.parse().ok()
    }

    /// The identity in a DER certificate's subject (the chain is the TLS
    /// layer's business: call this only on a verified certificate).
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Parse(e.to_string()))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or(IdentityError::NoName)?
            .to_string();
        let role = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or(IdentityError::NoRole)?;
        let role = Role::parse(role).ok_or_else(|| IdentityError::UnknownRole(role.into()))?;
        let identity = Identity { role, name };
        if role == Role::Node && identity.node_id().is_none() {
            return Err(IdentityError::BadNodeName(identity.name));
        }
        Ok(identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}
