//! A real `settle` process fed bad control-plane (0x0201–0x020c) and peer
//! (0x0301–0x0303) frames on its client port: garbage bodies, truncated
//! bodies, wrong checksums and well-formed requests with bad values.
//!
//! The server's documented behaviour (node/src/intake/tcp.rs): a bad *body*
//! behind an intact frame is answered with an `ErrorResponse` under the
//! request's id and the connection keeps serving; a *framing* error (bad
//! checksum) is answered with an `ErrorResponse` under id 0 and the
//! connection is closed; EOF in the middle of a frame closes it silently.
//! Afterwards the node must still run, accept a submit, and still know
//! every transaction it acknowledged before.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use settle_codec::messages::{
    BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse, CycleCost,
    CycleListRequest, CycleListResponse, CycleRecord, CycleRunRequest, CycleRunResponse,
    CycleStatus, CycleSummary, DecisionMethod, DepositRequest, DepositResponse, ForecastRequest,
    ForecastResponse,
};
use settle_codec::rkyv::{self, rancor, util::AlignedVec};
use settle_codec::{
    decode_body, decode_frame, padded_len, Client, Currency, Encode, ErrorCode, ErrorResponse,
    Field, ForwardSubmit, FrameBuf, FrameHeader, FrameReader, LookupRequest, LookupResponse,
    Message, MessageKind, ParticipantId, PeerRequest, PeerResponse, ReadStatus, RejectReason,
    Transaction, TxResult, TxStatus, Window, HEADER_BYTES,
};
use settle_tests::{write_participants, Node};

/// Longest a single answer may take; beyond it the node is hanging.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

const CONTROL_KINDS: [MessageKind; 12] = [
    MessageKind::CycleRunRequest,
    MessageKind::CycleRunResponse,
    MessageKind::CycleAuditRequest,
    MessageKind::CycleAuditResponse,
    MessageKind::DepositRequest,
    MessageKind::DepositResponse,
    MessageKind::BalancesRequest,
    MessageKind::BalancesResponse,
    MessageKind::CycleListRequest,
    MessageKind::CycleListResponse,
    MessageKind::ForecastRequest,
    MessageKind::ForecastResponse,
];

const PEER_KINDS: [MessageKind; 3] = [
    MessageKind::PeerRequest,
    MessageKind::PeerResponse,
    MessageKind::ForwardSubmit,
];

fn tx(id: u128, debtor: u32, creditor: u32, amount: u64) -> Transaction {
    Transaction {
        id,
        debtor: ParticipantId(debtor),
        creditor: ParticipantId(creditor),
        amount,
        send: Currency::USD,
        receive: Currency::EUR,
        window: Window::T1,
        client_timestamp_us: 1,
    }
}

/// A transaction id only the ForwardSubmit case uses: the client port must
/// not take it.
const FORWARDED_TX_ID: u128 = 0xf0_0d;

fn summary() -> CycleSummary {
    CycleSummary {
        cycle_id: 1,
        window: Window::T1,
        status: CycleStatus::Applied,
        method: DecisionMethod::Optimiser,
        candidates: 0,
        settled: 0,
        deferred: 0,
        batches: 0,
        cost: CycleCost::default(),
        naive_cost: CycleCost::default(),
        solve_us: 0,
        started_at_us: 0,
        decided_at_us: 0,
        applied_at_us: 0,
        decision_index: 0,
    }
}

/// The archive of `msg`, without a frame.
fn archive<M: Encode>(msg: &M) -> Vec<u8> {
    let frame = encode(0, msg);
    let body_len = u32::from_le_bytes(frame[16..20].try_into().unwrap()) as usize;
    frame[HEADER_BYTES..HEADER_BYTES + body_len].to_vec()
}

/// A valid body of every control and peer kind.
fn valid_body(kind: MessageKind) -> Vec<u8> {
    match kind {
        MessageKind::CycleRunRequest => archive(&CycleRunRequest { window: Window::T2 }),
        MessageKind::CycleRunResponse => archive(&CycleRunResponse { summary: summary() }),
        MessageKind::CycleAuditRequest => archive(&CycleAuditRequest { cycle_id: 1 }),
        MessageKind::CycleAuditResponse => archive(&CycleAuditResponse {
            record: CycleRecord {
                summary: summary(),
                fallback_reason: String::new(),
                max_batch_size: 1,
                wire_usd: 1.0,
                consolidation_discount: 0.0,
                defer_bps: [0.0; 4],
                currencies: Vec::new(),
                spreads: Vec::new(),
                participants: Vec::new(),
                balances: Vec::new(),
                transactions: Vec::new(),
                defer_usd: Vec::new(),
                outcomes: Vec::new(),
                fx_trades: Vec::new(),
                net_flows: Vec::new(),
            },
        }),
        MessageKind::DepositRequest => archive(&DepositRequest {
            deposit_id: 1,
            participant: ParticipantId(1),
            currency: Currency::USD,
            amount: 1,
        }),
        MessageKind::DepositResponse => archive(&DepositResponse {
            result: TxResult::Created,
            balance: 1,
        }),
        MessageKind::BalancesRequest => archive(&BalancesRequest { participant: None }),
        MessageKind::BalancesResponse => archive(&BalancesResponse {
            balances: Vec::new(),
        }),
        MessageKind::CycleListRequest => archive(&CycleListRequest {
            after_cycle: 0,
            max: 10,
        }),
        MessageKind::CycleListResponse => archive(&CycleListResponse {
            cycles: vec![summary()],
            next_cycle_id: 2,
        }),
        MessageKind::PeerRequest => archive(&PeerRequest {
            group: 0,
            op: 1,
            more: false,
            payload: b"{}".to_vec(),
        }),
        MessageKind::PeerResponse => archive(&PeerResponse {
            status: 0,
            payload: Vec::new(),
        }),
        MessageKind::ForwardSubmit => archive(&ForwardSubmit {
            group: 1,
            transactions: vec![tx(FORWARDED_TX_ID, 1, 2, 10)],
        }),
        MessageKind::ForecastRequest => archive(&ForecastRequest {
            participant: ParticipantId(1),
            currency: Currency::USD,
            hours: 1,
            steps: 0,
        }),
        MessageKind::ForecastResponse => archive(&ForecastResponse {
            participant: ParticipantId(1),
            currency: Currency::USD,
            balance: 1,
            now_us: 1,
            bucket_us: 1,
            history_buckets: 0,
            steps: Vec::new(),
            shortfall: None,
        }),
        other => unreachable!("{other:?} is not a control or peer kind"),
    }
}

/// A frame with correct checksums around any body bytes.
fn frame_around(kind: MessageKind, request_id: u64, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    padded.resize(padded_len(body.len()), 0);
    let header = FrameHeader {
        kind,
        request_id,
        body_len: body.len() as u32,
        body_checksum: crc32c::crc32c(&padded),
    };
    let mut frame = header.to_bytes().to_vec();
    frame.extend_from_slice(&padded);
    frame
}

fn encode<M: Encode>(request_id: u64, msg: &M) -> Vec<u8> {
    let mut buf = FrameBuf::new();
    buf.push(request_id, msg).unwrap();
    buf.as_slice().to_vec()
}

/// One answer frame, copied out of the reader.
struct Answer {
    bytes: AlignedVec<16>,
}

impl Answer {
    fn kind(&self) -> MessageKind {
        decode_frame(&self.bytes).unwrap().kind()
    }

    fn request_id(&self) -> u64 {
        decode_frame(&self.bytes).unwrap().request_id()
    }

    fn decode<M>(&self) -> M
    where
        M: Message,
        M::Archived: rkyv::Deserialize<M, rancor::Strategy<(), rancor::Error>>,
    {
        let frame = decode_frame(&self.bytes).unwrap();
        let archived = decode_body::<M>(&frame)
            .unwrap_or_else(|e| panic!("expected {:?}, got {:?}: {e}", M::KIND, frame.kind()));
        rkyv::api::low::deserialize::<M, rancor::Error>(archived).unwrap()
    }

    /// Asserts an error response under `request_id` with `code` whose
    /// message mentions `needle`.
    fn assert_error(&self, request_id: u64, code: ErrorCode, needle: &str, what: &str) {
        assert_eq!(self.kind(), MessageKind::ErrorResponse, "{what}");
        let e: ErrorResponse = self.decode();
        assert_eq!(self.request_id(), request_id, "{what}: {e:?}");
        assert_eq!(e.code, code, "{what}: {e:?}");
        assert!(
            e.message.contains(needle),
            "{what}: {:?} does not mention {needle:?}",
            e.message
        );
    }
}

/// A raw connection to the client port.
struct Conn {
    stream: TcpStream,
    reader: FrameReader,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        Conn {
            stream,
            reader: FrameReader::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` when the node closed the connection.
    /// Panics when nothing comes within `ANSWER_TIMEOUT` (a hang).
    fn recv(&mut self) -> Option<Answer> {
        loop {
            match self
                .reader
                .next_frame()
                .expect("the node sends valid frames")
            {
                ReadStatus::Frame(frame) => {
                    let mut bytes = AlignedVec::<16>::new();
                    bytes.extend_from_slice(&frame.header().to_bytes());
                    bytes.extend_from_slice(frame.body());
                    bytes.resize(HEADER_BYTES + padded_len(frame.body().len()), 0);
                    return Some(Answer { bytes });
                }
                ReadStatus::NeedMore(_) => match self.stream.read(self.reader.spare()) {
                    Ok(0) => return None,
                    Ok(n) => self.reader.commit(n),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("no answer within {ANSWER_TIMEOUT:?} (a hang?): {e}"),
                },
            }
        }
    }

    fn ask(&mut self, frame: &[u8]) -> Answer {
        self.send(frame);
        self.recv().expect("an answer, not a closed connection")
    }
}

/// A request kind the client port serves (the control requests, and on a
/// node started without --peers the status tool's peer requests).
fn served(kind: MessageKind) -> bool {
    (CONTROL_KINDS.contains(&kind) && kind.code() % 2 == 1) || kind == MessageKind::PeerRequest
}

/// Garbage and truncated bodies behind intact frames: an error under the
/// request's id, and the same connection keeps answering.
fn bad_bodies(conn: &mut Conn) {
    let mut request_id = 1_000;
    for kind in CONTROL_KINDS.into_iter().chain(PEER_KINDS) {
        // Garbage: all ones. Every fixed-size request is checked with it:
        // an invalid enum tag (run, balances), an unregistered participant
        // (deposit), a cycle that does not exist (audit); a list request is
        // plain integers, so all ones is a valid (empty) query.
        request_id += 1;
        let answer = conn.ask(&frame_around(kind, request_id, &[0xff; 48]));
        let what = format!("garbage {kind:?}");
        match kind {
            MessageKind::CycleRunRequest
            | MessageKind::BalancesRequest
            | MessageKind::PeerRequest => {
                answer.assert_error(request_id, ErrorCode::BadRequest, "invalid archive", &what)
            }
            MessageKind::DepositRequest => {
                answer.assert_error(request_id, ErrorCode::BadRequest, "participant", &what)
            }
            MessageKind::CycleAuditRequest => {
                answer.assert_error(request_id, ErrorCode::BadRequest, "not decided", &what)
            }
            // An invalid archive, or a currency no shard serves.
            MessageKind::ForecastRequest => {
                answer.assert_error(request_id, ErrorCode::BadRequest, "", &what)
            }
            MessageKind::CycleListRequest => {
                assert_eq!(answer.request_id(), request_id);
                let list: CycleListResponse = answer.decode();
                assert!(list.cycles.is_empty(), "{list:?}");
            }
            _ => answer.assert_error(
                request_id,
                ErrorCode::UnsupportedKind,
                "is not a request",
                &what,
            ),
        }

        // Truncated: the first half of a valid archive (checksums right).
        request_id += 1;
        let body = valid_body(kind);
        let answer = conn.ask(&frame_around(kind, request_id, &body[..body.len() / 2]));
        let what = format!("truncated {kind:?}");
        if served(kind) {
            answer.assert_error(request_id, ErrorCode::BadRequest, "invalid archive", &what);
        } else {
            answer.assert_error(request_id, ErrorCode::UnsupportedKind, "", &what);
        }

        // A valid peer request is the status tool's hello (this node has
        // no --peers): answered as the peer port would.
        if kind == MessageKind::PeerRequest {
            request_id += 1;
            let answer = conn.ask(&frame_around(kind, request_id, &body));
            assert_eq!(answer.request_id(), request_id);
            assert_eq!(answer.kind(), MessageKind::PeerResponse, "valid {kind:?}");
        }

        // The whole valid body of a kind the client port does not serve
        // (responses, other peer messages) is refused by kind.
        if !served(kind) {
            request_id += 1;
            let answer = conn.ask(&frame_around(kind, request_id, &body));
            answer.assert_error(
                request_id,
                ErrorCode::UnsupportedKind,
                &format!("{kind:?} is not a request"),
                &format!("valid {kind:?}"),
            );
        }
    }
}

/// Framing errors on fresh connections: an error under id 0 and close; a
/// frame cut short by EOF: closed without an answer.
fn bad_frames(addr: SocketAddr) {
    for kind in CONTROL_KINDS.into_iter().chain(PEER_KINDS) {
        let good = frame_around(kind, 77, &valid_body(kind));

        let mut wrong_body_crc = good.clone();
        wrong_body_crc[20] ^= 0x01;
        let header_checksum = crc32c::crc32c(&wrong_body_crc[..28]);
        wrong_body_crc[28..32].copy_from_slice(&header_checksum.to_le_bytes());
        let mut wrong_header_crc = good.clone();
        wrong_header_crc[28] ^= 0x01;

        for (bytes, part) in [(wrong_body_crc, "body"), (wrong_header_crc, "header")] {
            let mut conn = Conn::open(addr);
            let answer = conn.ask(&bytes);
            answer.assert_error(
                0,
                ErrorCode::BadRequest,
                &format!("{part} checksum mismatch"),
                &format!("{kind:?} with a wrong {part} checksum"),
            );
            assert!(
                conn.recv().is_none(),
                "{kind:?}: the connection closes after a framing error"
            );
        }

        // Header and half the body, then EOF.
        let mut conn = Conn::open(addr);
        let cut = HEADER_BYTES + (good.len() - HEADER_BYTES) / 2;
        conn.send(&good[..cut]);
        conn.stream.shutdown(Shutdown::Write).unwrap();
        assert!(
            conn.recv().is_none(),
            "{kind:?}: a frame cut by EOF gets no answer and the connection closes"
        );
    }
}

fn deposit(conn: &mut Conn, id: u64, request: DepositRequest) -> Answer {
    conn.ask(&encode(id, &request))
}

fn balances(conn: &mut Conn, id: u64, participant: Option<ParticipantId>) -> BalancesResponse {
    let answer = conn.ask(&encode(id, &BalancesRequest { participant }));
    assert_eq!(answer.request_id(), id);
    answer.decode()
}

/// Well-formed requests with values the node must refuse (or answer
/// harmlessly), on one connection.
fn bad_values(conn: &mut Conn) {
    // A window tag no window has.
    let mut body = valid_body(MessageKind::CycleRunRequest);
    *body.last_mut().unwrap() = 9;
    conn.ask(&frame_around(MessageKind::CycleRunRequest, 1, &body))
        .assert_error(1, ErrorCode::BadRequest, "invalid archive", "window 9");

    // Cycles that do not exist.
    for (i, cycle_id) in [0, 1_000_000, u64::MAX].into_iter().enumerate() {
        let id = 10 + i as u64;
        conn.ask(&encode(id, &CycleAuditRequest { cycle_id }))
            .assert_error(id, ErrorCode::BadRequest, "not decided", "audit");
    }

    // Listing past the end, or zero of them: empty, not an error.
    let answer = conn.ask(&encode(
        20,
        &CycleListRequest {
            after_cycle: u64::MAX,
            max: u32::MAX,
        },
    ));
    let past_end: CycleListResponse = answer.decode();
    assert!(past_end.cycles.is_empty());
    let answer = conn.ask(&encode(
        21,
        &CycleListRequest {
            after_cycle: 0,
            max: 0,
        },
    ));
    let none: CycleListResponse = answer.decode();
    assert!(none.cycles.is_empty());
    assert_eq!(none.next_cycle_id, past_end.next_cycle_id);

    // Deposits: every bad field is named, and none moves a balance.
    let before = balances(conn, 30, Some(ParticipantId(1)));
    let good = DepositRequest {
        deposit_id: 0xd0,
        participant: ParticipantId(1),
        currency: Currency::USD,
        amount: 500,
    };
    let cases = [
        (
            DepositRequest {
                currency: Currency::from_code("CHF").unwrap(),
                ..good
            },
            "currency",
        ),
        (
            DepositRequest {
                currency: Currency(1),
                ..good
            },
            "currency",
        ),
        (DepositRequest { amount: 0, ..good }, "amount"),
        (
            DepositRequest {
                participant: ParticipantId(9_999),
                ..good
            },
            "participant",
        ),
    ];
    for (i, (request, field)) in cases.into_iter().enumerate() {
        let id = 40 + i as u64;
        deposit(conn, id, request).assert_error(
            id,
            ErrorCode::BadRequest,
            field,
            &format!("{request:?}"),
        );
    }
    // "Negative" amounts (two's complement of -1, i64::MIN): past the
    // balance limit, so a typed rejection, and the balance stays.
    for (i, amount) in [u64::MAX, 1 << 63].into_iter().enumerate() {
        let id = 50 + i as u64;
        let answer = deposit(
            conn,
            id,
            DepositRequest {
                deposit_id: 0xbad + i as u128,
                amount,
                ..good
            },
        );
        let r: DepositResponse = answer.decode();
        assert_eq!(
            r.result,
            TxResult::Rejected {
                reason: RejectReason::AmountTooLarge,
                field: Field::Amount
            },
            "amount {amount}"
        );
        assert_eq!(r.balance, before.balances[0].balance, "amount {amount}");
    }
    assert_eq!(balances(conn, 31, Some(ParticipantId(1))), before);

    // A good deposit, its retry, and its id reused for another amount.
    let r: DepositResponse = deposit(conn, 60, good).decode();
    assert_eq!(r.result, TxResult::Created);
    let r: DepositResponse = deposit(conn, 61, good).decode();
    assert_eq!(r.result, TxResult::Duplicate);
    let r: DepositResponse = deposit(
        conn,
        62,
        DepositRequest {
            amount: 501,
            ..good
        },
    )
    .decode();
    assert_eq!(r.result, TxResult::Conflict);
    let after = balances(conn, 32, Some(ParticipantId(1)));
    let usd = |b: &BalancesResponse| {
        b.balances
            .iter()
            .find(|b| b.currency == Currency::USD)
            .copied()
            .unwrap()
    };
    assert_eq!(usd(&after).deposited, usd(&before).deposited + 500);
    assert_eq!(usd(&after).balance, usd(&before).balance + 500);

    // Balances of an unregistered participant: a clear error, like a
    // deposit to one, and asking does not create an account.
    conn.ask(&encode(
        33,
        &BalancesRequest {
            participant: Some(ParticipantId(9_999)),
        },
    ))
    .assert_error(33, ErrorCode::BadRequest, "participant", "balances of 9999");
    let everyone = balances(conn, 34, None);
    assert!(!everyone.balances.is_empty());
    assert!(everyone
        .balances
        .iter()
        .all(|b| b.participant != ParticipantId(9_999)));
}

#[test]
fn bad_control_and_peer_frames_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 8).unwrap();
    let mut node = Node::start(&dir.path().join("data"), Some(&participants), false, 2).unwrap();

    // Acknowledged before any bad input.
    let acked: Vec<Transaction> = (0..32).map(|i| tx(100 + i, 1, 2, 10 + i as u64)).collect();
    let mut client = Client::connect(node.listen).unwrap();
    assert!(client
        .submit(&acked)
        .unwrap()
        .iter()
        .all(|r| *r == TxResult::Created));

    let mut conn = Conn::open(node.listen);
    bad_bodies(&mut conn);
    bad_values(&mut conn);
    bad_frames(node.listen);

    // The connection that saw every bad body still serves a lookup.
    let answer = conn.ask(&encode(
        99,
        &LookupRequest {
            ids: vec![acked[0].id, FORWARDED_TX_ID],
        },
    ));
    let items: LookupResponse = answer.decode();
    assert_eq!(items.items[0].status, TxStatus::Pending);
    assert_eq!(
        items.items[1].status,
        TxStatus::NotFound,
        "a ForwardSubmit on the client port is not intake"
    );

    assert!(node.is_running(), "the node survived every bad frame");
    let mut client = Client::connect(node.listen).unwrap();
    assert_eq!(
        client.submit(&[tx(9_000, 2, 3, 77)]).unwrap(),
        vec![TxResult::Created]
    );
    let ids: Vec<u128> = acked.iter().map(|t| t.id).collect();
    for item in client.lookup(&ids).unwrap() {
        assert_eq!(
            item.status,
            TxStatus::Pending,
            "{:#x} was acknowledged",
            item.id
        );
    }
    assert!(node.is_running());
}
