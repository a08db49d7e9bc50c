//! Frames that peers sent about calls, handed to the role they concern.
//! The links call this on each stream's reader task, so nothing here waits:
//! submitting, resolving and cancelling take a lock for a moment, and what
//! must wait (telling the cluster task of a broken link) gets its own task.
//!
//! ```text
//!  stream reader ─► CallFrames::on_frame ─► Call/Cancel/Steal ─► executor side (run, steal)
//!                                        ─► Result/Moved      ─► owner side
//!                                        ─► Stolen            ─► executor; a note to the thief
//!                 on_link_lost ──────────────────────────────► cluster task (re-places its
//!                                                              calls, suspects it)
//! ```

use super::Calls;
use super::executor::QueuedCall;
use super::pending::Where;
use crate::net::links::FrameHandler;
use libp2p::PeerId;
use shoal_proto::Frame;
use std::sync::Arc;

/// The calls as the links see them.
pub struct CallFrames(pub Arc<Calls>);

impl FrameHandler for CallFrames {
    fn on_frame(&self, peer: PeerId, frame: Frame) {
        let calls = &self.0;
        match frame {
            Frame::Call(request) => calls.submit(QueuedCall::from_request(peer, request)),
            Frame::Cancel { id } => calls.cancel_call(peer, id),
            Frame::Result { id, outcome } => calls.resolve(id, outcome, Where::Remote(peer)),
            Frame::Moved { id, to } => match to.0.parse::<PeerId>() {
                Ok(to) => calls.moved(id, Where::Remote(peer), Where::Remote(to)),
                Err(_) => tracing::warn!(%peer, to = %to, "move notice names an invalid node"),
            },
            Frame::Steal { max } => calls.give_stolen(peer, max),
            Frame::Stolen { calls: stolen } => calls.take_stolen(peer, stolen),
            Frame::RaftRequest { .. } | Frame::RaftResponse { .. } | Frame::Bye => {
                tracing::warn!(%peer, "a link frame reached the calls; dropped");
            }
        }
    }

    fn on_link_lost(&self, peer: PeerId) {
        let calls = Arc::clone(&self.0);
        self.0
            .tasks
            .spawn(async move { calls.on_link_lost(peer).await });
    }
}
