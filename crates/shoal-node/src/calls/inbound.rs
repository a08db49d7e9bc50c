//! The dispatcher: frames that peers sent about calls, handed to the role
//! they concern. It never waits on a call: submitting, resolving and
//! cancelling take a lock for a moment and spawn what must wait.
//!
//! ```text
//!  links ── Inbound ──► dispatch ─► Call/Cancel/Steal ─► executor side (run, steal)
//!                                ─► Result/Moved      ─► owner side
//!                                ─► Stolen            ─► steal task
//!                                ─► LinkLost          ─► cluster task (marks it dead, re-places its calls)
//! ```

use super::Calls;
use super::executor::QueuedCall;
use super::pending::Where;
use crate::net::links::Inbound;
use libp2p::PeerId;
use shoal_proto::Frame;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames handled per wake-up; a burst is taken in one go.
const BATCH: usize = 256;

/// Reads the calls inbox until the node stops.
pub async fn dispatch(
    calls: Arc<Calls>,
    mut inbox: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = inbox.recv_many(&mut batch, BATCH) => if received == 0 {
                return;
            },
        }
        for inbound in batch.drain(..) {
            match inbound {
                Inbound::Frame(peer, frame) => calls.on_frame(peer, frame).await,
                Inbound::LinkLost(peer) => calls.on_link_lost(peer).await,
            }
        }
    }
}

impl Calls {
    async fn on_frame(self: &Arc<Self>, peer: PeerId, frame: Frame) {
        match frame {
            Frame::Call(request) => self.submit(QueuedCall::from_request(peer, request)),
            Frame::Cancel { id } => self.cancel_call(peer, id),
            Frame::Result { id, outcome } => self.resolve(id, outcome, Where::Remote(peer)),
            Frame::Moved { id, to } => match to.0.parse::<PeerId>() {
                Ok(to) => self.moved(id, Where::Remote(to)),
                Err(_) => tracing::warn!(%peer, to = %to, "move notice names an invalid node"),
            },
            Frame::Steal { max } => self.give_stolen(peer, max),
            Frame::Stolen { calls } => self.stolen_arrived(peer, calls).await,
            Frame::RaftRequest { .. } | Frame::RaftResponse { .. } => {
                tracing::warn!(%peer, "a Raft frame reached the calls' dispatcher; dropped");
            }
        }
    }
}
