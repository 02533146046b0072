//! The `settle-loadgen` binary: drives a node and reports throughput and latency.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    eprintln!("settle-loadgen: built by issue 4");
    std::process::exit(2);
}
