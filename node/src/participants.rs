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

/// An update that would change a booked opening balance. A participant's
/// balances in the registry are its opening balances: each shard funds an
/// account with its opening balance once, ever, so changing it afterwards
/// would only make the registry disagree with the balances. Money moves
/// with deposits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "balances.{currency}: the opening balance {booked} of {participant} is booked once and cannot become {asked}; move money with a deposit (POST /v1/deposits, settle deposit)"
)]
pub struct OpeningFixed {
    pub participant: ParticipantId,
    pub currency: Currency,
    pub booked: u64,
    pub asked: u64,
}

impl Participant {
    /// This participant after `update`: the limit comes from the update, and
    /// so does the opening balance of any currency not funded yet (absent or
    /// 0); a funded opening balance stays, and asking to change it is
    /// returned as refused. A currency the update leaves out keeps its
    /// opening balance.
    pub fn updated_by(&self, update: &Participant) -> (Participant, Vec<OpeningFixed>) {
        debug_assert_eq!(self.id, update.id);
        let mut next = Participant {
            id: self.id,
            counterparty_limit_usd: update.counterparty_limit_usd,
            balances: self.balances.clone(),
        };
        let mut refused = Vec::new();
        for (&currency, &asked) in &update.balances {
            match self.balances.get(&currency).copied().unwrap_or(0) {
                0 => {
                    next.balances.insert(currency, asked);
                }
                booked if booked != asked => refused.push(OpeningFixed {
                    participant: self.id,
                    currency: Currency(currency),
                    booked,
                    asked,
                }),
                _ => {}
            }
        }
        (next, refused)
    }

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
    fn an_update_keeps_booked_opening_balances_and_sets_unbooked_ones() {
        let p = |limit: f64, balances: &[(Currency, u64)]| Participant {
            id: ParticipantId(4),
            counterparty_limit_usd: limit,
            balances: balances.iter().map(|&(c, v)| (c.0, v)).collect(),
        };
        let old = p(1.0, &[(Currency::USD, 500), (Currency::EUR, 0)]);

        let (next, refused) = old.updated_by(&p(2.0, &[(Currency::USD, 900)]));
        assert_eq!(next, p(2.0, &[(Currency::USD, 500), (Currency::EUR, 0)]));
        assert_eq!(
            refused,
            vec![OpeningFixed {
                participant: ParticipantId(4),
                currency: Currency::USD,
                booked: 500,
                asked: 900
            }]
        );
        assert!(refused[0].to_string().contains("deposit"), "{}", refused[0]);

        // Unfunded currencies take the update; the same value, or leaving a
        // currency out, is no change.
        let (next, refused) = old.updated_by(&p(
            3.0,
            &[
                (Currency::USD, 500),
                (Currency::EUR, 70),
                (Currency::GBP, 9),
            ],
        ));
        assert!(refused.is_empty());
        assert_eq!(
            next,
            p(
                3.0,
                &[
                    (Currency::USD, 500),
                    (Currency::EUR, 70),
                    (Currency::GBP, 9)
                ]
            )
        );
        let (next, refused) = old.updated_by(&p(1.0, &[]));
        assert!(refused.is_empty());
        assert_eq!(next, old);
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
