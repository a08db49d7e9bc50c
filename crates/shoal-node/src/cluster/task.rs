//! The cluster task: the one writer of the peer table. It runs this node's
//! membership protocol (SWIM), sends its load to a few members each period,
//! and acts on what changes — a peer that died has its calls placed again
//! and its own calls stopped here. It is where a peer of a protocol version
//! too far from this node's is refused (see [`shoal_proto::version`]): by
//! the version its load report says, whatever else the report holds.

use super::heartbeat::OwnHeartbeat;
use super::peers::{MemberEvent, PeerTable};
use super::swim::{COMPARE_EVERY_PERIODS, Change, Effects, MAX_FULL_STATE_BYTES};
use super::swim::{Membership, State, SwimId};
use crate::calls::Calls;
use crate::net::{NetEvent, NetHandle};
use crate::raft::consensus::Consensus;
use crate::telemetry::alerts::{Alerts, NodeLoad};
use crate::telemetry::events::Events;
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use shoal_proto::api::EventKind;
use shoal_proto::version::{self, Incompatible};
use shoal_proto::{Heartbeat, RaftRole};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Dead peers are forgotten after this long, keeping the table bounded.
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(600);
/// A caller held dead for this many periods (30 s by default) has the
/// calls it made here stopped: far longer than a pause or a short cut the
/// cluster rides out, far shorter than a call's default deadline.
const DEAD_CALLER_PERIODS: u32 = 30;
/// Members a node sends its load to each period, besides those it has just
/// met: constant, so the cost per node does not grow with the cluster; each
/// member hears from every other about every N / 3 periods.
pub const REPORTS_PER_PERIOD: usize = 3;
/// A node that knows no member yet keeps asking this many of the nodes it
/// connected to (its join addresses, DHT finds) to let it in.
const MAX_INTRODUCERS: usize = 8;
/// At most this many missing heartbeats are asked for each period.
const MAX_HEARTBEAT_REQUESTS: usize = 16;
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
    /// SWIM's probe period, and how often load is reported.
    pub heartbeat_interval: Duration,
    /// How long a suspected member has to refute before it is dead.
    pub suspicion: Duration,
    /// This node as membership knows it.
    pub me: SwimId,
}

/// Whom this node's load reports go to next.
#[derive(Default)]
struct Reports {
    seq: u64,
    /// Where the round-robin over members stands.
    cursor: usize,
    /// The part of the heartbeat that changes rarely (functions, labels,
    /// addresses), as last sent; when it changes, every member is told.
    card: Vec<u8>,
}

/// What the cluster task keeps between events, besides the table.
struct Local {
    swim: Membership<SwimId>,
    /// SWIM's clock starts here.
    origin: tokio::time::Instant,
    reports: Reports,
    /// The cluster size SWIM was last tuned for.
    sized_for: usize,
    /// While this node knows no member: whom it asked to let it in.
    introducers: Vec<PeerId>,
    /// Periods since it first knew a member.
    periods: u32,
}

impl Local {
    /// SWIM's time.
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

impl ClusterTask {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if self.own.version != version::PROTOCOL_VERSION {
            tracing::warn!(
                protocol_version = self.own.version,
                release = version::PROTOCOL_VERSION,
                "this node pretends to speak another protocol version, to test upgrades"
            );
        }
        let swim = Membership::new(
            self.me.clone(),
            2,
            self.heartbeat_interval,
            self.suspicion,
            rand::random(),
        );
        let mut local = Local {
            swim,
            origin: tokio::time::Instant::now(),
            reports: Reports::default(),
            sized_for: 0,
            introducers: Vec::new(),
            periods: 0,
        };
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = local.swim.next_due().map(|at| local.origin + at);
            let timer = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = self.net_events.recv() => self.on_net_event(&mut local, event),
                Some(peer) = self.unreachable.recv() => {
                    self.consensus.rpc().on_link_lost(peer);
                    self.on_unreachable(peer);
                    let now = local.now();
                    self.apply(local.swim.suspect(&peer, now));
                }
                () = timer => {
                    let now = local.now();
                    self.apply(local.swim.advance(now));
                }
                _ = tick.tick() => self.on_period(&mut local),
                // A new role, or jobs waiting: tell the members now.
                () = self.consensus.news() => self.report_load(&local.swim, &mut local.reports),
            }
        }
    }

    fn on_net_event(&self, local: &mut Local, event: NetEvent) {
        let now = local.now();
        let swim = &mut local.swim;
        match event {
            NetEvent::Swim(peer, packet) => match swim.receive(&packet, now) {
                Ok(effects) => self.apply(effects),
                Err(error) => {
                    tracing::debug!(%peer, %error, "ignored a membership packet");
                    // A release far from this one may encode membership
                    // otherwise; its load report still says which it is.
                    let undecodable =
                        matches!(error, foca::Error::Decode(_) | foca::Error::MalformedPacket);
                    if undecodable && self.table.borrow().refused_version(&peer).is_none() {
                        self.net.datagrams().request_heartbeat(peer);
                    }
                }
            },
            NetEvent::HeartbeatRequest(peer) => {
                let heartbeat = self.encode_heartbeat(0);
                self.net.datagrams().send_heartbeat(peer, heartbeat);
            }
            NetEvent::StateRequest(peer, digest) => {
                if digest != Some(swim.digest()) {
                    let state = swim.full_state(MAX_FULL_STATE_BYTES);
                    self.net.datagrams().send_state(peer, Bytes::from(state));
                }
            }
            NetEvent::State(peer, state) => match swim.merge(&state, now) {
                Ok(effects) => self.apply(effects),
                Err(error) => tracing::debug!(%peer, %error, "ignored a member list"),
            },
            NetEvent::Heartbeat(peer, _) if peer == self.me.peer() => {}
            NetEvent::Heartbeat(peer, report) => self.on_report(peer, &report),
            // A node we just connected to may be a member we do not know
            // yet (a join address, a DHT find): ask it in. A node of
            // another cluster does not answer.
            NetEvent::Connected(peer) if !self.table.borrow().is_live(&peer) => {
                if swim.is_empty() && local.introducers.len() < MAX_INTRODUCERS {
                    local.introducers.push(peer);
                }
                self.introduce(swim, peer, now);
            }
            NetEvent::Connected(_) => {}
        }
    }

    /// Once a period: keep asking to be let in while alone, compare views
    /// now and then, report load, ask for missing heartbeats, follow
    /// suspicions, retune SWIM to the cluster's size, look for alerts.
    fn on_period(&mut self, local: &mut Local) {
        if local.swim.is_empty() {
            // The first announcements may have been lost.
            for peer in local.introducers.clone() {
                let now = local.now();
                self.introduce(&mut local.swim, peer, now);
            }
        } else {
            local.introducers.clear();
            local.periods += 1;
            if local.periods.is_multiple_of(COMPARE_EVERY_PERIODS) {
                self.compare_views(&local.swim);
            }
        }
        self.report_load(&local.swim, &mut local.reports);
        self.ask_undescribed();
        self.follow_suspicions(&local.swim);
        self.calls.redispatch_from_the_dead();
        self.calls
            .stop_calls_of_the_long_dead(self.heartbeat_interval * DEAD_CALLER_PERIODS);
        let now = Instant::now();
        self.write(|table| table.forget_dead(now, FORGET_DEAD_AFTER));
        let members = local.swim.len() + 1;
        if members != local.sized_for {
            local.swim.resize(members);
            self.net.set_lonely(local.swim.is_empty());
            local.sized_for = members;
        }
        let loads = self.loads();
        self.alerts.look(&self.events, &self.consensus, loads);
    }

    /// Asks `peer` to let this node in, and, while this node knows no
    /// member, for the member list (an announcement brings back only the
    /// members that fit in one packet).
    fn introduce(&self, swim: &mut Membership<SwimId>, peer: PeerId, now: Duration) {
        if swim.is_empty() {
            self.net.datagrams().request_state(peer, None);
        }
        let effects = swim.announce(SwimId::new(peer, Vec::new(), 0), now);
        self.apply(effects);
    }

    /// Asks members whose first heartbeat never came (lost, or sent before
    /// their address reached this node's network) for one.
    fn ask_undescribed(&self) {
        let peers: Vec<PeerId> = self
            .table
            .borrow()
            .undescribed()
            .take(MAX_HEARTBEAT_REQUESTS)
            .copied()
            .collect();
        for peer in peers {
            self.net.datagrams().request_heartbeat(peer);
        }
    }

    /// Asks a random member for its member list if their views differ.
    fn compare_views(&self, swim: &Membership<SwimId>) {
        let pick = rand::random::<u64>() as usize % swim.len().max(1);
        if let Some(member) = swim.members().nth(pick) {
            self.net
                .datagrams()
                .request_state(member.peer(), Some(swim.digest()));
        }
    }

    /// Acts on one step of the membership protocol: members that came up
    /// are dialable and hear this node's load at once; members that went
    /// down are dead; packets go out.
    fn apply(&self, effects: Effects<SwimId>) {
        let mut met = Vec::new();
        for change in effects.changes {
            let event = match change {
                // An old identity of this very node, gossiped back to it.
                Change::Up(id) | Change::Down(id) if id.peer() == self.me.peer() => continue,
                Change::Up(id) => {
                    self.net.add_addresses(id.peer(), id.dialable_addrs());
                    self.net.datagrams().learn(id.peer(), id.addrs());
                    // New to SWIM, so maybe new to it: its heartbeat may
                    // have reached this node first, but not this node's it.
                    met.push(id.peer());
                    self.write(|table| table.on_up(id.peer(), Instant::now()))
                }
                Change::Down(id) => self.write(|table| table.on_down(id.peer())),
            };
            self.on_member_events(event.into_iter().collect());
        }
        for (to, packet) in effects.sends {
            self.net.datagrams().send_swim(to.peer(), packet);
        }
        if !met.is_empty() {
            let heartbeat = self.encode_heartbeat(0);
            for peer in met {
                self.net.datagrams().send_heartbeat(peer, heartbeat.clone());
            }
        }
    }

    /// Mirrors SWIM's suspicions in the table, so they show in the events
    /// and the status.
    fn follow_suspicions(&self, swim: &Membership<SwimId>) {
        let suspected: HashSet<PeerId> = swim
            .states()
            .filter(|(_, state)| *state == State::Suspect)
            .map(|(id, _)| id.peer())
            .collect();
        let events = self.write(|table| {
            let peers: Vec<PeerId> = table.live().map(|(peer, _)| *peer).collect();
            peers
                .into_iter()
                .filter_map(|peer| table.on_suspicion(peer, suspected.contains(&peer)))
                .collect()
        });
        self.on_member_events(events);
    }

    /// Sends this node's load to the next few members in turn, or to every
    /// member when its functions, labels or addresses changed.
    fn report_load(&self, swim: &Membership<SwimId>, reports: &mut Reports) {
        reports.seq += 1;
        self.own.usage.sample();
        let heartbeat = Heartbeat {
            seq: reports.seq,
            ..self.own.describe()
        };
        let card = card_of(&heartbeat);
        // SWIM's members, not the table's: a member whose own report was
        // lost is missing from the table until it hears from this node.
        let mut live: Vec<PeerId> = swim.members().map(SwimId::peer).collect();
        if live.is_empty() {
            return;
        }
        live.sort_unstable();
        let targets: Vec<PeerId> = if card == reports.card {
            (0..REPORTS_PER_PERIOD.min(live.len()))
                .map(|i| live[(reports.cursor + i) % live.len()])
                .collect()
        } else {
            reports.card = card;
            live.clone()
        };
        reports.cursor = (reports.cursor + targets.len()) % live.len();
        let bytes = Bytes::from(heartbeat.encode());
        for peer in targets {
            self.net.datagrams().send_heartbeat(peer, bytes.clone());
        }
    }

    fn encode_heartbeat(&self, seq: u64) -> Bytes {
        let heartbeat = Heartbeat {
            seq,
            ..self.own.describe()
        };
        Bytes::from(heartbeat.encode())
    }

    /// Changes the table; readers see the change at once.
    fn write<T>(&self, change: impl FnOnce(&mut PeerTable) -> T) -> T {
        let mut out = None;
        self.table.send_modify(|table| out = Some(change(table)));
        out.expect("send_modify runs the change")
    }

    /// Reads a load report, its version first: that decides whether the
    /// sender can be a member at all, so a release too far from this one
    /// is refused even when the rest of its report means nothing here.
    fn on_report(&self, peer: PeerId, report: &[u8]) {
        let Some(theirs) = Heartbeat::version_of(report) else {
            return tracing::debug!(%peer, "ignored an empty load report");
        };
        if let Err(incompatible) = version::check(self.own.version, theirs) {
            return self.refuse(peer, incompatible);
        }
        match Heartbeat::decode(report) {
            Ok(load) => self.on_heartbeat(peer, load),
            Err(error) => tracing::debug!(%peer, %error, "ignored an undecodable load report"),
        }
    }

    fn on_heartbeat(&self, peer: PeerId, load: Heartbeat) {
        if load.queued > 0 {
            self.calls.peer_has_work();
        }
        if load.raft == RaftRole::Leader && load.jobs_waiting {
            self.consensus.leader_says_jobs_wait();
        }
        // A newcomer's report may come before membership says where it is:
        // without its addresses, the first call to it would fail to dial
        // and count it dead.
        let addrs: Vec<Multiaddr> = load.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let event = self.write(|table| table.on_heartbeat(peer, load, Instant::now()));
        if matches!(event, Some(MemberEvent::Joined(_))) {
            self.net.add_addresses(peer, addrs);
        }
        self.on_member_events(event.into_iter().collect());
    }

    /// `peer` speaks a protocol version this node cannot work with: it is no
    /// member. Said once per peer and version, in the log and the events.
    fn refuse(&self, peer: PeerId, incompatible: Incompatible) {
        let (news, died) =
            self.write(|table| table.on_refused(peer, incompatible.theirs, Instant::now()));
        self.on_member_events(died.into_iter().collect());
        if news {
            self.events.emit(
                EventKind::NodeRefused,
                Some(peer.to_base58()),
                format!("node {peer} refused as a member: {incompatible}"),
            );
        }
    }

    /// A call stream to `peer` broke: the calls it held run elsewhere, and
    /// it is suspected until SWIM clears it or declares it down.
    fn on_unreachable(&self, peer: PeerId) {
        self.calls.redispatch_from(peer);
        let suspected = self.write(|table| table.on_unreachable(peer));
        self.on_member_events(suspected.into_iter().collect());
    }

    /// Every live node's load, this one included, for the alerts.
    fn loads(&self) -> Vec<NodeLoad> {
        let own = self.calls.load();
        let mut loads: Vec<NodeLoad> = self
            .table
            .borrow()
            .live()
            .map(|(peer, info)| NodeLoad {
                node: *peer,
                slots: info.load.slots,
                backlog: info.load.running + info.load.queued,
            })
            .collect();
        loads.push(NodeLoad {
            node: self.me.peer(),
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
                    format!(
                        "node {peer} is suspected: a probe went unanswered or its call stream broke"
                    ),
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

/// The rarely changing part of a heartbeat, encoded: what every member
/// must hear at once when it changes.
fn card_of(heartbeat: &Heartbeat) -> Vec<u8> {
    Heartbeat {
        seq: 0,
        queued: 0,
        running: 0,
        mean_task_us: 0,
        drain_ms: 0,
        executed: 0,
        cpu_percent: 0.0,
        memory_bytes: 0,
        // Which queues hold items, not how many: a pop elsewhere needs to
        // know where items are, and counts change with every push.
        queue_items: heartbeat
            .queue_items
            .iter()
            .map(|(queue, items)| (queue.clone(), (*items).min(1)))
            .collect(),
        ..heartbeat.clone()
    }
    .encode()
}
