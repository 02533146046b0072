//! Raft glue: one openraft group per shard (and the control group 0), each
//! driven by the glommio executor of its core.
//!
//! - [`type_config`]: the openraft types (opaque command bytes in, [`ShardReply`] out).
//! - [`log_store`]: the log over `settle_storage::Log`, with group commit.
//! - [`state_machine`]: openraft's state machine over a [`GroupState`], snapshots.
//! - [`network`]: the network factory ([`SoloNetwork`] for single-node groups).
//! - [`group`]: [`open_group`], which wires them into a ready `Raft`.

pub mod digest;
pub mod group;
pub mod log_store;
pub mod network;
pub mod runtime;
mod shard_state_impl;
pub mod snapshot_data;
pub mod state_machine;
pub mod type_config;
pub mod wire;

pub use group::{open_group, open_group_with, open_replica, GroupConfig, GroupError};
pub use log_store::{LogReader, LogStore, LogStoreError};
pub use network::SoloNetwork;
pub use runtime::GlommioRuntime;
pub use state_machine::{
    GroupSnapshotBuilder, GroupState, GroupStateMachine, StateMachineError, StateStoreConfig,
    COMMAND_ALIGN,
};
pub use type_config::{
    NodeAddr, NodeId, Raft, Request, Response, ShardReply, ShardRequest, TypeConfig,
};

/// The Raft handle of a shard group.
pub type ShardRaft = Raft<GroupStateMachine<crate::shard::ShardState>>;
/// The Raft handle of the control group (group 0).
pub type ControlRaft = Raft<GroupStateMachine<crate::control::ControlState>>;

#[cfg(test)]
mod testkit;
