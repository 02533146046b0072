//! The HTTP port's listener: TLS 1.3 handshakes completed off the accept
//! path (bounded in number and time), each connection handed to axum with
//! the identity of its client certificate, if it offered one. A plaintext
//! HTTP request is answered 400 with a JSON body saying TLS is required.
//!
//! Bounded like the binary port ([`ClientLimits`]): connections at once
//! (one more is closed at accept), a connection idle too long is closed, and
//! so is one whose request is still arriving after the frame timeout (slow
//! senders, slowloris headers).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::{IncomingStream, Listener};
use settle_security::Identity;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::intake::limits::ClientLimits;

use crate::credentials::{ServerSecurity, PLAINTEXT_REFUSED, TLS_HANDSHAKE_RECORD};

/// Handshakes in progress at once: a flood of slow clients waits for a
/// slot instead of holding unbounded memory.
const HANDSHAKES_MAX: usize = 256;
/// How long a client may take to send its first byte and finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a refused plaintext request read away before closing.
const PLAINTEXT_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// Established connections waiting for axum to take them.
const READY_QUEUED_MAX: usize = 64;

/// A connection's stream, TLS or (with `--insecure`) plain.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Who is at the other end of an HTTP connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: SocketAddr,
    /// From a verified client certificate.
    pub identity: Option<Identity>,
    /// False only on an `--insecure` node: nobody is authenticated there.
    pub tls: bool,
}

/// The HTTP port's listener.
pub struct ClientListener {
    ready: mpsc::Receiver<(Box<dyn Io>, Caller)>,
    addr: SocketAddr,
}

impl ClientListener {
    /// Starts accepting on `listener` (on the current tokio runtime).
    pub fn new(
        listener: TcpListener,
        security: Option<ServerSecurity>,
        limits: ClientLimits,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUED_MAX);
        tokio::spawn(accept_loop(listener, security, limits, tx));
        Ok(ClientListener { ready, addr })
    }
}

async fn accept_loop(
    listener: TcpListener,
    security: Option<ServerSecurity>,
    limits: ClientLimits,
    ready: mpsc::Sender<(Box<dyn Io>, Caller)>,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    let connections = Arc::new(Semaphore::new(limits.connections_per_core));
    let mut refused = 0u64;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(connection) = connections.clone().try_acquire_owned() else {
            refused += 1;
            crate::metrics::cells::connection_refused(crate::metrics::cells::Port::Http);
            if refused.is_power_of_two() {
                warn!(
                    %addr,
                    connections_max = limits.connections_per_core,
                    refused,
                    "HTTP connection refused: as many are open as may be"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Some(security) = security.clone() else {
            let caller = Caller {
                addr,
                identity: None,
                tls: false,
            };
            let io = Bounded::new(Box::new(stream), connection, &limits);
            if ready.send((Box::new(io), caller)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, security)).await;
            drop(slot);
            match outcome {
                Ok(Ok((io, identity))) => {
                    let caller = Caller {
                        addr,
                        identity,
                        tls: true,
                    };
                    let io = Bounded::new(io, connection, &limits);
                    let _ = ready.send((Box::new(io), caller)).await;
                }
                Ok(Err(e)) => debug!(%addr, error = %e, "HTTPS handshake failed"),
                Err(_) => debug!(%addr, "HTTPS handshake timed out"),
            }
        });
    }
}

async fn handshake(
    mut stream: TcpStream,
    security: ServerSecurity,
) -> std::io::Result<(Box<dyn Io>, Option<Identity>)> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(std::io::Error::other("closed before a handshake"));
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        warn!(peer = ?stream.peer_addr().ok(), "plaintext request on the HTTPS port refused");
        let body = serde_json::json!({ "error": PLAINTEXT_REFUSED }).to_string();
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with the request unread would reset the connection and
        // could destroy the answer: read it away first.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < PLAINTEXT_DRAIN_BYTES_MAX {
            match stream.read(&mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
        return Err(std::io::Error::other("plaintext client"));
    }
    let tls = tokio_rustls::TlsAcceptor::from(security.tls)
        .accept(stream)
        .await?;
    let identity = match settle_security::tls::peer_identity(tls.get_ref().1.peer_certificates()) {
        Some(Ok(identity)) => Some(identity),
        Some(Err(e)) => {
            warn!(error = %e, "client certificate names no identity");
            None
        }
        None => None,
    };
    Ok((Box::new(tls), identity))
}

/// A connection within the port's bounds: it holds one connection slot
/// until dropped, and fails its reads (so hyper closes it) once it has been
/// idle for the idle timeout, or a request's head (request line and
/// headers, up to the blank line) has been arriving for longer than the
/// frame timeout (slowloris). A request begins with its first byte read
/// after the last byte written; once its head is in, only the idle timeout
/// applies, so a slow handler is never cut off. (A body is at most
/// `HTTP_BODY_BYTES_MAX`.)
struct Bounded {
    inner: Box<dyn Io>,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    request_timeout: Duration,
    /// When the head of the request now arriving began (`None` between
    /// requests and once the head is in).
    request_started: Option<Instant>,
    /// Bytes of the blank line ending a head ("\r\n\r\n") matched so far.
    head_end_matched: usize,
    /// The head of the request now arriving is in (its body may follow).
    head_done: bool,
    deadline: Pin<Box<Sleep>>,
}

impl Bounded {
    fn new(inner: Box<dyn Io>, slot: OwnedSemaphorePermit, limits: &ClientLimits) -> Bounded {
        Bounded {
            inner,
            _slot: slot,
            idle_timeout: limits.idle_timeout,
            request_timeout: limits.frame_timeout,
            request_started: None,
            head_end_matched: 0,
            head_done: false,
            deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    /// An answer went out: the request is in; the idle clock starts again.
    fn after_write(&mut self, written: &Poll<std::io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.request_started = None;
            self.head_end_matched = 0;
            self.head_done = false;
            self.rearm();
        }
    }

    fn rearm(&mut self) {
        let deadline = match self.request_started {
            Some(started) => started + self.request_timeout,
            None => Instant::now() + self.idle_timeout,
        };
        self.deadline.as_mut().reset(deadline);
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().len();
                if filled > before {
                    let this = &mut *self;
                    if !this.head_done {
                        this.request_started.get_or_insert_with(Instant::now);
                        if head_ends(&mut this.head_end_matched, &buf.filled()[before..filled]) {
                            // The head is in: the rest is the handler's time.
                            this.head_done = true;
                            this.request_started = None;
                        }
                    }
                    this.rearm();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    let why = match self.request_started {
                        Some(_) => format!(
                            "a request must arrive whole within {:?}",
                            self.request_timeout
                        ),
                        None => format!("idle for {:?}", self.idle_timeout),
                    };
                    debug!(%why, "HTTP connection closed");
                    Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why)))
                }
            },
        }
    }
}

/// Feeds `bytes` to the search for "\r\n\r\n"; true once it is found.
fn head_ends(matched: &mut usize, bytes: &[u8]) -> bool {
    const END: &[u8; 4] = b"\r\n\r\n";
    for &b in bytes {
        *matched = if b == END[*matched] {
            *matched + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if *matched == END.len() {
            *matched = 0;
            return true;
        }
    }
    false
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(&written);
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Listener for ClientListener {
    type Io = Box<dyn Io>;
    type Addr = Caller;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Caller {
            addr: self.addr,
            identity: None,
            tls: false,
        })
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, ClientListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, ClientListener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::head_ends;

    #[test]
    fn a_head_ends_at_its_blank_line_across_reads() {
        let mut matched = 0;
        assert!(!head_ends(&mut matched, b"GET / HTTP/1.1\r\nhost: a\r"));
        assert!(!head_ends(&mut matched, b"\n"));
        assert!(head_ends(&mut matched, b"\r\nbody"));
        let mut matched = 0;
        assert!(!head_ends(&mut matched, b"a\r\n\r\r\nb"), "no blank line");
        assert!(head_ends(&mut matched, b"\r\n\r\n"));
    }
}
