//! The peer listener: accepts connections from the other nodes (and from
//! `settle status`), moves each to the core it is for, and answers its
//! requests with the core's groups.
//!
//! Every core binds the node's peer address (SO_REUSEPORT), so the kernel
//! picks the accepting core. The dialer's hello names the core it wants; a
//! connection accepted elsewhere is duplicated as a file descriptor and
//! handed to that core over a bounded channel, once. The dialer sends nothing
//! after its hello until the answer, which the right core gives, so no bytes
//! are left behind on the wrong core.
//!
//! AppendEntries of a replication stream are fed, in arrival order, into one
//! `Raft::stream_append` per connection and group (pipelined: the next is
//! handed to Raft before the previous is answered); every other request runs
//! as its own task.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_util::StreamExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use settle_codec::{
    decode_body, ErrorCode, ErrorResponse, ForwardSubmit, FrameBuf, FrameReader, MessageKind,
    PeerRequest, PeerResponse, SubmitResponse, Transaction,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::bounds::{HandshakeSlot, PEER_FRAME_TIMEOUT, PEER_IDLE_TIMEOUT};
use super::conn::{read_frame, read_frame_within, run_writer, with_timeout, Outbox};
use super::core::CoreCluster;
use super::handle::{group_status, GroupHandle};
use super::proto::*;
use crate::intake::router::{ControlMsg, ShardError, ShardMsg};
use crate::raft::wire::{
    decode_append_request, encode_append_result, from_json, to_json, WireError,
};
use crate::raft::TypeConfig;
use crate::shard::GroupId;

/// How long an accepted connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests of one connection being answered at once (votes, heartbeats,
/// forwarded submits...). Beyond it the connection is not read until one
/// finishes: back-pressure onto the peer.
pub const CONNECTION_TASKS_MAX: u64 = 2_048;

/// AppendEntries queued for one replication stream (openraft's own pipeline
/// behind it holds 64 more). A dialer has at most
/// `raft::network::APPEND_PIPELINE_DEPTH` in flight per stream, so this only
/// fills when a new stream starts behind an old one; a request that finds it
/// full is refused at once (the stream restarts) rather than making the
/// connection's reader wait, which would hold up every other group's
/// votes and heartbeats behind one slow group.
pub const APPEND_SESSION_DEPTH: usize = 2 * crate::raft::network::APPEND_PIPELINE_DEPTH + 8;

/// Bytes of chunked requests being reassembled on one connection: a
/// snapshot is the largest (a shard holds at most `SHARD_RECORDS_MAX`
/// transactions of ~110 bytes, ~2.2 GiB).
pub const REASSEMBLY_BYTES_MAX: usize = 3 << 30;

/// Chunked requests being reassembled at once on one connection.
pub const REASSEMBLIES_MAX: usize = 16;

/// A connection moving to the core it is for.
pub struct Handoff {
    fd: OwnedFd,
    hello: Hello,
}

/// Binds this core's peer listener and starts accepting (and taking
/// connections handed over by the other cores).
pub fn start(cluster: Rc<CoreCluster>, handoffs: mpsc::Receiver<Handoff>) -> anyhow::Result<()> {
    let addr = cluster.node.config.own_addr();
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("binding the peer address {addr}: {e}"))?;
    glommio::spawn_local(accept_loop(listener, cluster.clone())).detach();
    glommio::spawn_local(handoff_loop(handoffs, cluster)).detach();
    Ok(())
}

async fn accept_loop(listener: TcpListener, cluster: Rc<CoreCluster>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(slot) = cluster.peer_bounds.handshake() else {
                    crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Peer);
                    let refused = cluster.peer_bounds.refused();
                    if refused.is_power_of_two() {
                        warn!(
                            handshakes_max = super::bounds::PEER_HANDSHAKES_PER_CORE_MAX,
                            refused, "peer connection refused: as many are saying hello as may"
                        );
                    }
                    drop(stream);
                    continue;
                };
                glommio::spawn_local(accepted(stream, cluster.clone(), slot)).detach();
            }
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handoff_loop(mut handoffs: mpsc::Receiver<Handoff>, cluster: Rc<CoreCluster>) {
    while let Some(handoff) = handoffs.recv().await {
        // SAFETY: the descriptor is an open, connected TCP socket that the
        // handoff owned; ownership moves into the stream.
        let stream = unsafe { TcpStream::from_raw_fd(handoff.fd.into_raw_fd()) };
        // Its TLS handshake is still to come, on this core: counted here.
        let Some(slot) = cluster.peer_bounds.handshake() else {
            crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Peer);
            warn!(
                peer = handoff.hello.node_id,
                "peer connection refused: as many are saying hello as may"
            );
            continue;
        };
        glommio::spawn_local(serve(stream, handoff.hello, cluster.clone(), slot)).detach();
    }
}

fn refusal(cluster: &CoreCluster, hello: &Hello) -> Option<String> {
    let node = &cluster.node;
    if hello.core >= node.cores {
        return Some(format!(
            "core {} asked for, this node runs {} cores",
            hello.core, node.cores
        ));
    }
    if hello.cores == 0 {
        return None; // a tool, not a member
    }
    if hello.cores != node.cores {
        return Some(format!(
            "caller runs {} cores, this node {}: every member needs the same --cores",
            hello.cores, node.cores
        ));
    }
    if hello.currencies != node.currencies {
        return Some(format!(
            "caller shards {:?}, this node {:?}: every member needs the same --currencies",
            hello.currencies, node.currencies
        ));
    }
    if !node.config.peers.contains_key(&hello.node_id) {
        return Some(format!(
            "node {} is not in this node's --peers",
            hello.node_id
        ));
    }
    None
}

/// The first byte of a TLS handshake record: a tool starting TLS at once.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn accepted(mut stream: TcpStream, cluster: Rc<CoreCluster>, slot: HandshakeSlot) {
    let _ = stream.set_nodelay(true);
    if let Some(tls) = cluster.node.config.tls.clone() {
        let mut first = [0u8; 1];
        let peeked = with_timeout(HELLO_TIMEOUT, stream.peek(&mut first)).await;
        if matches!(peeked, Some(Ok(1))) && first[0] == TLS_HANDSHAKE_RECORD {
            tool_over_tls(stream, tls, cluster, slot).await;
            return;
        }
    }
    let mut reader = FrameReader::new();
    let hello = with_timeout(
        HELLO_TIMEOUT,
        read_frame(&mut reader, &mut stream, decode_hello),
    )
    .await
    .and_then(|r| r.ok().flatten());
    let hello = match hello {
        Some(Ok(hello)) => hello,
        Some(Err(reason)) => {
            debug!(%reason, "bad hello");
            let _ = answer_once(&mut stream, STATUS_BAD_REQUEST, reason.into_bytes()).await;
            return;
        }
        None => return,
    };
    if let Some(reason) = refusal(&cluster, &hello) {
        warn!(peer = hello.node_id, %reason, "peer connection refused");
        let _ = answer_once(&mut stream, STATUS_REFUSED, reason.into_bytes()).await;
        return;
    }
    if hello.core == cluster.core {
        serve(stream, hello, cluster, slot).await;
        return;
    }
    // The core it is for counts it from here.
    drop(slot);
    // SAFETY: `stream` is open for the duration of this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
    drop(stream);
    let (Ok(fd), Some(to)) = (fd, cluster.node.handoff_to(hello.core)) else {
        return;
    };
    let core = hello.core;
    if to.send(Handoff { fd, hello }).await.is_err() {
        debug!(core, "core gone; connection dropped");
    }
}

/// Who is at the other end of a served connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A member: every request.
    Member,
    /// `settle status` (hello node id 0): [`OP_STATUS`] only.
    Tool,
}

/// Whether a verified certificate may speak for `hello`.
fn admit(
    identity: Option<Result<settle_security::Identity, settle_security::IdentityError>>,
    hello: &Hello,
) -> Result<Caller, String> {
    use settle_security::Role;
    let identity = match identity {
        Some(Ok(identity)) => identity,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("no client certificate".into()),
    };
    match identity.role {
        Role::Node if hello.node_id != 0 && identity.node_id() == Some(hello.node_id) => {
            Ok(Caller::Member)
        }
        Role::Node => Err(format!(
            "certificate of {identity} says hello as node {}",
            hello.node_id
        )),
        Role::Admin | Role::Operator | Role::Auditor if hello.node_id == 0 => Ok(Caller::Tool),
        _ => Err(format!(
            "{identity} may not use the peer port as node {}",
            hello.node_id
        )),
    }
}

/// A tool that started TLS at once: served on this core, status only.
async fn tool_over_tls(
    stream: TcpStream,
    tls: super::PeerTls,
    cluster: Rc<CoreCluster>,
    slot: HandshakeSlot,
) {
    let fd = stream.as_raw_fd();
    let accept = futures_rustls::TlsAcceptor::from(tls.server).accept(stream);
    let mut stream = match with_timeout(HELLO_TIMEOUT, accept).await {
        Some(Ok(stream)) => stream,
        Some(Err(e)) => {
            warn!(error = %e, "peer connection refused: TLS handshake failed");
            return;
        }
        None => return,
    };
    let mut reader = FrameReader::new();
    let hello = with_timeout(
        HELLO_TIMEOUT,
        read_frame(&mut reader, &mut stream, decode_hello),
    )
    .await
    .and_then(|r| r.ok().flatten());
    let Some(Ok(hello)) = hello else {
        return;
    };
    let identity = settle_security::tls::peer_identity(stream.get_ref().1.peer_certificates());
    drop(slot);
    match admit(identity, &hello) {
        Ok(Caller::Tool) => serve_conn(stream, fd, hello, Caller::Tool, cluster).await,
        Ok(Caller::Member) | Err(_) => {
            let reason = "only a tool (hello as node 0, an admin, operator or auditor \
                          certificate) may start TLS at once";
            warn!(claimed = hello.node_id, reason, "peer connection refused");
            let _ = answer_once(&mut stream, STATUS_REFUSED, reason.into()).await;
        }
    }
}

fn decode_hello(frame: &settle_codec::Frame<'_>) -> Result<Hello, String> {
    let request = decode_body::<PeerRequest>(frame).map_err(|e| e.to_string())?;
    if request.op != OP_HELLO {
        return Err(format!("first request is op {}, not a hello", request.op));
    }
    serde_json::from_slice(request.payload.as_slice()).map_err(|e| format!("hello: {e}"))
}

async fn answer_once<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u8,
    payload: Vec<u8>,
) -> std::io::Result<()> {
    let mut buf = FrameBuf::new();
    buf.push(0, &PeerResponse { status, payload })
        .map_err(std::io::Error::other)?;
    stream.write_all(buf.as_slice()).await?;
    stream.flush().await
}

/// Serves one connection on the core it is for, until it closes: over
/// mutual TLS unless the node runs `--insecure`.
async fn serve(mut stream: TcpStream, hello: Hello, cluster: Rc<CoreCluster>, slot: HandshakeSlot) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let Some(tls) = cluster.node.config.tls.clone() else {
        drop(slot);
        let caller = if hello.node_id == 0 {
            Caller::Tool
        } else {
            Caller::Member
        };
        serve_conn(stream, fd, hello, caller, cluster).await;
        return;
    };
    if answer_once(&mut stream, STATUS_OK, STARTTLS.to_vec())
        .await
        .is_err()
    {
        return;
    }
    let accept = futures_rustls::TlsAcceptor::from(tls.server).accept(stream);
    let mut stream = match with_timeout(HELLO_TIMEOUT, accept).await {
        Some(Ok(stream)) => stream,
        Some(Err(e)) => {
            warn!(claimed = hello.node_id, error = %e, "peer connection refused: TLS handshake failed");
            return;
        }
        None => {
            warn!(
                claimed = hello.node_id,
                "peer connection refused: no TLS handshake in time"
            );
            return;
        }
    };
    drop(slot);
    let identity = settle_security::tls::peer_identity(stream.get_ref().1.peer_certificates());
    match admit(identity, &hello) {
        Ok(caller) => serve_conn(stream, fd, hello, caller, cluster).await,
        Err(reason) => {
            warn!(claimed = hello.node_id, %reason, "peer connection refused");
            let _ = answer_once(&mut stream, STATUS_REFUSED, reason.into_bytes()).await;
        }
    }
}

/// Answers the hello and serves the connection's requests until it closes.
async fn serve_conn<S>(
    mut stream: S,
    fd: std::os::fd::RawFd,
    hello: Hello,
    caller: Caller,
    cluster: Rc<CoreCluster>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let Some(_node_slot) = cluster.peer_bounds.connection(hello.node_id) else {
        crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Peer);
        let reason = format!(
            "node {} holds as many connections to core {} as it may ({})",
            hello.node_id,
            cluster.core,
            super::bounds::PEER_CONNECTIONS_PER_NODE_MAX
        );
        warn!(peer = hello.node_id, %reason, "peer connection refused");
        let _ = answer_once(&mut stream, STATUS_REFUSED, reason.into_bytes()).await;
        return;
    };
    let ack = HelloAck {
        node_id: cluster.node.node_id(),
        core: cluster.core,
        cores: cluster.node.cores,
    };
    if answer_once(&mut stream, STATUS_OK, to_json(&ack))
        .await
        .is_err()
    {
        return;
    }
    debug!(
        peer = hello.node_id,
        core = cluster.core,
        ?caller,
        "peer connection served"
    );
    let (read_half, write_half) = futures_lite::io::split(stream);
    let (outbox, wakes) = Outbox::new(fd);
    glommio::spawn_local(run_writer(outbox.clone(), wakes, write_half)).detach();
    let conn = Rc::new(ServerConn {
        cluster,
        peer: hello.node_id,
        caller,
        outbox,
        sessions: RefCell::new(HashMap::new()),
        partial: RefCell::new(HashMap::new()),
        partial_bytes: Cell::new(0),
        tasks: Rc::new(Semaphore::new(CONNECTION_TASKS_MAX)),
    });
    conn.read_loop(read_half).await;
    conn.outbox.close();
    // Requests left half-reassembled give their bytes back.
    conn.cluster
        .peer_bounds
        .release_reassembly(conn.partial_bytes.get());
}

/// A request as read from the wire.
enum Incoming {
    Peer {
        id: u64,
        group: GroupId,
        op: u8,
        more: bool,
        payload: Vec<u8>,
    },
    Forward {
        id: u64,
        group: GroupId,
        transactions: Vec<Transaction>,
    },
    Bad {
        id: u64,
        reason: String,
    },
}

fn decode_incoming(frame: &settle_codec::Frame<'_>) -> Incoming {
    let id = frame.request_id();
    match frame.kind() {
        MessageKind::PeerRequest => match decode_body::<PeerRequest>(frame) {
            Ok(r) => Incoming::Peer {
                id,
                group: r.group.to_native(),
                op: r.op,
                more: r.more,
                payload: r.payload.as_slice().to_vec(),
            },
            Err(e) => Incoming::Bad {
                id,
                reason: e.to_string(),
            },
        },
        MessageKind::ForwardSubmit => match decode_body::<ForwardSubmit>(frame) {
            Ok(r) => Incoming::Forward {
                id,
                group: r.group.to_native(),
                transactions: r.transactions.iter().map(|t| t.to_native()).collect(),
            },
            Err(e) => Incoming::Bad {
                id,
                reason: e.to_string(),
            },
        },
        other => Incoming::Bad {
            id,
            reason: format!("{other:?} is not a peer request"),
        },
    }
}

/// One group's replication stream on this connection.
struct Session {
    input: mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
    /// Request ids whose answers are still to come, in order.
    ids: Rc<RefCell<VecDeque<u64>>>,
    done: Rc<Cell<bool>>,
}

struct Partial {
    group: GroupId,
    op: u8,
    bytes: Vec<u8>,
}

struct ServerConn {
    cluster: Rc<CoreCluster>,
    peer: u64,
    caller: Caller,
    outbox: Rc<Outbox>,
    sessions: RefCell<HashMap<GroupId, Session>>,
    partial: RefCell<HashMap<u64, Partial>>,
    partial_bytes: Cell<usize>,
    tasks: Rc<Semaphore>,
}

impl ServerConn {
    async fn read_loop<R: AsyncRead + Unpin>(self: &Rc<Self>, mut source: R) {
        let mut reader = FrameReader::new();
        loop {
            let incoming = match read_frame_within(
                &mut reader,
                &mut source,
                PEER_IDLE_TIMEOUT,
                PEER_FRAME_TIMEOUT,
                decode_incoming,
            )
            .await
            {
                Ok(Some(incoming)) => incoming,
                Ok(None) => return,
                Err(e) => {
                    debug!(peer = self.peer, error = %e, "peer connection closed");
                    return;
                }
            };
            if let Some(id) = self.forbidden(&incoming) {
                self.respond(
                    id,
                    STATUS_REFUSED,
                    b"a tool may only ask for status".to_vec(),
                )
                .await;
                continue;
            }
            match incoming {
                Incoming::Peer {
                    id,
                    group,
                    op,
                    more,
                    payload,
                } => {
                    let Some((group, op, payload)) = self.reassemble(id, group, op, more, payload)
                    else {
                        if self.outbox.is_closed() {
                            return;
                        }
                        continue;
                    };
                    if op == OP_APPEND {
                        self.append(id, group, payload).await;
                    } else {
                        self.spawn(move |conn: Rc<ServerConn>| async move {
                            let (status, payload) = conn.handle(group, op, payload).await;
                            conn.respond(id, status, payload).await;
                        })
                        .await;
                    }
                }
                Incoming::Forward {
                    id,
                    group,
                    transactions,
                } => {
                    self.spawn(move |conn: Rc<ServerConn>| async move {
                        conn.forwarded_submit(id, group, transactions).await;
                    })
                    .await;
                }
                Incoming::Bad { id, reason } => {
                    self.respond(id, STATUS_BAD_REQUEST, reason.into_bytes())
                        .await;
                }
            }
        }
    }

    /// The id of a request this caller may not make (logged), if it is one.
    fn forbidden(&self, incoming: &Incoming) -> Option<u64> {
        if self.caller == Caller::Member {
            return None;
        }
        let (id, op) = match incoming {
            Incoming::Peer { id, op, .. } if *op == OP_STATUS => return None,
            Incoming::Peer { id, op, .. } => (*id, Some(*op)),
            Incoming::Forward { id, .. } => (*id, None),
            Incoming::Bad { .. } => return None,
        };
        warn!(?op, "peer request of a tool refused");
        Some(id)
    }

    /// Collects the chunks of a request; returns it once whole.
    fn reassemble(
        &self,
        id: u64,
        group: GroupId,
        op: u8,
        more: bool,
        payload: Vec<u8>,
    ) -> Option<(GroupId, u8, Vec<u8>)> {
        let mut partial = self.partial.borrow_mut();
        if !more && !partial.contains_key(&id) {
            return Some((group, op, payload));
        }
        let total = self.partial_bytes.get() + payload.len();
        if total > REASSEMBLY_BYTES_MAX
            || (!partial.contains_key(&id) && partial.len() >= REASSEMBLIES_MAX)
        {
            warn!(
                peer = self.peer,
                total, "chunked requests over their bound; closing"
            );
            self.outbox.close();
            return None;
        }
        if let Err(core_total) = self.cluster.peer_bounds.reserve_reassembly(payload.len()) {
            crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Peer);
            warn!(
                peer = self.peer,
                core_total, "chunked requests of this core's connections over their bound; closing"
            );
            self.outbox.close();
            return None;
        }
        self.partial_bytes.set(total);
        let entry = partial.entry(id).or_insert_with(|| Partial {
            group,
            op,
            bytes: Vec::new(),
        });
        entry.bytes.extend_from_slice(&payload);
        if more {
            return None;
        }
        let whole = partial.remove(&id).expect("inserted above");
        self.partial_bytes
            .set(self.partial_bytes.get() - whole.bytes.len());
        self.cluster
            .peer_bounds
            .release_reassembly(whole.bytes.len());
        Some((whole.group, whole.op, whole.bytes))
    }

    async fn spawn<F, Fut>(self: &Rc<Self>, f: F)
    where
        F: FnOnce(Rc<ServerConn>) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let permit = self
            .tasks
            .clone()
            .acquire_static_permit(1)
            .await
            .expect("the task semaphore is never closed");
        let conn = self.clone();
        glommio::spawn_local(async move {
            f(conn).await;
            drop(permit);
        })
        .detach();
    }

    async fn respond(&self, id: u64, status: u8, payload: Vec<u8>) {
        // A closed connection drops the answer: the peer has given up on it.
        let _ = self
            .outbox
            .push(id, &PeerResponse { status, payload })
            .await;
    }

    /// One AppendEntries of a replication stream, in order.
    async fn append(self: &Rc<Self>, id: u64, group: GroupId, payload: Vec<u8>) {
        let rpc = match decode_append_request(&payload) {
            Ok(rpc) => rpc,
            Err(e) => {
                self.respond(id, STATUS_BAD_REQUEST, e.to_string().into_bytes())
                    .await;
                return;
            }
        };
        drop(payload);
        let Some((input, ids)) = self.session_for(group, id) else {
            self.respond(id, STATUS_NOT_READY, b"group not open".to_vec())
                .await;
            return;
        };
        if let Err(e) = input.try_send(rpc) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "replication stream full",
                mpsc::error::TrySendError::Closed(_) => "replication stream reset",
            };
            let unanswered = {
                let mut ids = ids.borrow_mut();
                let at = ids.iter().position(|&i| i == id);
                at.map(|at| ids.remove(at)).is_some()
            };
            if unanswered {
                self.respond(id, STATUS_ERROR, reason.as_bytes().to_vec())
                    .await;
            }
        }
    }

    /// The live replication stream of `group` on this connection (started
    /// if needed), with request `id` queued for its answer; `None` if the
    /// group is not open here.
    #[allow(clippy::type_complexity)]
    fn session_for(
        self: &Rc<Self>,
        group: GroupId,
        id: u64,
    ) -> Option<(
        mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
        Rc<RefCell<VecDeque<u64>>>,
    )> {
        let mut sessions = self.sessions.borrow_mut();
        let live = sessions.get(&group).is_some_and(|s| !s.done.get());
        if !live {
            let (handle, _) = self.cluster.group(group)?;
            sessions.insert(group, self.new_session(handle));
        }
        let session = sessions.get(&group).expect("present");
        session.ids.borrow_mut().push_back(id);
        Some((session.input.clone(), session.ids.clone()))
    }

    fn new_session(self: &Rc<Self>, handle: Rc<dyn GroupHandle>) -> Session {
        let (input, requests) = mpsc::channel(APPEND_SESSION_DEPTH);
        let requests = futures_util::stream::unfold(requests, |mut rx| async move {
            rx.recv().await.map(|rpc| (rpc, rx))
        })
        .boxed_local();
        let mut answers = handle.append_stream(requests);
        let ids: Rc<RefCell<VecDeque<u64>>> = Rc::default();
        let done = Rc::new(Cell::new(false));
        let (conn, task_ids, task_done) = (self.clone(), ids.clone(), done.clone());
        glommio::spawn_local(async move {
            let mut bytes = Vec::new();
            while let Some(answer) = answers.next().await {
                let Some(id) = task_ids.borrow_mut().pop_front() else {
                    break;
                };
                match answer {
                    Ok(result) => {
                        bytes.clear();
                        encode_append_result(&result, &mut bytes);
                        conn.respond(id, STATUS_OK, bytes.clone()).await;
                    }
                    Err(fatal) => conn.respond(id, STATUS_ERROR, fatal.into_bytes()).await,
                }
            }
            // Stream over (a refusal ends it): requests it will not answer get an error.
            task_done.set(true);
            let rest: Vec<u64> = task_ids.borrow_mut().drain(..).collect();
            for id in rest {
                conn.respond(id, STATUS_ERROR, b"replication stream reset".to_vec())
                    .await;
            }
        })
        .detach();
        Session { input, ids, done }
    }

    /// Everything but stream appends and forwarded submits.
    async fn handle(&self, group: GroupId, op: u8, payload: Vec<u8>) -> (u8, Vec<u8>) {
        let node_wide = matches!(op, OP_STATUS | OP_PROBE);
        let group_entry = self.cluster.group(group);
        if !node_wide
            && !matches!(
                op,
                OP_FORWARD_CONTROL | OP_SHARD_COMMAND | OP_CONTROL_COMMAND
            )
            && group_entry.is_none()
        {
            return (STATUS_NOT_READY, b"group not open".to_vec());
        }
        let outcome: Result<Vec<u8>, (u8, String)> = match op {
            OP_HEARTBEAT => {
                let (handle, _) = group_entry.expect("checked");
                heartbeat(handle.as_ref(), &payload).await
            }
            OP_VOTE | OP_PRE_VOTE => {
                let (handle, votes_allowed) = group_entry.expect("checked");
                let started = std::time::Instant::now();
                let answer =
                    vote(handle.as_ref(), votes_allowed, op == OP_PRE_VOTE, &payload).await;
                debug!(
                    group,
                    from = self.peer,
                    pre = op == OP_PRE_VOTE,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    ok = answer.is_ok(),
                    "vote request answered"
                );
                answer
            }
            OP_SNAPSHOT => {
                let (handle, _) = group_entry.expect("checked");
                install_snapshot(handle.as_ref(), payload).await
            }
            OP_TRANSFER_LEADER => {
                let (handle, _) = group_entry.expect("checked");
                match from_json(&payload) {
                    Err(e) => Err((STATUS_BAD_REQUEST, e.to_string())),
                    Ok(rpc) => handle
                        .transfer_leader(rpc)
                        .await
                        .map(|r| to_json(&r))
                        .map_err(|e| (STATUS_ERROR, e)),
                }
            }
            OP_STATUS => self.status(&payload).await,
            OP_PROBE => Ok(to_json(&ProbeAnswer {
                node_id: self.cluster.node.node_id(),
                initialized: self.cluster.node.is_initialized(),
                formed: self.cluster.groups().iter().any(|(_, _, handle)| {
                    handle
                        .metrics()
                        .local_committed
                        .is_some_and(|c| c.index >= 1)
                }),
            })),
            OP_FORWARD_CONTROL => self.forwarded_control(&payload).await,
            OP_SHARD_COMMAND => self.forwarded_command(group, &payload).await,
            OP_CONTROL_COMMAND => self.forwarded_control_command(&payload).await,
            other => Err((STATUS_BAD_REQUEST, format!("unknown op {other}"))),
        };
        match outcome {
            Ok(payload) => (STATUS_OK, payload),
            Err((status, message)) => (status, message.into_bytes()),
        }
    }

    async fn status(&self, payload: &[u8]) -> Result<Vec<u8>, (u8, String)> {
        let request: StatusRequest = if payload.is_empty() {
            StatusRequest::default()
        } else {
            from_json(payload).map_err(|e| (STATUS_BAD_REQUEST, e.to_string()))?
        };
        let mut groups = Vec::new();
        for (group, name, handle) in self.cluster.groups() {
            let mut status = group_status(group, &name, &handle);
            if request.digest {
                status.digest = handle
                    .digest(request.digest_at.get(&group).copied())
                    .await
                    .ok()
                    .flatten();
            }
            groups.push(status);
        }
        let node = &self.cluster.node;
        Ok(to_json(&CoreStatus {
            node_id: node.node_id(),
            core: self.cluster.core,
            cores: node.cores,
            peers: node
                .config
                .peers
                .iter()
                .map(|(id, addr)| (*id, addr.to_string()))
                .collect(),
            groups,
        }))
    }

    async fn forwarded_control(&self, payload: &[u8]) -> Result<Vec<u8>, (u8, String)> {
        let participants: Vec<crate::participants::Participant> =
            serde_json::from_slice(payload).map_err(|e| (STATUS_BAD_REQUEST, e.to_string()))?;
        let inbox = self.cluster.control_inbox().ok_or((
            STATUS_NOT_READY,
            "no control group on this core".to_string(),
        ))?;
        let (reply, answer) = oneshot::channel();
        inbox
            .send(ControlMsg::UpsertParticipants {
                participants,
                reply,
            })
            .await
            .map_err(|_| (STATUS_ERROR, "shutting down".to_string()))?;
        match answer.await {
            Ok(Ok(())) => Ok(Vec::new()),
            Ok(Err(ShardError::NotLeader { .. })) => {
                Err((STATUS_NOT_LEADER, "not the control leader".to_string()))
            }
            Ok(Err(e)) => Err((STATUS_ERROR, e.to_string())),
            Err(_) => Err((STATUS_ERROR, "shutting down".to_string())),
        }
    }

    /// A shard command relayed by a node that does not lead the shard:
    /// straight to the proposer's priority inbox (never forwarded again).
    async fn forwarded_command(
        &self,
        group: GroupId,
        payload: &[u8],
    ) -> Result<Vec<u8>, (u8, String)> {
        let command = super::remote::decode_command(payload)
            .map_err(|e| (STATUS_BAD_REQUEST, e.to_string()))?;
        let inbox = self
            .cluster
            .shard_priority_inbox(group)
            .ok_or((STATUS_NOT_READY, "no such shard on this core".to_string()))?;
        let (msg, answer) = super::remote::to_local(command);
        inbox
            .send(msg)
            .await
            .map_err(|_| (STATUS_ERROR, "shutting down".to_string()))?;
        let answer = answer
            .await
            .map_err(|_| (STATUS_ERROR, "shutting down".to_string()))?;
        let bytes = super::remote::encode(&answer);
        if bytes.len() > settle_codec::MAX_PEER_CHUNK_BYTES {
            return Err((
                STATUS_ERROR,
                format!("answer of {} bytes does not fit a frame", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// A control command relayed to this node as the control leader.
    async fn forwarded_control_command(&self, payload: &[u8]) -> Result<Vec<u8>, (u8, String)> {
        let command: super::remote::ControlCommand =
            serde_json::from_slice(payload).map_err(|e| (STATUS_BAD_REQUEST, e.to_string()))?;
        let inbox = self.cluster.control_inbox().ok_or((
            STATUS_NOT_READY,
            "no control group on this core".to_string(),
        ))?;
        let (msg, answer) = super::remote::control_to_local(command);
        inbox
            .send(msg)
            .await
            .map_err(|_| (STATUS_ERROR, "shutting down".to_string()))?;
        let answer = answer
            .await
            .map_err(|_| (STATUS_ERROR, "shutting down".to_string()))?;
        Ok(serde_json::to_vec(&answer).expect("plain data"))
    }

    /// A submit relayed by a node that does not lead the shard: straight to
    /// the proposer (never forwarded again).
    async fn forwarded_submit(&self, id: u64, group: GroupId, transactions: Vec<Transaction>) {
        let outcome = match self.cluster.shard_inbox(group) {
            None => Err(ShardError::Internal {
                group,
                message: "no such shard on this core".into(),
            }),
            Some(inbox) => {
                let (reply, answer) = oneshot::channel();
                match inbox
                    .send(ShardMsg::Submit {
                        transactions,
                        reply,
                    })
                    .await
                {
                    Err(_) => Err(ShardError::ShuttingDown(group)),
                    Ok(()) => answer.await.unwrap_or(Err(ShardError::ShuttingDown(group))),
                }
            }
        };
        let pushed = match outcome {
            Ok(results) => self.outbox.push(id, &SubmitResponse { results }).await,
            Err(e) => {
                let code = match e {
                    ShardError::NotLeader { .. } => ErrorCode::NotLeader,
                    ShardError::ShuttingDown(_) => ErrorCode::ShuttingDown,
                    ShardError::Full { .. } => ErrorCode::Overloaded,
                    _ => ErrorCode::Internal,
                };
                self.outbox
                    .push(id, &ErrorResponse::new(code, &e.to_string()))
                    .await
            }
        };
        if let Err(e) = pushed {
            debug!(error = %e, "forwarded submit answer dropped");
        }
    }
}

async fn heartbeat(handle: &dyn GroupHandle, payload: &[u8]) -> Result<Vec<u8>, (u8, String)> {
    let rpc = decode_append_request(payload).map_err(bad)?;
    let prev = rpc.prev_log_id;
    let last = rpc
        .entries
        .last()
        .map(openraft::entry::RaftEntry::log_id)
        .or(prev);
    let response = handle.append(rpc).await.map_err(|e| (STATUS_ERROR, e))?;
    let mut bytes = Vec::new();
    encode_append_result(&response.into_stream_result(prev, last), &mut bytes);
    Ok(bytes)
}

async fn vote(
    handle: &dyn GroupHandle,
    votes_allowed: bool,
    pre_vote: bool,
    payload: &[u8],
) -> Result<Vec<u8>, (u8, String)> {
    let rpc: VoteRequest<TypeConfig> = from_json(payload).map_err(bad)?;
    if !votes_allowed {
        // A rejoining replica that has not caught up: never grant.
        let m = handle.metrics();
        let refusal = VoteResponse::<TypeConfig> {
            vote: m.vote,
            vote_granted: false,
            last_log_id: m.last_applied,
        };
        return Ok(to_json(&refusal));
    }
    let response = handle
        .vote(rpc, pre_vote)
        .await
        .map_err(|e| (STATUS_ERROR, e))?;
    Ok(to_json(&response))
}

async fn install_snapshot(
    handle: &dyn GroupHandle,
    payload: Vec<u8>,
) -> Result<Vec<u8>, (u8, String)> {
    let too_short = || (STATUS_BAD_REQUEST, "snapshot payload too short".to_string());
    let header_len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(too_short)?;
    let header_end = 4usize.checked_add(header_len).ok_or_else(too_short)?;
    let header: SnapshotHeader =
        from_json(payload.get(4..header_end).ok_or_else(too_short)?).map_err(bad)?;
    let data = payload[header_end..].to_vec();
    drop(payload);
    info!(
        last = ?header.meta.last_log_id,
        bytes = data.len(),
        "installing a snapshot from the leader"
    );
    let response = handle
        .install_snapshot(header.vote, header.meta, data)
        .await
        .map_err(|e| (STATUS_ERROR, e))?;
    Ok(to_json(&response))
}

fn bad(e: WireError) -> (u8, String) {
    (STATUS_BAD_REQUEST, e.to_string())
}
