//! Shard and control commands other than submits, carried to the node that
//! leads their group: deposits, balance openings, cycle close/apply,
//! execution outcomes (shards), running a cycle and FX settings (control).
//!
//! Shard commands travel as rkyv (a cycle's close answer carries its
//! candidates and balances), control commands as JSON (rare, small). Both
//! ride an `OP_SHARD_COMMAND` / `OP_CONTROL_COMMAND` peer request, answered
//! by the leader's proposer exactly as a local caller would be answered.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};
use settle_codec::messages::CycleSummary;
use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};
use tokio::sync::oneshot;

use crate::intake::router::{ClosedCycle, ControlMsg, ShardError, ShardMsg};
use crate::shard::{BatchOutcome, CycleApply, GroupId};

/// A shard write, without its reply channel.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ShardCommand {
    Open {
        openings: Vec<(ParticipantId, u64)>,
    },
    Deposit {
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    },
    CycleClose {
        cycle_id: u64,
        window: Window,
        candidates_max: u32,
    },
    CycleApply {
        apply: CycleApply,
    },
    Execution {
        outcomes: Vec<BatchOutcome>,
    },
}

/// Why a remote command failed, as [`ShardError`] without the group (the
/// caller knows it).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum RemoteError {
    NotLeader,
    ShuttingDown,
    Full { records: u64 },
    Internal { message: String },
}

impl RemoteError {
    pub fn from_shard(e: &ShardError) -> RemoteError {
        match e {
            ShardError::NotLeader { .. } => RemoteError::NotLeader,
            ShardError::ShuttingDown(_) => RemoteError::ShuttingDown,
            ShardError::Full { records, .. } => RemoteError::Full {
                records: *records as u64,
            },
            ShardError::Internal { message, .. } => RemoteError::Internal {
                message: message.clone(),
            },
        }
    }

    pub fn into_shard(self, group: GroupId) -> ShardError {
        match self {
            RemoteError::NotLeader => ShardError::NotLeader {
                group,
                leader: None,
            },
            RemoteError::ShuttingDown => ShardError::ShuttingDown(group),
            RemoteError::Full { records } => ShardError::Full {
                group,
                records: records as usize,
            },
            RemoteError::Internal { message } => ShardError::Internal { group, message },
        }
    }
}

/// The answer to a [`ShardCommand`].
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ShardAnswer {
    Results(Vec<TxResult>),
    Deposit {
        result: TxResult,
        balance: u64,
    },
    Closed {
        result: TxResult,
        candidates: Vec<Transaction>,
        since_us: Vec<u64>,
        balances: Vec<(ParticipantId, u64)>,
    },
    Applied(TxResult),
    Done,
    Failed(RemoteError),
}

/// Why received command bytes do not decode.
#[derive(Debug, thiserror::Error)]
#[error("remote command: {0}")]
pub struct RemoteDecodeError(String);

pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value)
        .expect("serializing plain data into memory cannot fail")
        .to_vec()
}

/// Validates and deserializes `bytes` (copied first: rkyv needs them aligned).
pub fn decode_command(bytes: &[u8]) -> Result<ShardCommand, RemoteDecodeError> {
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<ShardCommand, rancor::Error>(&aligned)
        .map_err(|e| RemoteDecodeError(e.to_string()))
}

/// As [`decode_command`], for answers.
pub fn decode_answer(bytes: &[u8]) -> Result<ShardAnswer, RemoteDecodeError> {
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<ShardAnswer, rancor::Error>(&aligned)
        .map_err(|e| RemoteDecodeError(e.to_string()))
}

/// Where a message's reply goes once the command is answered.
pub enum Reply {
    Results(oneshot::Sender<Result<Vec<TxResult>, ShardError>>),
    Deposit(oneshot::Sender<Result<(TxResult, u64), ShardError>>),
    Closed(oneshot::Sender<Result<ClosedCycle, ShardError>>),
    Applied(oneshot::Sender<Result<TxResult, ShardError>>),
    Done(oneshot::Sender<Result<(), ShardError>>),
}

/// Splits a shard message into a forwardable command and its reply, or
/// gives it back if it is not a forwarded kind (reads stay local).
#[allow(clippy::result_large_err)] // the message is moved straight back out, never stored
pub fn split(msg: ShardMsg) -> Result<(ShardCommand, Reply), ShardMsg> {
    Ok(match msg {
        ShardMsg::Open { openings, reply } => {
            (ShardCommand::Open { openings }, Reply::Results(reply))
        }
        ShardMsg::Deposit {
            deposit_id,
            participant,
            currency,
            amount,
            reply,
        } => (
            ShardCommand::Deposit {
                deposit_id,
                participant,
                currency,
                amount,
            },
            Reply::Deposit(reply),
        ),
        ShardMsg::CycleClose {
            cycle_id,
            window,
            candidates_max,
            reply,
        } => (
            ShardCommand::CycleClose {
                cycle_id,
                window,
                candidates_max,
            },
            Reply::Closed(reply),
        ),
        ShardMsg::CycleApply { apply, reply } => {
            (ShardCommand::CycleApply { apply }, Reply::Applied(reply))
        }
        ShardMsg::Execution { outcomes, reply } => {
            (ShardCommand::Execution { outcomes }, Reply::Done(reply))
        }
        other => return Err(other),
    })
}

/// Runs a command against the local proposer: the message to send, and a
/// receiver that yields its answer.
pub fn to_local(command: ShardCommand) -> (ShardMsg, oneshot::Receiver<ShardAnswer>) {
    let (answer_tx, answer_rx) = oneshot::channel();
    let msg = match command {
        ShardCommand::Open { openings } => {
            let (reply, rx) = oneshot::channel();
            relay(rx, answer_tx, ShardAnswer::Results);
            ShardMsg::Open { openings, reply }
        }
        ShardCommand::Deposit {
            deposit_id,
            participant,
            currency,
            amount,
        } => {
            let (reply, rx) = oneshot::channel();
            relay(rx, answer_tx, |(result, balance)| ShardAnswer::Deposit {
                result,
                balance,
            });
            ShardMsg::Deposit {
                deposit_id,
                participant,
                currency,
                amount,
                reply,
            }
        }
        ShardCommand::CycleClose {
            cycle_id,
            window,
            candidates_max,
        } => {
            let (reply, rx) = oneshot::channel();
            relay(rx, answer_tx, |c: ClosedCycle| ShardAnswer::Closed {
                result: c.result,
                candidates: c.candidates,
                since_us: c.since_us,
                balances: c.balances,
            });
            ShardMsg::CycleClose {
                cycle_id,
                window,
                candidates_max,
                reply,
            }
        }
        ShardCommand::CycleApply { apply } => {
            let (reply, rx) = oneshot::channel();
            relay(rx, answer_tx, ShardAnswer::Applied);
            ShardMsg::CycleApply { apply, reply }
        }
        ShardCommand::Execution { outcomes } => {
            let (reply, rx) = oneshot::channel();
            relay(rx, answer_tx, |()| ShardAnswer::Done);
            ShardMsg::Execution { outcomes, reply }
        }
    };
    (msg, answer_rx)
}

/// Turns the proposer's typed answer into a [`ShardAnswer`] when it comes.
fn relay<T: 'static>(
    rx: oneshot::Receiver<Result<T, ShardError>>,
    tx: oneshot::Sender<ShardAnswer>,
    ok: impl FnOnce(T) -> ShardAnswer + 'static,
) {
    glommio::spawn_local(async move {
        let answer = match rx.await {
            Ok(Ok(value)) => ok(value),
            Ok(Err(e)) => ShardAnswer::Failed(RemoteError::from_shard(&e)),
            Err(_) => ShardAnswer::Failed(RemoteError::ShuttingDown),
        };
        let _ = tx.send(answer);
    })
    .detach();
}

impl Reply {
    /// Delivers an answer to the original caller.
    pub fn deliver(self, group: GroupId, answer: Result<ShardAnswer, ShardError>) {
        let mismatch = |what: &str| ShardError::Internal {
            group,
            message: format!("the leader answered a {what} command with another kind"),
        };
        match self {
            Reply::Results(tx) => {
                let _ = tx.send(match answer {
                    Ok(ShardAnswer::Results(r)) => Ok(r),
                    Ok(ShardAnswer::Failed(e)) => Err(e.into_shard(group)),
                    Ok(_) => Err(mismatch("results")),
                    Err(e) => Err(e),
                });
            }
            Reply::Deposit(tx) => {
                let _ = tx.send(match answer {
                    Ok(ShardAnswer::Deposit { result, balance }) => Ok((result, balance)),
                    Ok(ShardAnswer::Failed(e)) => Err(e.into_shard(group)),
                    Ok(_) => Err(mismatch("deposit")),
                    Err(e) => Err(e),
                });
            }
            Reply::Closed(tx) => {
                let _ = tx.send(match answer {
                    Ok(ShardAnswer::Closed {
                        result,
                        candidates,
                        since_us,
                        balances,
                    }) if since_us.len() == candidates.len() => Ok(ClosedCycle {
                        result,
                        candidates,
                        since_us,
                        balances,
                    }),
                    Ok(ShardAnswer::Failed(e)) => Err(e.into_shard(group)),
                    Ok(_) => Err(mismatch("cycle close")),
                    Err(e) => Err(e),
                });
            }
            Reply::Applied(tx) => {
                let _ = tx.send(match answer {
                    Ok(ShardAnswer::Applied(r)) => Ok(r),
                    Ok(ShardAnswer::Failed(e)) => Err(e.into_shard(group)),
                    Ok(_) => Err(mismatch("cycle apply")),
                    Err(e) => Err(e),
                });
            }
            Reply::Done(tx) => {
                let _ = tx.send(match answer {
                    Ok(ShardAnswer::Done) => Ok(()),
                    Ok(ShardAnswer::Failed(e)) => Err(e.into_shard(group)),
                    Ok(_) => Err(mismatch("execution")),
                    Err(e) => Err(e),
                });
            }
        }
    }
}

/// A control write, without its reply channel (JSON on the wire).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlCommand {
    RunCycle { window: Window },
    SetFx { fx: crate::cycle::fx::FxConfig },
}

/// The answer to a [`ControlCommand`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlAnswer {
    Cycle(CycleSummary),
    Done,
    NotLeader,
    Failed(String),
}

/// Where a control message's reply goes.
pub enum ControlReply {
    Cycle(oneshot::Sender<Result<CycleSummary, ShardError>>),
    Done(oneshot::Sender<Result<(), ShardError>>),
}

/// Splits a control message into a forwardable command and its reply, or
/// gives it back (reads and participants stay on their existing paths).
#[allow(clippy::result_large_err)] // the message is moved straight back out, never stored
pub fn split_control(msg: ControlMsg) -> Result<(ControlCommand, ControlReply), ControlMsg> {
    Ok(match msg {
        ControlMsg::RunCycle { window, reply } => (
            ControlCommand::RunCycle { window },
            ControlReply::Cycle(reply),
        ),
        ControlMsg::SetFx { fx, reply } => {
            (ControlCommand::SetFx { fx }, ControlReply::Done(reply))
        }
        other => return Err(other),
    })
}

/// The local control message for a command, and where its answer comes.
pub fn control_to_local(command: ControlCommand) -> (ControlMsg, oneshot::Receiver<ControlAnswer>) {
    let (answer_tx, answer_rx) = oneshot::channel();
    let msg = match command {
        ControlCommand::RunCycle { window } => {
            let (reply, rx) = oneshot::channel();
            relay_control(rx, answer_tx, ControlAnswer::Cycle);
            ControlMsg::RunCycle { window, reply }
        }
        ControlCommand::SetFx { fx } => {
            let (reply, rx) = oneshot::channel();
            relay_control(rx, answer_tx, |()| ControlAnswer::Done);
            ControlMsg::SetFx { fx, reply }
        }
    };
    (msg, answer_rx)
}

fn relay_control<T: 'static>(
    rx: oneshot::Receiver<Result<T, ShardError>>,
    tx: oneshot::Sender<ControlAnswer>,
    ok: impl FnOnce(T) -> ControlAnswer + 'static,
) {
    glommio::spawn_local(async move {
        let answer = match rx.await {
            Ok(Ok(value)) => ok(value),
            Ok(Err(ShardError::NotLeader { .. })) => ControlAnswer::NotLeader,
            Ok(Err(e)) => ControlAnswer::Failed(e.to_string()),
            Err(_) => ControlAnswer::Failed("shutting down".into()),
        };
        let _ = tx.send(answer);
    })
    .detach();
}

impl ControlReply {
    pub fn deliver(self, answer: Result<ControlAnswer, ShardError>) {
        let group = crate::shard::CONTROL_GROUP;
        let fail = |a: ControlAnswer| match a {
            ControlAnswer::NotLeader => ShardError::NotLeader {
                group,
                leader: None,
            },
            ControlAnswer::Failed(message) => ShardError::Internal { group, message },
            other => ShardError::Internal {
                group,
                message: format!("unexpected control answer {other:?}"),
            },
        };
        match self {
            ControlReply::Cycle(tx) => {
                let _ = tx.send(match answer {
                    Ok(ControlAnswer::Cycle(s)) => Ok(s),
                    Ok(other) => Err(fail(other)),
                    Err(e) => Err(e),
                });
            }
            ControlReply::Done(tx) => {
                let _ = tx.send(match answer {
                    Ok(ControlAnswer::Done) => Ok(()),
                    Ok(other) => Err(fail(other)),
                    Err(e) => Err(e),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_answers_round_trip_and_garbage_is_an_error() {
        let command = ShardCommand::Deposit {
            deposit_id: u128::MAX - 3,
            participant: ParticipantId(7),
            currency: Currency::EUR,
            amount: 1_000,
        };
        let back = decode_command(&encode(&command)).unwrap();
        assert!(matches!(
            back,
            ShardCommand::Deposit { deposit_id, participant: ParticipantId(7), currency: Currency::EUR, amount: 1_000 }
                if deposit_id == u128::MAX - 3
        ));
        let answer = ShardAnswer::Failed(RemoteError::Full { records: 9 });
        assert!(matches!(
            decode_answer(&encode(&answer)).unwrap(),
            ShardAnswer::Failed(RemoteError::Full { records: 9 })
        ));
        assert!(decode_command(&[1, 2, 3]).is_err());
        assert!(decode_answer(&[0xff; 40]).is_err());
    }
}
