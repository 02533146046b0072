//! Recovery: the coordinator process dies (as kill -9 would stop it)
//! between any two steps of a cycle; after a restart every transaction is
//! settled exactly once or still waiting, never both; a decided cycle is
//! re-applied idempotently, an undecided one is decided again, and the
//! balances still equal the replay of the events.

mod cycles_support;

use std::collections::BTreeMap;
use std::time::Duration;

use cycles_support::{
    check_balances_replay, check_exactly_once, lookup_all, settle_cli, write_participants, Control,
    CycleNode,
};
use settle_codec::messages::CycleStatus;
use settle_codec::{Client, Currency, ParticipantId, Transaction, TxResult, TxStatus, Window};

/// No scheduled cycles: the test runs them.
const QUIET: [&str; 8] = [
    "--rtgs-cycle-ms",
    "0",
    "--window-schedule",
    "T0=off",
    "--window-schedule",
    "T1=off",
    "--window-schedule",
    "T2=off",
];

/// Banks 0..4 pay each other in USD and EUR; bank 0 is short of EUR so
/// some payments are deferred and stay waiting.
fn payments() -> Vec<Transaction> {
    (0..400u32)
        .map(|i| {
            let (send, receive) = match i % 3 {
                0 => (Currency::USD, Currency::USD),
                1 => (Currency::EUR, Currency::USD),
                _ => (Currency::USD, Currency::EUR),
            };
            let short = i % 4 == 0 && send == Currency::EUR;
            Transaction {
                id: 1_000 + u128::from(i),
                debtor: ParticipantId(i % 4),
                creditor: ParticipantId((i + 1) % 4),
                amount: (1_000_000 + u64::from(i) * 997) * if short { 4 } else { 1 },
                send,
                receive,
                window: Window::T0,
                client_timestamp_us: 0,
            }
        })
        .collect()
}

#[test]
fn a_crash_between_any_two_steps_settles_exactly_once_after_restart() {
    for step in [
        "started",
        "closed",
        "decided",
        "half-applied",
        "applied",
        "completed",
    ] {
        eprintln!("--- crash after {step}");
        let dir = tempfile::tempdir().unwrap();
        let participants = write_participants(
            dir.path(),
            &[
                (0, 1e12, &[("USD", 50_000_000_000), ("EUR", 1_000_000)]),
                (1, 1e12, &[("USD", 50_000_000_000), ("EUR", 50_000_000_000)]),
                (2, 1e12, &[("USD", 50_000_000_000), ("EUR", 50_000_000_000)]),
                (3, 1e12, &[("USD", 50_000_000_000), ("EUR", 50_000_000_000)]),
            ],
        );
        let mut node = CycleNode::start(
            &dir.path().join("data"),
            &participants,
            &QUIET,
            &[("SETTLE_TEST_CRASH_AT", step)],
        );
        let txs = payments();
        let mut client = Client::connect(node.listen).unwrap();
        assert!(client
            .submit(&txs)
            .unwrap()
            .iter()
            .all(|r| *r == TxResult::Created));
        drop(client);

        // The cycle never answers: the node aborts at the step.
        let mut control = Control::connect(node.listen);
        assert!(
            control.run_cycle(Window::T0).is_err(),
            "{step}: the node died"
        );
        let status = node.wait_exit(Duration::from_secs(30));
        assert!(
            !status.success(),
            "{step}: aborted, not a clean exit ({status})"
        );

        node.restart(&[]);
        let mut control = Control::connect(node.listen);
        // The recovered cycle is cycle 1 (re-decided or re-applied); run
        // another so anything left waiting gets its chance.
        let second = control.run_cycle(Window::T0).unwrap();
        let (cycles, next) = control.cycles();
        assert_eq!(cycles[0].cycle_id, 1, "{step}");
        assert!(
            cycles.iter().all(|c| c.status == CycleStatus::Applied),
            "{step}: every cycle finished: {cycles:?}"
        );
        assert!(next >= 2, "{step}");
        if second.cycle_id != 0 {
            assert!(second.cycle_id >= 2);
        }

        let ids: Vec<u128> = txs.iter().map(|t| t.id).collect();
        let parties: BTreeMap<u128, (u32, u32)> = txs
            .iter()
            .map(|t| (t.id, (t.debtor.0, t.creditor.0)))
            .collect();
        let items = lookup_all(node.listen, &ids);
        let (moves, settled, failed) = check_exactly_once(&items, &parties);
        assert_eq!(failed, 0, "no wires without execution");
        let waiting = items
            .iter()
            .filter(|i| matches!(i.status, TxStatus::Pending | TxStatus::Deferred))
            .count();
        eprintln!("{step}: {settled} settled, {waiting} waiting");
        assert_eq!(settled + waiting, txs.len(), "{step}");
        assert!(settled > 300, "{step}: most settle ({settled})");
        assert!(waiting > 0, "{step}: bank 0 is short of EUR: some wait");
        check_balances_replay(&control.balances(), &moves);
        let total: u64 = cycles.iter().map(|c| u64::from(c.settled)).sum();
        assert_eq!(
            total, settled as u64,
            "{step}: the cycles settled exactly these"
        );

        let audit = settle_cli(&[
            "audit",
            "--cycle",
            "1",
            "--target",
            &node.listen.to_string(),
        ]);
        let text = String::from_utf8_lossy(&audit.stdout);
        assert!(
            audit.status.success() && text.contains("VERIFIED"),
            "{step}: {text}"
        );
    }
}
