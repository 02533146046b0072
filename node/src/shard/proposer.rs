//! The shard leader's intake loop: group commit.
//!
//! Everything that reaches the shard while earlier entries are in flight is
//! gathered into the next log entry, so one fsync (and one Raft round) covers
//! thousands of transactions. At most `ENTRIES_IN_FLIGHT_MAX` entries are
//! proposed at once; while they are, new requests accumulate in the inbox.
//! Reads and control entries arrive on a priority queue and are served
//! whenever they come, so a cycle step never waits behind a full pipeline.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::sync::Semaphore;
use settle_codec::{Currency, LookupItem, ParticipantId, Transaction, TxResult, TxStatus, Window};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::cold::ColdReader;
use super::command::{encode, encode_submit, ShardCommand, ENTRY_TRANSACTIONS_MAX};
use super::visibility::Visibility;
use super::{GroupId, ShardState, TxRecord};
use crate::intake::router::{
    ClosedCycle, ParticipantFlows, ShardError, ShardInbox, ShardMsg, ShardStatus,
};
use crate::raft::{ShardRaft, ShardRequest};

/// Entries a shard leader has proposed and not yet seen committed. Two keep
/// the disk busy (one being fsynced, one being written) without letting a
/// slow disk queue unbounded work; everything else waits in the inbox.
pub const ENTRIES_IN_FLIGHT_MAX: u64 = 2;

/// Most unfinished transactions a shard holds in memory (waiting, in a
/// cycle, or with a wire in flight; finished ones live in the state store):
/// ~200 bytes each (a 176-byte slab cell, its index entry, its place in a
/// wait queue), so ~4 GiB per shard at the bound. Beyond it intake answers
/// "overloaded" rather than exhausting memory: more pending work than
/// cycles can settle.
pub const SHARD_RECORDS_MAX: usize = 20_000_000;

/// A proposal slower than this is logged: it is the tail latency clients see.
const SLOW_PROPOSAL: std::time::Duration = std::time::Duration::from_millis(50);

type Waiter = (usize, oneshot::Sender<Result<Vec<TxResult>, ShardError>>);

/// What woke the proposer up.
enum Wake<T> {
    /// The thing it waited for: an entry slot, or the next submit.
    Ready(T),
    /// A priority request (read or control entry) to serve first.
    Priority(ShardMsg),
}

/// Waits for `ready`, serving priority requests as they come.
async fn serving_priority<T>(
    ready: impl std::future::Future<Output = T>,
    priority: &mut mpsc::Receiver<ShardMsg>,
    priority_open: &mut bool,
    handle: &impl Fn(ShardMsg),
) -> T {
    futures_lite::pin!(ready);
    loop {
        let next_priority = async {
            if *priority_open {
                match priority.recv().await {
                    Some(msg) => Wake::Priority(msg),
                    None => {
                        *priority_open = false;
                        futures_lite::future::pending().await
                    }
                }
            } else {
                futures_lite::future::pending().await
            }
        };
        let ready = async { Wake::Ready((&mut ready).await) };
        match futures_lite::future::or(ready, next_priority).await {
            Wake::Ready(value) => return value,
            Wake::Priority(msg) => handle(msg),
        }
    }
}

/// Runs until the submit inbox closes (every sender dropped: the node is
/// stopping). Priority requests (lookups, balances, funding and cycle
/// entries) are served whenever they arrive, never behind a full pipeline.
pub async fn run(
    group: GroupId,
    books: Currency,
    raft: ShardRaft,
    state: Rc<RefCell<ShardState>>,
    inbox: ShardInbox,
) {
    let ShardInbox {
        submits: mut inbox,
        mut priority,
    } = inbox;
    let mut priority_open = true;
    let handle = {
        let (raft, state) = (raft.clone(), state.clone());
        move |msg: ShardMsg| serve_priority(group, books, &raft, &state, msg)
    };
    let slots = Rc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    let mut held: Option<ShardMsg> = None;
    loop {
        let slots_now = slots.clone();
        let acquire = slots_now.acquire_static_permit(1);
        let permit = serving_priority(acquire, &mut priority, &mut priority_open, &handle)
            .await
            .expect("the semaphore is never closed");
        // Gather: the first submit (waiting for it), then whatever else is queued.
        let mut transactions: Vec<Transaction> = Vec::new();
        let mut waiters: Vec<Waiter> = Vec::new();
        let first = match held.take() {
            Some(msg) => msg,
            None => {
                match serving_priority(inbox.recv(), &mut priority, &mut priority_open, &handle)
                    .await
                {
                    Some(msg) => msg,
                    None => return,
                }
            }
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ShardMsg::Submit {
                    transactions: txs,
                    reply,
                } => {
                    let (held_now, records_max) = {
                        let state = state.borrow();
                        (state.held(), state.records_max())
                    };
                    let held_records = held_now + transactions.len();
                    if held_records + txs.len() > records_max {
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
                // Only submits travel on this inbox; anything else is served as priority.
                other => handle(other),
            }
            next = inbox.try_recv().ok();
        }
        if waiters.is_empty() {
            drop(permit);
            continue;
        }
        let raft = raft.clone();
        glommio::spawn_local(async move {
            let outcome = propose(group, books, &raft, &transactions).await;
            drop(permit);
            answer(outcome, waiters);
        })
        .detach();
    }
}

/// Serves a read at once, or starts a funding or cycle entry. These are
/// rare (the coordinator runs one cycle at a time, operators are bounded by
/// the control inbox), so their entries do not take an in-flight slot.
fn serve_priority(
    group: GroupId,
    books: Currency,
    raft: &ShardRaft,
    state: &Rc<RefCell<ShardState>>,
    msg: ShardMsg,
) {
    match msg {
        ShardMsg::Lookup {
            ids,
            visibility,
            reply,
        } => {
            let (items, cold) = lookup(&state.borrow(), group, &ids, visibility);
            if cold.is_empty() {
                let _ = reply.send(Ok(items));
            } else {
                // Finished transactions are in the store: read off the core.
                // A read the store refuses (damage, tampered ciphertext) is
                // an error, never "not found".
                let reader = state.borrow_mut().cold_reader();
                glommio::spawn_local(async move {
                    let items = crate::store_io::run(move || {
                        read_cold(&reader, group, visibility, items, &cold)
                    })
                    .await
                    .map_err(|e| ShardError::Internal {
                        group,
                        message: e.to_string(),
                    })
                    .and_then(|read| read);
                    if let Err(e) = &items {
                        tracing::error!(error = %e, "finished transactions not read");
                    }
                    let _ = reply.send(items);
                })
                .detach();
            }
        }
        ShardMsg::Balances { participant, reply } => {
            let state = state.borrow();
            let accounts = match participant {
                Some(p) => vec![(p, state.account(p))],
                None => state.accounts().map(|(p, a)| (p, *a)).collect(),
            };
            let _ = reply.send(accounts);
        }
        ShardMsg::Flows {
            participant,
            max,
            now_us,
            reply,
        } => {
            let _ = reply.send(flows(&state.borrow(), participant, max, now_us));
        }
        ShardMsg::Status { reply } => {
            let _ = reply.send(status(&state.borrow()));
        }
        ShardMsg::Submit { reply, .. } => {
            let _ = reply.send(Err(ShardError::Internal {
                group,
                message: "a submit on the priority queue".into(),
            }));
        }
        entry => {
            glommio::spawn_local(control_entry(
                group,
                books,
                raft.clone(),
                state.clone(),
                entry,
            ))
            .detach();
        }
    }
}

/// Copies of flow histories (at most `max`, each at most `FLOW_BUCKETS`
/// buckets): the forecast itself runs off the core.
fn flows(
    state: &ShardState,
    participant: Option<ParticipantId>,
    max: usize,
    now_us: u64,
) -> Vec<ParticipantFlows> {
    let one = |p: ParticipantId| ParticipantFlows {
        participant: p,
        balance: state.account(p).balance,
        series: state.flow_series(p, now_us),
    };
    match participant {
        Some(p) => vec![one(p)],
        None => state.flow_participants().take(max).map(one).collect(),
    }
}

fn status(state: &ShardState) -> ShardStatus {
    ShardStatus {
        waiting: Window::ALL.map(|w| state.waiting_count(w) as u64),
        open_cycles: state.open_cycle_ids(),
        last_applied_cycle: state.last_applied_cycle(),
        applied_index: state.last_applied_index(),
        incoming: state.incoming_batches(),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Appends one entry and returns its results once applied.
async fn write(
    group: GroupId,
    raft: &ShardRaft,
    command: &ShardCommand,
) -> Result<Vec<TxResult>, ShardError> {
    match raft
        .client_write(ShardRequest(encode(command).to_vec()))
        .await
    {
        Ok(response) => response
            .data
            .into_results()
            .map_err(|message| ShardError::Internal { group, message }),
        Err(e) => Err(match e.forward_to_leader() {
            Some(forward) => ShardError::NotLeader {
                group,
                leader: forward.leader_id,
            },
            None => ShardError::Internal {
                group,
                message: e.to_string(),
            },
        }),
    }
}

/// The one result a single-result entry must have produced.
fn single(group: GroupId, results: Vec<TxResult>) -> Result<TxResult, ShardError> {
    match results.as_slice() {
        [one] => Ok(*one),
        other => Err(ShardError::Internal {
            group,
            message: format!("{} results for a single-result entry", other.len()),
        }),
    }
}

/// Proposes a funding or cycle entry and answers from the applied state.
async fn control_entry(
    group: GroupId,
    books: Currency,
    raft: ShardRaft,
    state: Rc<RefCell<ShardState>>,
    msg: ShardMsg,
) {
    let leader_ts_us = now_us();
    match msg {
        ShardMsg::Open { openings, reply } => {
            let count = openings.len();
            let command = ShardCommand::Open {
                leader_ts_us,
                openings,
            };
            let outcome = write(group, &raft, &command).await.and_then(|r| {
                if r.len() == count {
                    Ok(r)
                } else {
                    Err(ShardError::Internal {
                        group,
                        message: format!("{} results for {count} openings", r.len()),
                    })
                }
            });
            let _ = reply.send(outcome);
        }
        ShardMsg::Deposit {
            deposit_id,
            participant,
            currency,
            amount,
            reply,
        } => {
            let command = ShardCommand::Deposit {
                leader_ts_us,
                books,
                deposit_id,
                participant,
                currency,
                amount,
            };
            let outcome = write(group, &raft, &command)
                .await
                .and_then(|r| single(group, r))
                .map(|result| {
                    let balance = if currency == books {
                        state.borrow().account(participant).balance
                    } else {
                        0
                    };
                    (result, balance)
                });
            let _ = reply.send(outcome);
        }
        ShardMsg::CycleClose {
            cycle_id,
            window,
            candidates_max,
            reply,
        } => {
            let command = ShardCommand::CycleClose {
                leader_ts_us,
                cycle_id,
                window,
                candidates_max,
            };
            let outcome = write(group, &raft, &command)
                .await
                .and_then(|r| single(group, r))
                .map(|result| {
                    let state = state.borrow();
                    match state.open_cycle(cycle_id) {
                        Some(open) => {
                            let records = open
                                .candidates
                                .iter()
                                .map(|id| state.record(*id).expect("candidates are records"));
                            ClosedCycle {
                                result,
                                candidates: records.clone().map(TxRecord::candidate).collect(),
                                since_us: records.map(|r| r.since_us).collect(),
                                balances: open.balances.clone(),
                            }
                        }
                        None => ClosedCycle {
                            result,
                            candidates: Vec::new(),
                            since_us: Vec::new(),
                            balances: Vec::new(),
                        },
                    }
                });
            let _ = reply.send(outcome);
        }
        ShardMsg::CycleApply { apply, reply } => {
            let command = ShardCommand::CycleApply {
                leader_ts_us,
                apply,
            };
            let outcome = write(group, &raft, &command)
                .await
                .and_then(|r| single(group, r));
            let _ = reply.send(outcome);
        }
        ShardMsg::Execution { outcomes, reply } => {
            let count = outcomes.len();
            let command = ShardCommand::Execution {
                leader_ts_us,
                outcomes,
            };
            let outcome = write(group, &raft, &command).await.and_then(|r| {
                if r.len() == count {
                    Ok(())
                } else {
                    Err(ShardError::Internal {
                        group,
                        message: format!("{} results for {count} wire outcomes", r.len()),
                    })
                }
            });
            let _ = reply.send(outcome);
        }
        ShardMsg::Submit { .. }
        | ShardMsg::Lookup { .. }
        | ShardMsg::Balances { .. }
        | ShardMsg::Flows { .. }
        | ShardMsg::Status { .. } => unreachable!("handled by the intake loop"),
    }
}

/// Appends one submit entry and waits until it is committed and applied.
async fn propose(
    group: GroupId,
    books: Currency,
    raft: &ShardRaft,
    transactions: &[Transaction],
) -> Result<Vec<TxResult>, ShardError> {
    let payload = encode_submit(now_us(), books, transactions);
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
            let results = response
                .data
                .into_results()
                .map_err(|message| ShardError::Internal { group, message })?;
            crate::metrics::cells::batch_committed(group);
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

/// Reads the shard's state on its leader (reads are served locally): the
/// transactions in memory, and the places of those that may be finished
/// (in the store).
fn lookup(
    state: &ShardState,
    group: GroupId,
    ids: &[u128],
    visibility: Visibility,
) -> (Vec<LookupItem>, Vec<usize>) {
    let mut cold = Vec::new();
    let not_found = |id| LookupItem {
        id,
        status: TxStatus::NotFound,
        events: Vec::new(),
    };
    let items = ids
        .iter()
        .enumerate()
        .map(
            |(at, &id)| match state.hot_tx(id).map(|tx| visibility.shows(tx)) {
                Some(true) => {
                    let (status, events) = state.hot_events(id, group).expect("a hot record");
                    LookupItem { id, status, events }
                }
                // Answered like an unknown id (see `Visibility`).
                Some(false) => not_found(id),
                None => {
                    cold.push(at);
                    not_found(id)
                }
            },
        )
        .collect();
    (items, cold)
}

/// Fills in the items at `cold` from the store (blocking: a store thread
/// runs it). The first read the store refuses fails the whole lookup.
fn read_cold(
    reader: &ColdReader,
    group: GroupId,
    visibility: Visibility,
    mut items: Vec<LookupItem>,
    cold: &[usize],
) -> Result<Vec<LookupItem>, ShardError> {
    for &at in cold {
        let item = &mut items[at];
        match reader.lookup(item.id, group, visibility) {
            Ok(Some((status, events))) => {
                item.status = status;
                item.events = events;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(id = %settle_codec::format_id(item.id), error = %e, "state store read failed");
                return Err(ShardError::Internal {
                    group,
                    message: format!("transaction {}: {e}", settle_codec::format_id(item.id)),
                });
            }
        }
    }
    Ok(items)
}
