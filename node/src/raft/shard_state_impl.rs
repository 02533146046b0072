//! [`GroupState`] for a shard: decodes the rkyv command in place (the bytes
//! arrive 16-byte aligned) and hands it to `ShardState`. Submits answer one
//! result per transaction; the other commands one result for the entry.

use std::path::Path;
use std::sync::Arc;

use rkyv::rancor;

use super::snapshot_data;
use super::state_machine::{GroupState, StateStoreConfig};
use super::type_config::ShardReply;
use crate::shard::cold::{Cold, ID_COLUMNS};
use crate::shard::command::{access, ArchivedShardCommand};
use crate::shard::{BatchOutcome, CycleApply, ShardState};

impl GroupState for ShardState {
    fn apply(
        &mut self,
        log_index: u64,
        command: &[u8],
        reply: &mut ShardReply,
    ) -> Result<(), String> {
        // Validation happens before any change, so an Err leaves the state as it was.
        match access(command).map_err(|e| e.to_string())? {
            ArchivedShardCommand::Submit {
                leader_ts_us,
                books,
                transactions,
            } => {
                reply.results.reserve(transactions.len());
                self.apply_submit(
                    log_index,
                    leader_ts_us.to_native(),
                    books.into(),
                    transactions.iter().map(|t| t.to_native()),
                    &mut reply.results,
                );
            }
            ArchivedShardCommand::Open {
                leader_ts_us,
                openings,
            } => {
                reply.results.reserve(openings.len());
                self.apply_open(
                    log_index,
                    leader_ts_us.to_native(),
                    openings.iter().map(|o| ((&o.0).into(), o.1.to_native())),
                    &mut reply.results,
                );
            }
            ArchivedShardCommand::Deposit {
                leader_ts_us,
                books,
                deposit_id,
                participant,
                currency,
                amount,
            } => {
                reply.results.push(self.apply_deposit(
                    log_index,
                    leader_ts_us.to_native(),
                    books.into(),
                    deposit_id.to_native(),
                    participant.into(),
                    currency.into(),
                    amount.to_native(),
                ));
            }
            ArchivedShardCommand::CycleClose {
                leader_ts_us,
                cycle_id,
                window,
                candidates_max,
            } => {
                if cycle_id.to_native() == 0 {
                    return Err("cycle close of cycle 0".into());
                }
                reply.results.push(self.apply_close(
                    log_index,
                    leader_ts_us.to_native(),
                    cycle_id.to_native(),
                    window.into(),
                    candidates_max.to_native() as usize,
                ));
            }
            ArchivedShardCommand::CycleApply {
                leader_ts_us,
                apply,
            } => {
                let apply = rkyv::deserialize::<CycleApply, rancor::Error>(apply)
                    .map_err(|e| e.to_string())?;
                reply
                    .results
                    .push(self.apply_cycle(log_index, leader_ts_us.to_native(), &apply));
            }
            ArchivedShardCommand::Execution {
                leader_ts_us,
                outcomes,
            } => {
                let outcomes = rkyv::deserialize::<Vec<BatchOutcome>, rancor::Error>(outcomes)
                    .map_err(|e| e.to_string())?;
                self.apply_execution(
                    log_index,
                    leader_ts_us.to_native(),
                    &outcomes,
                    &mut reply.results,
                );
            }
        }
        // The entry's finished records and keys go to the store with its
        // index; a store that failed stops the group (never a guess).
        self.end_entry().map_err(|e| e.to_string())
    }

    fn apply_noop(&mut self, log_index: u64) {
        ShardState::apply_noop(self, log_index);
    }

    fn prepare_memory(&mut self) -> bool {
        ShardState::prepare_memory(self)
    }

    fn attach_store(
        &mut self,
        dir: &Path,
        config: &StateStoreConfig,
        at_rest: Option<&Arc<settle_storage::Cipher>>,
        snapshot_index: u64,
    ) -> Result<(), String> {
        let store = settle_store::open_rocks(dir, config.rocks, at_rest.cloned(), &ID_COLUMNS)
            .map_err(|e| e.to_string())?;
        let flushed = snapshot_data::flushed_for(store.as_ref())?;
        if flushed < snapshot_index {
            return Err(format!(
                "the state store in {} holds the state up to snapshot {flushed}, older than the \
                 snapshot {snapshot_index} this shard restarts from: the store lost data. \
                 Restore the directory from a backup, or wipe this node's data directory so \
                 it rebuilds from a peer",
                dir.display()
            ));
        }
        // `group-1-usd/store`: the writer thread is `settle-wb-group-1-usd`.
        let name = dir
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "shard".into(), |n| n.to_string_lossy());
        let mut cold =
            Cold::open_as(store, config.key_filter_bytes, &name).map_err(|e| e.to_string())?;
        cold.records_max = config.hot_records_max;
        ShardState::attach_store(self, cold);
        self.configure_flows(config.flow_bucket_us);
        Ok(())
    }

    fn store(&mut self) -> Option<Arc<dyn settle_store::Store>> {
        Some(self.cold_reader().store().clone())
    }

    fn install(&mut self, restored: Self) {
        // The store (already loaded with the leader's cold part) stays; its
        // key filter is rebuilt from what it now holds.
        let cold = self.take_cold().reopened();
        *self = restored;
        ShardState::attach_store(self, cold);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.encode_snapshot()
    }

    fn fingerprint(&self) -> u64 {
        ShardState::fingerprint(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        ShardState::decode_snapshot(bytes)
    }
}

#[cfg(test)]
mod tests {
    use openraft::AsyncRuntime;
    use settle_codec::{Currency, ParticipantId, Transaction, TxResult, Window};

    use crate::raft::group::{open_group, GroupConfig};
    use crate::raft::runtime::GlommioRuntime;
    use crate::raft::type_config::ShardRequest;
    use crate::shard::command::encode_submit;
    use crate::shard::ShardState;

    fn tx(id: u128, amount: u64) -> Transaction {
        Transaction {
            id,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount,
            send: Currency::from_code("USD").unwrap(),
            receive: Currency::from_code("EUR").unwrap(),
            window: Window::T1,
            client_timestamp_us: 11,
        }
    }

    #[test]
    fn shard_group_keeps_transactions_across_restart_and_dedups_resubmits() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupConfig::default();
        let batches: Vec<Vec<Transaction>> = (0..5u128)
            .map(|b| {
                (0..200u128)
                    .map(|i| tx(b * 1_000 + i, 1 + i as u64))
                    .collect()
            })
            .collect();
        let mut rt = GlommioRuntime::new(1);
        rt.block_on(async {
            {
                let (raft, state) = open_group::<ShardState>(3, 1, dir.path(), &config)
                    .await
                    .expect("open");
                for (b, batch) in batches.iter().enumerate() {
                    let command = encode_submit(1_000 + b as u64, Currency::USD, batch);
                    let response = raft
                        .client_write(ShardRequest(command.to_vec()))
                        .await
                        .expect("write");
                    assert_eq!(response.data.results, vec![TxResult::Created; batch.len()]);
                }
                assert_eq!(state.borrow().len(), 1_000);
                raft.shutdown().await.expect("shutdown");
            }
            let (raft, state) = open_group::<ShardState>(3, 1, dir.path(), &config)
                .await
                .expect("reopen");
            {
                let state = state.borrow();
                assert_eq!(state.len(), 1_000, "every accepted transaction is back");
                let record = state.record(4_199).expect("the last transaction");
                assert_eq!(record.tx, tx(4_199, 200));
                assert_eq!(record.accepted_at_us, 1_004);
            }
            // A retry (re-stamped by the client) and a conflicting reuse of an id.
            let retry = Transaction {
                client_timestamp_us: 999,
                ..tx(2_005, 6)
            };
            let command = encode_submit(9_000, Currency::USD, &[retry, tx(2_006, 1), tx(7_000, 1)]);
            let response = raft
                .client_write(ShardRequest(command.to_vec()))
                .await
                .expect("write after reopen");
            assert_eq!(
                response.data.results,
                vec![TxResult::Duplicate, TxResult::Conflict, TxResult::Created]
            );
            assert_eq!(state.borrow().len(), 1_001);
            raft.shutdown().await.expect("shutdown");
        });
    }
}
