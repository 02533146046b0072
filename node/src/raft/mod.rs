//! Raft glue: one openraft group per shard, driven by the glommio executor of its core.

pub mod runtime;
pub mod type_config;

pub use runtime::GlommioRuntime;
pub use type_config::{
    NodeAddr, NodeId, Request, Response, ShardRequest, ShardResponse, TypeConfig,
};

#[cfg(test)]
mod testkit;
