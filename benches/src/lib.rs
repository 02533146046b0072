//! Criterion benchmarks across the crates live in benches/.
