//! Metrics: what the node counts and how `GET /metrics` shows it.
//!
//! At the bottom of the crate: every module may record here, this module
//! imports none of them (gauges of Raft groups and shards are sampled by
//! the server, which knows them, and handed in as plain data).
//!
//! - [`cells`]: each thread's plain counters (no lock, no atomic).
//! - [`histogram`]: the latency buckets.
//! - [`hub`]: one slot per thread, published every 250 ms, summed on scrape.
//! - [`exposition`]: the OpenMetrics text, by `prometheus-client`.

pub mod cells;
pub mod exposition;
pub mod histogram;
pub mod hub;

pub use cells::{CycleFigures, Outcome};
pub use exposition::{Exposition, CONTENT_TYPE};
pub use hub::{BalanceGauge, Gauges, GroupGauges, Hub, PendingGauge, Publisher, PUBLISH_INTERVAL};
