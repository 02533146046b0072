//! Settlement cycles end to end on a real `settle` process: a realistic
//! load settles exactly once, balances equal the replay of the events,
//! every cycle's recorded cost is the checker's, and a deferred RTGS
//! payment explains itself in its audit trail.

mod cycles_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cycles_support::{
    check_balances_replay, check_exactly_once, lookup_all, settle_cli, write_participants, Control,
    CycleNode,
};
use settle_codec::messages::{CycleStatus, DecisionMethod};
use settle_codec::{
    Client, Currency, ParticipantId, Transaction, TxEventKind, TxResult, TxStatus, Window,
};

const CURRENCIES: [(Currency, f64, u32); 4] = [
    (Currency::USD, 1.0, 2),
    (Currency::EUR, 1.08, 2),
    (Currency::GBP, 1.27, 2),
    (Currency::JPY, 0.0067, 0),
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A participant, Zipf-skewed: the first banks send most.
    fn bank(&mut self, n: u32) -> u32 {
        let weights: Vec<f64> = (0..n).map(|i| 1.0 / f64::from(i + 1).powf(1.1)).collect();
        let mut x = self.unit() * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i as u32;
            }
            x -= w;
        }
        n - 1
    }
}

/// Payments like the load generator's: skewed banks, log-normal amounts
/// around USD 5,000, 70 % in the debtor's home currency, all four windows.
fn workload(seed: u64, first_id: u128, count: usize, banks: u32) -> Vec<Transaction> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|i| {
            let debtor = rng.bank(banks);
            let mut creditor = rng.bank(banks);
            if creditor == debtor {
                creditor = (debtor + 1) % banks;
            }
            let send = debtor as usize % 4;
            let receive = if rng.unit() < 0.7 {
                send
            } else {
                (send + 1 + (rng.next() % 3) as usize) % 4
            };
            let normal = (-2.0 * rng.unit().max(1e-12).ln()).sqrt()
                * (2.0 * std::f64::consts::PI * rng.unit()).cos();
            let usd = (5_000f64.ln() + 1.2 * normal).exp().min(5e7);
            let (currency, rate, units) = CURRENCIES[send];
            let amount = ((usd / rate) * 10f64.powi(units as i32)).round().max(1.0) as u64;
            Transaction {
                id: first_id + i as u128,
                debtor: ParticipantId(debtor),
                creditor: ParticipantId(creditor),
                amount,
                send: currency,
                receive: CURRENCIES[receive].0,
                window: Window::ALL[(rng.next() % 4) as usize],
                client_timestamp_us: 0,
            }
        })
        .collect()
}

#[test]
fn realistic_load_settles_exactly_once_and_balances_replay_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let banks = 16;
    let participants = settle_tests::write_participants(dir.path(), banks).unwrap();
    let data = dir.path().join("data");
    let mut node = CycleNode::start(
        &data,
        &participants,
        &[
            "--rtgs-cycle-ms",
            "250",
            "--window-schedule",
            "T0=every:1s",
            "--window-schedule",
            "T1=every:1500ms",
            "--window-schedule",
            "T2=off",
        ],
        &[],
    );

    // Four clients submit 40,000 payments while the cycles run.
    let listen = node.listen;
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            std::thread::spawn(move || {
                let txs = workload(c + 11, (c as u128 + 1) << 32, 10_000, banks);
                let mut client = Client::connect(listen).unwrap();
                for batch in txs.chunks(500) {
                    let results = client.submit(batch).unwrap();
                    assert!(
                        results.iter().all(|r| *r == TxResult::Created),
                        "{results:?}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                txs
            })
        })
        .collect();
    let txs: Vec<Transaction> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    // Every window gets a cycle on request, T2 only this way.
    let mut control = Control::connect(node.listen);
    for window in Window::ALL {
        let summary = control.run_cycle(window).unwrap();
        assert!(summary.cycle_id == 0 || summary.status == CycleStatus::Applied);
    }
    // A quiet node (no scheduled cycles) for the checks; the restart also
    // shows balances and trails are durable.
    node.kill9();
    node = CycleNode::start(
        &data,
        &participants,
        &[
            "--rtgs-cycle-ms",
            "0",
            "--window-schedule",
            "T0=off",
            "--window-schedule",
            "T1=off",
            "--window-schedule",
            "T2=off",
        ],
        &[],
    );
    let mut control = Control::connect(node.listen);

    let ids: Vec<u128> = txs.iter().map(|t| t.id).collect();
    let parties: BTreeMap<u128, (u32, u32)> = txs
        .iter()
        .map(|t| (t.id, (t.debtor.0, t.creditor.0)))
        .collect();
    let items = lookup_all(node.listen, &ids);
    let (moves, settled, failed) = check_exactly_once(&items, &parties);
    assert_eq!(failed, 0, "no wires without execution");
    eprintln!("{settled} of {} settled", txs.len());
    assert!(
        settled > txs.len() / 2,
        "most of a realistic load settles: {settled} of {}",
        txs.len()
    );
    let balances = control.balances();
    check_balances_replay(&balances, &moves);

    // Every cycle: applied, its record re-costs to its recorded cost, and
    // the sum of balances in each currency moved only by the net flows.
    let (cycles, next) = control.cycles();
    assert_eq!(cycles.len() as u64, next - 1, "every cycle is listed");
    assert!(cycles.len() <= 64, "all records are kept: {}", cycles.len());
    let mut windows = std::collections::BTreeSet::new();
    let mut net: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut settled_in_cycles = 0u64;
    for s in &cycles {
        assert_eq!(s.status, CycleStatus::Applied, "cycle {}", s.cycle_id);
        windows.insert(s.window);
        settled_in_cycles += u64::from(s.settled);
        let record = control.record(s.cycle_id).unwrap();
        assert_eq!(record.summary.settled, s.settled);
        for f in &record.net_flows {
            *net.entry(f.currency).or_default() += i128::from(f.minor);
        }
        let audit = settle_cli(&[
            "audit",
            "--cycle",
            &s.cycle_id.to_string(),
            "--target",
            &node.listen.to_string(),
        ]);
        let text = String::from_utf8_lossy(&audit.stdout);
        assert!(
            audit.status.success() && text.contains("VERIFIED"),
            "cycle {}: {text}{}",
            s.cycle_id,
            String::from_utf8_lossy(&audit.stderr)
        );
        if s.method == DecisionMethod::Optimiser && s.candidates > 50 {
            assert!(
                s.cost.total <= s.naive_cost.total + 0.02,
                "cycle {}: the optimiser is never worse than the naive baseline",
                s.cycle_id
            );
        }
    }
    assert_eq!(
        settled_in_cycles, settled as u64,
        "cycles settled exactly the settled ones"
    );
    assert_eq!(windows.len(), 4, "every window had a cycle: {windows:?}");
    for (currency, _, _) in CURRENCIES {
        let of = |f: fn(&settle_codec::messages::Balance) -> u64| -> i128 {
            balances
                .iter()
                .filter(|b| b.currency == currency)
                .map(|b| f(b) as i128)
                .sum()
        };
        let moved = of(|b| b.balance) - of(|b| b.opening) - of(|b| b.deposited);
        assert_eq!(
            moved,
            net.get(&currency).copied().unwrap_or(0),
            "{currency}: the sum of balances changed only by the decisions' net flows"
        );
    }
}

#[test]
fn deferred_rtgs_payment_explains_itself_and_settles_after_a_deposit() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(
        dir.path(),
        &[(0, 1e9, &[("USD", 100_000)]), (1, 1e9, &[("EUR", 5)])],
    );
    let http = settle_tests::free_port();
    let http_arg = http.to_string();
    let node = CycleNode::start(
        &dir.path().join("data"),
        &participants,
        &["--rtgs-cycle-ms", "50", "--http", &http_arg],
        &[],
    );
    let target = node.listen.to_string();
    let payment = Transaction {
        id: 0xfeed,
        debtor: ParticipantId(0),
        creditor: ParticipantId(1),
        amount: 500_000,
        send: Currency::USD,
        receive: Currency::USD,
        window: Window::Rtgs,
        client_timestamp_us: 0,
    };
    let mut client = Client::connect(node.listen).unwrap();
    assert_eq!(client.submit(&[payment]).unwrap(), vec![TxResult::Created]);
    let wait_for = |client: &mut Client, status: TxStatus| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let item = client.lookup(&[payment.id]).unwrap().remove(0);
            if item.status == status {
                return item;
            }
            assert!(Instant::now() < deadline, "still {:?}", item.status);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&mut client, TxStatus::Deferred);
    let audit = settle_cli(&["audit", "0xfeed", "--target", &target]);
    assert!(!audit.status.success(), "0x is not an id spelling");
    let id = format!("{:032x}", payment.id);
    let audit = settle_cli(&["audit", &id, "--target", &target]);
    let text = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(audit.status.success(), "{text}");
    assert!(text.contains("BATCH_OPTIMIZED"), "{text}");
    assert!(
        text.contains("short by 4000.00 USD"),
        "the deferral says by how much the debtor is short: {text}"
    );

    // While nothing changes, the scheduled RTGS cycles do not decide the
    // same deferral again every 50 ms (each would append log entries).
    let next_cycle_id = || {
        let (status, body) =
            settle_tests::http_request(http, "GET", "/v1/cycles?after=0&max=1", None).unwrap();
        assert_eq!(status, 200, "{body}");
        let field = "\"next_cycle_id\":";
        let at = body.find(field).expect("next_cycle_id") + field.len();
        let digits: String = body[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse::<u64>().expect("a number")
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = next_cycle_id();
    std::thread::sleep(Duration::from_millis(1_000));
    let after = next_cycle_id();
    assert!(
        after <= before + 1,
        "cycles {before} -> {after} in 1 s while nothing changed"
    );

    // Funding is idempotent by id and replicated; the next RTGS cycle settles.
    let mut control = Control::connect(node.listen);
    assert_eq!(
        control.deposit(42, 0, Currency::USD, 1_000_000),
        (TxResult::Created, 1_100_000)
    );
    assert_eq!(
        control.deposit(42, 0, Currency::USD, 1_000_000),
        (TxResult::Duplicate, 1_100_000)
    );
    let settled = wait_for(&mut client, TxStatus::Settled);
    let kinds: Vec<&str> = settled.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"TRANSACTION_SUBMITTED"));
    assert_eq!(kinds.last(), Some(&"SETTLEMENT_CONFIRMED"));
    assert!(kinds.contains(&"CONSENSUS_ACHIEVED"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "BATCH_CREATED").count(),
        2,
        "the deferring cycle and the settling one: {kinds:?}"
    );
    let balances = control.balances();
    let of = |p: u32| {
        balances
            .iter()
            .find(|b| b.participant == ParticipantId(p) && b.currency == Currency::USD)
            .copied()
            .unwrap()
    };
    assert_eq!(
        (of(0).balance, of(0).deposited, of(0).debited),
        (600_000, 1_000_000, 500_000)
    );
    assert_eq!((of(1).balance, of(1).credited), (500_000, 500_000));

    let (status, body) =
        settle_tests::http_request(http, "GET", &format!("/v1/transactions/{id}/events"), None)
            .unwrap();
    assert_eq!(status, 200, "{body}");
    for needle in [
        "\"SETTLEMENT_CONFIRMED\"",
        "short by 4000.00 USD",
        "\"entry_id\"",
        "\"actor\":\"solver\"",
    ] {
        assert!(body.contains(needle), "{needle} in {body}");
    }
    let cycle = settled
        .events
        .last()
        .map(|e| e.cycle_id)
        .unwrap()
        .to_string();
    let audit = settle_cli(&["audit", "--cycle", &cycle, "--target", &target]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success() && text.contains("VERIFIED"),
        "{text}"
    );

    // The same over HTTP: the cycle re-costed, balances, an idempotent deposit.
    let get = |path: &str| settle_tests::http_request(http, "GET", path, None).unwrap();
    let (status, body) = get(&format!("/v1/cycles/{cycle}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"verified\":true"), "{body}");
    let (status, body) = get("/v1/balances?participant=bank_01");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"credited\":500000"), "{body}");
    let deposit = r#"{"deposit_id":"0000000000000000000000000000004d","participant":"bank_01","currency":"USD","amount":5}"#;
    let post = || settle_tests::http_request(http, "POST", "/v1/deposits", Some(deposit)).unwrap();
    assert_eq!(post().0, 201);
    assert_eq!(post().0, 200, "the same deposit id again is a duplicate");
    let (status, body) = get("/v1/cycles?after=0&max=1000");
    assert_eq!(status, 200);
    assert!(body.contains("\"next_cycle_id\""), "{body}");
    let (status, _) = get("/v1/cycles/999999");
    assert_eq!(status, 404);
    let (status, body) = get("/v1/balances?participant=bank_99");
    assert_eq!(
        status, 404,
        "an unregistered participant has no balances: {body}"
    );
    assert!(body.contains("participant"), "{body}");
}

#[test]
fn wires_confirm_or_fail_and_reverse_with_execution_on() {
    let dir = tempfile::tempdir().unwrap();
    let funded: &[(&str, u64)] = &[("USD", 10_000_000_000)];
    let participants = write_participants(
        dir.path(),
        &[
            (0, 1e12, funded),
            (1, 1e12, funded),
            (2, 1e12, funded),
            (3, 1e12, funded),
        ],
    );
    let mut node = CycleNode::start(
        &dir.path().join("data"),
        &participants,
        &[
            "--rtgs-cycle-ms",
            "100",
            "--execution",
            "simulated",
            "--execution-failure-ppm",
            "0",
            "--execution-unreachable",
            "bank_03",
            "--execution-retry-ms",
            "20,40,1500",
        ],
        &[],
    );
    // USD RTGS payments among four banks; the wires to bank_03 cannot land.
    let txs: Vec<Transaction> = (0..200u32)
        .map(|i| Transaction {
            id: 50_000 + u128::from(i),
            debtor: ParticipantId(i % 4),
            creditor: ParticipantId((i + 1 + i / 4 % 3) % 4),
            amount: 100_000 + u64::from(i),
            send: Currency::USD,
            receive: Currency::USD,
            window: Window::Rtgs,
            client_timestamp_us: 0,
        })
        .collect();
    let mut client = Client::connect(node.listen).unwrap();
    assert!(client
        .submit(&txs)
        .unwrap()
        .iter()
        .all(|r| *r == TxResult::Created));
    let ids: Vec<u128> = txs.iter().map(|t| t.id).collect();
    // The wires to bank_03 wait for their third retry when the node dies;
    // after the restart they are sent again from the shards' state.
    std::thread::sleep(Duration::from_millis(800));
    let in_flight = lookup_all(node.listen, &ids)
        .iter()
        .filter(|i| {
            i.status == TxStatus::Settled
                && i.events
                    .last()
                    .is_some_and(|e| e.kind == TxEventKind::SettlementInitiated)
        })
        .count();
    assert!(in_flight > 0, "some wires are in flight at the crash");
    node.kill9();
    node.restart(&[]);
    // Wait until every wire has its final answer (FedWire-like: < 0.2 s;
    // the unreachable ones after their retries).
    let deadline = Instant::now() + Duration::from_secs(60);
    let items = loop {
        let items = lookup_all(node.listen, &ids);
        let done = items.iter().all(|i| {
            i.events.iter().any(|e| {
                matches!(
                    e.kind,
                    TxEventKind::SettlementConfirmed | TxEventKind::SettlementReversed
                )
            })
        });
        if done {
            break items;
        }
        assert!(Instant::now() < deadline, "wires still in flight");
        std::thread::sleep(Duration::from_millis(100));
    };
    let parties: BTreeMap<u128, (u32, u32)> = txs
        .iter()
        .map(|t| (t.id, (t.debtor.0, t.creditor.0)))
        .collect();
    let (moves, settled, failed) = check_exactly_once(&items, &parties);
    let to_bank_3 = txs
        .iter()
        .filter(|t| t.creditor == ParticipantId(3))
        .count();
    assert_eq!(failed, to_bank_3, "exactly the wires to bank_03 failed");
    assert_eq!(settled + failed, txs.len());
    for (item, tx) in items.iter().zip(&txs) {
        let last: Vec<&str> = item
            .events
            .iter()
            .rev()
            .take(2)
            .map(|e| e.kind.as_str())
            .collect();
        if tx.creditor == ParticipantId(3) {
            assert_eq!(item.status, TxStatus::Failed);
            assert_eq!(last, ["SETTLEMENT_REVERSED", "SETTLEMENT_FAILED"]);
        } else {
            assert_eq!(item.status, TxStatus::Settled);
            assert_eq!(last[0], "SETTLEMENT_CONFIRMED");
        }
    }
    let mut control = Control::connect(node.listen);
    let balances = control.balances();
    check_balances_replay(&balances, &moves);
    let bank_3 = balances
        .iter()
        .find(|b| b.participant == ParticipantId(3))
        .unwrap();
    assert_eq!(
        (bank_3.credited, bank_3.incoming),
        (0, 0),
        "no credit ever landed"
    );
    assert!(
        bank_3.refunded == 0 && bank_3.debited > 0,
        "its own payments went out"
    );
    let total: u128 = balances.iter().map(|b| u128::from(b.balance)).sum();
    assert_eq!(
        total,
        4 * 10_000_000_000,
        "same currency: money moved, never made or lost"
    );
}

#[test]
fn a_small_rtgs_payment_settles_by_its_deadline_and_an_unfundable_one_rolls_to_t0() {
    // Issue 13: a 1.00 payment waited for ever (0.005 USD per cycle to wait
    // against a 5 USD wire), and a payment nobody could fund did too.
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(
        dir.path(),
        &[(0, 1e9, &[("USD", 100_000)]), (1, 1e9, &[]), (2, 1e9, &[])],
    );
    let node = CycleNode::start(
        &dir.path().join("data"),
        &participants,
        &[
            "--rtgs-cycle-ms",
            "50",
            "--rtgs-max-wait",
            "3s",
            "--window-schedule",
            "T0=off",
            // What the optimiser decides is under test, not how fast a
            // debug build decides it: with the production budget (10 ms
            // for a few candidates) a loaded box gets the fallback's
            // grouping instead, which settles at once.
            "--solver-budget-ms",
            "500",
        ],
        &[],
    );
    let target = node.listen.to_string();
    let payment = |id: u128, debtor: u32, amount: u64| Transaction {
        id,
        debtor: ParticipantId(debtor),
        creditor: ParticipantId(1),
        amount,
        send: Currency::USD,
        receive: Currency::USD,
        window: Window::Rtgs,
        client_timestamp_us: 0,
    };
    let (small, broke) = (payment(0x5a11, 0, 100), payment(0xb40e, 2, 50_000));
    let mut client = Client::connect(node.listen).unwrap();
    assert_eq!(
        client.submit(&[small, broke]).unwrap(),
        vec![TxResult::Created; 2]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (small_item, broke_item) = loop {
        let mut items = client.lookup(&[small.id, broke.id]).unwrap();
        let rolled = items[1]
            .events
            .iter()
            .any(|e| e.kind.as_str() == "TRANSACTION_ROLLED");
        if items[0].status == TxStatus::Settled && rolled {
            break (items.remove(0), items.remove(0));
        }
        assert!(
            Instant::now() < deadline,
            "small {:?}, broke {:?}",
            items[0].status,
            items[1].events
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The small one was deferred for cost first: the deadline settled it,
    // within its 3 s (plus a cycle and a busy box's slack).
    let submitted = small_item.events[0].at_us;
    let settled = small_item
        .events
        .iter()
        .find(|e| e.kind.as_str() == "SETTLEMENT_INITIATED")
        .expect("settled")
        .at_us;
    assert!(
        settled - submitted < 8_000_000,
        "settled {} ms after it was accepted",
        (settled - submitted) / 1_000
    );
    let id = format!("{:032x}", small.id);
    let audit = settle_cli(&["audit", &id, "--target", &target]);
    let text = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(text.contains("deferred by the optimiser"), "{text}");
    // The unfundable one rolled to T0 with an event saying why, and waits there.
    assert_eq!(broke_item.status, TxStatus::Deferred);
    let id = format!("{:032x}", broke.id);
    let audit = settle_cli(&["audit", &id, "--target", &target]);
    let text = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(
        text.contains("TRANSACTION_ROLLED") && text.contains("rolled to T0"),
        "{text}"
    );
    assert!(text.contains("short by 500.00 USD"), "{text}");
}

/// The ledger is complete (issue 13, point 5): 200 cycles later, and after
/// a kill -9 and restart, cycle 1's record and its payment's trail are
/// still audited through the CLI and the HTTP API, from the store.
#[test]
fn cycle_one_is_audited_after_two_hundred_cycles_and_a_restart() {
    const CYCLES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(
        dir.path(),
        &[(0, 1e9, &[("USD", 1_000_000_000)]), (1, 1e9, &[("USD", 0)])],
    );
    let http = settle_tests::free_port();
    let http_arg = http.to_string();
    let mut args: Vec<&str> = settle_tests::cluster::NO_CYCLES.to_vec();
    args.extend(["--http", &http_arg]);
    let mut node = CycleNode::start(&dir.path().join("data"), &participants, &args, &[]);
    let mut client = Client::connect(node.listen).unwrap();
    let mut control = Control::connect(node.listen);
    for cycle in 1..=CYCLES {
        let payment = Transaction {
            id: u128::from(cycle),
            debtor: ParticipantId(0),
            creditor: ParticipantId(1),
            // 5,000.00 USD: dearer to defer than to wire now.
            amount: 500_000 + cycle,
            send: Currency::USD,
            receive: Currency::USD,
            window: Window::Rtgs,
            client_timestamp_us: 0,
        };
        assert_eq!(client.submit(&[payment]).unwrap(), vec![TxResult::Created]);
        let summary = control.run_cycle(Window::Rtgs).unwrap();
        assert_eq!(
            (summary.cycle_id, summary.status, summary.settled),
            (cycle, CycleStatus::Applied, 1),
            "cycle {cycle} settles its payment"
        );
    }
    let first = format!("{:032x}", 1u128);
    let audited = |node: &CycleNode| {
        let target = node.listen.to_string();
        let solution = dir.path().join("cycle-1-solution.json");
        let audit = settle_cli(&[
            "audit",
            "--cycle",
            "1",
            "--solution-out",
            solution.to_str().unwrap(),
            "--target",
            &target,
        ]);
        let text = String::from_utf8_lossy(&audit.stdout).to_string();
        assert!(
            audit.status.success() && text.contains("VERIFIED"),
            "cycle 1 after {CYCLES} cycles: {text}{}",
            String::from_utf8_lossy(&audit.stderr)
        );
        let solution: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&solution).unwrap()).unwrap();
        assert_eq!(
            solution["settled"],
            serde_json::json!(["1"]),
            "cycle 1 settled payment 1 (the instance names ids in decimal)"
        );
        let trail = settle_cli(&["audit", &first, "--target", &target]);
        let text = String::from_utf8_lossy(&trail.stdout).to_string();
        assert!(
            trail.status.success() && text.contains("SETTLEMENT_CONFIRMED"),
            "payment 1's trail: {text}"
        );
        let (status, body) = settle_tests::http_request(http, "GET", "/v1/cycles/1", None).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"verified\":true"), "{body}");
        let list = settle_cli(&[
            "cycle", "list", "--after", "0", "--max", "1", "--target", &target,
        ]);
        let text = String::from_utf8_lossy(&list.stdout).to_string();
        assert!(
            list.status.success() && text.contains("cycle 1 "),
            "the first page from the start lists cycle 1: {text}"
        );
    };
    audited(&node);
    drop((client, control));
    node.restart(&[]);
    audited(&node);
}
