//! A small blocking client of the control-plane messages, for the `settle`
//! CLI (`cycle run`, `audit`, `deposit`, `balances`): one request at a time
//! on one connection.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::ClientConfig;
use settle_security::blocking::Stream;

use rkyv::rancor;
use settle_codec::messages::{
    Balance, BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse,
    CycleListRequest, CycleListResponse, CycleRecord, CycleRunRequest, CycleRunResponse,
    CycleSummary, DepositRequest, DepositResponse, ForecastRequest, ForecastResponse,
};
use settle_codec::{
    decode_body, Currency, Encode, ErrorResponse, Frame, FrameBuf, FrameReader, LookupItem,
    LookupRequest, LookupResponse, MessageKind, ParticipantId, ReadStatus, TxResult, Window,
};

/// Default deadline of one request (connect, handshake, reply), the CLI's
/// `--timeout`: a cycle run waits for the cycle to apply (well under a
/// second on a healthy cluster, an election or two after a failure), and a
/// stalled node must not hold an operator's shell for longer.
pub const REQUEST_DEADLINE_DEFAULT: Duration = Duration::from_secs(10);

/// At most this long for the TCP connect itself (within the deadline).
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within the {deadline:?} deadline (--timeout)")]
    Deadline {
        addr: SocketAddr,
        deadline: Duration,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("the node answered {code:?}: {message}")]
    Server {
        code: settle_codec::ErrorCode,
        message: String,
    },
}

/// One connection to a node.
pub struct ControlClient {
    stream: Stream,
    addr: SocketAddr,
    deadline: Duration,
    out: FrameBuf,
    reader: FrameReader,
    next_request_id: u64,
}

impl ControlClient {
    /// Connects to a node's client port: over TLS 1.3 with `tls`, plaintext
    /// (a node started `--insecure`) without. Connecting and every request
    /// after it must finish within `deadline` each, or fail with
    /// [`ControlClientError::Deadline`].
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<ClientConfig>>,
        deadline: Duration,
    ) -> Result<ControlClient, ControlClientError> {
        let stream =
            Stream::connect(addr, deadline.min(CONNECT_TIMEOUT_MAX), tls).map_err(|source| {
                if is_timeout(&source) {
                    ControlClientError::Deadline { addr, deadline }
                } else {
                    ControlClientError::Connect { addr, source }
                }
            })?;
        Ok(ControlClient {
            stream,
            addr,
            deadline,
            out: FrameBuf::new(),
            reader: FrameReader::new(),
            next_request_id: 1,
        })
    }

    /// Sends `request`, reads the reply frame and hands it to `read` (after
    /// turning an error response into an error).
    fn call<M: Encode, R>(
        &mut self,
        request: &M,
        expect: MessageKind,
        read: impl FnOnce(&Frame<'_>) -> Result<R, String>,
    ) -> Result<R, ControlClientError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.out.clear();
        self.out
            .push(request_id, request)
            .map_err(|e| ControlClientError::Protocol(format!("encoding the request: {e}")))?;
        let deadline = Instant::now() + self.deadline;
        let past_deadline = ControlClientError::Deadline {
            addr: self.addr,
            deadline: self.deadline,
        };
        self.stream.tcp().set_write_timeout(Some(self.deadline))?;
        if let Err(e) = self.stream.write_all(self.out.as_slice()) {
            return Err(if is_timeout(&e) {
                past_deadline
            } else {
                e.into()
            });
        }
        loop {
            match self
                .reader
                .next_frame()
                .map_err(|e| ControlClientError::Protocol(format!("bad reply frame: {e}")))?
            {
                ReadStatus::Frame(frame) => {
                    // Checked first: an error about the connection itself
                    // (e.g. "TLS only") carries request id 0.
                    if frame.kind() == MessageKind::ErrorResponse {
                        let archived = decode_body::<ErrorResponse>(&frame)
                            .map_err(|e| ControlClientError::Protocol(e.to_string()))?;
                        let e = rkyv::deserialize::<ErrorResponse, rancor::Error>(archived)
                            .map_err(|e| ControlClientError::Protocol(e.to_string()))?;
                        return Err(ControlClientError::Server {
                            code: e.code,
                            message: e.message,
                        });
                    }
                    if frame.request_id() != request_id {
                        return Err(ControlClientError::Protocol(format!(
                            "reply to request {} while waiting for {request_id}",
                            frame.request_id()
                        )));
                    }
                    if frame.kind() != expect {
                        return Err(ControlClientError::Protocol(format!(
                            "expected {expect:?}, got {:?}",
                            frame.kind()
                        )));
                    }
                    return read(&frame).map_err(ControlClientError::Protocol);
                }
                ReadStatus::NeedMore(_) => {
                    // Each read may wait only for what is left of the deadline.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(past_deadline);
                    }
                    self.stream.tcp().set_read_timeout(Some(left))?;
                    match self.reader.read_from(&mut self.stream) {
                        Ok(0) => {
                            return Err(ControlClientError::Protocol(
                                "the node closed the connection".into(),
                            ))
                        }
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => return Err(past_deadline),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// The deadline of each request on this connection.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Runs a cycle of `window` and waits until it is applied.
    pub fn run_cycle(&mut self, window: Window) -> Result<CycleSummary, ControlClientError> {
        self.call(
            &CycleRunRequest { window },
            MessageKind::CycleRunResponse,
            |frame| {
                let archived = decode_body::<CycleRunResponse>(frame).map_err(|e| e.to_string())?;
                rkyv::deserialize::<CycleRunResponse, rancor::Error>(archived)
                    .map(|r| r.summary)
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// A cycle's record (inputs and decision).
    pub fn cycle_record(&mut self, cycle_id: u64) -> Result<CycleRecord, ControlClientError> {
        self.call(
            &CycleAuditRequest { cycle_id },
            MessageKind::CycleAuditResponse,
            |frame| {
                let archived =
                    decode_body::<CycleAuditResponse>(frame).map_err(|e| e.to_string())?;
                rkyv::deserialize::<CycleAuditResponse, rancor::Error>(archived)
                    .map(|r| r.record)
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// Summaries of cycles after `after_cycle` and the next cycle id.
    pub fn cycle_list(
        &mut self,
        after_cycle: u64,
        max: u32,
    ) -> Result<(Vec<CycleSummary>, u64), ControlClientError> {
        self.call(
            &CycleListRequest { after_cycle, max },
            MessageKind::CycleListResponse,
            |frame| {
                let archived =
                    decode_body::<CycleListResponse>(frame).map_err(|e| e.to_string())?;
                rkyv::deserialize::<CycleListResponse, rancor::Error>(archived)
                    .map(|r| (r.cycles, r.next_cycle_id))
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// Deposits; the result and the balance after.
    pub fn deposit(
        &mut self,
        deposit_id: u128,
        participant: ParticipantId,
        currency: Currency,
        amount: u64,
    ) -> Result<(TxResult, u64), ControlClientError> {
        let request = DepositRequest {
            deposit_id,
            participant,
            currency,
            amount,
        };
        self.call(&request, MessageKind::DepositResponse, |frame| {
            let archived = decode_body::<DepositResponse>(frame).map_err(|e| e.to_string())?;
            Ok((
                TxResult::from(&archived.result),
                archived.balance.to_native(),
            ))
        })
    }

    /// Balances of one participant or of all.
    pub fn balances(
        &mut self,
        participant: Option<ParticipantId>,
    ) -> Result<Vec<Balance>, ControlClientError> {
        self.call(
            &BalancesRequest { participant },
            MessageKind::BalancesResponse,
            |frame| {
                let archived = decode_body::<BalancesResponse>(frame).map_err(|e| e.to_string())?;
                rkyv::deserialize::<BalancesResponse, rancor::Error>(archived)
                    .map(|r| r.balances)
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// A liquidity forecast of one participant's balance in one currency.
    pub fn forecast(
        &mut self,
        participant: ParticipantId,
        currency: Currency,
        hours: u32,
        steps: u32,
    ) -> Result<ForecastResponse, ControlClientError> {
        let request = ForecastRequest {
            participant,
            currency,
            hours,
            steps,
        };
        self.call(&request, MessageKind::ForecastResponse, |frame| {
            let archived = decode_body::<ForecastResponse>(frame).map_err(|e| e.to_string())?;
            rkyv::deserialize::<ForecastResponse, rancor::Error>(archived)
                .map_err(|e| e.to_string())
        })
    }

    /// Status and audit trail of transactions.
    pub fn lookup(&mut self, ids: &[u128]) -> Result<Vec<LookupItem>, ControlClientError> {
        self.call(
            &LookupRequest { ids: ids.to_vec() },
            MessageKind::LookupResponse,
            |frame| {
                let archived = decode_body::<LookupResponse>(frame).map_err(|e| e.to_string())?;
                rkyv::deserialize::<LookupResponse, rancor::Error>(archived)
                    .map(|r| r.items)
                    .map_err(|e| e.to_string())
            },
        )
    }
}

/// A socket timeout, as the platform reports it (`WouldBlock` on Linux).
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
