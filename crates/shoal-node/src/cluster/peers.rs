//! Who is in the cluster and how loaded each member is.
//!
//! The [`PeerTable`] is plain state: what membership (SWIM) decided, load
//! reports and broken call streams go in, membership events come out. The
//! cluster task owns it and is the only writer; every other part of the
//! node reads it through a [`PeerView`], which always shows the table as
//! the task last left it.
//!
//! ```text
//!   up / heartbeat ──► Alive ──(SWIM suspects it)──► Suspected
//!                        ▲  ◄──(it refuted)───────────┘  │
//!                        │                               │ (SWIM: down)
//!                        └── up / heartbeat ◄── Dead ◄───┘ or its call stream broke
//! ```
//!
//! Liveness comes from SWIM, not from heartbeats: a member's load report
//! arrives every few seconds in a large cluster, so its age says nothing.
//!
//! A peer whose protocol version is too far from this node's is refused
//! (see [`shoal_proto::version`]): it leaves the table, is kept apart as
//! [`Refused`], and comes back only with a load report of a version this
//! node works with.

use crate::calls::placement::still_queued;
use libp2p::PeerId;
use shoal_proto::{Heartbeat, RaftRole};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the table knows about one peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The latest heartbeat received (all zeros until the first one).
    pub load: Heartbeat,
    /// The functions it offers, by name, with their memoize flag; built
    /// from the heartbeat so placement looks names up in O(1).
    pub functions: HashMap<String, bool>,
    /// When the peer was last heard of (up, or a heartbeat).
    pub last_seen: Instant,
    /// When `load` arrived.
    pub reported_at: Instant,
    pub liveness: Liveness,
    /// When it was found dead, while it is (at 100 nodes a peer's last
    /// report may be half a minute older than its death).
    pub dead_since: Option<Instant>,
}

impl PeerInfo {
    /// The calls its last report said were queued that are likely still
    /// waiting at `now` (see [`still_queued`]).
    pub fn still_queued(&self, now: Instant) -> u32 {
        let load = &self.load;
        let age = now.saturating_duration_since(self.reported_at);
        still_queued(load.queued, load.slots, load.mean_task_us, age)
    }

    /// The calls its last report said were queued or running that are
    /// likely still there at `now`: a report from the middle of an earlier
    /// fan-out must not make an idle peer look busy for the next one (at
    /// 100 nodes a report is about 30 s old; taken at face value, some
    /// peers got none of a fan-out's calls and others two more waves).
    pub fn still_backlog(&self, now: Instant) -> u32 {
        let load = &self.load;
        let age = now.saturating_duration_since(self.reported_at);
        let backlog = load.queued.saturating_add(load.running);
        still_queued(backlog, load.slots, load.mean_task_us, age)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Suspected by SWIM (a probe failed); still used, but reported.
    Suspected,
    /// Gone: no call is placed there and its calls run elsewhere.
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspected => "suspected",
            Liveness::Dead => "dead",
        }
    }
}

/// A change of membership worth acting on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    Joined(PeerId),
    Suspected(PeerId),
    /// A suspected peer was heard from again.
    Recovered(PeerId),
    /// Dead, with the reason for the log.
    Died(PeerId, &'static str),
}

/// A peer refused for its protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The version its last load report said.
    pub version: u32,
    /// When that report came.
    pub last_seen: Instant,
}

/// The membership view of one node.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, PeerInfo>,
    /// Members SWIM reports up whose first heartbeat has not arrived:
    /// not usable yet, since nobody knows what they offer.
    undescribed: HashSet<PeerId>,
    /// Peers whose protocol version this node cannot work with: never
    /// members, whatever SWIM says of them.
    refused: HashMap<PeerId, Refused>,
}

impl PeerTable {
    pub fn new() -> Self {
        PeerTable::default()
    }

    /// Membership says the peer is up. A peer known before is back at once,
    /// as it last described itself; a new one joins when its first
    /// heartbeat says what it offers.
    pub fn on_up(&mut self, peer: PeerId, now: Instant) -> Option<MemberEvent> {
        if self.refused.contains_key(&peer) {
            return None;
        }
        match self.peers.get_mut(&peer) {
            Some(info) if info.liveness != Liveness::Dead => None,
            Some(info) => {
                info.liveness = Liveness::Alive;
                info.last_seen = now;
                info.dead_since = None;
                Some(MemberEvent::Joined(peer))
            }
            None => {
                self.undescribed.insert(peer);
                None
            }
        }
    }

    /// Members SWIM reports up whose first heartbeat has not arrived.
    pub fn undescribed(&self) -> impl Iterator<Item = &PeerId> {
        self.undescribed.iter()
    }

    /// Membership declared the peer down.
    pub fn on_down(&mut self, peer: PeerId) -> Option<MemberEvent> {
        self.undescribed.remove(&peer);
        self.mark_dead(peer, "declared down by the cluster (no answer to probes)")
    }

    /// Membership suspects the peer, or no longer does.
    pub fn on_suspicion(&mut self, peer: PeerId, suspected: bool) -> Option<MemberEvent> {
        let info = self.peers.get_mut(&peer)?;
        match (info.liveness, suspected) {
            (Liveness::Alive, true) => {
                info.liveness = Liveness::Suspected;
                Some(MemberEvent::Suspected(peer))
            }
            (Liveness::Suspected, false) => {
                info.liveness = Liveness::Alive;
                Some(MemberEvent::Recovered(peer))
            }
            _ => None,
        }
    }

    /// Records a heartbeat; a peer that was unknown or dead is evidently
    /// alive and has (re)joined. A suspected one stays suspected until
    /// SWIM clears it.
    pub fn on_heartbeat(
        &mut self,
        peer: PeerId,
        load: Heartbeat,
        now: Instant,
    ) -> Option<MemberEvent> {
        let functions = load
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.memoize))
            .collect();
        self.undescribed.remove(&peer);
        self.refused.remove(&peer);
        let liveness = match self.peers.get(&peer).map(|info| info.liveness) {
            Some(Liveness::Suspected) => Liveness::Suspected,
            _ => Liveness::Alive,
        };
        let previous = self.peers.insert(
            peer,
            PeerInfo {
                functions,
                load,
                last_seen: now,
                reported_at: now,
                liveness,
                dead_since: None,
            },
        );
        match previous.map(|info| info.liveness) {
            Some(Liveness::Alive | Liveness::Suspected) => None,
            Some(Liveness::Dead) | None => Some(MemberEvent::Joined(peer)),
        }
    }

    /// The peer's load report says a protocol version this node cannot work
    /// with: it is no member (a member until now has died). Returns whether
    /// this is news — not refused before, or for another version — and the
    /// death.
    pub fn on_refused(
        &mut self,
        peer: PeerId,
        version: u32,
        now: Instant,
    ) -> (bool, Option<MemberEvent>) {
        self.undescribed.remove(&peer);
        let before = self.refused.insert(
            peer,
            Refused {
                version,
                last_seen: now,
            },
        );
        let news = before.is_none_or(|before| before.version != version);
        let died = match self.peers.remove(&peer) {
            Some(info) if info.liveness != Liveness::Dead => Some(MemberEvent::Died(
                peer,
                "refused: it now speaks an incompatible protocol version",
            )),
            _ => None,
        };
        (news, died)
    }

    /// The protocol version `peer` was refused for, if it was.
    pub fn refused_version(&self, peer: &PeerId) -> Option<u32> {
        self.refused.get(peer).map(|refused| refused.version)
    }

    /// Peers refused for their protocol version.
    pub fn refused(&self) -> impl Iterator<Item = (&PeerId, &Refused)> {
        self.refused.iter()
    }

    /// The lowest protocol version among the peers this node knows, dead
    /// ones included: what a write must stay readable by.
    pub fn lowest_version(&self) -> Option<u32> {
        self.peers.values().map(|info| info.load.version).min()
    }

    /// A call stream to the peer could not be opened or broke: a
    /// suspicion, not a death. Placement avoids the peer while others can
    /// take its work, and SWIM, which hears of it too, decides: the peer
    /// answers a probe and is cleared, or goes down. (A stream also breaks
    /// when a busy peer drops it, and a member taken for dead at every
    /// such break stayed dead for good in a cluster of 100.)
    pub fn on_unreachable(&mut self, peer: PeerId) -> Option<MemberEvent> {
        let info = self.peers.get_mut(&peer)?;
        if info.liveness != Liveness::Alive {
            return None;
        }
        info.liveness = Liveness::Suspected;
        Some(MemberEvent::Suspected(peer))
    }

    fn mark_dead(&mut self, peer: PeerId, reason: &'static str) -> Option<MemberEvent> {
        let info = self.peers.get_mut(&peer)?;
        if info.liveness == Liveness::Dead {
            return None;
        }
        info.liveness = Liveness::Dead;
        info.dead_since = Some(Instant::now());
        Some(MemberEvent::Died(peer, reason))
    }

    /// Peers that are not dead, with their latest load.
    pub fn live(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers
            .iter()
            .filter(|(_, info)| info.liveness != Liveness::Dead)
    }

    /// Every known peer, dead ones included.
    pub fn all(&self) -> impl Iterator<Item = (&PeerId, &PeerInfo)> {
        self.peers.iter()
    }

    pub fn get(&self, peer: &PeerId) -> Option<&PeerInfo> {
        self.peers.get(peer)
    }

    pub fn is_live(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|info| info.liveness != Liveness::Dead)
    }

    /// Whether membership declared `peer` dead (an unknown peer is not:
    /// it may be one whose first heartbeat has not come yet).
    pub fn is_dead(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|info| info.liveness == Liveness::Dead)
    }

    /// Whether any known peer, live or dead, has offered `function`.
    pub fn known_function(&self, function: &str) -> bool {
        self.peers
            .values()
            .any(|info| info.functions.contains_key(function))
    }

    /// Forgets peers dead, or refused and silent, for a long time so the
    /// table stays bounded.
    pub fn forget_dead(&mut self, now: Instant, after: Duration) {
        self.peers.retain(|_, info| {
            info.liveness != Liveness::Dead || now.saturating_duration_since(info.last_seen) < after
        });
        self.refused
            .retain(|_, refused| now.saturating_duration_since(refused.last_seen) < after);
    }
}

/// The table as its owner last left it: what placement, stealing, Raft and
/// the API read. Cheap to clone; reading never waits for the writer for
/// long (the cluster task holds the write lock only while applying one
/// event).
#[derive(Clone, Debug)]
pub struct PeerView(watch::Receiver<PeerTable>);

impl PeerView {
    /// A view and the sender its owner writes through.
    pub fn new(table: PeerTable) -> (watch::Sender<PeerTable>, PeerView) {
        let (sender, receiver) = watch::channel(table);
        (sender, PeerView(receiver))
    }

    /// Reads the table; keep the closure short and never await in it.
    pub fn read<T>(&self, read: impl FnOnce(&PeerTable) -> T) -> T {
        read(&self.0.borrow())
    }

    /// Live peers.
    pub fn live_peers(&self) -> Vec<PeerId> {
        self.read(|table| table.live().map(|(peer, _)| *peer).collect())
    }

    /// Live peers that take work: not draining to stop.
    pub fn serving_peers(&self) -> Vec<PeerId> {
        self.read(|table| {
            table
                .live()
                .filter(|(_, info)| !info.load.draining)
                .map(|(peer, _)| *peer)
                .collect()
        })
    }

    pub fn is_live(&self, peer: &PeerId) -> bool {
        self.read(|table| table.is_live(peer))
    }

    /// See [`PeerTable::is_dead`].
    pub fn is_dead(&self, peer: &PeerId) -> bool {
        self.read(|table| table.is_dead(peer))
    }

    /// The protocol version `peer` was refused for, if it was.
    pub fn refused_version(&self, peer: &PeerId) -> Option<u32> {
        self.read(|table| table.refused_version(peer))
    }

    /// See [`PeerTable::lowest_version`].
    pub fn lowest_version(&self) -> Option<u32> {
        self.read(PeerTable::lowest_version)
    }

    /// Live peers that hold a replica, as their heartbeats say: the leader
    /// first, then voters, then learners. Where a node without a replica
    /// sends its reads and writes.
    pub fn raft_members(&self) -> Vec<PeerId> {
        let mut members: Vec<(RaftRole, PeerId)> = self.read(|table| {
            table
                .live()
                .filter(|(_, info)| info.load.raft.holds_replica())
                .map(|(peer, info)| (info.load.raft, *peer))
                .collect()
        });
        // `RaftRole` orders Leader last: reversed, it comes first.
        members.sort_unstable_by(|a, b| b.cmp(a));
        members.into_iter().map(|(_, peer)| peer).collect()
    }

    /// Live peers that could hold a replica (any role but `None`), and
    /// are not draining to leave.
    pub fn raft_capable(&self) -> Vec<PeerId> {
        self.read(|table| {
            table
                .live()
                .filter(|(_, info)| info.load.raft != RaftRole::None && !info.load.draining)
                .map(|(peer, _)| *peer)
                .collect()
        })
    }

    /// Whether a live leader says jobs wait to be leased.
    pub fn leader_has_jobs_waiting(&self) -> bool {
        self.read(|table| {
            table
                .live()
                .any(|(_, info)| info.load.raft == RaftRole::Leader && info.load.jobs_waiting)
        })
    }

    /// Waits until `done` holds for the table, or `timeout` passes;
    /// returns whether it holds.
    pub async fn wait_for(&self, timeout: Duration, done: impl FnMut(&PeerTable) -> bool) -> bool {
        let mut receiver = self.0.clone();
        matches!(
            tokio::time::timeout(timeout, receiver.wait_for(done)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
#[path = "peers_tests.rs"]
mod tests;
