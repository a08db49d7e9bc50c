//! Who is in the cluster and how loaded each member is.
//!
//! The [`PeerTable`] is plain state: heartbeats, disconnections and clock
//! ticks go in, membership events come out. The cluster task owns it and is
//! the only writer; every other part of the node reads it through a
//! [`PeerView`], which always shows the table as the task last left it.
//!
//! ```text
//!   heartbeat ──► Alive ──(missed 1 interval)──► Suspected
//!                   ▲                                │ (missed `misses`)
//!                   └──────── heartbeat ◄─── Dead ◄──┘ or all connections closed
//! ```

use libp2p::PeerId;
use shoal_proto::Heartbeat;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the table knows about one peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The latest heartbeat received.
    pub load: Heartbeat,
    /// The functions it offers, by name, with their memoize flag; built
    /// from the heartbeat so placement looks names up in O(1).
    pub functions: HashMap<String, bool>,
    /// When that heartbeat arrived.
    pub last_seen: Instant,
    pub liveness: Liveness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Late with its heartbeat; still used, but reported.
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

/// The membership view of one node.
#[derive(Debug)]
pub struct PeerTable {
    peers: HashMap<PeerId, PeerInfo>,
    interval: Duration,
    misses: u32,
}

impl PeerTable {
    pub fn new(interval: Duration, misses: u32) -> Self {
        PeerTable {
            peers: HashMap::new(),
            interval,
            misses: misses.max(1),
        }
    }

    /// Records a heartbeat; a peer that was unknown or dead has (re)joined.
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
        let previous = self.peers.insert(
            peer,
            PeerInfo {
                functions,
                load,
                last_seen: now,
                liveness: Liveness::Alive,
            },
        );
        match previous.map(|info| info.liveness) {
            Some(Liveness::Alive) => None,
            Some(Liveness::Suspected) => Some(MemberEvent::Recovered(peer)),
            Some(Liveness::Dead) | None => Some(MemberEvent::Joined(peer)),
        }
    }

    /// All connections to the peer closed: a killed process shows up here
    /// long before its heartbeats are missed.
    pub fn on_disconnected(&mut self, peer: PeerId) -> Option<MemberEvent> {
        self.mark_dead(peer, "all connections closed")
    }

    /// A call stream to the peer could not be opened or broke.
    pub fn on_unreachable(&mut self, peer: PeerId) -> Option<MemberEvent> {
        self.mark_dead(peer, "unreachable")
    }

    fn mark_dead(&mut self, peer: PeerId, reason: &'static str) -> Option<MemberEvent> {
        let info = self.peers.get_mut(&peer)?;
        if info.liveness == Liveness::Dead {
            return None;
        }
        info.liveness = Liveness::Dead;
        Some(MemberEvent::Died(peer, reason))
    }

    /// Ages every peer by the clock: late peers become suspected, then dead.
    pub fn tick(&mut self, now: Instant) -> Vec<MemberEvent> {
        let suspect_after = self.interval * 2;
        let dead_after = self.interval * self.misses;
        let mut events = Vec::new();
        for (peer, info) in &mut self.peers {
            let silent_for = now.saturating_duration_since(info.last_seen);
            match info.liveness {
                Liveness::Dead => {}
                _ if silent_for > dead_after => {
                    info.liveness = Liveness::Dead;
                    events.push(MemberEvent::Died(*peer, "missed heartbeats"));
                }
                Liveness::Alive if silent_for > suspect_after => {
                    info.liveness = Liveness::Suspected;
                    events.push(MemberEvent::Suspected(*peer));
                }
                _ => {}
            }
        }
        events
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

    /// Whether any known peer, live or dead, has offered `function`.
    pub fn known_function(&self, function: &str) -> bool {
        self.peers
            .values()
            .any(|info| info.functions.contains_key(function))
    }

    /// Forgets peers dead for a long time so the table stays bounded.
    pub fn forget_dead(&mut self, now: Instant, after: Duration) {
        self.peers.retain(|_, info| {
            info.liveness != Liveness::Dead || now.saturating_duration_since(info.last_seen) < after
        });
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

    pub fn is_live(&self, peer: &PeerId) -> bool {
        self.read(|table| table.is_live(peer))
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
mod tests {
    use super::*;

    fn table() -> PeerTable {
        PeerTable::new(Duration::from_secs(1), 3)
    }

    #[test]
    fn first_heartbeat_joins_and_later_ones_do_not() {
        let mut table = table();
        let peer = PeerId::random();
        let now = Instant::now();
        assert_eq!(
            table.on_heartbeat(peer, Heartbeat::default(), now),
            Some(MemberEvent::Joined(peer))
        );
        assert_eq!(table.on_heartbeat(peer, Heartbeat::default(), now), None);
        assert_eq!(table.live().count(), 1);
    }

    #[test]
    fn silent_peer_is_suspected_then_dead() {
        let mut table = table();
        let peer = PeerId::random();
        let start = Instant::now();
        table.on_heartbeat(peer, Heartbeat::default(), start);
        assert!(table.tick(start + Duration::from_millis(1500)).is_empty());
        assert_eq!(
            table.tick(start + Duration::from_millis(2500)),
            vec![MemberEvent::Suspected(peer)]
        );
        assert!(table.is_live(&peer), "a suspected peer is still used");
        assert_eq!(
            table.tick(start + Duration::from_millis(3500)),
            vec![MemberEvent::Died(peer, "missed heartbeats")]
        );
        assert!(!table.is_live(&peer));
        assert!(
            table.tick(start + Duration::from_secs(10)).is_empty(),
            "dies once"
        );
    }

    #[test]
    fn disconnection_kills_at_once_and_a_heartbeat_revives() {
        let mut table = table();
        let peer = PeerId::random();
        let now = Instant::now();
        table.on_heartbeat(peer, Heartbeat::default(), now);
        assert_eq!(
            table.on_disconnected(peer),
            Some(MemberEvent::Died(peer, "all connections closed"))
        );
        assert_eq!(table.on_disconnected(peer), None);
        assert_eq!(table.live().count(), 0);
        assert_eq!(
            table.on_heartbeat(peer, Heartbeat::default(), now),
            Some(MemberEvent::Joined(peer))
        );
    }

    #[test]
    fn a_broken_call_stream_kills_at_once() {
        let mut table = table();
        let peer = PeerId::random();
        let now = Instant::now();
        table.on_heartbeat(peer, Heartbeat::default(), now);
        assert_eq!(
            table.on_unreachable(peer),
            Some(MemberEvent::Died(peer, "unreachable"))
        );
        assert!(!table.is_live(&peer), "no call is placed on it meanwhile");
        assert_eq!(table.on_disconnected(peer), None, "dies once");
        assert!(table.tick(now).is_empty());
    }

    #[test]
    fn long_dead_peers_are_forgotten() {
        let mut table = table();
        let peer = PeerId::random();
        let now = Instant::now();
        table.on_heartbeat(peer, Heartbeat::default(), now);
        table.on_disconnected(peer);
        table.forget_dead(now + Duration::from_secs(600), Duration::from_secs(300));
        assert!(table.get(&peer).is_none());
    }
}
