//! Settlement cycles on a 3-node cluster whose shard leaders sit on
//! different nodes: the coordinator (on the control leader) closes and
//! applies cycles on shards led elsewhere (forwarded shard commands), every
//! acknowledged transaction is found on every node, and cycles settle them.

use std::time::Duration;

use settle_tests::cluster::{Cluster, ClusterOptions, Load};

#[test]
fn cycles_settle_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        cycles: true,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(dir.path(), options).unwrap();
    // Shards led by different nodes than the control group.
    cluster
        .wait_balanced(1, 5, Duration::from_secs(40))
        .unwrap();
    let targets: Vec<_> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.listen(id))
        .collect();
    let acked = dir.path().join("acked.txt");
    let load = Load::start_with(
        &targets,
        Duration::from_secs(6),
        3,
        100,
        16,
        acked.clone(),
        &["--settle", "--settle-trigger", "1s"],
    )
    .unwrap();
    let (report, count) = load.finish().unwrap();
    eprintln!("{report}");
    assert!(count > 500, "the load was acknowledged: {count}");
    let settled: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("settled: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no settled line in the report:\n{report}"));
    assert!(
        settled * 2 > count as u64,
        "most acknowledged transactions settled: {settled} of {count}"
    );
    cluster.verify_everywhere(&acked).unwrap();
}
