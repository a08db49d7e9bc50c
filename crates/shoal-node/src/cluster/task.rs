//! The cluster task: the one writer of the peer table. It publishes this
//! node's heartbeat, ages the table, and acts on what changes — a peer that
//! died has its calls placed again and its own calls stopped here.

use super::heartbeat::OwnHeartbeat;
use super::peers::{MemberEvent, PeerTable};
use crate::calls::Calls;
use crate::net::{NetEvent, NetHandle};
use crate::raft::consensus::Consensus;
use crate::telemetry::alerts::{Alerts, NodeLoad};
use crate::telemetry::events::Events;
use libp2p::PeerId;
use shoal_proto::Heartbeat;
use shoal_proto::api::EventKind;
use shoal_proto::wire::PROTOCOL_VERSION;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Dead peers are forgotten after this long, keeping the table bounded.
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(600);
/// After a new connection, a heartbeat follows this soon so the peer learns
/// about us without waiting a full interval (gossipsub needs a moment to
/// exchange subscriptions first).
const GREETING_DELAY: Duration = Duration::from_millis(150);
/// Peers whose call stream broke, waiting for the task; a broken stream is
/// rare and each notice is handled in microseconds.
pub const UNREACHABLE_QUEUE: usize = 256;

/// What the cluster task works with.
pub struct ClusterTask {
    pub table: watch::Sender<PeerTable>,
    pub net: NetHandle,
    pub net_events: mpsc::Receiver<NetEvent>,
    /// Peers whose call stream broke (from the calls).
    pub unreachable: mpsc::Receiver<PeerId>,
    pub calls: Arc<Calls>,
    pub own: Arc<OwnHeartbeat>,
    pub consensus: Arc<Consensus>,
    pub events: Arc<Events>,
    pub alerts: Alerts,
    pub heartbeat_interval: Duration,
}

impl ClusterTask {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut greet_at: Option<tokio::time::Instant> = None;
        let mut warned_versions = HashSet::new();
        loop {
            let greeting = async {
                match greet_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = self.net_events.recv() => match event {
                    NetEvent::Heartbeat(peer, load) => {
                        if load.version != PROTOCOL_VERSION {
                            if warned_versions.insert(peer) {
                                tracing::warn!(%peer, theirs = load.version, ours = PROTOCOL_VERSION,
                                    "peer speaks another protocol version; run the same shoal version on every node");
                            }
                            continue;
                        }
                        self.on_heartbeat(peer, *load);
                    }
                    NetEvent::Connected(_) => {
                        greet_at.get_or_insert_with(|| tokio::time::Instant::now() + GREETING_DELAY);
                    }
                    NetEvent::Disconnected(peer) => {
                        let event = self.write(|table| table.on_disconnected(peer));
                        self.on_member_events(event.into_iter().collect());
                    }
                },
                Some(peer) = self.unreachable.recv() => self.on_unreachable(peer),
                () = greeting => {
                    greet_at = None;
                    self.publish_heartbeat(&mut seq);
                }
                _ = tick.tick() => {
                    self.publish_heartbeat(&mut seq);
                    let now = Instant::now();
                    let events = self.write(|table| {
                        table.forget_dead(now, FORGET_DEAD_AFTER);
                        table.tick(now)
                    });
                    self.on_member_events(events);
                    let loads = self.loads();
                    self.alerts.look(&self.events, &self.consensus, loads);
                }
            }
        }
    }

    /// Changes the table; readers see the change at once.
    fn write<T>(&self, change: impl FnOnce(&mut PeerTable) -> T) -> T {
        let mut out = None;
        self.table.send_modify(|table| out = Some(change(table)));
        out.expect("send_modify runs the change")
    }

    fn on_heartbeat(&self, peer: PeerId, load: Heartbeat) {
        if load.queued > 0 {
            self.calls.peer_has_work();
        }
        let event = self.write(|table| table.on_heartbeat(peer, load, Instant::now()));
        self.on_member_events(event.into_iter().collect());
    }

    /// A call stream to `peer` broke: it is dead to us until it is heard
    /// from again, and the calls it held run elsewhere.
    fn on_unreachable(&self, peer: PeerId) {
        match self.write(|table| table.on_unreachable(peer)) {
            Some(died) => self.on_member_events(vec![died]),
            // Not a member we knew alive; its calls still move.
            None => self.calls.redispatch_from(peer),
        }
    }

    /// Publishes this node's heartbeat, numbered so each message is unique.
    fn publish_heartbeat(&self, seq: &mut u64) {
        *seq += 1;
        self.own.usage.sample();
        let heartbeat = Heartbeat {
            seq: *seq,
            ..self.own.describe()
        };
        self.net.publish(heartbeat.encode());
    }

    /// Every live node's load, this one included, for the alerts.
    fn loads(&self) -> Vec<NodeLoad> {
        let own = self.calls.load();
        let mut loads: Vec<NodeLoad> = self
            .table
            .borrow()
            .live()
            .map(|(peer, info)| NodeLoad {
                node: peer.to_base58(),
                slots: info.load.slots,
                backlog: info.load.running + info.load.queued,
            })
            .collect();
        loads.push(NodeLoad {
            node: self.calls.node_id().0.clone(),
            slots: own.slots,
            backlog: own.busy + own.queued,
        });
        loads
    }

    fn on_member_events(&self, events: Vec<MemberEvent>) {
        for event in events {
            let (kind, peer, message) = match event {
                MemberEvent::Joined(peer) => {
                    (EventKind::NodeJoined, peer, format!("node {peer} joined"))
                }
                MemberEvent::Suspected(peer) => (
                    EventKind::NodeSuspected,
                    peer,
                    format!("node {peer} is late with its heartbeat"),
                ),
                MemberEvent::Recovered(peer) => (
                    EventKind::NodeRecovered,
                    peer,
                    format!("node {peer} is heard from again"),
                ),
                MemberEvent::Died(peer, reason) => {
                    self.calls.on_peer_dead(peer);
                    (
                        EventKind::NodeLeft,
                        peer,
                        format!("node {peer} left or died: {reason}"),
                    )
                }
            };
            self.events.emit(kind, Some(peer.to_base58()), message);
        }
    }
}
