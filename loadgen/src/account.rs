//! What became of a run's transactions once its cycles have drained: the
//! acknowledged ids looked up, counted by status, the deferred ones by the
//! reason of their last deferral (so a report can say why a payment did not
//! settle, not only how many did).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use settle_codec::tx::{DeferReason, EventDetail};
use settle_codec::{LookupItem, TxStatus, MAX_LOOKUP_IDS};

use crate::run::Connection;

/// Most ids looked up; a larger run is accounted from an even sample of
/// this many (lookups cost one request per `MAX_LOOKUP_IDS`, and the account
/// is a proportion, not a ledger).
pub const ACCOUNT_IDS_MAX: usize = 50_000;

/// Counts by status, and the deferred ones by why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Acknowledged by the node.
    pub acked: usize,
    /// Looked up (all of `acked`, or a sample).
    pub looked_up: usize,
    pub by_status: BTreeMap<String, u64>,
    /// Deferred or pending-after-deferral transactions by the reason of their
    /// last deferral.
    pub deferred_by_reason: BTreeMap<String, u64>,
}

/// A status's name, from its JSON form (so a status added to the codec
/// is counted without a change here).
fn status_name(status: TxStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{status:?}"),
    }
}

/// A deferral reason's name (its JSON tag).
fn reason_name(reason: &DeferReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// What a status means for a payment, for the report.
fn status_meaning(status: &str) -> &'static str {
    match status {
        "settled" => "final",
        "deferred" => "left out by a cycle, waiting for the next",
        "pending" => "never in a cycle yet, waiting for its window's",
        "failed" => "execution gave up: reversed",
        "not_found" => "unknown to the node: a bug",
        _ => "",
    }
}

/// What a deferral reason means, for the report.
fn reason_meaning(reason: &str) -> &'static str {
    match reason {
        "liquidity" => "the debtor lacked the balance",
        "counterparty_limit" => "the creditor's counterparty limit was reached",
        "cost" => "waiting was priced cheaper than a wire",
        "unsolvable" => "the cycle could not be optimised",
        _ => "",
    }
}

impl Account {
    /// Counts looked-up items.
    pub fn of(acked: usize, items: &[LookupItem]) -> Account {
        let mut account = Account {
            acked,
            looked_up: items.len(),
            ..Account::default()
        };
        for item in items {
            *account
                .by_status
                .entry(status_name(item.status))
                .or_default() += 1;
            if item.status == TxStatus::Settled {
                continue;
            }
            let last_deferral = item.events.iter().rev().find_map(|e| match &e.detail {
                EventDetail::Defer { reason, .. } => Some(reason_name(reason)),
                _ => None,
            });
            if let Some(reason) = last_deferral {
                *account.deferred_by_reason.entry(reason).or_default() += 1;
            }
        }
        account
    }

    pub fn text(&self) -> String {
        let mut text = if self.looked_up == self.acked {
            format!(
                "what became of the {} acknowledged transactions:",
                self.acked
            )
        } else {
            format!(
                "what became of the {} acknowledged transactions (an even sample of {}):",
                self.acked, self.looked_up
            )
        };
        let share = |n: u64| 100.0 * n as f64 / self.looked_up.max(1) as f64;
        for (status, &n) in &self.by_status {
            text.push_str(&format!(
                "\n  {status:<9} {n:>9} ({:5.1} %) {}",
                share(n),
                status_meaning(status)
            ));
        }
        if !self.deferred_by_reason.is_empty() {
            text.push_str("\n  not settled, by the reason of the last deferral:");
            for (reason, &n) in &self.deferred_by_reason {
                text.push_str(&format!(
                    "\n    {n:>9} ({:5.1} %) {reason}: {}",
                    share(n),
                    reason_meaning(reason)
                ));
            }
        }
        text
    }
}

/// Looks up `acked` (or an even sample of [`ACCOUNT_IDS_MAX`]) at `target`.
pub async fn account(target: SocketAddr, acked: &[u128]) -> anyhow::Result<Account> {
    let step = acked.len().div_ceil(ACCOUNT_IDS_MAX).max(1);
    let ids: Vec<u128> = acked.iter().step_by(step).copied().collect();
    debug_assert!(ids.len() <= ACCOUNT_IDS_MAX);
    let mut connection = Connection::connect(target).await?;
    let mut items = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_LOOKUP_IDS) {
        items.extend(connection.lookup(chunk).await?);
    }
    Ok(Account::of(acked.len(), &items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: TxStatus, deferral: Option<DeferReason>) -> LookupItem {
        use settle_codec::tx::Actor;
        use settle_codec::{Currency, TxEvent, TxEventKind};
        let events = deferral
            .map(|reason| TxEvent {
                group: 0,
                entry_index: 1,
                at_us: 1,
                kind: TxEventKind::BatchOptimized,
                cycle_id: 1,
                batch: 0,
                amount: 1,
                currency: Currency::USD,
                actor: Actor::Solver,
                detail: EventDetail::Defer {
                    reason,
                    deferrals: 1,
                },
            })
            .into_iter()
            .collect();
        LookupItem {
            id: 1,
            status,
            events,
        }
    }

    #[test]
    fn the_account_counts_statuses_and_says_why_the_rest_did_not_settle() {
        let items = [
            item(TxStatus::Settled, None),
            item(TxStatus::Settled, Some(DeferReason::Liquidity { short: 5 })),
            item(
                TxStatus::Deferred,
                Some(DeferReason::Liquidity { short: 5 }),
            ),
            item(TxStatus::Pending, None),
        ];
        let account = Account::of(8, &items);
        assert_eq!(account.by_status["settled"], 2);
        assert_eq!(account.by_status["deferred"], 1);
        assert_eq!(account.by_status["pending"], 1);
        assert_eq!(
            account.deferred_by_reason,
            BTreeMap::from([("liquidity".to_string(), 1)]),
            "a settled transaction's earlier deferral is no reason"
        );
        let text = account.text();
        assert!(text.contains("an even sample of 4"), "{text}");
        assert!(text.contains("liquidity: the debtor lacked"), "{text}");
    }
}
