//! Behaviour of the log through its public API, on real files.

mod common;

use common::*;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use settle_storage::{Entry, Error, Log, LogOptions, GROUP_BYTES_MAX, PAYLOAD_BYTES_MAX};

#[test]
fn appended_records_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, report) = open(&path, 1 << 20).await;
        assert_eq!((report.first_index, report.last_index), (0, None));
        fill(&log, 1000, 37).await;
        assert_eq!(log.durable_last_index(), Some(999));
        check(&log, 0..1000).await;
        drop(log);
        let (log, report) = open(&path, 1 << 20).await;
        assert_eq!(report.last_index, Some(999));
        assert_eq!(report.truncated_bytes, 0);
        check(&log, 0..1000).await;
        check(&log, 500..501).await;
        assert_eq!(log.term_at(999), Some(term_of(999)));
    });
}

#[test]
fn staged_records_are_readable_before_flush_and_lost_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 1 << 20).await;
        fill(&log, 10, 10).await;
        let p = payload(10);
        log.append([Entry {
            index: 10,
            term: term_of(10),
            payload: &p,
        }])
        .unwrap();
        assert_eq!(log.last_index(), Some(10));
        assert_eq!(log.durable_last_index(), Some(9));
        check(&log, 5..11).await;
        drop(log);
        let (log, report) = open(&path, 1 << 20).await;
        assert_eq!(report.last_index, Some(9));
        assert_eq!(log.next_index(), 10);
    });
}

#[test]
fn append_rejects_gaps_oversize_and_overflow_without_staging_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 1 << 20).await;
        let p = [1u8; 100];
        let gap = log.append([
            Entry {
                index: 0,
                term: 1,
                payload: &p,
            },
            Entry {
                index: 2,
                term: 1,
                payload: &p,
            },
        ]);
        assert!(
            matches!(
                gap,
                Err(Error::IndexGap {
                    expected: 1,
                    got: 2
                })
            ),
            "{gap:?}"
        );
        assert_eq!((log.next_index(), log.staged_bytes()), (0, 0));

        let big = vec![0u8; PAYLOAD_BYTES_MAX + 1];
        let r = log.append([Entry {
            index: 0,
            term: 1,
            payload: &big,
        }]);
        assert!(matches!(r, Err(Error::RecordTooLarge { .. })), "{r:?}");

        // Fill the staging buffer close to its bound, then overflow it.
        let chunk = vec![7u8; 1 << 20];
        for i in 0..3 {
            log.append([Entry {
                index: i,
                term: 1,
                payload: &chunk,
            }])
            .unwrap();
        }
        let before = log.staged_bytes();
        let r = log.append([
            Entry {
                index: 3,
                term: 2,
                payload: &p,
            },
            Entry {
                index: 4,
                term: 2,
                payload: &chunk,
            },
        ]);
        assert!(matches!(r, Err(Error::StagingFull { .. })), "{r:?}");
        assert_eq!((log.next_index(), log.staged_bytes()), (3, before));
        assert_eq!(log.term_at(3), None);
        assert!(before <= GROUP_BYTES_MAX);
        assert_eq!(log.flush().await.unwrap(), Some(2));
        log.append([
            Entry {
                index: 3,
                term: 2,
                payload: &p,
            },
            Entry {
                index: 4,
                term: 2,
                payload: &chunk,
            },
        ])
        .unwrap();
        assert_eq!(log.flush().await.unwrap(), Some(4));
        let recs = log.read(2..5).await.unwrap();
        assert_eq!(recs[2].payload, chunk);
        assert_eq!(recs[1].term, 2);
    });
}

#[test]
fn segments_rotate_and_reads_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 16 << 10).await;
        fill(&log, 2000, 40).await;
        let n = segments(&path).len();
        assert!(n > 5, "only {n} segments");
        check(&log, 0..2000).await;
        check(&log, 37..1500).await;
        drop(log);
        let (log, report) = open(&path, 16 << 10).await;
        assert_eq!(report.segments, n);
        check(&log, 0..2000).await;
        fill(&log, 100, 7).await;
        check(&log, 1990..2100).await;
    });
}

#[test]
fn flush_in_flight_does_not_block_staging_and_next_flush_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 1 << 20).await;
        let log = std::rc::Rc::new(log);
        let p = payload(0);
        log.append([Entry {
            index: 0,
            term: 1,
            payload: &p,
        }])
        .unwrap();
        let l2 = log.clone();
        let first = glommio::spawn_local(async move { l2.flush().await.unwrap() });
        // Wait until the first flush has taken the staged group and is
        // writing it, then stage more behind it.
        while log.staged_bytes() > 0 {
            glommio::executor().yield_task_queue_now().await;
        }
        assert_eq!(
            log.durable_last_index(),
            None,
            "first flush still in flight"
        );
        // The record being written is readable from the in-flight buffer.
        let in_flight = log.read(0..1).await.unwrap();
        assert_eq!(in_flight[0].payload, payload(0));
        assert_eq!(log.durable_last_index(), None);
        for i in 1..100u64 {
            let p = payload(i);
            log.append([Entry {
                index: i,
                term: 1,
                payload: &p,
            }])
            .unwrap();
        }
        let second = log.flush().await.unwrap();
        let first = first.await;
        assert_eq!(first, Some(0));
        assert_eq!(second, Some(99));
        let recs = log.read(0..100).await.unwrap();
        assert!(recs.iter().all(|r| r.payload == payload(r.index)));
    });
}

#[test]
fn read_outside_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 1 << 20).await;
        fill(&log, 10, 10).await;
        assert!(matches!(
            log.read(5..11).await,
            Err(Error::OutOfRange { .. })
        ));
        assert!(log.read(10..10).await.unwrap().is_empty());
        log.purge_prefix(3, term_of(3)).await.unwrap();
        assert!(matches!(
            log.read(3..5).await,
            Err(Error::OutOfRange { .. })
        ));
        check(&log, 4..10).await;
    });
}

#[test]
fn truncate_suffix_of_staged_and_durable_records_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 16 << 10).await;
        fill(&log, 500, 30).await;
        // Staged only.
        let p = payload(500);
        log.append([Entry {
            index: 500,
            term: 99,
            payload: &p,
        }])
        .unwrap();
        log.truncate_suffix(500).await.unwrap();
        assert_eq!(log.next_index(), 500);
        // Mid-segment durable truncation, then different records appended.
        log.truncate_suffix(321).await.unwrap();
        assert_eq!(
            (log.next_index(), log.durable_last_index()),
            (321, Some(320))
        );
        check(&log, 0..321).await;
        let other = b"replacement".to_vec();
        for i in 321..400u64 {
            log.append([Entry {
                index: i,
                term: 7,
                payload: &other,
            }])
            .unwrap();
        }
        log.flush().await.unwrap();
        drop(log);
        let (log, report) = open(&path, 16 << 10).await;
        assert_eq!(report.last_index, Some(399));
        check(&log, 0..321).await;
        let recs = log.read(321..400).await.unwrap();
        assert!(recs.iter().all(|r| r.term == 7 && r.payload == other));
        // Truncate twice more: into the override segment, then before it.
        log.truncate_suffix(350).await.unwrap();
        log.truncate_suffix(100).await.unwrap();
        fill(&log, 50, 9).await;
        drop(log);
        let (log, report) = open(&path, 16 << 10).await;
        assert_eq!(report.last_index, Some(149));
        check(&log, 0..150).await;
        log.purge_prefix(20, term_of(20)).await.unwrap();
        let r = log.truncate_suffix(20).await;
        assert!(matches!(r, Err(Error::OutOfRange { .. })), "{r:?}");
        log.truncate_suffix(21).await.unwrap();
        assert_eq!((log.first_index(), log.next_index()), (21, 21));
    });
}

#[test]
fn purge_prefix_deletes_whole_segments_and_persists_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 16 << 10).await;
        fill(&log, 2000, 40).await;
        let before = segments(&path).len();
        assert!(matches!(
            log.purge_prefix(1000, 12345).await,
            Err(Error::PurgeTermMismatch { .. })
        ));
        log.purge_prefix(1000, term_of(1000)).await.unwrap();
        assert!(segments(&path).len() < before);
        assert_eq!(log.first_index(), 1001);
        check(&log, 1001..2000).await;
        drop(log);
        let (log, report) = open(&path, 16 << 10).await;
        assert_eq!((report.first_index, report.last_index), (1001, Some(1999)));
        assert_eq!(
            log.purged().map(|p| (p.index, p.term)),
            Some((1000, term_of(1000)))
        );
        check(&log, 1001..2000).await;
        // Past the last record (a snapshot from the leader): restart there.
        log.purge_prefix(5000, 77).await.unwrap();
        assert_eq!(
            (log.first_index(), log.next_index(), log.last_index()),
            (5001, 5001, Some(5000))
        );
        assert_eq!(segments(&path).len(), 1);
        fill(&log, 10, 10).await;
        drop(log);
        let (log, report) = open(&path, 16 << 10).await;
        assert_eq!((report.first_index, report.last_index), (5001, Some(5010)));
        check(&log, 5001..5011).await;
    });
}

#[test]
fn purge_of_staged_records_flushes_them_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = open(&path, 1 << 20).await;
        fill(&log, 10, 10).await;
        let p = payload(10);
        log.append([Entry {
            index: 10,
            term: term_of(10),
            payload: &p,
        }])
        .unwrap();
        log.purge_prefix(10, term_of(10)).await.unwrap();
        assert_eq!(
            (log.first_index(), log.durable_last_index()),
            (11, Some(10))
        );
        drop(log);
        let (log, _) = open(&path, 1 << 20).await;
        assert_eq!((log.first_index(), log.next_index()), (11, 11));
    });
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let r = Log::open(
            &path,
            LogOptions {
                segment_bytes_max: 100,
                ..LogOptions::default()
            },
        )
        .await;
        assert!(matches!(r, Err(Error::InvalidOptions(_))));
    });
}

#[test]
fn rotation_takes_the_preallocated_spare_and_recovery_keeps_its_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        const SEGMENT: u64 = 64 << 10;
        let (log, _) = open(&path, SEGMENT).await;
        // The spares in the directory (named spare-N.log.tmp).
        let spares = || -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".log.tmp"))
                .collect();
            v.sort();
            v
        };
        fill(&log, 20, 5).await;
        // Create, then 64 KiB of zeros in one durable write: then nothing to do.
        let mut steps = 0;
        while log.preallocate_step().await.unwrap() {
            steps += 1;
            assert!(steps <= 3, "a small spare takes two steps");
        }
        assert_eq!(steps, 2, "create, write");
        let spare = spares();
        assert_eq!(spare.len(), 1);
        assert_eq!(std::fs::metadata(&spare[0]).unwrap().len(), SEGMENT);
        // The first segment was not preallocated: the next group that would
        // grow it goes to a new segment, the spare renamed into place.
        fill(&log, 10, 5).await;
        let segs = segments(&path);
        assert_eq!(segs.len(), 2, "rotated into the spare: {segs:?}");
        assert!(spares().is_empty(), "the spare was taken");
        assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), SEGMENT);
        // More than half a segment of zeros ahead: no new spare yet.
        assert!(!log.preallocate_step().await.unwrap());
        assert!(spares().is_empty());
        // Groups now overwrite zeros: the file does not grow.
        fill(&log, 50, 5).await;
        assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), SEGMENT);
        // Past half of it, the next spare is prepared.
        assert!(log.preallocate_step().await.unwrap());
        assert_eq!(spares().len(), 1, "a new spare, under a new name");
        assert_ne!(spares()[0], spare[0]);
        drop(log);
        let (log, report) = open(&path, SEGMENT).await;
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(report.last_index, Some(79));
        assert_eq!(std::fs::metadata(&segs[1]).unwrap().len(), SEGMENT);
        check(&log, 0..80).await;
        // Appends continue in the zeros after recovery, and survive reopening.
        fill(&log, 5, 5).await;
        drop(log);
        let (log, report) = open(&path, SEGMENT).await;
        assert_eq!(report.last_index, Some(84));
        check(&log, 0..85).await;
    });
}

#[test]
fn no_preallocation_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let (log, _) = Log::open(
            &path,
            LogOptions {
                preallocate: false,
                ..LogOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(!log.preallocate_step().await.unwrap());
        let names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    });
}

#[test]
fn appends_stay_intact_while_spares_are_prepared_and_rotated_in() {
    // A preallocator stepping as fast as it can beside a writer with tiny
    // segments: rotations keep renaming spares while new ones are created.
    // Every record must survive, and no step may fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        const SEGMENT: u64 = 16 << 10;
        let (log, _) = open(&path, SEGMENT).await;
        let log = std::rc::Rc::new(log);
        let running = std::rc::Rc::new(std::cell::Cell::new(true));
        let preallocator = {
            let (log, running) = (log.clone(), running.clone());
            glommio::spawn_local(async move {
                let mut steps = 0u64;
                while running.get() {
                    if log.preallocate_step().await.expect("preallocation step") {
                        steps += 1;
                    } else {
                        glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
                    }
                }
                steps
            })
        };
        fill(&log, 3_000, 3).await;
        running.set(false);
        let steps = preallocator.await;
        assert!(steps > 10, "the preallocator ran ({steps} steps)");
        let segments_written = segments(&path).len();
        assert!(
            segments_written > 5,
            "rotated often ({segments_written} segments)"
        );
        drop(log);
        let (log, report) = open(&path, SEGMENT).await;
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.last_index, Some(2_999));
        check(&log, 0..3_000).await;
    });
}

#[test]
fn a_log_opens_and_rotates_under_a_relative_path() {
    // Tests run in the package directory: a temporary directory there,
    // named relative to it (the node's `--data-dir data` case).
    let dir = tempfile::tempdir_in(".").unwrap();
    let cwd = std::env::current_dir().unwrap();
    let relative = dir.path().strip_prefix(&cwd).unwrap().join("log");
    assert!(relative.is_relative());
    run(async move {
        let (log, _) = open(&relative, 16 << 10).await;
        fill(&log, 200, 5).await;
        drop(log);
        let (log, report) = open(&relative, 16 << 10).await;
        assert_eq!(report.last_index, Some(199));
        assert!(segments(&relative).len() > 1, "rotated");
        check(&log, 0..200).await;
    });
}

#[test]
fn preallocation_steps_beside_purges_and_truncations_that_replace_the_tail() {
    // A purge past the end (a snapshot installed from the leader) and a
    // truncation of every segment leave the log with no segment while their
    // new one is being created on disk. A preallocation step landing in that
    // window must wait, not fail (a cluster test's node panicked there).
    // Each purge and truncation is polled by hand, with a step run at every
    // point where it waits for the disk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        const SEGMENT: u64 = 16 << 10;
        let (log, _) = open(&path, SEGMENT).await;
        let mut steps_inside = 0;
        for round in 0..12u64 {
            fill(&log, 30, 3).await;
            let first = log.first_index();
            let up_to = log.next_index() + 5;
            let mut replace: std::pin::Pin<Box<dyn Future<Output = _>>> = if round % 2 == 0 {
                Box::pin(log.purge_prefix(up_to, 7))
            } else {
                Box::pin(log.truncate_suffix(first))
            };
            loop {
                let polled =
                    std::future::poll_fn(|cx| Poll::Ready(replace.as_mut().poll(cx))).await;
                match polled {
                    Poll::Ready(result) => break result.unwrap(),
                    Poll::Pending => {
                        log.preallocate_step().await.expect("preallocation step");
                        steps_inside += 1;
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                    }
                }
            }
            let expected = if round % 2 == 0 { up_to + 1 } else { first };
            assert_eq!(log.next_index(), expected);
        }
        assert!(steps_inside > 12, "steps ran inside ({steps_inside})");
        fill(&log, 30, 3).await;
        let (first, next) = (log.first_index(), log.next_index());
        drop(log);
        let (log, report) = open(&path, SEGMENT).await;
        assert_eq!(report.torn_tail, None);
        assert_eq!((log.first_index(), log.next_index()), (first, next));
        check(&log, next - 30..next).await;
    });
}
