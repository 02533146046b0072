//! Bearer tokens: 256 random bits, shown once in clear to the client,
//! stored by the nodes only as SHA-256 hashes (`tokens.toml`).

use std::collections::HashMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::identity::{Identity, Role};

/// A fresh token: 32 random bytes (from the OS, through ring) in hex, with a
/// prefix that makes a leaked one easy to recognise.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    crate::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the OS random source works");
    format!("stl_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

/// One stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Refused from this Unix time (seconds) on; `None`: no expiry.
    pub expires_unix: Option<u64>,
}

/// The tokens a node accepts, by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_hash: HashMap<String, (Identity, Option<u64>)>,
    entries: Vec<TokenEntry>,
}

/// Why a tokens file is not a table.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("tokens file: {0}")]
    Parse(String),
    #[error("tokens file: role {0:?} of {1:?} is not one of submitter, operator, auditor, admin")]
    Role(String, String),
}

impl TokenTable {
    pub fn add(&mut self, identity: Identity, token: &str) {
        let sha256 = hash(token);
        self.entries.push(TokenEntry {
            name: identity.name.clone(),
            role: identity.role.as_str().into(),
            sha256: sha256.clone(),
            expires_unix: None,
        });
        self.by_hash.insert(sha256, (identity, None));
    }

    /// The identity a presented token stands for, unless it is unknown or
    /// expired at `now_unix`.
    pub fn lookup(&self, token: &str, now_unix: u64) -> Option<&Identity> {
        let (identity, expires) = self.by_hash.get(&hash(token))?;
        match expires {
            Some(at) if now_unix >= *at => None,
            _ => Some(identity),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// `[[token]]` entries of name, role and hash.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Bearer tokens this cluster accepts, as SHA-256 hashes (the tokens themselves\n\
             # are only in the clients' <name>.token files). Re-read without a restart.\n",
        );
        for e in &self.entries {
            let _ = write!(
                out,
                "\n[[token]]\nname = {:?}\nrole = {:?}\nsha256 = {:?}\n",
                e.name, e.role, e.sha256
            );
            if let Some(at) = e.expires_unix {
                let _ = writeln!(out, "expires_unix = \"{at}\"");
            }
        }
        out
    }

    pub fn parse(text: &str) -> Result<TokenTable, TokensError> {
        // A tiny subset of TOML, parsed by hand so this crate needs no TOML
        // parser: `[[token]]` tables of `key = "value"` lines.
        let mut entries: Vec<TokenEntry> = Vec::new();
        let mut current: Option<[Option<String>; 4]> = None;
        let flush = |current: &mut Option<[Option<String>; 4]>,
                     entries: &mut Vec<TokenEntry>|
         -> Result<(), TokensError> {
            if let Some([name, role, sha256, expires]) = current.take() {
                let expires_unix = match expires {
                    None => None,
                    Some(text) => Some(text.parse().map_err(|_| {
                        TokensError::Parse(format!("expires_unix {text:?} is not a number"))
                    })?),
                };
                match (name, role, sha256) {
                    (Some(name), Some(role), Some(sha256)) => entries.push(TokenEntry {
                        name,
                        role,
                        sha256,
                        expires_unix,
                    }),
                    _ => {
                        return Err(TokensError::Parse(
                            "a [[token]] needs name, role and sha256".into(),
                        ))
                    }
                }
            }
            Ok(())
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "[[token]]" {
                flush(&mut current, &mut entries)?;
                current = Some([None, None, None, None]);
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| TokensError::Parse(format!("{line:?} is not key = \"value\"")))?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| TokensError::Parse(format!("{line:?}: value not quoted")))?
                .to_string();
            let slot = current
                .as_mut()
                .ok_or_else(|| TokensError::Parse(format!("{line:?} outside [[token]]")))?;
            match key.trim() {
                "name" => slot[0] = Some(value),
                "role" => slot[1] = Some(value),
                "sha256" => slot[2] = Some(value),
                "expires_unix" => slot[3] = Some(value),
                other => return Err(TokensError::Parse(format!("unknown key {other:?}"))),
            }
        }
        flush(&mut current, &mut entries)?;
        let mut table = TokenTable::default();
        for e in entries {
            let role = Role::parse(&e.role)
                .filter(|r| *r != Role::Node)
                .ok_or_else(|| TokensError::Role(e.role.clone(), e.name.clone()))?;
            table.by_hash.insert(
                e.sha256.clone(),
                (Identity::new(role, e.name.clone()), e.expires_unix),
            );
            table.entries.push(e);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_found_by_the_clear_token() {
        let mut table = TokenTable::default();
        let token = new_token();
        table.add(Identity::new(Role::Operator, "ops"), &token);
        let text = table.to_toml();
        assert!(!text.contains(&token), "the clear token is not stored");
        let parsed = TokenTable::parse(&text).unwrap();
        assert_eq!(
            parsed.lookup(&token, 0),
            Some(&Identity::new(Role::Operator, "ops"))
        );
        assert_eq!(parsed.lookup("stl_forged", 0), None);
        let expiring = format!("{text}expires_unix = \"100\"\n");
        let parsed = TokenTable::parse(&expiring).unwrap();
        assert!(parsed.lookup(&token, 99).is_some());
        assert_eq!(parsed.lookup(&token, 100), None, "expired");
        assert_ne!(new_token(), new_token());
    }
}
