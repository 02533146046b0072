//! Intake: the binary protocol over TCP and JSON over HTTP, validation, and
//! the split of each request into per-shard sub-batches.

pub mod router;
pub mod tcp;
pub mod validate;

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use settle_codec::{Transaction, TxResult};

use crate::participants::Registry;
use crate::shard::{GroupId, ShardMap};
pub use router::{ShardError, ShardRouter};

/// What every intake path (TCP, HTTP, Kafka) needs: where shards are, who the
/// participants are now, and how to reach the shards' cores.
#[derive(Clone)]
pub struct Intake {
    pub shards: ShardMap,
    pub participants: Arc<ArcSwap<Registry>>,
    pub router: ShardRouter,
}

impl Intake {
    /// Validates, splits by shard, submits every sub-batch concurrently and
    /// puts the results back in request order.
    ///
    /// A shard failure fails the whole request: some of its transactions may
    /// have been accepted by other shards, which a retry (same ids) answers
    /// as Duplicate, so nothing is lost or doubled.
    pub async fn submit(
        &self,
        transactions: impl ExactSizeIterator<Item = Transaction>,
    ) -> Result<Vec<TxResult>, ShardError> {
        let count = transactions.len();
        let participants = self.participants.load();
        let mut results = vec![TxResult::Created; count];
        // Per shard: its transactions and their positions in the request.
        let mut split: Vec<(Vec<Transaction>, Vec<u32>)> =
            vec![(Vec::new(), Vec::new()); self.shards.shard_count()];
        for (position, tx) in transactions.enumerate() {
            match validate::validate(&tx, &participants, &self.shards) {
                Ok(()) => {
                    let group = self
                        .shards
                        .shard_of(tx.send)
                        .expect("validated: the send currency has a shard");
                    let (txs, positions) = &mut split[group as usize - 1];
                    txs.push(tx);
                    positions.push(position as u32);
                }
                Err(rejection) => {
                    results[position] = TxResult::Rejected {
                        reason: rejection.reason,
                        field: rejection.field,
                    };
                }
            }
        }
        let mut positions_of = Vec::new();
        let mut pending = Vec::new();
        for (i, (txs, positions)) in split.into_iter().enumerate() {
            if txs.is_empty() {
                continue;
            }
            positions_of.push(positions);
            pending.push(self.router.submit((i + 1) as GroupId, txs));
        }
        for (answer, positions) in join_all(pending).await.into_iter().zip(positions_of) {
            let shard_results = answer?;
            assert_eq!(
                shard_results.len(),
                positions.len(),
                "a shard answers every transaction"
            );
            for (result, position) in shard_results.into_iter().zip(positions) {
                results[position as usize] = result;
            }
        }
        Ok(results)
    }
}
