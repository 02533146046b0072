//! Bounds of the peer port, per core (cores share nothing): connections
//! still saying hello, connections per calling node, bytes of chunked
//! requests being reassembled across all connections, and how long a
//! connection may sit idle or take to send one frame. A peer over a bound is
//! refused (told why where the protocol allows), logged, and closed; the
//! node's memory stays bounded whatever arrives on the port.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::server::REASSEMBLY_BYTES_MAX;

/// Accepted connections of one core that have not finished their hello
/// (and TLS handshake): one more is closed at accept.
pub const PEER_HANDSHAKES_PER_CORE_MAX: usize = 64;
/// Connections one calling node (or all tools together, node 0) may hold
/// to one core: a member dials each core once, redialling after failures.
pub const PEER_CONNECTIONS_PER_NODE_MAX: usize = 8;
/// Bytes of chunked requests being reassembled on one core, all
/// connections together: one whole snapshot in flight
/// ([`REASSEMBLY_BYTES_MAX`]) and a quarter more.
pub const REASSEMBLY_BYTES_PER_CORE_MAX: usize = REASSEMBLY_BYTES_MAX + REASSEMBLY_BYTES_MAX / 4;
/// A peer connection with no frame in progress is closed after this long
/// (a member redials on its next request).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A frame on the peer port must arrive whole within this long of its
/// first byte (frames are at most 1 MiB: snapshots travel in chunks).
pub const PEER_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// One core's accounting of its peer connections.
#[derive(Debug, Default)]
pub struct PeerBounds {
    handshakes: Cell<usize>,
    by_node: RefCell<HashMap<u64, usize>>,
    reassembling: Cell<usize>,
    refused: Cell<u64>,
}

impl PeerBounds {
    pub fn new() -> Rc<PeerBounds> {
        Rc::new(PeerBounds::default())
    }

    /// A slot for a connection that is yet to say hello, or `None` at the
    /// bound.
    pub fn handshake(self: &Rc<Self>) -> Option<HandshakeSlot> {
        if self.handshakes.get() >= PEER_HANDSHAKES_PER_CORE_MAX {
            self.refused.set(self.refused.get() + 1);
            return None;
        }
        self.handshakes.set(self.handshakes.get() + 1);
        Some(HandshakeSlot {
            bounds: self.clone(),
        })
    }

    /// A slot for a served connection of `node` (0: a tool), or `None` when
    /// it holds as many as it may.
    pub fn connection(self: &Rc<Self>, node: u64) -> Option<NodeSlot> {
        let mut by_node = self.by_node.borrow_mut();
        let held = by_node.entry(node).or_insert(0);
        if *held >= PEER_CONNECTIONS_PER_NODE_MAX {
            self.refused.set(self.refused.get() + 1);
            return None;
        }
        *held += 1;
        Some(NodeSlot {
            bounds: self.clone(),
            node,
        })
    }

    /// Takes `bytes` more for reassembly, or refuses (nothing taken) when
    /// the core's total would pass its bound.
    pub fn reserve_reassembly(&self, bytes: usize) -> Result<(), usize> {
        let total = self.reassembling.get() + bytes;
        if total > REASSEMBLY_BYTES_PER_CORE_MAX {
            self.refused.set(self.refused.get() + 1);
            return Err(total);
        }
        self.reassembling.set(total);
        Ok(())
    }

    /// Gives back reassembly bytes (a request whole, or its connection gone).
    pub fn release_reassembly(&self, bytes: usize) {
        let held = self.reassembling.get();
        assert!(held >= bytes, "released more than reserved");
        self.reassembling.set(held - bytes);
    }

    /// Connections and requests refused at a bound since start.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }
}

/// Held while a connection says hello.
#[derive(Debug)]
pub struct HandshakeSlot {
    bounds: Rc<PeerBounds>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let held = self.bounds.handshakes.get();
        assert!(held > 0);
        self.bounds.handshakes.set(held - 1);
    }
}

/// Held while a connection of one node is served.
#[derive(Debug)]
pub struct NodeSlot {
    bounds: Rc<PeerBounds>,
    node: u64,
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        let mut by_node = self.bounds.by_node.borrow_mut();
        let held = by_node.get_mut(&self.node).expect("counted when admitted");
        assert!(*held > 0);
        *held -= 1;
        if *held == 0 {
            by_node.remove(&self.node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_refuses_one_more_and_frees_on_drop() {
        let bounds = PeerBounds::new();
        let handshakes: Vec<_> = (0..PEER_HANDSHAKES_PER_CORE_MAX)
            .map(|_| bounds.handshake().unwrap())
            .collect();
        assert!(bounds.handshake().is_none());
        drop(handshakes);
        assert!(bounds.handshake().is_some());

        let of_two: Vec<_> = (0..PEER_CONNECTIONS_PER_NODE_MAX)
            .map(|_| bounds.connection(2).unwrap())
            .collect();
        assert!(bounds.connection(2).is_none(), "node 2 holds its bound");
        assert!(
            bounds.connection(3).is_some(),
            "another node is counted apart"
        );
        drop(of_two);
        assert!(bounds.connection(2).is_some());

        bounds.reserve_reassembly(REASSEMBLY_BYTES_MAX).unwrap();
        assert!(bounds.reserve_reassembly(REASSEMBLY_BYTES_MAX).is_err());
        bounds.release_reassembly(REASSEMBLY_BYTES_MAX);
        bounds.reserve_reassembly(REASSEMBLY_BYTES_MAX).unwrap();
        assert_eq!(bounds.refused(), 3);
    }
}
