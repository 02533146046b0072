//! The shard leader's intake loop: group commit.
//!
//! Everything that reaches the shard while earlier entries are in flight is
//! gathered into the next log entry, so one fsync (and one Raft round) covers
//! thousands of transactions. At most `ENTRIES_IN_FLIGHT_MAX` entries are
//! proposed at once; while they are, new requests accumulate in the inbox.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::sync::Semaphore;
use settle_codec::{LookupItem, Transaction, TxResult, TxStatus};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::command::{encode_submit, ENTRY_TRANSACTIONS_MAX};
use super::{GroupId, ShardState};
use crate::intake::router::{ShardError, ShardMsg};
use crate::raft::{ShardRaft, ShardReply, ShardRequest};

/// Entries a shard leader has proposed and not yet seen committed. Two keep
/// the disk busy (one being fsynced, one being written) without letting a
/// slow disk queue unbounded work; everything else waits in the inbox.
pub const ENTRIES_IN_FLIGHT_MAX: u64 = 2;

/// Most transactions a shard holds in memory (pending and within the dedup
/// window): ~110 bytes each, so ~2.2 GiB per shard at the bound. Beyond it
/// intake answers "overloaded" rather than exhausting memory.
pub const SHARD_RECORDS_MAX: usize = 20_000_000;

/// A proposal slower than this is logged: it is the tail latency clients see.
const SLOW_PROPOSAL: std::time::Duration = std::time::Duration::from_millis(50);

type Waiter = (usize, oneshot::Sender<Result<Vec<TxResult>, ShardError>>);

/// Runs until the inbox closes (every sender dropped: the node is stopping).
pub async fn run(
    group: GroupId,
    raft: ShardRaft,
    state: Rc<RefCell<ShardState>>,
    mut inbox: mpsc::Receiver<ShardMsg>,
) {
    let slots = Rc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    let mut held: Option<ShardMsg> = None;
    loop {
        let permit = slots
            .clone()
            .acquire_static_permit(1)
            .await
            .expect("the semaphore is never closed");
        // Gather: the first message (waiting for it), then whatever else is queued.
        let mut transactions: Vec<Transaction> = Vec::new();
        let mut waiters: Vec<Waiter> = Vec::new();
        let first = match held.take() {
            Some(msg) => msg,
            None => match inbox.recv().await {
                Some(msg) => msg,
                None => return,
            },
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ShardMsg::Lookup { ids, reply } => {
                    let _ = reply.send(lookup(&state.borrow(), &ids));
                }
                ShardMsg::Submit {
                    transactions: txs,
                    reply,
                } => {
                    let held_records = state.borrow().len() + transactions.len();
                    if held_records + txs.len() > SHARD_RECORDS_MAX {
                        let _ = reply.send(Err(ShardError::Full {
                            group,
                            records: held_records,
                        }));
                        next = inbox.try_recv().ok();
                        continue;
                    }
                    if !transactions.is_empty()
                        && transactions.len() + txs.len() > ENTRY_TRANSACTIONS_MAX
                    {
                        held = Some(ShardMsg::Submit {
                            transactions: txs,
                            reply,
                        });
                        break;
                    }
                    waiters.push((txs.len(), reply));
                    transactions.extend_from_slice(&txs);
                }
            }
            next = inbox.try_recv().ok();
        }
        if waiters.is_empty() {
            drop(permit);
            continue;
        }
        let raft = raft.clone();
        glommio::spawn_local(async move {
            let outcome = propose(group, &raft, &transactions).await;
            drop(permit);
            answer(outcome, waiters);
        })
        .detach();
    }
}

/// Appends one submit entry and waits until it is committed and applied.
async fn propose(
    group: GroupId,
    raft: &ShardRaft,
    transactions: &[Transaction],
) -> Result<Vec<TxResult>, ShardError> {
    let leader_ts_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let payload = encode_submit(leader_ts_us, transactions);
    let started = std::time::Instant::now();
    let written = raft.client_write(ShardRequest(payload.to_vec())).await;
    let elapsed = started.elapsed();
    if elapsed > SLOW_PROPOSAL {
        warn!(
            group,
            transactions = transactions.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "slow proposal"
        );
    }
    match written {
        Ok(response) => {
            let ShardReply { results } = response.data;
            if results.len() != transactions.len() {
                return Err(ShardError::Internal {
                    group,
                    message: format!(
                        "applied {} results for {} transactions",
                        results.len(),
                        transactions.len()
                    ),
                });
            }
            Ok(results)
        }
        Err(e) => {
            if let Some(forward) = e.forward_to_leader() {
                return Err(ShardError::NotLeader {
                    group,
                    leader: forward.leader_id,
                });
            }
            warn!(group, error = %e, "client write failed");
            Err(ShardError::Internal {
                group,
                message: e.to_string(),
            })
        }
    }
}

/// Hands each waiter its slice of the entry's results.
fn answer(outcome: Result<Vec<TxResult>, ShardError>, waiters: Vec<Waiter>) {
    match outcome {
        Ok(results) => {
            let mut rest = results.as_slice();
            for (count, reply) in waiters {
                let (mine, tail) = rest.split_at(count);
                rest = tail;
                let _ = reply.send(Ok(mine.to_vec()));
            }
            assert!(rest.is_empty(), "every result goes to its waiter");
        }
        Err(e) => {
            for (_, reply) in waiters {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Reads the shard's state on its leader (reads are served locally).
fn lookup(state: &ShardState, ids: &[u128]) -> Vec<LookupItem> {
    ids.iter()
        .map(|&id| match state.record(id) {
            Some(record) => LookupItem {
                id,
                status: record.status,
                events: state.events(id),
            },
            None => LookupItem {
                id,
                status: TxStatus::NotFound,
                events: Vec::new(),
            },
        })
        .collect()
}
