//! The control group leader's loop: one control command per request (the
//! control plane is rare traffic; no batching needed).

use tokio::sync::mpsc;

use super::ControlCommand;
use crate::intake::router::{ControlMsg, ShardError};
use crate::raft::{ControlRaft, ShardRequest};
use crate::shard::CONTROL_GROUP;

/// Runs until every sender is dropped.
pub async fn run(raft: ControlRaft, mut inbox: mpsc::Receiver<ControlMsg>) {
    while let Some(msg) = inbox.recv().await {
        match msg {
            ControlMsg::UpsertParticipants {
                participants,
                reply,
            } => {
                let command = ControlCommand::UpsertParticipants(participants).encode();
                let outcome = match raft.client_write(ShardRequest(command)).await {
                    Ok(_) => Ok(()),
                    Err(e) => match e.forward_to_leader() {
                        Some(forward) => Err(ShardError::NotLeader {
                            group: CONTROL_GROUP,
                            leader: forward.leader_id,
                        }),
                        None => Err(ShardError::Internal {
                            group: CONTROL_GROUP,
                            message: e.to_string(),
                        }),
                    },
                };
                let _ = reply.send(outcome);
            }
        }
    }
}
