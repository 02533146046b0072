//! Which transactions a lookup may show. Decided by the client port from
//! the caller's role ([`crate::access`]); applied here, where the record and
//! its parties are. A record the caller may not see is answered exactly like
//! an id nobody knows (status NotFound, no events), so its existence does
//! not leak; the refusal is logged.

use settle_codec::{ParticipantId, Transaction};

/// Whose transactions a lookup shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Every transaction (operators, auditors, admins, an `--insecure` node).
    All,
    /// Only those this participant is party to, as debtor (it paid) or as
    /// creditor (it is paid: a bank reconciles its incoming payments).
    PartyTo(ParticipantId),
    /// Nothing (a submitter whose name is no participant's).
    Nothing,
}

impl Visibility {
    /// Whether `tx` may be shown; a refusal is logged.
    pub fn shows(self, tx: &Transaction) -> bool {
        let shown = match self {
            Visibility::All => true,
            Visibility::PartyTo(p) => tx.debtor == p || tx.creditor == p,
            Visibility::Nothing => false,
        };
        if !shown {
            tracing::warn!(
                id = %settle_codec::format_id(tx.id),
                viewer = ?self,
                "lookup of a transaction the caller is no party to: answered not found"
            );
        }
        shown
    }
}

#[cfg(test)]
mod tests {
    use settle_codec::{Currency, Window};

    use super::*;

    #[test]
    fn a_participant_sees_what_it_pays_and_is_paid_and_nothing_else() {
        let tx = Transaction {
            id: 1,
            debtor: ParticipantId(1),
            creditor: ParticipantId(2),
            amount: 5,
            send: Currency::USD,
            receive: Currency::USD,
            window: Window::Rtgs,
            client_timestamp_us: 0,
        };
        assert!(Visibility::All.shows(&tx));
        assert!(Visibility::PartyTo(ParticipantId(1)).shows(&tx));
        assert!(Visibility::PartyTo(ParticipantId(2)).shows(&tx));
        assert!(!Visibility::PartyTo(ParticipantId(3)).shows(&tx));
        assert!(!Visibility::Nothing.shows(&tx));
    }
}
