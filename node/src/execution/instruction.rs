//! A settlement instruction: one batch of a decided cycle, as one wire.
//!
//! It is what a payment rail sees, and what a reversal needs to restore
//! balances, so it carries the batch's money and the ids it settles.

use serde::{Deserialize, Serialize};
use settle_codec::{Currency, ParticipantId, Window};

/// Retries after the first attempt unless an instruction says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// Most retries an instruction may ask for: the backoff schedule's bound.
/// Beyond a handful, a failed wire is better reversed and re-batched.
pub const MAX_RETRIES_LIMIT: u32 = super::backoff::BACKOFF_RETRIES_MAX as u32;

/// Most transaction ids one instruction may carry. A wire's batch is capped
/// by the cycle's `max_batch_size` (1,000 in the batching spec); this is a
/// backstop so one bad instruction cannot pin unbounded memory in the queue.
pub const INSTRUCTION_TRANSACTIONS_MAX: usize = 65_536;

/// One wire to a payment rail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SettlementInstruction {
    /// Unique among instructions in flight; the rail's idempotency key.
    pub instruction_id: u64,
    pub batch_id: u64,
    pub cycle_id: u64,
    /// Who pays: the engine's settlement account or the debtor side.
    pub source: ParticipantId,
    /// Who is paid: the creditor.
    pub destination: ParticipantId,
    /// In minor units of `currency`.
    pub amount: u64,
    pub currency: Currency,
    pub window: Window,
    /// The bank the rail must reach to deliver (an unreachable one makes the
    /// engine try an alternate route).
    pub counterparty: ParticipantId,
    /// Retries already made (0 before the first attempt).
    pub retry_count: u32,
    pub max_retries: u32,
    /// The settled transactions this wire pays, so a reversal can name them.
    pub transaction_ids: Vec<u128>,
}

impl SettlementInstruction {
    /// The number (from 1) of the attempt the instruction is due for.
    pub fn attempt(&self) -> u32 {
        self.retry_count.saturating_add(1)
    }

    /// Whether another retry is allowed after a failed attempt.
    pub fn can_retry(&self) -> bool {
        self.retry_count < self.max_retries
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A USD instruction of 1,000.00 from bank_01 to bank_02 with default retries.
    pub(crate) fn usd_instruction(instruction_id: u64) -> SettlementInstruction {
        SettlementInstruction {
            instruction_id,
            batch_id: instruction_id.wrapping_add(100),
            cycle_id: 7,
            source: ParticipantId(1),
            destination: ParticipantId(2),
            amount: 100_000,
            currency: Currency::USD,
            window: Window::Rtgs,
            counterparty: ParticipantId(2),
            retry_count: 0,
            max_retries: DEFAULT_MAX_RETRIES,
            transaction_ids: vec![u128::from(instruction_id) << 64 | 1, 2],
        }
    }

    #[test]
    fn attempts_count_from_one_and_retries_stop_at_the_maximum() {
        let mut instr = usd_instruction(1);
        assert_eq!(instr.attempt(), 1);
        assert!(instr.can_retry());
        instr.retry_count = 3;
        assert_eq!(instr.attempt(), 4);
        assert!(!instr.can_retry());
    }

    #[test]
    fn serde_json_round_trip_keeps_every_field() {
        let instr = usd_instruction(9);
        let json = serde_json::to_string(&instr).expect("serialise");
        assert!(json.contains("\"bank_01\""), "{json}");
        assert!(json.contains("\"USD\""), "{json}");
        let back: SettlementInstruction = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, instr);
    }
}
