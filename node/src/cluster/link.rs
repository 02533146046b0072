//! Outgoing connections: one per (core, peer), shared by every group of the
//! core, established lazily and re-established after a failure (at most one
//! attempt per [`RECONNECT_INTERVAL`], failing fast in between so openraft
//! backs off instead of queueing behind a dead peer).
//!
//! Requests are pipelined: any number of tasks queue requests and wait for
//! their own answer (matched by request id), up to [`PENDING_MAX`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::ClientConfig;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use settle_codec::{
    decode_body, ErrorResponse, ForwardSubmit, Frame, FrameBuf, FrameReader, MessageKind,
    PeerRequest, PeerResponse, SubmitResponse, TxResult, MAX_PEER_CHUNK_BYTES,
};
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::conn::{read_frame, run_writer, with_timeout, Outbox, OutboxError};
use super::proto::{Hello, HelloAck, OP_HELLO, STARTTLS, STATUS_OK};
use crate::raft::NodeId;

/// How long a connect (TCP handshake plus hello) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);

/// After a failed connect, calls fail at once for this long: a dead peer
/// costs one connect attempt per interval, not one per RPC.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);

/// Requests awaiting an answer on one connection. openraft's pipelines,
/// forwards and votes are each bounded well below this; beyond it a caller
/// gets an error rather than growing the table.
pub const PENDING_MAX: usize = 16_384;

/// Why a request to a peer did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("node {target} ({addr}) unreachable: {reason}")]
    Unreachable {
        target: NodeId,
        addr: SocketAddr,
        reason: String,
    },
    #[error("node {target}: connection lost before the answer")]
    Closed { target: NodeId },
    #[error("node {target}: no answer within {after:?}")]
    Timeout { target: NodeId, after: Duration },
    #[error("node {target}: {reason}")]
    Protocol { target: NodeId, reason: String },
}

/// An answer from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Peer { status: u8, payload: Vec<u8> },
    Submit(Vec<TxResult>),
    Error(ErrorResponse),
}

/// An established connection (dialer side).
pub struct Conn {
    target: NodeId,
    outbox: Rc<Outbox>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Answer>>>,
    next_id: Cell<u64>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    fn close(&self) {
        self.outbox.close();
        // Dropping the senders wakes every waiter with "closed".
        self.pending.borrow_mut().clear();
    }

    fn register(self: &Rc<Self>) -> Result<Pending, LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed {
                target: self.target,
            });
        }
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= PENDING_MAX {
            return Err(LinkError::Protocol {
                target: self.target,
                reason: format!("{PENDING_MAX} requests already awaiting answers"),
            });
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Ok(Pending {
            conn: self.clone(),
            id,
            rx: Some(rx),
        })
    }

    fn queue_error(&self, e: OutboxError) -> LinkError {
        match e {
            OutboxError::Closed => LinkError::Closed {
                target: self.target,
            },
            OutboxError::Encode(e) => LinkError::Protocol {
                target: self.target,
                reason: e.to_string(),
            },
        }
    }

    /// Queues a request (in chunks if large) and returns its pending answer.
    pub async fn send(
        self: &Rc<Self>,
        group: u16,
        op: u8,
        payload: &[u8],
    ) -> Result<Pending, LinkError> {
        let pending = self.register()?;
        let mut chunks = payload.chunks(MAX_PEER_CHUNK_BYTES).peekable();
        if chunks.peek().is_none() {
            let request = PeerRequest {
                group,
                op,
                more: false,
                payload: Vec::new(),
            };
            self.outbox
                .push(pending.id, &request)
                .await
                .map_err(|e| self.queue_error(e))?;
        }
        while let Some(chunk) = chunks.next() {
            let request = PeerRequest {
                group,
                op,
                more: chunks.peek().is_some(),
                payload: chunk.to_vec(),
            };
            self.outbox
                .push(pending.id, &request)
                .await
                .map_err(|e| self.queue_error(e))?;
        }
        Ok(pending)
    }

    /// Queues a forwarded submit and returns its pending answer.
    pub async fn send_forward(
        self: &Rc<Self>,
        forward: &ForwardSubmit,
    ) -> Result<Pending, LinkError> {
        let pending = self.register()?;
        self.outbox
            .push(pending.id, forward)
            .await
            .map_err(|e| self.queue_error(e))?;
        Ok(pending)
    }
}

/// An answer still to come; dropping it forgets the request.
pub struct Pending {
    conn: Rc<Conn>,
    id: u64,
    rx: Option<oneshot::Receiver<Answer>>,
}

impl Pending {
    /// Waits for the answer, at most `limit`.
    pub async fn wait(mut self, limit: Duration) -> Result<Answer, LinkError> {
        let rx = self.rx.take().expect("waited once");
        let target = self.conn.target;
        match with_timeout(limit, rx).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(_)) => Err(LinkError::Closed { target }),
            None => Err(LinkError::Timeout {
                target,
                after: limit,
            }),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.conn.pending.borrow_mut().remove(&self.id);
    }
}

/// This core's way to one peer.
pub struct Link {
    target: NodeId,
    addr: SocketAddr,
    hello: Vec<u8>,
    /// Mutual TLS (see [`super::PeerTls`]); `None` with `--insecure`.
    tls: Option<Arc<ClientConfig>>,
    conn: RefCell<Option<Rc<Conn>>>,
    /// One connect at a time; the others wait for its outcome.
    connecting: Semaphore,
    last_failure: Cell<Option<Instant>>,
}

impl Link {
    pub fn target(&self) -> NodeId {
        self.target
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn unreachable(&self, reason: impl ToString) -> LinkError {
        LinkError::Unreachable {
            target: self.target,
            addr: self.addr,
            reason: reason.to_string(),
        }
    }

    fn current(&self) -> Option<Rc<Conn>> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    /// The open connection, connecting first if needed.
    pub async fn connection(&self) -> Result<Rc<Conn>, LinkError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _one = self
            .connecting
            .acquire_permit(1)
            .await
            .expect("the connect semaphore is never closed");
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if let Some(at) = self.last_failure.get() {
            if at.elapsed() < RECONNECT_INTERVAL {
                return Err(self.unreachable("reconnecting after a failure"));
            }
        }
        match with_timeout(CONNECT_TIMEOUT, self.connect()).await {
            Some(Ok(conn)) => {
                self.last_failure.set(None);
                *self.conn.borrow_mut() = Some(conn.clone());
                Ok(conn)
            }
            Some(Err(e)) => {
                self.last_failure.set(Some(Instant::now()));
                Err(e)
            }
            None => {
                self.last_failure.set(Some(Instant::now()));
                Err(self.unreachable(format!("connect timed out after {CONNECT_TIMEOUT:?}")))
            }
        }
    }

    async fn connect(&self) -> Result<Rc<Conn>, LinkError> {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| self.unreachable(e))?;
        stream.set_nodelay(true).map_err(|e| self.unreachable(e))?;
        let mut buf = FrameBuf::new();
        buf.push(
            0,
            &PeerRequest {
                group: 0,
                op: OP_HELLO,
                more: false,
                payload: self.hello.clone(),
            },
        )
        .expect("a hello fits a frame");
        stream
            .write_all(buf.as_slice())
            .await
            .map_err(|e| self.unreachable(e))?;
        let mut reader = FrameReader::new();
        let answer = self.hello_answer(&mut reader, &mut stream).await?;
        let fd = stream.as_raw_fd();
        let Some(tls) = &self.tls else {
            if answer == STARTTLS {
                return Err(self.unreachable(
                    "the peer requires TLS and this node runs --insecure: start every member the same way",
                ));
            }
            self.check_ack(&answer)?;
            return Ok(self.spawn(stream, fd, reader));
        };
        // The answer above came from the core the connection is for (the
        // route); the rest of the connection is TLS.
        if answer != STARTTLS {
            return Err(self.unreachable(
                "the peer serves plaintext (--insecure): refusing to send it anything",
            ));
        }
        let mut stream = futures_rustls::TlsConnector::from(tls.clone())
            .connect(settle_security::tls::server_name(), stream)
            .await
            .map_err(|e| self.unreachable(format!("TLS handshake: {e}")))?;
        let identity = settle_security::tls::peer_identity(stream.get_ref().1.peer_certificates());
        match identity {
            Some(Ok(identity)) if identity.node_id() == Some(self.target) => {}
            other => {
                return Err(self.unreachable(format!(
                    "the peer's certificate is not node {}'s: {other:?}",
                    self.target
                )))
            }
        }
        let mut reader = FrameReader::new();
        let answer = self.hello_answer(&mut reader, &mut stream).await?;
        self.check_ack(&answer)?;
        Ok(self.spawn(stream, fd, reader))
    }

    /// The answer to the hello: its payload if the status is OK.
    async fn hello_answer<S: futures_lite::AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader,
        stream: &mut S,
    ) -> Result<Vec<u8>, LinkError> {
        let answer = read_frame(reader, stream, decode_answer)
            .await
            .map_err(|e| self.unreachable(e))?
            .ok_or_else(|| self.unreachable("closed during the hello"))?
            .1
            .map_err(|reason| self.unreachable(reason))?;
        match answer {
            Answer::Peer { status, payload } if status == STATUS_OK => Ok(payload),
            Answer::Peer { payload, .. } => Err(self.unreachable(format!(
                "hello refused: {}",
                String::from_utf8_lossy(&payload)
            ))),
            other => Err(self.unreachable(format!("unexpected hello answer {other:?}"))),
        }
    }

    fn check_ack(&self, payload: &[u8]) -> Result<(), LinkError> {
        let ack: HelloAck = serde_json::from_slice(payload)
            .map_err(|e| self.unreachable(format!("bad hello answer: {e}")))?;
        debug!(target = self.target, core = ack.core, "peer connection up");
        Ok(())
    }

    /// Starts the reader and writer of an established connection.
    fn spawn<S>(&self, stream: S, fd: std::os::fd::RawFd, reader: FrameReader) -> Rc<Conn>
    where
        S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
    {
        let (read_half, write_half) = futures_lite::io::split(stream);
        let (outbox, wakes) = Outbox::new(fd);
        let conn = Rc::new(Conn {
            target: self.target,
            outbox: outbox.clone(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        glommio::spawn_local(run_writer(outbox, wakes, write_half)).detach();
        glommio::spawn_local(run_reader(conn.clone(), read_half, reader)).detach();
        conn
    }

    /// Sends a request and waits for its answer: `(status, payload)`.
    pub async fn call(
        &self,
        group: u16,
        op: u8,
        payload: &[u8],
        limit: Duration,
    ) -> Result<(u8, Vec<u8>), LinkError> {
        let conn = self.connection().await?;
        let pending = conn.send(group, op, payload).await?;
        match pending.wait(limit).await? {
            Answer::Peer { status, payload } => Ok((status, payload)),
            other => Err(LinkError::Protocol {
                target: self.target,
                reason: format!("unexpected answer {other:?}"),
            }),
        }
    }
}

/// Reads answers and hands each to its waiter until the connection ends.
async fn run_reader<R: futures_lite::AsyncRead + Unpin>(
    conn: Rc<Conn>,
    mut source: R,
    mut reader: FrameReader,
) {
    loop {
        match read_frame(&mut reader, &mut source, decode_answer).await {
            Ok(Some((id, Ok(answer)))) => {
                let waiter = conn.pending.borrow_mut().remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(answer);
                }
            }
            Ok(Some((id, Err(reason)))) => {
                info!(target = conn.target, id, %reason, "bad answer from peer; closing");
                break;
            }
            Ok(None) => break,
            Err(e) => {
                debug!(target = conn.target, error = %e, "peer connection lost");
                break;
            }
        }
    }
    conn.close();
}

/// An answer frame as owned values, with its request id.
pub fn decode_answer(frame: &Frame<'_>) -> (u64, Result<Answer, String>) {
    let id = frame.request_id();
    let answer = match frame.kind() {
        MessageKind::PeerResponse => decode_body::<PeerResponse>(frame)
            .map(|body| Answer::Peer {
                status: body.status,
                payload: body.payload.as_slice().to_vec(),
            })
            .map_err(|e| e.to_string()),
        MessageKind::SubmitResponse => decode_body::<SubmitResponse>(frame)
            .map(|body| Answer::Submit(body.results.iter().map(TxResult::from).collect()))
            .map_err(|e| e.to_string()),
        MessageKind::ErrorResponse => decode_body::<ErrorResponse>(frame)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                settle_codec::rkyv::deserialize::<ErrorResponse, settle_codec::rkyv::rancor::Error>(
                    body,
                )
                .map_err(|e| e.to_string())
            })
            .map(Answer::Error),
        other => Err(format!("{other:?} is not an answer")),
    };
    (id, answer)
}

/// Every link of one core, by peer.
pub struct Links {
    me: NodeId,
    core: usize,
    cores: usize,
    currencies: Vec<String>,
    peers: BTreeMap<NodeId, SocketAddr>,
    tls: Option<Arc<ClientConfig>>,
    links: RefCell<BTreeMap<NodeId, Rc<Link>>>,
    /// Separate connections for forwarded client requests, which wait for
    /// commits: they never queue ahead of Raft's own traffic.
    forward_links: RefCell<BTreeMap<NodeId, Rc<Link>>>,
}

impl Links {
    pub fn new(
        me: NodeId,
        core: usize,
        cores: usize,
        currencies: Vec<String>,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Links {
            me,
            core,
            cores,
            currencies,
            peers,
            tls,
            links: RefCell::new(BTreeMap::new()),
            forward_links: RefCell::new(BTreeMap::new()),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The link to `target`, at its `--peers` address (or, for a member not
    /// in the local map, the address its membership records).
    pub fn link(&self, target: NodeId, recorded_addr: &str) -> Result<Rc<Link>, LinkError> {
        self.get_or_make(&self.links, target, recorded_addr)
    }

    /// The link for forwarded client requests to a member of `--peers`.
    pub fn forward(&self, target: NodeId) -> Result<Rc<Link>, LinkError> {
        self.get_or_make(&self.forward_links, target, "")
    }

    fn get_or_make(
        &self,
        links: &RefCell<BTreeMap<NodeId, Rc<Link>>>,
        target: NodeId,
        recorded_addr: &str,
    ) -> Result<Rc<Link>, LinkError> {
        if let Some(link) = links.borrow().get(&target) {
            return Ok(link.clone());
        }
        let addr = match self.peers.get(&target) {
            Some(addr) => *addr,
            None => recorded_addr.parse().map_err(|_| LinkError::Unreachable {
                target,
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: format!(
                    "not in --peers and no usable address recorded ({recorded_addr:?})"
                ),
            })?,
        };
        let hello = Hello {
            node_id: self.me,
            core: self.core,
            cores: self.cores,
            currencies: self.currencies.clone(),
        };
        let link = Rc::new(Link {
            target,
            addr,
            hello: serde_json::to_vec(&hello).expect("plain data"),
            tls: self.tls.clone(),
            conn: RefCell::new(None),
            connecting: Semaphore::new(1),
            last_failure: Cell::new(None),
        });
        links.borrow_mut().insert(target, link.clone());
        Ok(link)
    }
}
