//! Faults beyond a crash: a node that lost its data directory rejoins from
//! a snapshot, and a network partition (a proxy between every pair of
//! nodes) leaves the minority acknowledging nothing and heals without
//! divergence. Every replica's state is compared by digest at the end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use settle_tests::cluster::{append_acked, Cluster, ClusterOptions, Load, Prober};

/// One cluster at a time: they share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const USD_SHARD: u16 = 1;

#[test]
fn a_wiped_node_rejoins_from_a_snapshot_and_converges() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        // Leaders snapshot every 50 entries and keep 5 behind it, so the
        // wiped node's log is long gone from them: it needs a snapshot.
        extra_args: vec![
            "--snapshot-entries".into(),
            "50".into(),
            "--keep-entries".into(),
            "5".into(),
        ],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(dir.path(), options).unwrap();
    cluster
        .wait_balanced(1, 5, Duration::from_secs(40))
        .unwrap();
    let leader = cluster
        .wait_leader(1, USD_SHARD, None, Duration::from_secs(10))
        .unwrap();
    let victim = cluster.ids().into_iter().find(|&i| i != leader).unwrap();
    let via = cluster
        .ids()
        .into_iter()
        .find(|&i| i != victim && i != leader)
        .unwrap();
    eprintln!("wiping node {victim}; load through node {via}");

    let acked = dir.path().join("acked.txt");
    let load = Load::start(
        &[cluster.listen(via)],
        Duration::from_secs(12),
        4,
        200,
        16,
        acked.clone(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.wipe(victim).unwrap();
    // The others keep committing (a majority), snapshotting and purging.
    std::thread::sleep(Duration::from_secs(5));
    cluster.restart(victim).unwrap();
    let (report, count) = load.finish().unwrap();
    eprintln!("{report}");
    assert!(count > 1_000, "the load was acknowledged: {count}");

    let status = cluster
        .wait_converged(via, Duration::from_secs(60))
        .unwrap();
    eprintln!("{status}");
    assert!(
        cluster.logged(victim, "formation=Rejoin"),
        "the wiped node found the cluster formed and rejoined it"
    );
    assert!(
        cluster.logged(victim, "installing a snapshot from the leader"),
        "the wiped node was caught up by a snapshot"
    );
    cluster.verify_everywhere(&acked).unwrap();
}

#[test]
fn a_partitioned_minority_acknowledges_nothing_and_heals_without_divergence() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        proxied: true,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(dir.path(), options).unwrap();
    cluster
        .wait_balanced(1, 5, Duration::from_secs(40))
        .unwrap();
    let minority = cluster
        .wait_leader(1, USD_SHARD, None, Duration::from_secs(10))
        .unwrap();
    let majority: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|&i| i != minority)
        .collect();
    eprintln!("isolating node {minority} (leads USD); majority {majority:?}");

    let major = Prober::start(cluster.listen(majority[0]), "USD", 1_000_000, 16);
    let minor = Prober::start(cluster.listen(minority), "USD", 2_000_000, 16);
    let load_acked = dir.path().join("load-acked.txt");
    let load = Load::start(
        &[cluster.listen(majority[1])],
        Duration::from_secs(14),
        2,
        200,
        16,
        load_acked.clone(),
    )
    .unwrap();
    major.wait_acks(10, Duration::from_secs(20)).unwrap();
    minor.wait_acks(10, Duration::from_secs(20)).unwrap();

    let mesh = cluster.mesh.as_ref().expect("a proxied cluster");
    mesh.partition(&[minority]);
    let cut_at = Instant::now();
    // The majority elects a leader for the shards the minority led and goes on.
    major.wait_acks(10, Duration::from_secs(15)).unwrap();
    let failover = major.gap_around(cut_at).expect("acks on both sides");
    eprintln!("FAILOVER after the partition (majority side): {failover:?}");
    std::thread::sleep(Duration::from_secs(3));
    let heal_at = Instant::now();
    // A request the minority's leader had nearly committed when the cut
    // came may still be acknowledged at once; nothing after that.
    let minority_acks = minor.acks_between(cut_at + Duration::from_millis(500), heal_at);
    assert_eq!(
        minority_acks, 0,
        "the isolated node acknowledged transactions"
    );
    let status = cluster.status(majority[0], false).unwrap().1;
    let new_leader = settle_tests::cluster::parse_leader(&status, USD_SHARD);
    assert!(
        new_leader.is_some() && new_leader != Some(minority),
        "the majority has its own USD leader: {status}"
    );

    mesh.heal();
    // The minority's waiting clients are served once it rejoins.
    minor.wait_acks(5, Duration::from_secs(30)).unwrap();
    let (report, _) = load.finish().unwrap();
    eprintln!("{report}");
    let acked = dir.path().join("acked.txt");
    append_acked(&acked, &major.stop().unwrap()).unwrap();
    append_acked(&acked, &minor.stop().unwrap()).unwrap();
    append_acked(
        &acked,
        &std::fs::read_to_string(&load_acked)
            .unwrap()
            .lines()
            .map(|l| settle_codec::parse_id(l).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let status = cluster
        .wait_converged(majority[0], Duration::from_secs(60))
        .unwrap();
    eprintln!("{status}");
    cluster.verify_everywhere(&acked).unwrap();
}

/// Flips one byte in the middle of the written part of `segment` (a byte
/// of a record, not of the preallocated zeros after them).
fn flip_a_written_byte(segment: &std::path::Path) {
    let mut bytes = std::fs::read(segment).unwrap();
    let written = bytes
        .iter()
        .rposition(|&b| b != 0)
        .expect("records written");
    let at = (written / 3..written)
        .find(|&i| bytes[i] != 0)
        .expect("a written byte");
    bytes[at] ^= 0xff;
    std::fs::write(segment, bytes).unwrap();
    eprintln!(
        "flipped byte {at} of {} ({written} bytes written)",
        segment.display()
    );
}

#[test]
fn a_replica_with_a_damaged_log_quarantines_it_and_rebuilds_from_its_peers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), ClusterOptions::default()).unwrap();
    cluster
        .wait_balanced(1, 5, Duration::from_secs(40))
        .unwrap();
    let victim = 3;
    let acked = dir.path().join("acked.txt");
    let load = Load::start(
        &[cluster.listen(1), cluster.listen(2)],
        Duration::from_secs(6),
        2,
        200,
        16,
        acked.clone(),
    )
    .unwrap();
    let (report, count) = load.finish().unwrap();
    eprintln!("{report}");
    assert!(count > 1_000, "the load was acknowledged: {count}");
    // The victim holds the USD group's log (a replica of every group).
    cluster.wait_converged(1, Duration::from_secs(60)).unwrap();
    cluster.kill9(victim);
    let group_dir = cluster.member(victim).data_dir.join("group-1-usd");
    let segment = std::fs::read_dir(group_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .min()
        .expect("a log segment");
    flip_a_written_byte(&segment);

    cluster.restart(victim).unwrap();
    let status = cluster.wait_converged(1, Duration::from_secs(90)).unwrap();
    eprintln!("{status}");
    assert!(
        cluster.logged(victim, "damaged replica data quarantined"),
        "the victim found the damage and said so"
    );
    let quarantined: Vec<_> = std::fs::read_dir(cluster.member(victim).data_dir.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].starts_with("group-1-usd-"),
        "{quarantined:?}"
    );
    cluster.verify_everywhere(&acked).unwrap();
}

/// Alone, a node has nobody to rebuild a damaged group from: it refuses to
/// start with one line that names the damaged file and says what to do.
#[test]
fn a_lone_node_with_a_damaged_log_refuses_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let participants = settle_tests::write_participants(dir.path(), 4).unwrap();
    let mut node = settle_tests::Node::start(&data, Some(&participants), false, 1).unwrap();
    for id in 1..=50u128 {
        settle_tests::submit_one(node.listen, 0x00da_0000 + id);
    }
    node.terminate().unwrap();
    let segment = std::fs::read_dir(data.join("group-1-usd").join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .min()
        .expect("a log segment");
    flip_a_written_byte(&segment);
    let output = std::process::Command::new(settle_tests::bin_path("settle"))
        .args(["start", "--insecure", "--cores", "1", "--data-dir"])
        .arg(&data)
        .args(["--listen", &settle_tests::free_port().to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("no peer to rebuild it from"), "{stderr}");
    assert!(
        stderr.contains(&segment.display().to_string()),
        "names the file: {stderr}"
    );
    assert_eq!(
        stderr.matches("corrupt log segment").count(),
        1,
        "says it once: {stderr}"
    );
}
