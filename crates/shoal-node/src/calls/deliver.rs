//! Handing an outcome to the call's owner, and trying again when it does
//! not get through.
//!
//! An owner learns that a call it placed is lost when the node holding it
//! dies or their call stream breaks. Neither happens when the stream was
//! closed cleanly for being idle (a call that runs longer than the idle
//! time) and the executor then cannot open a new one for the result: the
//! owner is busy, paused or briefly cut off. Dropped there, the result left
//! its owner waiting until the deadline, 5 minutes by default. Over 100
//! nodes on one machine with a 1 s idle timeout, 26 to 70 of a batch of
//! 1,000 `sleep 50` calls never answered that way (2026-12-01).
//!
//! So an outcome that cannot be sent is sent again, at growing intervals,
//! until the call's deadline, when its owner stops waiting anyway. The
//! first outcome to reach the owner wins, so a late one does no harm.
//! Nor does membership declaring the owner dead end the tries: a node
//! paused or cut off for longer than detection takes comes back with its
//! calls still waiting (and one restarted on its data numbers its calls
//! afresh, so a result of its previous life answers none of them).
//! Outcomes held for another try are bounded in bytes; past that, one is
//! dropped as before.

use super::Calls;
use super::pending::Where;
use libp2p::PeerId;
use shoal_proto::{CallId, Frame, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The wait before the second try; it doubles with each try after.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const MAX_RETRY_GAP: Duration = Duration::from_secs(2);
/// Bytes of outcomes held for another try, over all owners.
pub(super) const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

impl Calls {
    /// Sends an outcome to the call's owner (or resolves it, when that is
    /// us), trying again until `until` when it cannot be sent.
    pub(super) async fn deliver(
        self: &Arc<Self>,
        owner: PeerId,
        id: CallId,
        outcome: Outcome,
        until: Instant,
    ) {
        if owner == self.me {
            return self.resolve(id, outcome, Where::Local);
        }
        let bytes = match &outcome {
            Ok(value) => value.len(),
            Err(error) => error.message.len(),
        };
        let frame = Frame::Result { id, outcome };
        let Err(error) = self.links.send(owner, &frame).await else {
            return;
        };
        // A permit per byte: what is held for another try stays bounded.
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let Ok(_held) = self.undelivered_bytes.try_acquire_many(permits) else {
            tracing::warn!(%owner, %id, %error, "result not delivered, and too many are held for another try; dropped");
            return;
        };
        tracing::debug!(%owner, %id, %error, "result not delivered; trying again");
        let mut gap = FIRST_RETRY;
        for tries in 2.. {
            if Instant::now() + gap >= until {
                tracing::info!(%owner, %id, "result not delivered before its deadline; dropped");
                return;
            }
            tokio::select! {
                () = self.links.stopped() => return,
                () = tokio::time::sleep(gap) => {}
            }
            match self.links.send(owner, &frame).await {
                Ok(()) => {
                    tracing::info!(%owner, %id, tries, "result delivered after all");
                    return;
                }
                Err(error) => tracing::debug!(%owner, %id, %error, tries, "result not delivered"),
            }
            gap = (gap * 2).min(MAX_RETRY_GAP);
        }
    }
}
