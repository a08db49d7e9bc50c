//! Where the owner places a call: its picture of who can run a function
//! and how loaded each is, from the peer table and its own pending calls;
//! [`placement`](super::placement) decides from that picture.

use super::Calls;
use super::pending::Where;
use super::placement::{Candidate, Load, Placement, Placer};
use crate::cluster::peers::Liveness;
use libp2p::PeerId;
use shoal_proto::{CallError, ErrorCode};
use std::time::Instant;

impl Calls {
    /// Where a new call of `function` should run, among live nodes that
    /// have it — or, when the call ships its script, among all live nodes
    /// with slots — leaving out places in `refused`; `None` if nobody can
    /// run it.
    pub(super) fn place(&self, function: &str, shipped: bool, refused: &[Where]) -> Option<Where> {
        // A free slot here takes the call whatever the peers' load, so the
        // pass over every peer (which grows with the cluster) is skipped.
        let local = self.local_load(function, shipped, refused);
        if local.as_ref().is_some_and(Load::has_free_slot) {
            return Some(Where::Local);
        }
        let mut placer = Placer::new(local, self.candidates(function, shipped, refused));
        into_where(placer.place(&mut rand::rng()))
    }

    /// This node's load, if it can run `function` and is not refused.
    fn local_load(&self, function: &str, shipped: bool, refused: &[Where]) -> Option<Load> {
        let runs_here = shipped || self.registry.get(function).is_some();
        (runs_here && !refused.contains(&Where::Local))
            .then(|| self.load())
            .filter(|report| report.slots > 0)
            .map(|report| Load {
                slots: report.slots,
                backlog: report.busy + report.queued,
            })
    }

    /// The load picture [`place`](Self::place) works from, for one call or
    /// several in a row.
    pub(super) fn placer(
        &self,
        function: &str,
        shipped: bool,
        refused: &[Where],
    ) -> Placer<PeerId> {
        let local = self.local_load(function, shipped, refused);
        Placer::new(local, self.candidates(function, shipped, refused))
    }

    /// The live peers that can run `function`, with their load as this
    /// node knows it.
    fn candidates(
        &self,
        function: &str,
        shipped: bool,
        refused: &[Where],
    ) -> Vec<Candidate<PeerId>> {
        let now = Instant::now();
        // One pass over the peers. A suspected peer gets work only when no
        // other can take it.
        let (mut alive, mut suspected) = (Vec::new(), Vec::new());
        self.peers.read(|peers| {
            for (peer, info) in peers.live() {
                let usable = (shipped || info.functions.contains_key(function))
                    && info.load.slots > 0
                    && !refused.contains(&Where::Remote(*peer));
                if !usable {
                    continue;
                }
                let candidate = Candidate {
                    peer: *peer,
                    slots: info.load.slots,
                    reported: info.still_backlog(now),
                    sent: 0,
                };
                if info.liveness == Liveness::Alive {
                    alive.push(candidate);
                } else {
                    suspected.push(candidate);
                }
            }
        });
        let mut remotes = if alive.is_empty() { suspected } else { alive };
        if !remotes.is_empty() {
            // Heartbeats are up to a second old; what we sent since counts too.
            let pending = self.pending.lock().expect("pending lock");
            for candidate in &mut remotes {
                candidate.sent = pending.outstanding(&candidate.peer);
            }
        }
        remotes
    }

    pub(super) fn nowhere_error(&self, function: &str) -> CallError {
        let known_dead = self.peers.read(|peers| peers.known_function(function));
        if known_dead || self.registry.get(function).is_some() {
            CallError::new(
                ErrorCode::Unavailable,
                format!(
                    "no live node can run '{function}': the nodes that registered it are gone or have no slots"
                ),
            )
        } else {
            CallError::new(
                ErrorCode::UnknownFunction,
                format!("no node in the cluster has registered a function named '{function}'"),
            )
        }
    }
}

/// Where a placement says a call goes; `None` for nowhere.
pub(super) fn into_where(placement: Placement<PeerId>) -> Option<Where> {
    match placement {
        Placement::Local => Some(Where::Local),
        Placement::Remote(peer) => Some(Where::Remote(peer)),
        Placement::Nowhere => None,
    }
}
