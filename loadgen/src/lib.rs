//! settle-loadgen: drives a settle node over its binary protocol and reports
//! throughput and HDR latency percentiles.
//!
//! Owns the workload model (who pays whom, how much), the open and closed
//! loops, the report, the participants file that matches the workload, and
//! the settle mode (load, then the cycles that settle it, end to end), the
//! second-by-second timeline and the HTML report with its plots.
//! It must not link the node: it sees the engine only through the wire.

pub mod account;
pub mod html_report;
pub mod net;
pub mod participants;
pub mod report;
pub mod run;
pub mod settle;
pub mod timeline;
pub mod trail;
pub mod workload;
