//! Property tests for the control-plane (0x0201–0x020a) and peer
//! (0x0301–0x0303) messages: valid frames of every such kind reach the fuzz
//! body's decoders (which deserialize every value and re-encode it), and
//! the same frames mutated or resealed around edited bodies never panic.

mod common;

use common::{frame_around, reseal};
use proptest::prelude::*;
use settle_codec::messages::{
    Balance, BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse,
    CycleBalance, CycleCost, CycleCurrency, CycleFxTrade, CycleListRequest, CycleListResponse,
    CycleNetFlow, CycleOutcome, CycleParticipant, CycleRecord, CycleRunRequest, CycleRunResponse,
    CycleSpread, CycleStatus, CycleSummary, DecisionMethod, DepositRequest, DepositResponse,
};
use settle_codec::tx::DeferReason;
use settle_codec::{
    Currency, Encode, Field, ForwardSubmit, FrameBuf, MessageKind, ParticipantId, PeerRequest,
    PeerResponse, RejectReason, Transaction, TxResult, Window, HEADER_BYTES,
};

fn any_window() -> impl Strategy<Value = Window> {
    prop::sample::select(Window::ALL.to_vec())
}

fn any_currency() -> impl Strategy<Value = Currency> {
    any::<u16>().prop_map(Currency)
}

fn any_participant() -> impl Strategy<Value = ParticipantId> {
    any::<u32>().prop_map(ParticipantId)
}

fn any_transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<u128>(),
        any_participant(),
        any_participant(),
        any::<u64>(),
        any_currency(),
        any_currency(),
        any_window(),
        any::<u64>(),
    )
        .prop_map(
            |(id, debtor, creditor, amount, send, receive, window, ts)| Transaction {
                id,
                debtor,
                creditor,
                amount,
                send,
                receive,
                window,
                client_timestamp_us: ts,
            },
        )
}

fn any_tx_result() -> impl Strategy<Value = TxResult> {
    prop_oneof![
        Just(TxResult::Created),
        Just(TxResult::Duplicate),
        Just(TxResult::Conflict),
        (
            prop::sample::select(RejectReason::ALL.to_vec()),
            prop::sample::select(Field::ALL.to_vec())
        )
            .prop_map(|(reason, field)| TxResult::Rejected { reason, field }),
    ]
}

/// Any float, NaN and infinities included: the wire carries them as bits.
fn any_cost() -> impl Strategy<Value = CycleCost> {
    prop::array::uniform4(any::<f64>()).prop_map(|[fx, wire, deferral, total]| CycleCost {
        fx,
        wire,
        deferral,
        total,
    })
}

fn any_summary() -> impl Strategy<Value = CycleSummary> {
    (
        (
            any::<u64>(),
            any_window(),
            prop::sample::select(vec![
                CycleStatus::Started,
                CycleStatus::Decided,
                CycleStatus::Applied,
            ]),
            prop::sample::select(vec![DecisionMethod::Optimiser, DecisionMethod::Fallback]),
            prop::array::uniform4(any::<u32>()),
        ),
        (any_cost(), any_cost()),
        prop::array::uniform5(any::<u64>()),
    )
        .prop_map(
            |((cycle_id, window, status, method, counts), (cost, naive_cost), times)| {
                CycleSummary {
                    cycle_id,
                    window,
                    status,
                    method,
                    candidates: counts[0],
                    settled: counts[1],
                    deferred: counts[2],
                    batches: counts[3],
                    cost,
                    naive_cost,
                    solve_us: times[0],
                    started_at_us: times[1],
                    decided_at_us: times[2],
                    applied_at_us: times[3],
                    decision_index: times[4],
                }
            },
        )
}

fn any_outcome() -> impl Strategy<Value = CycleOutcome> {
    prop_oneof![
        any::<u32>().prop_map(|batch| CycleOutcome::Settled { batch }),
        any::<u64>().prop_map(|short| CycleOutcome::Deferred {
            reason: DeferReason::Liquidity { short }
        }),
        any::<u64>().prop_map(|over_usd_cents| CycleOutcome::Deferred {
            reason: DeferReason::CounterpartyLimit { over_usd_cents }
        }),
        any::<u64>().prop_map(|defer_cost_usd_micros| CycleOutcome::Deferred {
            reason: DeferReason::Cost {
                defer_cost_usd_micros
            }
        }),
        Just(CycleOutcome::Deferred {
            reason: DeferReason::Unsolvable
        }),
    ]
}

fn any_record() -> impl Strategy<Value = CycleRecord> {
    let currency = (any_currency(), any::<u8>(), "[0-9.]{0,12}").prop_map(
        |(currency, minor_units, usd_per_unit)| CycleCurrency {
            currency,
            minor_units,
            usd_per_unit,
        },
    );
    let spread = (any_currency(), any_currency(), any::<f64>())
        .prop_map(|(a, b, bps)| CycleSpread { a, b, bps });
    let participant = (any_participant(), any::<f64>()).prop_map(|(id, limit)| CycleParticipant {
        id,
        counterparty_limit_usd: limit,
    });
    let balance = (any_participant(), any_currency(), any::<u64>()).prop_map(
        |(participant, currency, balance)| CycleBalance {
            participant,
            currency,
            balance,
        },
    );
    let fx = (any_currency(), any_currency(), any::<f64>())
        .prop_map(|(from, to, usd)| CycleFxTrade { from, to, usd });
    let flow = (any_currency(), any::<i64>())
        .prop_map(|(currency, minor)| CycleNetFlow { currency, minor });
    (
        (
            any_summary(),
            ".{0,40}",
            any::<u32>(),
            any::<f64>(),
            any::<f64>(),
            prop::array::uniform4(any::<f64>()),
        ),
        (
            prop::collection::vec(currency, 0..4),
            prop::collection::vec(spread, 0..4),
            prop::collection::vec(participant, 0..4),
            prop::collection::vec(balance, 0..4),
        ),
        (
            prop::collection::vec((any_transaction(), any_outcome()), 0..6),
            prop::collection::vec(fx, 0..4),
            prop::collection::vec(flow, 0..4),
        ),
    )
        .prop_map(
            |(
                (
                    summary,
                    fallback_reason,
                    max_batch_size,
                    wire_usd,
                    consolidation_discount,
                    defer_bps,
                ),
                (currencies, spreads, participants, balances),
                (decided, fx_trades, net_flows),
            )| {
                let (transactions, outcomes): (Vec<_>, Vec<_>) = decided.into_iter().unzip();
                let defer_usd = (0..transactions.len()).map(|i| i as f64 * 0.25).collect();
                CycleRecord {
                    summary,
                    fallback_reason,
                    max_batch_size,
                    wire_usd,
                    consolidation_discount,
                    defer_bps,
                    currencies,
                    spreads,
                    participants,
                    balances,
                    transactions,
                    defer_usd,
                    outcomes,
                    fx_trades,
                    net_flows,
                }
            },
        )
}

fn any_balance() -> impl Strategy<Value = Balance> {
    (
        any_participant(),
        any_currency(),
        prop::array::uniform7(any::<u64>()),
    )
        .prop_map(|(participant, currency, v)| Balance {
            participant,
            currency,
            balance: v[0],
            opening: v[1],
            deposited: v[2],
            credited: v[3],
            debited: v[4],
            refunded: v[5],
            incoming: v[6],
        })
}

/// One encoded frame (header and padded body).
fn framed<M: Encode>(message: &M) -> Vec<u8> {
    let mut buf = FrameBuf::new();
    buf.push(7, message)
        .expect("generated messages fit a frame");
    buf.as_slice().to_vec()
}

/// A valid frame of any control or peer kind, and that kind.
fn any_control_or_peer_frame() -> impl Strategy<Value = (MessageKind, Vec<u8>)> {
    prop_oneof![
        any_window().prop_map(|window| (
            MessageKind::CycleRunRequest,
            framed(&CycleRunRequest { window })
        )),
        any_summary().prop_map(|summary| (
            MessageKind::CycleRunResponse,
            framed(&CycleRunResponse { summary })
        )),
        any::<u64>().prop_map(|cycle_id| (
            MessageKind::CycleAuditRequest,
            framed(&CycleAuditRequest { cycle_id })
        )),
        any_record().prop_map(|record| (
            MessageKind::CycleAuditResponse,
            framed(&CycleAuditResponse { record })
        )),
        (
            any::<u128>(),
            any_participant(),
            any_currency(),
            any::<u64>()
        )
            .prop_map(|(deposit_id, participant, currency, amount)| (
                MessageKind::DepositRequest,
                framed(&DepositRequest {
                    deposit_id,
                    participant,
                    currency,
                    amount
                })
            )),
        (any_tx_result(), any::<u64>()).prop_map(|(result, balance)| (
            MessageKind::DepositResponse,
            framed(&DepositResponse { result, balance })
        )),
        prop::option::of(any_participant()).prop_map(|participant| (
            MessageKind::BalancesRequest,
            framed(&BalancesRequest { participant })
        )),
        prop::collection::vec(any_balance(), 0..8).prop_map(|balances| (
            MessageKind::BalancesResponse,
            framed(&BalancesResponse { balances })
        )),
        (any::<u64>(), any::<u32>()).prop_map(|(after_cycle, max)| (
            MessageKind::CycleListRequest,
            framed(&CycleListRequest { after_cycle, max })
        )),
        (prop::collection::vec(any_summary(), 0..4), any::<u64>()).prop_map(
            |(cycles, next_cycle_id)| (
                MessageKind::CycleListResponse,
                framed(&CycleListResponse {
                    cycles,
                    next_cycle_id
                })
            )
        ),
        (
            any::<u16>(),
            any::<u8>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(group, op, more, payload)| (
                MessageKind::PeerRequest,
                framed(&PeerRequest {
                    group,
                    op,
                    more,
                    payload
                })
            )),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(status, payload)| (
            MessageKind::PeerResponse,
            framed(&PeerResponse { status, payload })
        )),
        (any::<u16>(), prop::collection::vec(any_transaction(), 0..6)).prop_map(
            |(group, transactions)| (
                MessageKind::ForwardSubmit,
                framed(&ForwardSubmit {
                    group,
                    transactions
                })
            )
        ),
    ]
}

/// The fuzz body's kind selector for `kind` (its index in `MessageKind::ALL`).
fn selector(kind: MessageKind) -> u8 {
    MessageKind::ALL.iter().position(|&k| k == kind).unwrap() as u8
}

fn body_of(frame: &[u8]) -> &[u8] {
    let body_len = u32::from_le_bytes(frame[16..20].try_into().unwrap()) as usize;
    &frame[HEADER_BYTES..HEADER_BYTES + body_len]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every control and peer kind reaches its decoder in the fuzz body (as
    /// a frame, as a stream, and as a body behind the fuzz body's own
    /// header), where it is deserialized, re-encoded and compared.
    #[test]
    fn valid_control_and_peer_frames_reach_their_decoders(
        (kind, frame) in any_control_or_peer_frame(),
    ) {
        let accepted = settle_codec::fuzzing::decode_all(&frame);
        prop_assert!(accepted.contains(&kind), "{:?} not accepted: {:?}", kind, accepted);
        let mut selected = vec![selector(kind)];
        selected.extend_from_slice(body_of(&frame));
        let accepted = settle_codec::fuzzing::decode_all(&selected);
        prop_assert!(accepted.contains(&kind), "{:?} body not accepted: {:?}", kind, accepted);
    }

    /// A few bytes anywhere overwritten: header errors, checksum errors, and
    /// (through the selector path) structurally plausible but wrong bodies.
    #[test]
    fn mutated_control_and_peer_frames_never_panic(
        (kind, frame) in any_control_or_peer_frame(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = frame.clone();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        settle_codec::fuzzing::decode_all(&bytes);
        let mut selected = vec![selector(kind)];
        selected.extend_from_slice(&bytes[HEADER_BYTES..]);
        settle_codec::fuzzing::decode_all(&selected);
    }

    /// Body bytes edited and both checksums recomputed, so every edit
    /// reaches rkyv validation, the limit checks and, when it still
    /// validates, deserialization; also read as every other kind.
    #[test]
    fn edited_control_and_peer_bodies_behind_valid_headers_never_panic(
        (_kind, frame) in any_control_or_peer_frame(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        as_kind in prop::sample::select(MessageKind::ALL.to_vec()),
    ) {
        let mut bytes = frame.clone();
        for (at, value) in &edits {
            let i = HEADER_BYTES + at.index(bytes.len() - HEADER_BYTES);
            bytes[i] = *value;
        }
        reseal(&mut bytes);
        settle_codec::fuzzing::decode_all(&bytes);
        let other = frame_around(as_kind, 1, body_of(&bytes));
        settle_codec::fuzzing::decode_all(&other);
    }

    /// Truncated bodies behind valid headers: a cut archive is refused (or,
    /// rarely, still a valid archive of something), never a panic.
    #[test]
    fn truncated_control_and_peer_bodies_never_panic(
        (kind, frame) in any_control_or_peer_frame(),
        cut in any::<prop::sample::Index>(),
    ) {
        let body = body_of(&frame);
        let short = &body[..cut.index(body.len().max(1)).min(body.len())];
        let f = frame_around(kind, 1, short);
        settle_codec::fuzzing::decode_all(&f);
    }
}
