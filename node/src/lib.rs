//! settle-node: one node of the settlement engine, the `settle` binary.
//!
//! The pipeline, in modules: `intake` (TCP frames, HTTP JSON, validation,
//! routing to shards) → `shard` (state, commands, the group-commit proposer)
//! → `raft` (openraft on glommio: type config, log store over
//! `settle-storage`, state machine, network) → `control` (participants,
//! cycle parameters, the record of every cycle) → `cycle` (the coordinator:
//! close → decide → apply, audit). `server` wires cores and groups together.
//!
//! Must not contain solver or storage internals: the log is the storage
//! crate's, wire types are the codec's.

pub mod access;
pub mod cluster;
pub mod config;
pub mod console;
pub mod control;
pub mod core_metrics;
pub mod credentials;
pub mod cycle;
pub mod demo;
pub mod error_text;
pub mod execution;
pub mod forecast;
pub mod http;
pub mod http_access;
pub mod http_tls;
pub mod intake;
pub mod metrics;
pub mod ownership;
pub mod participants;
pub mod raft;
pub mod request_log;
pub mod server;
pub mod shard;
pub mod store_io;
