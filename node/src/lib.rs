//! settle-node library: the Raft glue of a settlement node.
//!
//! Owns the glommio adapter for openraft's runtime trait and the Raft type
//! configuration of a shard group. Must not know storage or codec internals:
//! the log store is an adapter over `settle-storage`, wire types come from
//! `settle-codec`.

pub mod raft;
