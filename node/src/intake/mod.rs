//! Intake: the binary protocol over TCP and JSON over HTTP, validation, and
//! the split of each request into per-shard sub-batches.

pub mod limits;
pub mod router;
pub mod tcp;
pub mod validate;

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use settle_codec::{Currency, ParticipantId, Transaction, TxResult};

use crate::metrics;
use crate::participants::Registry;
use crate::request_log::Stages;
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
    /// Validates, claims each id at its home shard, books each transaction
    /// in the shard of its send currency, and puts the results back in
    /// request order.
    ///
    /// Ids are unique engine-wide: a transaction whose id's home shard
    /// ([`ShardMap::home_of`]) is not its booking shard first reserves the
    /// id there (one more log entry, in another group, for those); a
    /// conflict there is the answer, and only a reserved id is booked. All
    /// sub-batches of a step go to their shards concurrently.
    ///
    /// A shard failure fails the whole request: some of its transactions may
    /// have been reserved or accepted, which a retry (same ids, same bodies)
    /// answers as Duplicate, so nothing is lost or doubled.
    ///
    /// Every transaction is counted in this thread's metrics cells, by
    /// booking shard and result, with the request's latency.
    pub async fn submit(
        &self,
        transactions: impl ExactSizeIterator<Item = Transaction>,
    ) -> Result<Vec<TxResult>, ShardError> {
        self.submit_staged(transactions, &mut Stages::start()).await
    }

    /// [`Intake::submit`], marking its stages in `stages` (validate, claim
    /// when ids live in other shards, commit) for the slow-request line.
    pub async fn submit_staged(
        &self,
        transactions: impl ExactSizeIterator<Item = Transaction>,
        stages: &mut Stages,
    ) -> Result<Vec<TxResult>, ShardError> {
        let started = std::time::Instant::now();
        // Each transaction's booking shard (its send currency's), for the count.
        let mut groups: Vec<Option<GroupId>> = Vec::with_capacity(transactions.len());
        let answered = self.submit_grouped(transactions, &mut groups, stages).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match &answered {
            Ok(results) => metrics::cells::transactions_answered(
                groups
                    .iter()
                    .zip(results)
                    .map(|(&g, r)| (g, metrics::Outcome::of(r))),
                latency_ms,
            ),
            Err(_) => metrics::cells::transactions_answered(
                groups.iter().map(|&g| (g, metrics::Outcome::Unavailable)),
                latency_ms,
            ),
        }
        answered
    }

    /// [`Intake::submit`]'s work; pushes each transaction's booking shard
    /// to `groups` as it goes.
    async fn submit_grouped(
        &self,
        transactions: impl ExactSizeIterator<Item = Transaction>,
        groups: &mut Vec<Option<GroupId>>,
        stages: &mut Stages,
    ) -> Result<Vec<TxResult>, ShardError> {
        let count = transactions.len();
        let participants = self.participants.load();
        let mut results = vec![TxResult::Created; count];
        let mut claims = Vec::new();
        let mut bookings = Vec::with_capacity(count);
        for (position, tx) in transactions.enumerate() {
            let group = self.shards.shard_of(tx.send);
            groups.push(group);
            match validate::validate(&tx, &participants, &self.shards) {
                Ok(()) => {
                    let books = group.expect("validated: the send currency has a shard");
                    let home = self.shards.home_of(tx.id);
                    if home != books {
                        claims.push((home, tx, position as u32));
                    }
                    bookings.push((books, tx, position as u32));
                }
                Err(rejection) => {
                    results[position] = TxResult::Rejected {
                        reason: rejection.reason,
                        field: rejection.field,
                    };
                }
            }
        }
        stages.mark("validate");
        if !claims.is_empty() {
            for (position, result) in self.to_shards(claims).await? {
                if result != TxResult::Created && result != TxResult::Duplicate {
                    results[position as usize] = result;
                }
            }
            // Only ids reserved for this body (now or before) are booked.
            bookings.retain(|&(_, _, position)| results[position as usize] == TxResult::Created);
            stages.mark("claim");
        }
        for (position, result) in self.to_shards(bookings).await? {
            results[position as usize] = result;
        }
        stages.mark("commit");
        Ok(results)
    }

    /// Sends each transaction to its shard, one sub-batch per shard, all at
    /// once; the results with the request positions they belong to.
    async fn to_shards(
        &self,
        items: Vec<(GroupId, Transaction, u32)>,
    ) -> Result<Vec<(u32, TxResult)>, ShardError> {
        // Per shard: its transactions and their positions in the request.
        let mut split: Vec<(Vec<Transaction>, Vec<u32>)> =
            vec![(Vec::new(), Vec::new()); self.shards.shard_count()];
        for (group, tx, position) in items {
            let (txs, positions) = &mut split[group as usize - 1];
            txs.push(tx);
            positions.push(position);
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
        let mut out = Vec::new();
        for (answer, positions) in join_all(pending).await.into_iter().zip(positions_of) {
            let shard_results = answer?;
            assert_eq!(
                shard_results.len(),
                positions.len(),
                "a shard answers every transaction"
            );
            out.extend(positions.into_iter().zip(shard_results));
        }
        Ok(out)
    }

    /// An operator's deposit of `amount` `currency` to `participant`, under
    /// an id unique engine-wide (reserved at its home shard first, like a
    /// transaction id). The result and the balance after it; `None` when no
    /// shard serves `currency`.
    pub async fn deposit(
        &self,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    ) -> Option<Result<(TxResult, u64), ShardError>> {
        let books = self.shards.shard_of(currency)?;
        Some(
            self.deposit_in(books, deposit_id, participant, currency, amount)
                .await,
        )
    }

    /// [`Intake::deposit`] once the booking shard is known.
    async fn deposit_in(
        &self,
        books: GroupId,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    ) -> Result<(TxResult, u64), ShardError> {
        let home = self.shards.home_of(deposit_id);
        if home != books {
            let (claim, _) = self
                .router
                .deposit(home, deposit_id, participant, currency, amount)
                .await?;
            if claim != TxResult::Created && claim != TxResult::Duplicate {
                return Ok((claim, 0));
            }
        }
        self.router
            .deposit(books, deposit_id, participant, currency, amount)
            .await
    }
}
