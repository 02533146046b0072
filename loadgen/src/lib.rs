//! settle-loadgen: drives a settle node over its binary protocol and reports
//! throughput and HDR latency percentiles.
//!
//! Owns the workload model (who pays whom, how much), the open and closed
//! loops, the report, and the participants file that matches the workload.
//! It must not link the node: it sees the engine only through the wire.

pub mod participants;
pub mod report;
pub mod run;
pub mod workload;
