//! Bounds of the binary client port, per core (cores share nothing, so each
//! counts its own): connections served at once, bytes their frame buffers
//! hold, and how long a connection may sit idle or take to send one frame.
//! Over a bound the client is told (an error frame where the protocol
//! allows) and the connection closed; the node's memory stays bounded
//! whatever clients do.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Connections one core serves at once [`ClientLimits::connections_per_core`].
pub const CLIENT_CONNECTIONS_PER_CORE_DEFAULT: usize = 1_024;
/// Frame-buffer bytes one core's client connections may hold together: 256
/// whole 1 MiB frames in flight. Idle connections hold none.
pub const CLIENT_BUFFER_BYTES_PER_CORE_MAX: usize = 256 << 20;
/// A connection with no frame in progress is closed after this long.
pub const CLIENT_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// A frame's bytes must all arrive within this long of its first one.
pub const CLIENT_FRAME_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The client port's bounds (flags `--client-connections-max`,
/// `--client-idle-timeout-ms`, `--client-frame-timeout-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub connections_per_core: usize,
    pub buffer_bytes_per_core: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    /// A request slower than this logs its slow-request line (both ports;
    /// `--slow-request-ms`).
    pub slow_request: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            connections_per_core: CLIENT_CONNECTIONS_PER_CORE_DEFAULT,
            buffer_bytes_per_core: CLIENT_BUFFER_BYTES_PER_CORE_MAX,
            idle_timeout: CLIENT_IDLE_TIMEOUT_DEFAULT,
            frame_timeout: CLIENT_FRAME_TIMEOUT_DEFAULT,
            slow_request: crate::request_log::SLOW_REQUEST_DEFAULT,
        }
    }
}

/// One core's accounting of its client connections.
#[derive(Debug)]
pub struct CoreClients {
    limits: ClientLimits,
    connections: Cell<usize>,
    buffered: Cell<usize>,
    refused: Cell<u64>,
}

impl CoreClients {
    pub fn new(limits: ClientLimits) -> Rc<CoreClients> {
        assert!(limits.connections_per_core > 0 && limits.buffer_bytes_per_core > 0);
        Rc::new(CoreClients {
            limits,
            connections: Cell::new(0),
            buffered: Cell::new(0),
            refused: Cell::new(0),
        })
    }

    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// A slot for one more connection, or `None` at the bound (counted).
    pub fn admit(self: &Rc<Self>) -> Option<ConnectionSlot> {
        let open = self.connections.get();
        if open >= self.limits.connections_per_core {
            self.refused.set(self.refused.get() + 1);
            return None;
        }
        self.connections.set(open + 1);
        Some(ConnectionSlot {
            core: self.clone(),
            held: 0,
        })
    }

    /// Connections refused at the bound since start.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    pub fn buffered(&self) -> usize {
        self.buffered.get()
    }
}

/// One admitted connection; gives its slot and its bytes back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    core: Rc<CoreClients>,
    /// Buffer bytes this connection is charged for.
    held: usize,
}

impl ConnectionSlot {
    pub fn limits(&self) -> &ClientLimits {
        &self.core.limits
    }

    /// Charges the connection for `allocated` buffer bytes (its reader's
    /// allocation now). `Err(total)` when the core's client buffers would
    /// exceed their bound: the caller refuses the frame and closes.
    pub fn charge(&mut self, allocated: usize) -> Result<(), usize> {
        let others = self.core.buffered.get() - self.held;
        let total = others + allocated;
        self.core.buffered.set(total);
        self.held = allocated;
        if total > self.core.limits.buffer_bytes_per_core {
            return Err(total);
        }
        Ok(())
    }

    /// Whether the core's buffers are past half their bound (then idle
    /// connections give their buffers back).
    pub fn core_is_tight(&self) -> bool {
        self.core.buffered.get() > self.core.limits.buffer_bytes_per_core / 2
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let buffered = self.core.buffered.get();
        assert!(buffered >= self.held);
        self.core.buffered.set(buffered - self.held);
        let open = self.core.connections.get();
        assert!(open > 0);
        self.core.connections.set(open - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, bytes: usize) -> ClientLimits {
        ClientLimits {
            connections_per_core: connections,
            buffer_bytes_per_core: bytes,
            ..ClientLimits::default()
        }
    }

    #[test]
    fn connections_over_the_bound_are_refused_and_slots_come_back() {
        let core = CoreClients::new(limits(2, 1 << 20));
        let a = core.admit().unwrap();
        let b = core.admit().unwrap();
        assert!(core.admit().is_none());
        assert_eq!((core.connections(), core.refused()), (2, 1));
        drop(a);
        let _c = core.admit().expect("a slot came back");
        drop(b);
        assert_eq!(core.connections(), 1);
    }

    #[test]
    fn buffers_are_charged_together_and_released_on_close() {
        let core = CoreClients::new(limits(8, 100));
        let mut a = core.admit().unwrap();
        let mut b = core.admit().unwrap();
        a.charge(60).unwrap();
        assert!(a.core_is_tight());
        assert_eq!(b.charge(50), Err(110), "over the core's bound");
        b.charge(0).unwrap();
        a.charge(90).unwrap();
        assert_eq!(core.buffered(), 90);
        drop(a);
        assert_eq!(core.buffered(), 0);
        b.charge(100).unwrap();
    }
}
