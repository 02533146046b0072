//! Child process of `tests/tests/storage_crash.rs`: appends records to a
//! settle-storage log from several tasks at once (so flushes overlap and
//! group commit is exercised) and prints `ack <index>` on stdout once a flush
//! has made everything up to `<index>` durable. The parent kills it with
//! SIGKILL at an arbitrary moment and checks every acknowledged record.
//! A background task keeps a preallocated (zero-filled) spare segment ready,
//! as the node does, so kills also land mid-preallocation and mid-rotation
//! into a spare, and recovery meets segments ending in zeros.
//!
//! Usage: storage_crash_child <log-dir> <tasks> <records-per-group> <stop-after-index>

use std::{io::Write, rc::Rc};

use anyhow::{bail, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use settle_storage::{Entry, Log, LogOptions};

/// Small segments so that rotation happens while the child is killed.
const SEGMENT_BYTES: u64 = 256 << 10;

/// Payload of record `index` (the parent recomputes it to check content).
fn payload(index: u64) -> Vec<u8> {
    let len = 64 + (index % 97) as usize;
    (0..len)
        .map(|i| (index.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64) >> 3) as u8)
        .collect()
}

fn term_of(index: u64) -> u64 {
    index / 1000 + 1
}

async fn appender(log: Rc<Log>, group: u64, stop: u64) -> Result<()> {
    loop {
        let start = log.next_index();
        if start > stop {
            return Ok(());
        }
        let payloads: Vec<Vec<u8>> = (start..start + group).map(payload).collect();
        log.append(payloads.iter().enumerate().map(|(k, p)| {
            let index = start + k as u64;
            Entry {
                index,
                term: term_of(index),
                payload: p,
            }
        }))?;
        let durable = log.flush().await?.context("flush returned no index")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {durable}")?;
        out.flush()?;
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        bail!(
            "usage: storage_crash_child <log-dir> <tasks> <records-per-group> <stop-after-index>"
        );
    }
    let dir = args[1].clone();
    let tasks: usize = args[2].parse().context("tasks")?;
    let group: u64 = args[3].parse().context("records-per-group")?;
    let stop: u64 = args[4].parse().context("stop-after-index")?;
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .map_err(|e| anyhow::anyhow!("glommio executor: {e}"))?;
    ex.run(async move {
        let (log, report) = Log::open(
            &dir,
            LogOptions {
                segment_bytes_max: SEGMENT_BYTES,
                preallocate: true,
                cipher: None,
            },
        )
        .await?;
        eprintln!("child: opened {report:?}");
        let log = Rc::new(log);
        let preallocator = log.clone();
        glommio::spawn_local(async move {
            while let Ok(more) = preallocator.preallocate_step().await {
                if !more {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        })
        .detach();
        let handles: Vec<_> = (0..tasks)
            .map(|_| glommio::spawn_local(appender(log.clone(), group, stop)))
            .collect();
        for h in handles {
            h.await?;
        }
        Ok(())
    })
}
