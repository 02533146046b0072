//! Damaged files: a torn tail is cut and reported, damage in the middle of
//! the log is an error naming the segment and offset, never silent loss.

mod common;

use std::{
    fs::OpenOptions,
    io::{Read, Seek, SeekFrom, Write},
    path::Path,
};

use common::*;
use settle_storage::{CorruptReason, Entry, Error, Log, LogOptions, MetaFile, SnapshotStore};

/// 4 records of 128 bytes per group: 48 + 4 * 160 = 688 bytes, one block.
const PER_GROUP: u64 = 4;
const GROUP: u64 = 4096;
const FIRST_RECORD: u64 = 48;

async fn fill_fixed(log: &Log, groups: u64) {
    for _ in 0..groups {
        let start = log.next_index();
        let p = [0xabu8; 128];
        log.append((start..start + PER_GROUP).map(|index| Entry {
            index,
            term: 1,
            payload: &p,
        }))
        .unwrap();
        log.flush().await.unwrap();
    }
}

fn flip(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x10]).unwrap();
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

async fn reopen(path: &Path) -> settle_storage::Result<(Log, settle_storage::RecoveryReport)> {
    Log::open(
        path,
        LogOptions {
            segment_bytes_max: 64 << 10,
            ..LogOptions::default()
        },
    )
    .await
}

fn expect_corrupt(
    r: settle_storage::Result<(Log, settle_storage::RecoveryReport)>,
    seg: &Path,
    offset: u64,
) {
    match r {
        Err(Error::Corrupt {
            segment, offset: o, ..
        }) => {
            assert_eq!((segment.as_path(), o), (seg, offset));
        }
        Err(e) => panic!("expected Corrupt at {offset}, got {e}"),
        Ok((_, report)) => panic!("expected Corrupt at {offset}, opened: {report:?}"),
    }
}

#[test]
fn flipped_byte_mid_log_is_an_error_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 5).await;
        drop(log);
        let seg = &segments(&path)[0];
        // Second record of the second group.
        let offset = GROUP + FIRST_RECORD + 160;
        flip(seg, offset + 50);
        let r = reopen(&path).await;
        expect_corrupt(r, seg, offset);
        assert!(matches!(
            reopen(&path).await,
            Err(Error::Corrupt {
                reason: CorruptReason::BadChecksum,
                ..
            })
        ));
        assert_eq!(file_len(seg), 5 * GROUP, "a corrupt log is not modified");
    });
}

#[test]
fn damaged_group_header_mid_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 5).await;
        drop(log);
        let seg = &segments(&path)[0];
        flip(seg, 2 * GROUP + 20);
        expect_corrupt(reopen(&path).await, seg, 2 * GROUP);
        // Zeroing a whole middle group looks like the end of data, but a
        // valid group follows it: still damage, not a torn tail.
        write_at(seg, 2 * GROUP, &[0u8; GROUP as usize]);
        expect_corrupt(reopen(&path).await, seg, 2 * GROUP);
    });
}

#[test]
fn damage_in_the_last_group_of_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 40).await; // 64 KiB segments: 16 groups each
        drop(log);
        let segs = segments(&path);
        assert!(segs.len() >= 2);
        let last_group = file_len(&segs[0]) - GROUP;
        flip(&segs[0], last_group + FIRST_RECORD + 3 * 160 + 40);
        expect_corrupt(
            reopen(&path).await,
            &segs[0],
            last_group + FIRST_RECORD + 3 * 160,
        );
    });
}

#[test]
fn truncated_file_is_cut_to_the_last_whole_group_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 5).await;
        drop(log);
        let seg = &segments(&path)[0];
        // Cut the last group in the middle of its third record.
        let cut = 4 * GROUP + FIRST_RECORD + 2 * 160 + 17;
        OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (log, report) = reopen(&path).await.unwrap();
        let torn = report.torn_tail.clone().expect("torn tail reported");
        assert_eq!(
            (torn.segment.as_path(), torn.offset, torn.bytes),
            (seg.as_path(), 4 * GROUP, cut - 4 * GROUP)
        );
        assert_eq!(torn.bad_offset, 4 * GROUP + FIRST_RECORD + 2 * 160);
        assert_eq!(report.truncated_bytes, cut - 4 * GROUP);
        assert_eq!(report.last_index, Some(4 * PER_GROUP - 1));
        assert_eq!(file_len(seg), 4 * GROUP);
        // The log continues cleanly after the cut.
        fill_fixed(&log, 2).await;
        drop(log);
        let (log, report) = reopen(&path).await.unwrap();
        assert_eq!(
            (report.truncated_bytes, report.last_index),
            (0, Some(6 * PER_GROUP - 1))
        );
        assert_eq!(log.read(0..24).await.unwrap().len(), 24);
    });
}

#[test]
fn zero_filled_tail_is_preallocated_space_not_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 3).await;
        drop(log);
        let seg = &segments(&path)[0];
        write_at(seg, 3 * GROUP, &[0u8; 3 * GROUP as usize]);
        let (log, report) = reopen(&path).await.unwrap();
        assert_eq!(report.torn_tail, None, "zeros are free space, not damage");
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(report.last_index, Some(3 * PER_GROUP - 1));
        assert_eq!(file_len(seg), 6 * GROUP, "the space is kept");
        // New groups go into the zeros without growing the file, and read back.
        fill_fixed(&log, 2).await;
        drop(log);
        assert_eq!(file_len(seg), 6 * GROUP);
        let (log, report) = reopen(&path).await.unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.last_index, Some(5 * PER_GROUP - 1));
        assert_eq!(log.read(0..5 * PER_GROUP).await.unwrap().len(), 20);
    });
}

#[test]
fn zeros_followed_by_data_are_still_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 3).await;
        drop(log);
        let seg = &segments(&path)[0];
        // A group whose header block never landed but a later block did.
        write_at(seg, 3 * GROUP, &[0u8; GROUP as usize]);
        write_at(seg, 4 * GROUP, &[0x5au8; GROUP as usize]);
        let (_, report) = reopen(&path).await.unwrap();
        let torn = report.torn_tail.expect("torn tail reported");
        assert_eq!(
            (torn.offset, torn.bytes, torn.reason),
            (3 * GROUP, 2 * GROUP, CorruptReason::BadMagic)
        );
        assert_eq!(report.last_index, Some(3 * PER_GROUP - 1));
        assert_eq!(file_len(seg), 3 * GROUP, "cut at the torn group");
    });
}

#[test]
fn torn_multi_block_group_with_a_lost_middle_block_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 2).await;
        // One large group of 4 blocks, whose second block never reached disk.
        let p = [0x5au8; 1000];
        let start = log.next_index();
        log.append((start..start + 15).map(|index| Entry {
            index,
            term: 2,
            payload: &p,
        }))
        .unwrap();
        log.flush().await.unwrap();
        drop(log);
        let seg = &segments(&path)[0];
        assert_eq!(file_len(seg), 2 * GROUP + 4 * GROUP);
        write_at(seg, 3 * GROUP, &[0u8; GROUP as usize]);
        let (_, report) = reopen(&path).await.unwrap();
        let torn = report.torn_tail.expect("torn");
        assert_eq!((torn.offset, torn.bytes), (2 * GROUP, 4 * GROUP));
        assert_eq!(report.last_index, Some(2 * PER_GROUP - 1));
    });
}

#[test]
fn damage_in_the_newest_group_is_indistinguishable_from_a_torn_write() {
    // Pinned on purpose: a crash can leave exactly this, so it is cut.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 3).await;
        drop(log);
        flip(&segments(&path)[0], 2 * GROUP + FIRST_RECORD + 100);
        let (_, report) = reopen(&path).await.unwrap();
        assert_eq!(
            report.torn_tail.map(|t| t.reason),
            Some(CorruptReason::BadChecksum)
        );
        assert_eq!(report.last_index, Some(2 * PER_GROUP - 1));
    });
}

#[test]
fn damage_found_by_a_read_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 3).await;
        let seg = segments(&path)[0].clone();
        flip(&seg, GROUP + FIRST_RECORD + 70);
        assert!(log.read(0..4).await.is_ok());
        match log.read(0..8).await {
            Err(Error::Corrupt {
                segment,
                offset,
                reason,
            }) => {
                assert_eq!(
                    (segment, offset, reason),
                    (seg, GROUP + FIRST_RECORD, CorruptReason::BadChecksum)
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    });
}

#[test]
fn missing_middle_segment_is_a_gap_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 50).await;
        drop(log);
        let segs = segments(&path);
        assert!(segs.len() >= 3);
        std::fs::remove_file(&segs[1]).unwrap();
        let r = reopen(&path).await;
        assert!(
            matches!(&r, Err(Error::Corrupt { segment, reason: CorruptReason::Gap { .. }, .. }) if *segment == segs[0]),
            "{:?}",
            r.map(|(_, rep)| rep)
        );
    });
}

#[test]
fn interrupted_truncation_and_purge_are_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 50).await; // 200 records, 4 segments
        drop(log);
        let segs = segments(&path);
        assert_eq!(segs.len(), 4);
        // A truncation at 70 that made its override segment durable and
        // then crashed before deleting the later segments.
        let override_seg = path.join(format!("{:020}.log", 70));
        std::fs::File::create(&override_seg).unwrap();
        let (log, report) = reopen(&path).await.unwrap();
        assert_eq!(report.last_index, Some(69));
        assert_eq!(report.removed_segments, 2);
        assert_eq!(log.read(60..70).await.unwrap().len(), 10);
        fill_fixed(&log, 2).await;
        drop(log);
        // A purge at 150 whose meta file was stored before the segments
        // below it were deleted.
        let (log, _) = reopen(&path).await.unwrap();
        fill_fixed(&log, 40).await;
        let purged_point = 150;
        let term = log.term_at(purged_point).unwrap();
        drop(log);
        let mut meta = purged_point.to_le_bytes().to_vec();
        meta.extend_from_slice(&term.to_le_bytes());
        MetaFile::new(path.join("purged.meta"))
            .store(&meta)
            .await
            .unwrap();
        let before = segments(&path).len();
        let (log, report) = reopen(&path).await.unwrap();
        assert_eq!(report.first_index, 151);
        assert!(report.removed_segments > 0);
        assert_eq!(segments(&path).len(), before - report.removed_segments);
        assert_eq!(log.read(151..200).await.unwrap().len(), 49);
    });
}

#[test]
fn meta_file_round_trips_and_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vote.meta");
    run(async move {
        let meta = MetaFile::new(&path);
        assert_eq!(meta.load().await.unwrap(), None);
        meta.store(b"term=3 voted_for=2").await.unwrap();
        meta.store(b"term=4 voted_for=1 committed=99")
            .await
            .unwrap();
        assert_eq!(
            meta.load().await.unwrap().as_deref(),
            Some(&b"term=4 voted_for=1 committed=99"[..])
        );
        // A leftover temporary file from an interrupted store is ignored.
        std::fs::write(path.with_extension("meta.tmp"), b"half written").unwrap();
        assert_eq!(
            meta.load().await.unwrap().as_deref(),
            Some(&b"term=4 voted_for=1 committed=99"[..])
        );
        flip(&path, 14);
        assert!(matches!(meta.load().await, Err(Error::CorruptFile { .. })));
        assert!(matches!(
            meta.store(&vec![0u8; 1 << 20]).await,
            Err(Error::TooLarge { .. })
        ));
    });
}

#[test]
fn snapshot_store_keeps_the_latest_and_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snaps");
    run(async move {
        let store = SnapshotStore::open(&path).await.unwrap();
        assert_eq!(store.read_latest().await.unwrap(), None);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        store.write(b"last=10", b"state-a").await.unwrap();
        store.write(b"last=20", &big).await.unwrap();
        let seq = store.write(b"last=30", b"state-c").await.unwrap();
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 1);
        let snap = store.read_latest().await.unwrap().unwrap();
        assert_eq!(
            (snap.seq, &snap.meta[..], &snap.data[..]),
            (seq, &b"last=30"[..], &b"state-c"[..])
        );
        let seq = store.write(b"last=40", &big).await.unwrap();
        drop(store);
        let store = SnapshotStore::open(&path).await.unwrap();
        let snap = store.read_latest().await.unwrap().unwrap();
        assert_eq!((snap.seq, snap.data == big), (seq, true));
        let file = std::fs::read_dir(&path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        flip(&file, 1_000_000);
        assert!(matches!(
            store.read_latest().await,
            Err(Error::CorruptFile { .. })
        ));
    });
}
