//! A blocking TCP client, one connection, with pipelining.
//!
//! `submit` and `lookup` send one request and wait for its reply. For load
//! generation, `send_submit`/`send_lookup` queue requests (flushed when the
//! output buffer passes `OUT_FLUSH_BYTES`, on `flush`, or before a `recv`),
//! and `recv`/`recv_with` return replies in arrival order, each carrying the
//! request id it answers. The node may answer pipelined requests out of
//! order (different shards finish at different times).
//!
//! A caller that pipelines must keep reading: a peer that cannot write its
//! replies stops reading requests, and a writer that never reads then blocks
//! forever. `MAX_IN_FLIGHT_REQUESTS` bounds how far ahead it may get.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::error::{DecodeError, EncodeError};
use crate::frame::{decode_body, Frame, FrameBuf};
use crate::messages::{
    ErrorResponse, LookupRequest, LookupResponse, MessageKind, SubmitBatch, SubmitResponse,
};
use crate::reader::{FrameReader, ReadStatus};
use crate::tx::{ErrorCode, LookupItem, Transaction, TxResult};

/// Most requests sent and not yet answered on one connection: bounds the
/// replies a peer may owe us (and so the memory both sides commit to one
/// client) while leaving plenty of pipelining depth for a load generator.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 1_024;

/// Queued requests are written once this many bytes are waiting, so the
/// output buffer stays under this plus one frame.
pub const OUT_FLUSH_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("connection closed by peer ({buffered} bytes of a partial frame buffered)")]
    Closed { buffered: usize },
    #[error("server error {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    #[error("unexpected reply kind {0:?}")]
    UnexpectedKind(MessageKind),
    #[error("reply for request {found}, expected {expected}")]
    UnexpectedRequestId { expected: u64, found: u64 },
    #[error("{received} results for {sent} requested items")]
    ResultCountMismatch { sent: usize, received: usize },
    #[error("{max} requests already in flight")]
    TooManyInFlight { max: usize },
    #[error("{in_flight} pipelined requests unanswered: use recv() before a blocking call")]
    PipelineBusy { in_flight: usize },
}

/// A reply, decoded into owned values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Submit(Vec<TxResult>),
    Lookup(Vec<LookupItem>),
    Error(ErrorResponse),
}

/// A client over `S`: a TCP socket, or any other byte stream (TLS).
pub struct Client<S = TcpStream> {
    stream: S,
    out: FrameBuf,
    reader: FrameReader,
    next_request_id: u64,
    in_flight: usize,
}

impl Client {
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::from_stream(TcpStream::connect(addr)?)
    }

    /// Wraps a connected stream (with whatever timeouts the caller set).
    pub fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        // Requests are whole frames written at once; Nagle would only delay
        // a lone request waiting for an ACK.
        stream.set_nodelay(true)?;
        Ok(Client::over(stream))
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over any connected byte stream (e.g. a TLS session), set up
    /// by the caller (no delay, timeouts).
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            out: FrameBuf::new(),
            reader: FrameReader::new(),
            next_request_id: 1,
            in_flight: 0,
        }
    }

    /// The stream, e.g. to set read/write timeouts on its socket.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Requests sent (or queued) and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Submits a batch and waits for one result per transaction.
    pub fn submit(&mut self, transactions: &[Transaction]) -> Result<Vec<TxResult>, ClientError> {
        self.ensure_quiet()?;
        let request_id = self.send_submit(transactions)?;
        match self.recv_expecting(request_id)? {
            Reply::Submit(results) => check_count(transactions.len(), results),
            Reply::Error(e) => Err(server_error(e)),
            Reply::Lookup(_) => Err(ClientError::UnexpectedKind(MessageKind::LookupResponse)),
        }
    }

    /// Looks ids up and waits for one item per id.
    pub fn lookup(&mut self, ids: &[u128]) -> Result<Vec<LookupItem>, ClientError> {
        self.ensure_quiet()?;
        let request_id = self.send_lookup(ids)?;
        match self.recv_expecting(request_id)? {
            Reply::Lookup(items) => check_count(ids.len(), items),
            Reply::Error(e) => Err(server_error(e)),
            Reply::Submit(_) => Err(ClientError::UnexpectedKind(MessageKind::SubmitResponse)),
        }
    }

    /// Queues a submit request; returns its request id.
    pub fn send_submit(&mut self, transactions: &[Transaction]) -> Result<u64, ClientError> {
        self.queue(&SubmitBatch { transactions })
    }

    /// Queues a lookup request; returns its request id.
    pub fn send_lookup(&mut self, ids: &[u128]) -> Result<u64, ClientError> {
        self.queue(&LookupRequest { ids: ids.to_vec() })
    }

    /// Writes every queued request.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.stream.write_all(self.out.as_slice())?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next reply, in arrival order, with the request id it answers.
    pub fn recv(&mut self) -> Result<(u64, Reply), ClientError> {
        self.recv_with(|frame| Ok((frame.request_id(), decode_reply(frame)?)))?
    }

    /// The next reply frame, handed to `f` in place (zero copy): use
    /// [`decode_body`] on it. Counts the request as answered.
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&Frame<'_>) -> R) -> Result<R, ClientError> {
        self.flush()?;
        loop {
            match self.reader.next_frame()? {
                ReadStatus::Frame(frame) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    return Ok(f(&frame));
                }
                ReadStatus::NeedMore(_) => {
                    if self.reader.read_from(&mut self.stream)? == 0 {
                        return Err(ClientError::Closed {
                            buffered: self.reader.buffered(),
                        });
                    }
                }
            }
        }
    }

    fn queue<M: crate::messages::Encode>(&mut self, msg: &M) -> Result<u64, ClientError> {
        if self.in_flight >= MAX_IN_FLIGHT_REQUESTS {
            return Err(ClientError::TooManyInFlight {
                max: MAX_IN_FLIGHT_REQUESTS,
            });
        }
        let request_id = self.next_request_id;
        self.out.push(request_id, msg)?;
        self.next_request_id += 1;
        self.in_flight += 1;
        if self.out.len() >= OUT_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(request_id)
    }

    fn ensure_quiet(&self) -> Result<(), ClientError> {
        if self.in_flight != 0 {
            return Err(ClientError::PipelineBusy {
                in_flight: self.in_flight,
            });
        }
        Ok(())
    }

    fn recv_expecting(&mut self, expected: u64) -> Result<Reply, ClientError> {
        let (found, reply) = self.recv()?;
        if found != expected {
            return Err(ClientError::UnexpectedRequestId { expected, found });
        }
        Ok(reply)
    }
}

/// Decodes a reply frame into owned values.
pub fn decode_reply(frame: &Frame<'_>) -> Result<Reply, ClientError> {
    match frame.kind() {
        MessageKind::SubmitResponse => {
            let archived = decode_body::<SubmitResponse>(frame)?;
            Ok(Reply::Submit(
                archived.results.iter().map(TxResult::from).collect(),
            ))
        }
        MessageKind::LookupResponse => {
            let archived = decode_body::<LookupResponse>(frame)?;
            let items = rkyv::api::low::deserialize::<Vec<LookupItem>, rkyv::rancor::Error>(
                &archived.items,
            )
            .map_err(DecodeError::InvalidArchive)?;
            Ok(Reply::Lookup(items))
        }
        MessageKind::ErrorResponse => {
            let archived = decode_body::<ErrorResponse>(frame)?;
            let error = rkyv::api::low::deserialize::<ErrorResponse, rkyv::rancor::Error>(archived)
                .map_err(DecodeError::InvalidArchive)?;
            Ok(Reply::Error(error))
        }
        other => Err(ClientError::UnexpectedKind(other)),
    }
}

fn server_error(e: ErrorResponse) -> ClientError {
    ClientError::Server {
        code: e.code,
        message: e.message,
    }
}

fn check_count<T>(sent: usize, received: Vec<T>) -> Result<Vec<T>, ClientError> {
    if received.len() != sent {
        return Err(ClientError::ResultCountMismatch {
            sent,
            received: received.len(),
        });
    }
    Ok(received)
}
