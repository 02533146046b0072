//! TEST ONLY: a tiny [`GroupState`] for exercising the production log store,
//! state machine and group wiring without the shard's types.
//!
//! A command is a u64 (little endian) added to a running sum; each apply
//! replies with one `Created` result. It checks the alignment promise of
//! `GroupState::apply` on every command.

use settle_codec::TxResult;

use crate::raft::state_machine::{GroupState, COMMAND_ALIGN};
use crate::raft::type_config::{ShardReply, ShardRequest};

/// Bytes of an encoded snapshot: three u64.
const SNAPSHOT_BYTES: usize = 24;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub last_index: u64,
    pub commands: u64,
    pub sum: u64,
}

/// A command adding `value`.
pub fn command(value: u64) -> ShardRequest {
    ShardRequest(value.to_le_bytes().to_vec())
}

impl GroupState for Tally {
    fn apply(
        &mut self,
        log_index: u64,
        command: &[u8],
        reply: &mut ShardReply,
    ) -> Result<(), String> {
        assert_eq!(
            command.as_ptr() as usize % COMMAND_ALIGN,
            0,
            "commands arrive aligned"
        );
        assert!(log_index > self.last_index, "entries apply in log order");
        let value: [u8; 8] = command
            .try_into()
            .map_err(|_| format!("a tally command is 8 bytes, got {}", command.len()))?;
        self.last_index = log_index;
        self.commands += 1;
        self.sum += u64::from_le_bytes(value);
        reply.results.push(TxResult::Created);
        Ok(())
    }

    fn apply_noop(&mut self, log_index: u64) {
        assert!(log_index > self.last_index, "entries apply in log order");
        self.last_index = log_index;
    }

    fn fingerprint(&self) -> u64 {
        crate::raft::digest::fold(0, &[self.last_index, self.commands, self.sum])
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SNAPSHOT_BYTES);
        for v in [self.last_index, self.commands, self.sum] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != SNAPSHOT_BYTES {
            return Err(format!(
                "a tally snapshot is {SNAPSHOT_BYTES} bytes, got {}",
                bytes.len()
            ));
        }
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(Tally {
            last_index: word(0),
            commands: word(1),
            sum: word(2),
        })
    }
}
