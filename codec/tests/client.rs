//! The blocking client against a small codec-speaking server on loopback.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;

use common::batch;
use settle_codec::{
    decode_body, Client, ClientError, ErrorCode, ErrorResponse, Field, FrameBuf, FrameReader,
    LookupItem, LookupRequest, LookupResponse, MessageKind, ReadStatus, RejectReason, Reply,
    SubmitRequest, SubmitResponse, TxResult, TxStatus,
};

/// How the test server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// One reply per request, as it arrives.
    InOrder,
    /// Collects `n` requests, then answers them last first.
    Reversed(usize),
    /// Answers every request with an error response.
    Errors,
    /// Answers a submit with one result too few.
    ShortResults,
    /// Closes the connection after reading one request.
    HangUp,
}

/// Answers submits with `Created`, or `Rejected(ZeroAmount)` for a zero
/// amount, and lookups with `Pending` for even ids, `NotFound` for odd.
fn answer(frame: &settle_codec::Frame<'_>, mode: Mode, out: &mut FrameBuf) {
    let request_id = frame.request_id();
    if let Mode::Errors = mode {
        out.push(
            request_id,
            &ErrorResponse::new(ErrorCode::Overloaded, "try later"),
        )
        .unwrap();
        return;
    }
    match frame.kind() {
        MessageKind::SubmitRequest => {
            let request = decode_body::<SubmitRequest>(frame).unwrap();
            let mut results: Vec<TxResult> = request
                .transactions
                .iter()
                .map(|t| {
                    if t.amount == 0 {
                        TxResult::Rejected {
                            reason: RejectReason::ZeroAmount,
                            field: Field::Amount,
                        }
                    } else {
                        TxResult::Created
                    }
                })
                .collect();
            if let Mode::ShortResults = mode {
                results.pop();
            }
            out.push(request_id, &SubmitResponse { results }).unwrap();
        }
        MessageKind::LookupRequest => {
            let request = decode_body::<LookupRequest>(frame).unwrap();
            let items = request
                .ids
                .iter()
                .map(|id| {
                    let id = id.to_native();
                    LookupItem {
                        id,
                        status: if id % 2 == 0 {
                            TxStatus::Pending
                        } else {
                            TxStatus::NotFound
                        },
                        events: vec![],
                    }
                })
                .collect();
            out.push(request_id, &LookupResponse { items }).unwrap();
        }
        other => panic!("test server got {other:?}"),
    }
}

fn serve(mut stream: TcpStream, mode: Mode) {
    let mut reader = FrameReader::new();
    let mut out = FrameBuf::new();
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.next_frame().unwrap() {
            ReadStatus::Frame(frame) => {
                if let Mode::HangUp = mode {
                    return;
                }
                answer(&frame, mode, &mut out);
                if let Mode::Reversed(n) = mode {
                    held.push(out.as_slice().to_vec());
                    out.clear();
                    if held.len() == n {
                        for reply in held.drain(..).rev() {
                            stream.write_all(&reply).unwrap();
                        }
                    }
                    continue;
                }
                stream.write_all(out.as_slice()).unwrap();
                out.clear();
            }
            ReadStatus::NeedMore(_) => {
                if reader.read_from(&mut stream).unwrap() == 0 {
                    return;
                }
            }
        }
    }
}

fn start(mode: Mode) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream, mode);
        }
    });
    addr
}

#[test]
fn submit_and_lookup_wait_for_their_replies() {
    let mut client = Client::connect(start(Mode::InOrder)).unwrap();
    let mut txs = batch(1000);
    txs[17].amount = 0;
    let results = client.submit(&txs).unwrap();
    assert_eq!(results.len(), 1000);
    assert_eq!(
        results[17],
        TxResult::Rejected {
            reason: RejectReason::ZeroAmount,
            field: Field::Amount
        }
    );
    assert!(results
        .iter()
        .enumerate()
        .all(|(i, r)| i == 17 || *r == TxResult::Created));

    let items = client.lookup(&[4, 5]).unwrap();
    assert_eq!(items[0].status, TxStatus::Pending);
    assert_eq!(items[1].status, TxStatus::NotFound);
    assert_eq!(items[1].id, 5);
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn server_errors_and_bad_replies_are_typed() {
    let mut client = Client::connect(start(Mode::Errors)).unwrap();
    match client.submit(&batch(3)) {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::Overloaded);
            assert_eq!(message, "try later");
        }
        other => panic!("expected a server error, got {other:?}"),
    }

    let mut client = Client::connect(start(Mode::ShortResults)).unwrap();
    assert!(matches!(
        client.submit(&batch(3)),
        Err(ClientError::ResultCountMismatch {
            sent: 3,
            received: 2
        })
    ));

    let mut client = Client::connect(start(Mode::HangUp)).unwrap();
    assert!(matches!(
        client.submit(&batch(3)),
        Err(ClientError::Closed { buffered: 0 })
    ));
}

#[test]
fn pipelined_replies_arrive_out_of_order_and_match_by_request_id() {
    const REQUESTS: usize = 8;
    let mut client = Client::connect(start(Mode::Reversed(REQUESTS))).unwrap();
    let mut sent = Vec::new();
    for i in 0..REQUESTS {
        let id = if i % 2 == 0 {
            client.send_submit(&batch(i + 1)).unwrap()
        } else {
            client.send_lookup(&[i as u128]).unwrap()
        };
        sent.push((id, i));
    }
    assert_eq!(client.in_flight(), REQUESTS);
    assert!(matches!(
        client.submit(&batch(1)),
        Err(ClientError::PipelineBusy {
            in_flight: REQUESTS
        })
    ));

    let mut order = Vec::new();
    for _ in 0..REQUESTS {
        let (request_id, reply) = client.recv().unwrap();
        let &(_, i) = sent.iter().find(|(id, _)| *id == request_id).unwrap();
        match reply {
            Reply::Submit(results) => assert_eq!(results.len(), i + 1),
            Reply::Lookup(items) => assert_eq!(items[0].id, i as u128),
            Reply::Error(e) => panic!("{e:?}"),
        }
        order.push(request_id);
    }
    let mut expected: Vec<u64> = sent.iter().map(|(id, _)| *id).collect();
    expected.reverse();
    assert_eq!(order, expected);
    assert_eq!(client.in_flight(), 0);

    // A quiet connection takes blocking calls again.
    client.send_submit(&batch(2)).unwrap();
    for _ in 1..REQUESTS {
        client.send_lookup(&[2]).unwrap();
    }
    let count = client
        .recv_with(|frame| {
            decode_body::<SubmitResponse>(frame)
                .map(|r| r.results.len())
                .unwrap_or(0)
        })
        .unwrap();
    // Reversed: the first reply is for the last lookup.
    assert_eq!(count, 0);
}
