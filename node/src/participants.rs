//! Participants (banks): who may pay whom, their prefunded balances per
//! currency and their counterparty limits.
//!
//! The registry is the state of the control group (group 0): it changes only
//! through that group's log. Intake validates against an immutable snapshot of
//! it, published to every core after each change.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use settle_codec::{Currency, ParticipantId};

/// A bound on the registry: participant ids are dense u32 but a node serves
/// at most this many banks (the largest real RTGS systems have ~10 k).
pub const PARTICIPANTS_MAX: usize = 65_536;

/// One participant as it appears in files and HTTP (names at the edges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSpec {
    pub id: String,
    pub counterparty_limit_usd: f64,
    #[serde(default)]
    pub balances: BTreeMap<String, i64>,
}

/// A participant, validated, with compact ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub id: ParticipantId,
    pub counterparty_limit_usd: f64,
    /// Prefunded balances in minor units, by ISO numeric currency code.
    pub balances: BTreeMap<u16, u64>,
}

/// Why a participant spec was refused; names the field and the value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParticipantError {
    #[error("participants[{index}].id: {value:?} is not a participant name of the form bank_NN")]
    BadName { index: usize, value: String },
    #[error("participants[{index}].counterparty_limit_usd: {value} must be a finite number >= 0")]
    BadLimit { index: usize, value: f64 },
    #[error("participants[{index}].balances.{currency}: unknown currency")]
    UnknownCurrency { index: usize, currency: String },
    #[error("participants[{index}].balances.{currency}: {value} must be >= 0")]
    NegativeBalance {
        index: usize,
        currency: String,
        value: i64,
    },
    #[error("participants[{index}].id: {value:?} appears twice")]
    Duplicate { index: usize, value: String },
    #[error("participants: more than {PARTICIPANTS_MAX}")]
    TooMany,
    #[error("participants file: {0}")]
    Json(String),
}

impl ParticipantSpec {
    /// Validates one spec; `index` is its position, for error messages.
    pub fn validate(&self, index: usize) -> Result<Participant, ParticipantError> {
        let id = ParticipantId::from_name(&self.id).ok_or_else(|| ParticipantError::BadName {
            index,
            value: self.id.clone(),
        })?;
        if !self.counterparty_limit_usd.is_finite() || self.counterparty_limit_usd < 0.0 {
            return Err(ParticipantError::BadLimit {
                index,
                value: self.counterparty_limit_usd,
            });
        }
        let mut balances = BTreeMap::new();
        for (code, &value) in &self.balances {
            let currency =
                Currency::from_code(code).ok_or_else(|| ParticipantError::UnknownCurrency {
                    index,
                    currency: code.clone(),
                })?;
            if value < 0 {
                return Err(ParticipantError::NegativeBalance {
                    index,
                    currency: code.clone(),
                    value,
                });
            }
            balances.insert(currency.0, value as u64);
        }
        Ok(Participant {
            id,
            counterparty_limit_usd: self.counterparty_limit_usd,
            balances,
        })
    }
}

impl Participant {
    /// Back to the edge form (names instead of numbers).
    pub fn spec(&self) -> ParticipantSpec {
        ParticipantSpec {
            id: self.id.name(),
            counterparty_limit_usd: self.counterparty_limit_usd,
            balances: self
                .balances
                .iter()
                .map(|(&c, &v)| (Currency(c).as_str().to_string(), v as i64))
                .collect(),
        }
    }
}

/// The participants file: `{"participants": [...]}` or a bare array.
#[derive(Deserialize)]
#[serde(untagged)]
enum ParticipantsFile {
    Wrapped { participants: Vec<ParticipantSpec> },
    Bare(Vec<ParticipantSpec>),
}

/// Parses and validates a participants file.
pub fn parse_participants_file(text: &str) -> Result<Vec<Participant>, ParticipantError> {
    let specs = match serde_json::from_str::<ParticipantsFile>(text) {
        Ok(ParticipantsFile::Wrapped { participants })
        | Ok(ParticipantsFile::Bare(participants)) => participants,
        Err(e) => return Err(ParticipantError::Json(e.to_string())),
    };
    if specs.len() > PARTICIPANTS_MAX {
        return Err(ParticipantError::TooMany);
    }
    let mut seen = std::collections::BTreeSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let p = spec.validate(index)?;
            if !seen.insert(p.id) {
                return Err(ParticipantError::Duplicate {
                    index,
                    value: spec.id.clone(),
                });
            }
            Ok(p)
        })
        .collect()
}

/// An immutable snapshot of the registry, shared read-only by the cores.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_id: BTreeMap<ParticipantId, Participant>,
}

impl Registry {
    pub fn new(participants: impl IntoIterator<Item = Participant>) -> Self {
        Registry {
            by_id: participants.into_iter().map(|p| (p.id, p)).collect(),
        }
    }

    pub fn get(&self, id: ParticipantId) -> Option<&Participant> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: ParticipantId) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Participant> {
        self.by_id.values()
    }

    /// A new snapshot with `p` added or replaced.
    pub fn with(&self, p: Participant) -> Arc<Registry> {
        let mut next = self.clone();
        next.by_id.insert(p.id, p);
        Arc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrapped_and_bare_files() {
        let wrapped = r#"{"participants":[{"id":"bank_00","counterparty_limit_usd":1e6,"balances":{"USD":100,"EUR":0}}]}"#;
        let bare = r#"[{"id":"bank_01","counterparty_limit_usd":5.0}]"#;
        let a = parse_participants_file(wrapped).unwrap();
        assert_eq!(a[0].id, ParticipantId(0));
        assert_eq!(a[0].balances.len(), 2);
        assert_eq!(a[0].spec().id, "bank_00");
        let b = parse_participants_file(bare).unwrap();
        assert_eq!(b[0].id, ParticipantId(1));
        assert!(b[0].balances.is_empty());
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let cases = [
            (
                r#"[{"id":"acme","counterparty_limit_usd":1}]"#,
                "participants[0].id",
            ),
            (
                r#"[{"id":"bank_01","counterparty_limit_usd":-1}]"#,
                "counterparty_limit_usd",
            ),
            (
                r#"[{"id":"bank_01","counterparty_limit_usd":1,"balances":{"XXX":1}}]"#,
                "balances.XXX",
            ),
            (
                r#"[{"id":"bank_01","counterparty_limit_usd":1,"balances":{"USD":-5}}]"#,
                "-5",
            ),
            (
                r#"[{"id":"bank_01","counterparty_limit_usd":1},{"id":"bank_01","counterparty_limit_usd":1}]"#,
                "appears twice",
            ),
            ("{not json", "participants file"),
        ];
        for (text, needle) in cases {
            let err = parse_participants_file(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
