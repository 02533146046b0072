//! The control group leader's loop: one control command per request (the
//! control plane is rare traffic; no batching needed). Cycle requests go on
//! to the coordinator; cycle queries are read from the local state.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::mpsc;

use super::{archive, ControlCommand, ControlState};
use crate::cycle::CoordinatorMsg;
use crate::intake::router::{ControlMsg, ShardError};
use crate::raft::{ControlRaft, ShardRequest};
use crate::shard::CONTROL_GROUP;

/// Runs until every sender is dropped.
pub async fn run(
    raft: ControlRaft,
    state: Rc<RefCell<ControlState>>,
    mut inbox: mpsc::Receiver<ControlMsg>,
    coordinator: mpsc::Sender<CoordinatorMsg>,
) {
    while let Some(msg) = inbox.recv().await {
        match msg {
            ControlMsg::UpsertParticipants {
                participants,
                reply,
            } => {
                let command = ControlCommand::UpsertParticipants(participants.clone()).encode();
                let outcome = write(&raft, command).await;
                if outcome.is_ok() {
                    // New participants may bring opening balances.
                    let _ = coordinator
                        .send(CoordinatorMsg::Open { participants })
                        .await;
                }
                let _ = reply.send(outcome);
            }
            ControlMsg::RunCycle { window, reply } => {
                if coordinator
                    .send(CoordinatorMsg::Run { window, reply })
                    .await
                    .is_err()
                {
                    tracing::warn!("cycle request dropped: the coordinator stopped");
                }
            }
            ControlMsg::Fx { reply } => {
                let _ = reply.send(state.borrow().fx().clone());
            }
            ControlMsg::SetFx { fx, reply } => {
                let outcome = match fx.validate() {
                    Ok(()) => write(&raft, ControlCommand::SetFx(fx).encode()).await,
                    Err(message) => Err(ShardError::Internal {
                        group: CONTROL_GROUP,
                        message,
                    }),
                };
                let _ = reply.send(outcome);
            }
            ControlMsg::CycleRecord { cycle_id, reply } => {
                let (kept, store) = {
                    let state = state.borrow();
                    (state.record(cycle_id).cloned(), state.archive_store())
                };
                if kept.is_some() || cycle_id == 0 {
                    let _ = reply.send(kept);
                } else {
                    // An older cycle: its record is in the store, read off the core.
                    glommio::spawn_local(async move {
                        let found = crate::store_io::run(move || {
                            archive::read_record(&*store, cycle_id)
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                        .unwrap_or_else(|e| {
                            tracing::error!(cycle_id, error = %e, "cycle archive read failed");
                            None
                        });
                        let _ = reply.send(found);
                    })
                    .detach();
                }
            }
            ControlMsg::CycleList {
                after_cycle,
                max,
                reply,
            } => {
                let (kept, first_kept, next, store) = {
                    let state = state.borrow();
                    (
                        state.summaries_after(after_cycle, max),
                        state.first_kept_summary(),
                        state.next_cycle_id(),
                        state.archive_store(),
                    )
                };
                if first_kept.is_none_or(|first| after_cycle + 1 >= first) {
                    let _ = reply.send((kept, next));
                } else {
                    // Starts before the summaries in memory: the archive has the rest.
                    glommio::spawn_local(async move {
                        let mut list = crate::store_io::run(move || {
                            archive::read_summaries(&*store, after_cycle, max)
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r)
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "cycle archive read failed");
                            Vec::new()
                        });
                        let last = list.last().map_or(after_cycle, |s| s.cycle_id);
                        list.extend(kept.into_iter().filter(|s| s.cycle_id > last));
                        list.truncate(max);
                        let _ = reply.send((list, next));
                    })
                    .detach();
                }
            }
        }
    }
}

/// Appends one control command and waits for it to apply.
pub async fn write(raft: &ControlRaft, command: Vec<u8>) -> Result<(), ShardError> {
    match raft.client_write(ShardRequest(command)).await {
        Ok(response) => {
            response
                .data
                .into_results()
                .map(drop)
                .map_err(|message| ShardError::Internal {
                    group: CONTROL_GROUP,
                    message,
                })
        }
        Err(e) => Err(match e.forward_to_leader() {
            Some(forward) => ShardError::NotLeader {
                group: CONTROL_GROUP,
                leader: forward.leader_id,
            },
            None => ShardError::Internal {
                group: CONTROL_GROUP,
                message: e.to_string(),
            },
        }),
    }
}
