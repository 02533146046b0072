//! The binary protocol server: rkyv frames over TCP, one listener per core
//! (SO_REUSEPORT spreads connections), requests of a connection answered in
//! order.

use std::rc::Rc;

use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use settle_codec::archived::ArchivedSubmitRequest;
use settle_codec::messages::{BalancesRequest, ForecastRequest};
use settle_codec::{
    decode_body, DecodeError, ErrorCode, ErrorResponse, Frame, FrameBuf, FrameReader,
    LookupRequest, LookupResponse, MessageKind, ParticipantId, ReadStatus, SubmitRequest,
    SubmitResponse,
};
use tracing::{debug, warn, Instrument};

use super::limits::{ConnectionSlot, CoreClients};
use super::{Intake, ShardError};
use crate::access::{Caller, Denied, Op};
use crate::cluster::conn::{next_read_within, with_timeout};
use crate::credentials::{ServerSecurity, PLAINTEXT_REFUSED, TLS_HANDSHAKE_RECORD};
use crate::request_log::Stages;

/// Bytes of a refused plaintext client read away before closing.
const PLAINTEXT_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves connections accepted by `listener` until the executor stops: over
/// TLS 1.3 with `security` (a plaintext client is told so and closed),
/// plaintext without (`--insecure`); within this core's `clients` bounds.
pub async fn serve(
    listener: TcpListener,
    intake: Rc<Intake>,
    security: Option<ServerSecurity>,
    clients: Rc<CoreClients>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(mut slot) = clients.admit() else {
                    crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Binary);
                    // Closed unread: before TLS there is no way to say why.
                    let refused = clients.refused();
                    if refused.is_power_of_two() {
                        warn!(
                            peer = ?stream.peer_addr().ok(),
                            connections_max = clients.limits().connections_per_core,
                            refused,
                            "client connection refused: this core serves as many as it may"
                        );
                    }
                    drop(stream);
                    continue;
                };
                let intake = intake.clone();
                let security = security.clone();
                glommio::spawn_local(async move {
                    let peer = stream.peer_addr().ok();
                    let served = match security {
                        None => {
                            serve_connection(stream, &intake, &Caller::Insecure, &mut slot).await
                        }
                        Some(security) => serve_tls(stream, &intake, security, &mut slot).await,
                    };
                    if let Err(e) = served {
                        debug!(?peer, error = %e, "connection closed");
                    }
                })
                .detach();
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// A TLS connection: the handshake (bounded in time), then frames. A
/// plaintext client gets one error frame saying TLS is required.
async fn serve_tls(
    mut stream: TcpStream,
    intake: &Intake,
    security: ServerSecurity,
    slot: &mut ConnectionSlot,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut first = [0u8; 1];
    let peeked = with_timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Some(Ok(1))) {
        return Ok(());
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        warn!(peer = ?stream.peer_addr().ok(), "plaintext client on the TLS client port refused");
        let mut out = FrameBuf::new();
        push_error(&mut out, 0, ErrorCode::BadRequest, PLAINTEXT_REFUSED);
        stream.write_all(out.as_slice()).await?;
        stream.flush().await?;
        // Closing with the client's request unread would reset the
        // connection and could destroy the answer: read it away first.
        stream.shutdown(std::net::Shutdown::Write).await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < PLAINTEXT_DRAIN_BYTES_MAX {
            match with_timeout(HANDSHAKE_TIMEOUT, stream.read(&mut sink)).await {
                Some(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
        return Ok(());
    }
    let accept = futures_rustls::TlsAcceptor::from(security.tls).accept(stream);
    match with_timeout(HANDSHAKE_TIMEOUT, accept).await {
        Some(Ok(stream)) => {
            let identity =
                settle_security::tls::peer_identity(stream.get_ref().1.peer_certificates());
            let caller = match identity {
                Some(Ok(identity)) => Caller::Known(identity),
                Some(Err(e)) => {
                    warn!(error = %e, "client certificate names no identity");
                    Caller::Anonymous
                }
                None => Caller::Anonymous,
            };
            serve_connection(stream, intake, &caller, slot).await
        }
        Some(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Reads frames, answers each, until EOF, a framing error (after which the
/// byte stream is out of step and the connection is closed, after telling the
/// peer why) or a bound: idle too long, a frame sent too slowly, the core's
/// client buffers full.
async fn serve_connection<S>(
    mut stream: S,
    intake: &Intake,
    caller: &Caller,
    slot: &mut ConnectionSlot,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = *slot.limits();
    // Request ids: `<core>.<connection>.<frame id>` (see `request_log`).
    let (core, conn) = (
        glommio::executor().id(),
        crate::request_log::next_connection(),
    );
    let mut reader = FrameReader::new();
    let mut out = FrameBuf::new();
    // When the frame being received began to arrive.
    let mut frame_started = None;
    // The frame just answered: its stages, span and kind, for its
    // slow-request line once the answer is written.
    let mut last: Option<(Stages, tracing::Span, MessageKind)> = None;
    loop {
        out.clear();
        let keep_open = match reader.next_frame() {
            Ok(ReadStatus::Frame(frame)) => {
                // The next frame's time starts with its own first byte.
                frame_started = None;
                let mut stages = Stages::start();
                let kind = frame.kind();
                let span = tracing::info_span!(
                    "request",
                    request_id = %format_args!("{core}.{conn}.{}", frame.request_id()),
                    ?kind
                );
                match authorize(&frame, caller) {
                    Ok(()) => {
                        stages.mark("authorize");
                        answer(&frame, caller, intake, &mut out, &mut stages)
                            .instrument(span.clone())
                            .await;
                        stages.mark("answer");
                    }
                    Err(denied) => {
                        let _in_request = span.enter();
                        warn!(%denied, kind = ?frame.kind(), "request refused");
                        push_error(
                            &mut out,
                            frame.request_id(),
                            ErrorCode::Forbidden,
                            &denied.to_string(),
                        );
                    }
                }
                last = Some((stages, span, kind));
                true
            }
            Ok(ReadStatus::NeedMore(_)) => {
                if reader.buffered() == 0 && slot.core_is_tight() {
                    reader.release_if_empty();
                    let _ = slot.charge(reader.allocated());
                }
                let wait = next_read_within(
                    &reader,
                    &mut frame_started,
                    limits.idle_timeout,
                    limits.frame_timeout,
                );
                let _ = reader.spare();
                if let Err(total) = slot.charge(reader.allocated()) {
                    crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Binary);
                    warn!(
                        buffered = total,
                        bound = limits.buffer_bytes_per_core,
                        "client refused: this core's client buffers are full"
                    );
                    let message = format!(
                        "the node's client buffers are full ({total} bytes on this core): \
                         retry later"
                    );
                    push_error(&mut out, 0, ErrorCode::Overloaded, &message);
                    close_with(&mut stream, &out).await?;
                    return Ok(());
                }
                match with_timeout(wait, stream.read(reader.spare())).await {
                    Some(Ok(0)) => return Ok(()),
                    Some(Ok(n)) => reader.commit(n),
                    Some(Err(e)) => return Err(e),
                    None if reader.buffered() == 0 => {
                        debug!(idle = ?limits.idle_timeout, "idle client connection closed");
                        return Ok(());
                    }
                    None => {
                        let message = format!(
                            "a frame must arrive whole within {:?} of its first byte; {} bytes \
                             came",
                            limits.frame_timeout,
                            reader.buffered()
                        );
                        warn!(buffered = reader.buffered(), "slow client closed");
                        push_error(&mut out, 0, ErrorCode::BadRequest, &message);
                        close_with(&mut stream, &out).await?;
                        return Ok(());
                    }
                }
                continue;
            }
            Err(e) => {
                push_error(&mut out, 0, ErrorCode::BadRequest, &e.to_string());
                false
            }
        };
        stream.write_all(out.as_slice()).await?;
        if let Some((mut stages, span, kind)) = last.take() {
            stages.mark("reply");
            let _in_request = span.enter();
            stages.log_if_slow(limits.slow_request, "binary", &format_args!("{kind:?}"));
        }
        if !keep_open {
            stream.flush().await?;
            return Ok(());
        }
    }
}

/// Writes the error frame in `out` and ends the connection.
async fn close_with<S>(stream: &mut S, out: &FrameBuf) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    stream.write_all(out.as_slice()).await?;
    stream.flush().await?;
    stream.close().await
}

/// Whether `caller` may make the request in `frame` (see [`crate::access`]).
/// A frame whose body does not decode is let through: the handler answers
/// it as a bad request, and does nothing.
fn authorize(frame: &Frame<'_>, caller: &Caller) -> Result<(), Denied> {
    if *caller == Caller::Insecure {
        return Ok(());
    }
    let op = match frame.kind() {
        MessageKind::SubmitRequest => {
            let Ok(request) = decode_body::<SubmitRequest>(frame) else {
                return Ok(());
            };
            for tx in request.transactions.iter() {
                caller.check(Op::SubmitAs(tx.to_native().debtor))?;
            }
            return Ok(());
        }
        MessageKind::LookupRequest => Op::ReadTransactions,
        MessageKind::CycleRunRequest => Op::RunCycle,
        MessageKind::CycleAuditRequest | MessageKind::CycleListRequest => Op::ReadCycles,
        MessageKind::DepositRequest => Op::Deposit,
        MessageKind::BalancesRequest => {
            let Ok(request) = decode_body::<BalancesRequest>(frame) else {
                return Ok(());
            };
            let participant = request
                .participant
                .as_ref()
                .map(|p| ParticipantId(p.0.to_native()));
            Op::ReadBalances(participant)
        }
        // A forecast shows a balance's future: read like that balance.
        MessageKind::ForecastRequest => {
            let Ok(request) = decode_body::<ForecastRequest>(frame) else {
                return Ok(());
            };
            Op::ReadBalances(Some(ParticipantId(request.participant.0.to_native())))
        }
        // `settle status` on a node without --peers.
        MessageKind::PeerRequest => Op::Status,
        _ => return Ok(()),
    };
    caller.check(op)
}

/// Writes the answer to one frame into `out`. A bad body is answered with an
/// error and the connection keeps serving (frame boundaries are intact).
async fn answer(
    frame: &Frame<'_>,
    caller: &Caller,
    intake: &Intake,
    out: &mut FrameBuf,
    stages: &mut Stages,
) {
    let request_id = frame.request_id();
    match frame.kind() {
        MessageKind::SubmitRequest => match decode_body::<SubmitRequest>(frame) {
            Ok(request) => submit(request, request_id, intake, out, stages).await,
            Err(e) => push_decode_error(out, request_id, &e),
        },
        MessageKind::LookupRequest => match decode_body::<LookupRequest>(frame) {
            Ok(request) => {
                let ids: Vec<u128> = request.ids.iter().map(|id| id.to_native()).collect();
                // Another bank's transaction is answered NotFound.
                match intake.router.lookup(&ids, caller.visibility()).await {
                    Ok(items) => push(out, request_id, &LookupResponse { items }),
                    Err(e) => push_shard_error(out, request_id, &e),
                }
            }
            Err(e) => push_decode_error(out, request_id, &e),
        },
        other => {
            // Control-plane requests (cycles, audit, funding) are the cycle module's.
            if !crate::cycle::wire::answer(frame, intake, out).await {
                push_error(
                    out,
                    request_id,
                    ErrorCode::UnsupportedKind,
                    &format!("{other:?} is not a request"),
                );
            }
        }
    }
}

async fn submit(
    request: &ArchivedSubmitRequest,
    request_id: u64,
    intake: &Intake,
    out: &mut FrameBuf,
    stages: &mut Stages,
) {
    let transactions = request.transactions.iter().map(|t| t.to_native());
    match intake.submit_staged(transactions, stages).await {
        Ok(results) => push(out, request_id, &SubmitResponse { results }),
        Err(e) => push_shard_error(out, request_id, &e),
    }
}

fn push<M: settle_codec::Encode>(out: &mut FrameBuf, request_id: u64, msg: &M) {
    if let Err(e) = out.push(request_id, msg) {
        // Responses are bounded like their requests; failing here is a bug.
        push_error(
            out,
            request_id,
            ErrorCode::Internal,
            &format!("response does not fit a frame: {e}"),
        );
    }
}

fn push_decode_error(out: &mut FrameBuf, request_id: u64, e: &DecodeError) {
    push_error(out, request_id, ErrorCode::BadRequest, &e.to_string());
}

fn push_shard_error(out: &mut FrameBuf, request_id: u64, e: &ShardError) {
    let code = match e {
        ShardError::NotLeader { .. } => ErrorCode::NotLeader,
        ShardError::ShuttingDown(_) => ErrorCode::ShuttingDown,
        ShardError::Full { .. } => ErrorCode::Overloaded,
        ShardError::Internal { .. } => ErrorCode::Internal,
    };
    push_error(out, request_id, code, &e.to_string());
}

fn push_error(out: &mut FrameBuf, request_id: u64, code: ErrorCode, message: &str) {
    let response = ErrorResponse::new(code, message);
    out.push(request_id, &response)
        .expect("an error response is bounded and always fits a frame");
}
