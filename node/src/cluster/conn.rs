//! What both ends of a peer connection share: the outbox (frames queued by
//! many tasks, written by one, coalesced into large writes) and reading
//! whole frames from a socket.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use settle_codec::{DecodeError, Encode, EncodeError, Frame, FrameBuf, FrameReader, ReadStatus};

/// Bytes a connection may have queued for writing before senders wait: a
/// few large AppendEntries or snapshot chunks in flight, no more, so a slow
/// peer slows its senders instead of growing memory.
pub const OUTBOX_BYTES_MAX: usize = 16 << 20;

/// The writer is woken at most once per batch of frames: further wakes while
/// one is queued add nothing (it writes everything queued when it runs).
const WRITER_WAKE_CAPACITY: usize = 1;

/// Why a frame could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("connection closed")]
    Closed,
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
}

/// Frames waiting to be written to one connection.
pub struct Outbox {
    buf: RefCell<FrameBuf>,
    /// Bytes that may still be queued (see [`OUTBOX_BYTES_MAX`]).
    budget: Semaphore,
    wake: LocalSender<()>,
    closed: Cell<bool>,
    /// The socket, to shut it down on close. Only used while one of the
    /// connection's halves is alive (each task closes before it drops its
    /// half), so the descriptor cannot have been reused.
    fd: RawFd,
}

impl Outbox {
    pub fn new(fd: RawFd) -> (Rc<Outbox>, LocalReceiver<()>) {
        let (wake, wakes) = local_channel::new_bounded(WRITER_WAKE_CAPACITY);
        let outbox = Rc::new(Outbox {
            buf: RefCell::new(FrameBuf::new()),
            budget: Semaphore::new(OUTBOX_BYTES_MAX as u64),
            wake,
            closed: Cell::new(false),
            fd,
        });
        (outbox, wakes)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Queues one frame, then waits while the queue is over its budget.
    pub async fn push<M: Encode>(&self, request_id: u64, msg: &M) -> Result<(), OutboxError> {
        if self.closed.get() {
            return Err(OutboxError::Closed);
        }
        let len = {
            let mut buf = self.buf.borrow_mut();
            buf.push(request_id, msg)?.len()
        };
        let _ = self.wake.try_send(());
        // The frame is queued; its bytes are paid for before the caller may
        // queue more. The writer gives them back once they are written.
        self.budget
            .acquire(len as u64)
            .await
            .map_err(|_| OutboxError::Closed)
    }

    /// Stops the connection: queued frames are dropped, the socket is shut
    /// down (which ends the reader), waiting senders fail.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.budget.close();
        let _ = self.wake.try_send(());
        // SAFETY: `fd` is the connection's open socket (see the field's
        // comment); the std wrapper is never dropped, so it does not close it.
        let socket = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.fd) });
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Writes whatever is queued, in large writes, until the outbox closes or a
/// write fails (which closes it).
pub async fn run_writer<W: AsyncWrite + Unpin>(
    outbox: Rc<Outbox>,
    wakes: LocalReceiver<()>,
    mut sink: W,
) {
    let mut spare = FrameBuf::new();
    while wakes.recv().await.is_some() {
        loop {
            if outbox.closed.get() {
                return;
            }
            std::mem::swap(&mut *outbox.buf.borrow_mut(), &mut spare);
            if spare.is_empty() {
                break;
            }
            let written = sink.write_all(spare.as_slice()).await;
            outbox.budget.signal(spare.len() as u64);
            spare.clear();
            if written.is_err() {
                outbox.close();
                return;
            }
        }
    }
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("a frame not whole within {0:?} of its first byte ({1} bytes came)")]
    Slow(Duration, usize),
}

/// Reads until one whole frame is buffered and hands it to `f`; `None` at
/// end of stream.
pub async fn read_frame<R, T>(
    reader: &mut FrameReader,
    source: &mut R,
    f: impl FnOnce(&Frame<'_>) -> T,
) -> Result<Option<T>, ReadError>
where
    R: AsyncRead + Unpin,
{
    loop {
        match reader.next_frame()? {
            ReadStatus::Frame(frame) => return Ok(Some(f(&frame))),
            ReadStatus::NeedMore(_) => {}
        }
        let n = source.read(reader.spare()).await?;
        if n == 0 {
            return Ok(None);
        }
        reader.commit(n);
    }
}

/// [`read_frame`] within bounds: the next frame's first byte within `idle`,
/// its last within `whole` of its first.
pub async fn read_frame_within<R, T>(
    reader: &mut FrameReader,
    source: &mut R,
    idle: Duration,
    whole: Duration,
    f: impl FnOnce(&Frame<'_>) -> T,
) -> Result<Option<T>, ReadError>
where
    R: AsyncRead + Unpin,
{
    let mut started = None;
    loop {
        match reader.next_frame()? {
            ReadStatus::Frame(frame) => return Ok(Some(f(&frame))),
            ReadStatus::NeedMore(_) => {}
        }
        let wait = next_read_within(reader, &mut started, idle, whole);
        match with_timeout(wait, source.read(reader.spare())).await {
            Some(read) => {
                let n = read?;
                if n == 0 {
                    return Ok(None);
                }
                reader.commit(n);
            }
            None if reader.buffered() == 0 => return Err(ReadError::Idle(idle)),
            None => return Err(ReadError::Slow(whole, reader.buffered())),
        }
    }
}

/// How long the next read of a connection may take: `idle` while no frame
/// has begun, else what is left of `whole` since the frame's first byte
/// (`started` keeps when; it is cleared between frames).
pub fn next_read_within(
    reader: &FrameReader,
    started: &mut Option<std::time::Instant>,
    idle: Duration,
    whole: Duration,
) -> Duration {
    if reader.buffered() == 0 {
        *started = None;
        return idle;
    }
    let since = *started.get_or_insert_with(std::time::Instant::now);
    whole.saturating_sub(since.elapsed())
}

/// `fut`, or `None` once `limit` has passed.
pub async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}
