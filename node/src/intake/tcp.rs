//! The binary protocol server: rkyv frames over TCP, one listener per core
//! (SO_REUSEPORT spreads connections), requests of a connection answered in
//! order.

use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use settle_codec::archived::ArchivedSubmitRequest;
use settle_codec::{
    decode_body, DecodeError, ErrorCode, ErrorResponse, Frame, FrameBuf, FrameReader,
    LookupRequest, LookupResponse, MessageKind, ReadStatus, SubmitRequest, SubmitResponse,
};
use tracing::{debug, warn};

use super::{Intake, ShardError};

/// Serves connections accepted by `listener` until the executor stops.
pub async fn serve(listener: TcpListener, intake: Rc<Intake>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let intake = intake.clone();
                glommio::spawn_local(async move {
                    let peer = stream.peer_addr().ok();
                    if let Err(e) = serve_connection(stream, &intake).await {
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

/// Reads frames, answers each, until EOF or a framing error (after which the
/// byte stream is out of step and the connection is closed, after telling the
/// peer why).
async fn serve_connection(mut stream: TcpStream, intake: &Intake) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = FrameReader::new();
    let mut out = FrameBuf::new();
    loop {
        out.clear();
        let keep_open = match reader.next_frame() {
            Ok(ReadStatus::Frame(frame)) => {
                answer(&frame, intake, &mut out).await;
                true
            }
            Ok(ReadStatus::NeedMore(_)) => {
                let n = stream.read(reader.spare()).await?;
                if n == 0 {
                    return Ok(());
                }
                reader.commit(n);
                continue;
            }
            Err(e) => {
                push_error(&mut out, 0, ErrorCode::BadRequest, &e.to_string());
                false
            }
        };
        stream.write_all(out.as_slice()).await?;
        if !keep_open {
            stream.flush().await?;
            return Ok(());
        }
    }
}

/// Writes the answer to one frame into `out`. A bad body is answered with an
/// error and the connection keeps serving (frame boundaries are intact).
async fn answer(frame: &Frame<'_>, intake: &Intake, out: &mut FrameBuf) {
    let request_id = frame.request_id();
    match frame.kind() {
        MessageKind::SubmitRequest => match decode_body::<SubmitRequest>(frame) {
            Ok(request) => submit(request, request_id, intake, out).await,
            Err(e) => push_decode_error(out, request_id, &e),
        },
        MessageKind::LookupRequest => match decode_body::<LookupRequest>(frame) {
            Ok(request) => {
                let ids: Vec<u128> = request.ids.iter().map(|id| id.to_native()).collect();
                match intake.router.lookup(&ids).await {
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
) {
    let transactions = request.transactions.iter().map(|t| t.to_native());
    match intake.submit(transactions).await {
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
