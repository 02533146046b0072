//! `settle status` on a node started without `--peers` (a one-member node,
//! the README's first start).
//!
//! Such a node has no peer listener, so the status tool's peer frames
//! (hello, status) arrive at its client port. Intake passes every kind it
//! does not serve on to the control-plane answers (`cycle::wire`), which
//! hand peer frames here. Each core answers for its own groups, registered
//! on its thread as they open; the tool connects again until it has heard
//! from every core (the kernel spreads a client port's connections over the
//! cores; a peer port hands each connection to the core it names).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use settle_codec::{
    decode_body, ErrorCode, ErrorResponse, Frame, FrameBuf, MessageKind, PeerRequest, PeerResponse,
};

use super::handle::{group_status, GroupHandle};
use super::proto::{
    CoreStatus, HelloAck, StatusRequest, OP_HELLO, OP_STATUS, STATUS_BAD_REQUEST, STATUS_OK,
};
use crate::raft::NodeId;
use crate::shard::GroupId;

/// This core of a one-member node, as the status tool sees it.
struct SoloCore {
    node_id: NodeId,
    core: usize,
    cores: usize,
    listen: SocketAddr,
    groups: Vec<(GroupId, String, Rc<dyn GroupHandle>)>,
}

thread_local! {
    /// Set on each core thread of a node without `--peers`.
    static SOLO: RefCell<Option<SoloCore>> = const { RefCell::new(None) };
}

/// Marks this core thread as a core of a one-member node listening on
/// `listen`.
pub fn register_core(node_id: NodeId, core: usize, cores: usize, listen: SocketAddr) {
    SOLO.with(|solo| {
        *solo.borrow_mut() = Some(SoloCore {
            node_id,
            core,
            cores,
            listen,
            groups: Vec::new(),
        });
    });
}

/// Adds a group of this core to what the status tool is shown.
pub fn register_group(group: GroupId, name: &str, handle: Rc<dyn GroupHandle>) {
    SOLO.with(|solo| {
        if let Some(solo) = solo.borrow_mut().as_mut() {
            solo.groups.push((group, name.to_string(), handle));
        }
    });
}

/// Answers a peer frame that reached the client port; `false` if `frame`
/// is not one.
pub async fn answer(frame: &Frame<'_>, out: &mut FrameBuf) -> bool {
    if frame.kind() != MessageKind::PeerRequest {
        return false;
    }
    let (status, payload) = match decode_body::<PeerRequest>(frame) {
        Ok(request) => respond(request.op, request.payload.as_slice()).await,
        Err(e) => {
            // A bad body is answered like any bad request on this port.
            out.push(
                frame.request_id(),
                &ErrorResponse::new(ErrorCode::BadRequest, &e.to_string()),
            )
            .expect("an error response is bounded and always fits a frame");
            return true;
        }
    };
    let response = PeerResponse { status, payload };
    if let Err(e) = out.push(frame.request_id(), &response) {
        let response = PeerResponse {
            status: STATUS_BAD_REQUEST,
            payload: format!("answer does not fit a frame: {e}").into_bytes(),
        };
        out.push(frame.request_id(), &response)
            .expect("a short answer fits a frame");
    }
    true
}

async fn respond(op: u8, payload: &[u8]) -> (u8, Vec<u8>) {
    let core = SOLO.with(|solo| {
        solo.borrow().as_ref().map(|s| {
            (
                HelloAck {
                    node_id: s.node_id,
                    core: s.core,
                    cores: s.cores,
                },
                s.listen,
                s.groups.clone(),
            )
        })
    });
    let Some((ack, listen, groups)) = core else {
        return (
            STATUS_BAD_REQUEST,
            b"this is the client port of a cluster member: give settle status a peer address of --peers"
                .to_vec(),
        );
    };
    match op {
        OP_HELLO => (STATUS_OK, to_json(&ack)),
        OP_STATUS => {
            let request: StatusRequest = if payload.is_empty() {
                StatusRequest::default()
            } else {
                match serde_json::from_slice(payload) {
                    Ok(r) => r,
                    Err(e) => return (STATUS_BAD_REQUEST, e.to_string().into_bytes()),
                }
            };
            let mut statuses = Vec::with_capacity(groups.len());
            for (group, name, handle) in &groups {
                let mut status = group_status(*group, name, handle);
                if request.digest {
                    status.digest = handle
                        .digest(request.digest_at.get(group).copied())
                        .await
                        .ok()
                        .flatten();
                }
                statuses.push(status);
            }
            let status = CoreStatus {
                node_id: ack.node_id,
                core: ack.core,
                cores: ack.cores,
                peers: [(ack.node_id, listen.to_string())].into(),
                groups: statuses,
            };
            (STATUS_OK, to_json(&status))
        }
        other => (
            STATUS_BAD_REQUEST,
            format!("op {other}: a one-member node answers only the status tool here").into_bytes(),
        ),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data")
}
