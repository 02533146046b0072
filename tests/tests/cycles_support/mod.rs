//! Shared by the cycle tests: a `settle start` child with cycle flags (and
//! test crash points through the environment), a client of the control
//! messages, and the checks every cycle test makes (exactly once, balances
//! replayed from the events).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use settle_codec::messages::{
    Balance, BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse,
    CycleListRequest, CycleListResponse, CycleRecord, CycleRunRequest, CycleRunResponse,
    CycleSummary, DepositRequest, DepositResponse,
};
use settle_codec::rkyv::{self, rancor};
use settle_codec::tx::EventDetail;
use settle_codec::{
    decode_body, Client, Currency, Encode, ErrorResponse, Frame, FrameBuf, FrameReader, LookupItem,
    MessageKind, ParticipantId, ReadStatus, TxEventKind, TxResult, TxStatus, Window,
    MAX_LOOKUP_IDS,
};
use settle_tests::{bin_path, free_port, NODE_START_TIMEOUT};

/// A `settle start` process with cycle flags.
pub struct CycleNode {
    child: Child,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    participants: PathBuf,
    args: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl CycleNode {
    /// Starts a node on `data_dir` with `args` after the usual ones, and
    /// `env` set in its environment; waits until it listens.
    pub fn start(
        data_dir: &Path,
        participants: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> CycleNode {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        CycleNode::spawn(data_dir, participants, free_port(), args.clone(), env)
            .or_else(|_| CycleNode::spawn(data_dir, participants, free_port(), args, env))
            .expect("settle starts")
    }

    /// Starts a node; `Err` when it exits during start-up (e.g. its port
    /// was taken by a test running alongside).
    fn spawn(
        data_dir: &Path,
        participants: &Path,
        listen: SocketAddr,
        args: Vec<String>,
        env: &[(&str, &str)],
    ) -> Result<CycleNode, String> {
        let mut command = Command::new(bin_path("settle"));
        command
            .arg("start")
            // Not a test of security: plaintext.
            .arg("--insecure")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--cores")
            .arg("2")
            .arg("--participants")
            .arg(participants)
            .args(&args)
            .env_remove("SETTLE_TEST_CRASH_AT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawning settle");
        let stderr = child.stderr.take().expect("piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [node] {line}");
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let node = CycleNode {
            child,
            listen,
            data_dir: data_dir.to_path_buf(),
            participants: participants.to_path_buf(),
            args,
            stderr: lines,
        };
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            match node.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("settle: listening on") => return Ok(node),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("settle exited during start-up".into())
                }
            }
            assert!(Instant::now() < deadline, "settle did not listen in time");
        }
    }

    /// Waits until the process exits by itself (a test crash point).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same directory and flags, with `env`: on the
    /// same port, or on a fresh one if that was taken meanwhile.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        let (dir, participants) = (self.data_dir.clone(), self.participants.clone());
        let next = CycleNode::spawn(&dir, &participants, self.listen, self.args.clone(), env)
            .or_else(|_| CycleNode::spawn(&dir, &participants, free_port(), self.args.clone(), env))
            .expect("settle restarts");
        *self = next;
    }
}

impl Drop for CycleNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the `settle` CLI.
pub fn settle_cli(args: &[&str]) -> Output {
    Command::new(bin_path("settle"))
        .args(args)
        // The nodes of these tests run --insecure.
        .arg("--insecure")
        .output()
        .expect("running settle")
}

/// A bank of a test: id, counterparty limit (USD), balances (code, minor units).
pub type Bank<'a> = (u32, f64, &'a [(&'a str, u64)]);

/// A participants file with exactly these balances and limits.
pub fn write_participants(dir: &Path, banks: &[Bank<'_>]) -> PathBuf {
    let entries: Vec<String> = banks
        .iter()
        .map(|(id, limit, balances)| {
            let b: Vec<String> = balances
                .iter()
                .map(|(c, v)| format!("\"{c}\": {v}"))
                .collect();
            format!(
                "{{\"id\": \"{}\", \"counterparty_limit_usd\": {limit:?}, \"balances\": {{{}}}}}",
                ParticipantId(*id).name(),
                b.join(", ")
            )
        })
        .collect();
    let path = dir.join("participants.json");
    std::fs::write(
        &path,
        format!("{{\"participants\": [{}]}}", entries.join(", ")),
    )
    .unwrap();
    path
}

/// A blocking client of the control messages (one request at a time).
pub struct Control {
    stream: TcpStream,
    out: FrameBuf,
    reader: FrameReader,
    next: u64,
}

impl Control {
    pub fn connect(addr: SocketAddr) -> Control {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Control {
            stream,
            out: FrameBuf::new(),
            reader: FrameReader::new(),
            next: 1,
        }
    }

    fn call<M: Encode, R>(
        &mut self,
        request: &M,
        read: impl FnOnce(&Frame<'_>) -> R,
    ) -> Result<R, String> {
        let id = self.next;
        self.next += 1;
        self.out.clear();
        self.out.push(id, request).unwrap();
        self.stream
            .write_all(self.out.as_slice())
            .map_err(|e| e.to_string())?;
        loop {
            match self.reader.next_frame().map_err(|e| e.to_string())? {
                ReadStatus::Frame(frame) => {
                    assert_eq!(frame.request_id(), id);
                    if frame.kind() == MessageKind::ErrorResponse {
                        let e = decode_body::<ErrorResponse>(&frame).unwrap();
                        return Err(e.message.to_string());
                    }
                    return Ok(read(&frame));
                }
                ReadStatus::NeedMore(_) => {
                    if self
                        .reader
                        .read_from(&mut self.stream)
                        .map_err(|e| e.to_string())?
                        == 0
                    {
                        return Err("connection closed".into());
                    }
                }
            }
        }
    }

    pub fn run_cycle(&mut self, window: Window) -> Result<CycleSummary, String> {
        self.call(&CycleRunRequest { window }, |f| {
            let a = decode_body::<CycleRunResponse>(f).unwrap();
            rkyv::deserialize::<CycleRunResponse, rancor::Error>(a)
                .unwrap()
                .summary
        })
    }

    pub fn cycles(&mut self) -> (Vec<CycleSummary>, u64) {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (page, next) = self
                .call(
                    &CycleListRequest {
                        after_cycle: after,
                        max: 1_000,
                    },
                    |f| {
                        let a = decode_body::<CycleListResponse>(f).unwrap();
                        let r = rkyv::deserialize::<CycleListResponse, rancor::Error>(a).unwrap();
                        (r.cycles, r.next_cycle_id)
                    },
                )
                .unwrap();
            if page.is_empty() {
                return (all, next);
            }
            after = page.last().unwrap().cycle_id;
            all.extend(page);
        }
    }

    pub fn record(&mut self, cycle_id: u64) -> Result<CycleRecord, String> {
        self.call(&CycleAuditRequest { cycle_id }, |f| {
            let a = decode_body::<CycleAuditResponse>(f).unwrap();
            rkyv::deserialize::<CycleAuditResponse, rancor::Error>(a)
                .unwrap()
                .record
        })
    }

    pub fn deposit(
        &mut self,
        deposit_id: u128,
        participant: u32,
        currency: Currency,
        amount: u64,
    ) -> (TxResult, u64) {
        let request = DepositRequest {
            deposit_id,
            participant: ParticipantId(participant),
            currency,
            amount,
        };
        self.call(&request, |f| {
            let a = decode_body::<DepositResponse>(f).unwrap();
            (TxResult::from(&a.result), a.balance.to_native())
        })
        .unwrap()
    }

    pub fn balances(&mut self) -> Vec<Balance> {
        self.call(&BalancesRequest { participant: None }, |f| {
            let a = decode_body::<BalancesResponse>(f).unwrap();
            rkyv::deserialize::<BalancesResponse, rancor::Error>(a)
                .unwrap()
                .balances
        })
        .unwrap()
    }
}

/// Looks every id up, in requests of at most `MAX_LOOKUP_IDS`.
pub fn lookup_all(addr: SocketAddr, ids: &[u128]) -> Vec<LookupItem> {
    let mut client = Client::connect(addr).unwrap();
    let mut items = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_LOOKUP_IDS) {
        items.extend(client.lookup(chunk).unwrap());
    }
    items
}

/// What the trails say moved, per (participant, currency).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub credited: u64,
    pub debited: u64,
    pub refunded: u64,
}

pub type Moves = BTreeMap<(ParticipantId, Currency), Moved>;

/// Checks that every transaction is settled exactly once, or failed and
/// reversed exactly once, or still waiting — never two of these — and
/// returns the balance moves its trail records: the debit of its amount,
/// the credit of what its creditor received once the settlement is
/// confirmed, the refund of a reversed one. `(moves, settled, failed)`.
pub fn check_exactly_once(
    items: &[LookupItem],
    parties: &BTreeMap<u128, (u32, u32)>,
) -> (Moves, usize, usize) {
    let mut moves = Moves::new();
    let (mut settled, mut failed) = (0, 0);
    for item in items {
        let count = |k: TxEventKind| item.events.iter().filter(|e| e.kind == k).count();
        assert_eq!(
            count(TxEventKind::TransactionSubmitted),
            1,
            "{:x}: accepted by exactly one shard, once",
            item.id
        );
        let waiting = matches!(item.status, TxStatus::Pending | TxStatus::Deferred);
        if waiting {
            assert_eq!(
                count(TxEventKind::SettlementInitiated),
                0,
                "{:x} waits and is not settled",
                item.id
            );
            continue;
        }
        assert_eq!(
            count(TxEventKind::SettlementInitiated),
            1,
            "{:x} settled once",
            item.id
        );
        let e = item
            .events
            .iter()
            .find(|e| e.kind == TxEventKind::SettlementInitiated)
            .unwrap();
        let EventDetail::Settle {
            receive_amount,
            receive,
            ..
        } = e.detail
        else {
            panic!("{:x}: a settlement says what was received", item.id)
        };
        let (debtor, creditor) = parties[&item.id];
        moves
            .entry((ParticipantId(debtor), e.currency))
            .or_default()
            .debited += e.amount;
        match item.status {
            TxStatus::Settled => {
                settled += 1;
                assert_eq!(count(TxEventKind::SettlementReversed), 0, "{:x}", item.id);
                assert_eq!(
                    count(TxEventKind::SettlementConfirmed),
                    1,
                    "{:x}: confirmed once (no wire still in flight)",
                    item.id
                );
                moves
                    .entry((ParticipantId(creditor), receive))
                    .or_default()
                    .credited += receive_amount;
            }
            TxStatus::Failed => {
                failed += 1;
                assert_eq!(count(TxEventKind::SettlementConfirmed), 0, "{:x}", item.id);
                assert_eq!(count(TxEventKind::SettlementFailed), 1, "{:x}", item.id);
                assert_eq!(count(TxEventKind::SettlementReversed), 1, "{:x}", item.id);
                moves
                    .entry((ParticipantId(debtor), e.currency))
                    .or_default()
                    .refunded += e.amount;
            }
            other => panic!("{:x}: unexpected status {other:?}", item.id),
        }
    }
    (moves, settled, failed)
}

/// Checks every balance against the replay of the funding and the trails:
/// `balance = opening + deposited + credited + refunded - debited`, with
/// credited, debited and refunded equal to what the events say, and no
/// credit left in flight.
pub fn check_balances_replay(balances: &[Balance], moves: &Moves) {
    let mut seen = 0;
    for b in balances {
        assert_eq!(
            b.balance as i128,
            b.opening as i128 + b.deposited as i128 + b.credited as i128 + b.refunded as i128
                - b.debited as i128,
            "{} {}: the totals explain the balance",
            b.participant,
            b.currency
        );
        assert_eq!(
            b.incoming, 0,
            "{} {}: nothing in flight",
            b.participant, b.currency
        );
        let m = moves
            .get(&(b.participant, b.currency))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            Moved {
                credited: b.credited,
                debited: b.debited,
                refunded: b.refunded,
            },
            m,
            "{} {}: the events replay to the balance",
            b.participant,
            b.currency
        );
        if m != Moved::default() {
            seen += 1;
        }
    }
    let moved = moves.values().filter(|m| **m != Moved::default()).count();
    assert_eq!(seen, moved, "every account the events move has a balance");
}
