//! Replica digests on a busy cluster: `settle status --digest` compares every
//! replica of a group at one log index all of them applied, so while load
//! and settlement cycles keep every group writing it still finds the
//! replicas equal (digests taken at whatever index each replica was at would
//! differ during any activity). The digest is read from a ring each replica
//! fills as it applies, so asking for it costs the nodes nothing that grows
//! with their state.

use std::time::Duration;

use settle_tests::cluster::{Cluster, ClusterOptions, Load};

#[test]
fn digests_agree_at_agreed_indexes_while_the_cluster_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        cycles: true,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(dir.path(), options).unwrap();
    cluster
        .wait_balanced(1, 5, Duration::from_secs(40))
        .unwrap();
    let targets: Vec<_> = cluster
        .ids()
        .into_iter()
        .map(|i| cluster.listen(i))
        .collect();
    let load = Load::start(
        &targets,
        Duration::from_secs(8),
        2,
        100,
        16,
        dir.path().join("acked.txt"),
    )
    .unwrap();

    // While the load runs (four status rounds take about as long as the
    // load): every answer compares like with like.
    let mut busy_rounds = 0;
    let mut lag_seen = false;
    for round in 0..4 {
        let (converged, text) = cluster.status(1 + round % 3, true).unwrap();
        eprintln!("round {round}:\n{text}");
        assert!(
            text.contains("digests: equal at the agreed indexes"),
            "replicas compared at one index agree, busy or not:\n{text}"
        );
        assert!(!text.contains("DIFFER"), "{text}");
        busy_rounds += 1;
        lag_seen |= !converged;
    }
    let (report, acked) = load.finish().unwrap();
    eprintln!("{report}");
    assert!(acked > 0, "the load was acknowledged");
    assert_eq!(busy_rounds, 4);
    eprintln!("a replica lagged during a round: {lag_seen}");

    // Quiet again: converged, digests equal.
    let status = cluster.wait_converged(1, Duration::from_secs(60)).unwrap();
    assert!(
        status.contains("digests: equal at the agreed indexes"),
        "{status}"
    );
    cluster
        .verify_everywhere(&dir.path().join("acked.txt"))
        .unwrap();
}
