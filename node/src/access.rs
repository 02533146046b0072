//! Who may do what on the client ports: the role × request rules, deny by
//! default. A pure function of (caller, operation), so the whole matrix is
//! tested here without a node; the binary port and HTTP map their requests
//! to [`Op`]s and log every refusal.
//!
//! - `submitter` (a bank, its certificate's or token's name is its
//!   participant name): submit payments with itself as debtor, look up
//!   (status, events, audit trail) the transactions it is party to, as
//!   debtor or creditor, read its own balances. A lookup of any other
//!   transaction is answered exactly like an unknown id (HTTP 404, binary
//!   status NotFound), so a bank cannot learn that another bank's payment
//!   exists; it is logged ([`Caller::visibility`]).
//! - `operator`: deposits, participants, limits, FX, cycles, and every read.
//! - `auditor`: read-only: transactions, audit trails, cycles, balances,
//!   participants, FX, status, metrics (`GET /metrics`: Prometheus scrapes
//!   with an auditor's token or certificate).
//! - `admin`: everything, including submitting for any bank (the load
//!   generator).
//! - a node certificate, or no identity at all: nothing on a client port.
//!
//! Known gap: ids are one space for all banks (idempotency is per id), so a
//! submitter that submits an id another bank already used is answered
//! Conflict: it learns the id is taken, never by whom or for what (the
//! conflict's "original" is looked up with the submitter's visibility).

use std::fmt;

use settle_codec::ParticipantId;
use settle_security::{Identity, Role};

use crate::shard::visibility::Visibility;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Submit payments whose debtor is this participant.
    SubmitAs(ParticipantId),
    /// Look up transactions (status, events, audit trail) by id.
    ReadTransactions,
    /// Balances of one participant, or of all (`None`).
    ReadBalances(Option<ParticipantId>),
    Deposit,
    ReadParticipants,
    WriteParticipants,
    ReadFx,
    WriteFx,
    RunCycle,
    /// Cycle summaries and records (audits).
    ReadCycles,
    /// Groups, leaders, logs (`settle status`).
    Status,
    /// `GET /metrics`: counters, Raft state, pending work and every
    /// participant's balances (so not a submitter's).
    ReadMetrics,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A node started `--insecure`: nobody is authenticated, all is allowed.
    Insecure,
    /// TLS without a client certificate or token.
    Anonymous,
    Known(Identity),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub caller: String,
    pub op: Op,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} may not {:?}", self.caller, self.op)
    }
}

impl Caller {
    fn describe(&self) -> String {
        match self {
            Caller::Insecure => "anyone".into(),
            Caller::Anonymous => "a caller with no client certificate or token".into(),
            Caller::Known(identity) => identity.to_string(),
        }
    }

    /// The participant a submitter acts for.
    pub fn participant(&self) -> Option<ParticipantId> {
        match self {
            Caller::Known(identity) if identity.role == Role::Submitter => {
                ParticipantId::from_name(&identity.name)
            }
            _ => None,
        }
    }

    /// Whose transactions this caller's lookups show: a submitter's own
    /// (as debtor or creditor), everything for the other roles (a caller
    /// that may not look up at all is refused before it matters).
    pub fn visibility(&self) -> Visibility {
        match self {
            Caller::Known(identity) if identity.role == Role::Submitter => {
                // A submitter named as no participant is refused every
                // lookup by `check`; were it let through, it sees nothing.
                self.participant()
                    .map_or(Visibility::Nothing, Visibility::PartyTo)
            }
            _ => Visibility::All,
        }
    }

    /// Whether this caller may `op`.
    pub fn check(&self, op: Op) -> Result<(), Denied> {
        if self.allows(op) {
            Ok(())
        } else {
            Err(Denied {
                caller: self.describe(),
                op,
            })
        }
    }

    fn allows(&self, op: Op) -> bool {
        let role = match self {
            Caller::Insecure => return true,
            Caller::Anonymous => return false,
            Caller::Known(identity) => identity.role,
        };
        match role {
            Role::Admin => true,
            Role::Node => false,
            Role::Operator => !matches!(op, Op::SubmitAs(_)),
            Role::Auditor => matches!(
                op,
                Op::ReadTransactions
                    | Op::ReadBalances(_)
                    | Op::ReadParticipants
                    | Op::ReadFx
                    | Op::ReadCycles
                    | Op::Status
                    | Op::ReadMetrics
            ),
            Role::Submitter => {
                let Some(me) = self.participant() else {
                    return false;
                };
                match op {
                    Op::SubmitAs(debtor) => debtor == me,
                    Op::ReadBalances(Some(who)) => who == me,
                    Op::ReadTransactions => true,
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(role: Role, name: &str) -> Caller {
        Caller::Known(Identity::new(role, name))
    }

    /// Every role against every operation: the whole matrix, spelled out.
    #[test]
    fn the_role_by_request_matrix_denies_by_default() {
        let me = ParticipantId::from_name("bank_01").unwrap();
        let other = ParticipantId::from_name("bank_02").unwrap();
        let ops = [
            Op::SubmitAs(me),
            Op::SubmitAs(other),
            Op::ReadTransactions,
            Op::ReadBalances(Some(me)),
            Op::ReadBalances(Some(other)),
            Op::ReadBalances(None),
            Op::Deposit,
            Op::ReadParticipants,
            Op::WriteParticipants,
            Op::ReadFx,
            Op::WriteFx,
            Op::RunCycle,
            Op::ReadCycles,
            Op::Status,
            Op::ReadMetrics,
        ];
        // One row per caller: 1 = allowed, in the order of `ops`.
        let matrix: [(Caller, [u8; 15]); 8] = [
            (Caller::Insecure, [1; 15]),
            (Caller::Anonymous, [0; 15]),
            (known(Role::Admin, "admin"), [1; 15]),
            (
                known(Role::Operator, "operator"),
                [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            ),
            (
                known(Role::Auditor, "auditor"),
                [0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1],
            ),
            (
                known(Role::Submitter, "bank_01"),
                [1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            // A submitter whose name is no participant's may do nothing.
            (known(Role::Submitter, "mallory"), [0; 15]),
            // A node certificate is for the peer port only.
            (known(Role::Node, "node-1"), [0; 15]),
        ];
        for (caller, row) in &matrix {
            for (op, allowed) in ops.iter().zip(row) {
                assert_eq!(
                    caller.check(*op).is_ok(),
                    *allowed == 1,
                    "{caller:?} {op:?}"
                );
            }
        }
        // What their lookups show: a bank its own, every other role all.
        let visibility: Vec<_> = matrix.iter().map(|(c, _)| c.visibility()).collect();
        let all = Visibility::All;
        assert_eq!(
            visibility,
            vec![
                all,
                all,
                all,
                all,
                all,
                Visibility::PartyTo(me),
                Visibility::Nothing,
                all
            ]
        );
    }
}
