//! Who is alive, by SWIM (the `foca` crate): each node probes a random
//! member twice a period, asks a few others to probe it indirectly when it
//! does not answer, and spreads what it learns — joins, suspicions, deaths —
//! piggybacked on those same messages. A suspected member that is alive
//! hears of it and refutes; one that stays silent for the suspicion time is
//! declared down everywhere. Messages per node per period do not grow with
//! the cluster, and news reaches every node in O(log N) periods.
//!
//! This module does no I/O: [`Membership`] takes packets, the clock and
//! hints in, and hands back [`Effects`] — packets to send and member
//! changes. The cluster task wires it to libp2p; `shoal bench sim` runs
//! thousands of them in simulated time.
//!
//! ```text
//!   packet / clock / "call stream to P broke" ─► Membership (foca) ─► Effects
//!                                                                   ├ sends: (member, bytes)
//!                                                                   └ changes: Up / Down
//! ```

use crate::net::datagrams::{is_udp, udp_multiaddr};
pub use foca::State;
use foca::{AccumulatingRuntime, Foca, Identity, Member, NoCustomBroadcast, OwnedNotification};
use foca::{PostcardCodec, Timer, TimerToken};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rand_swim::SeedableRng;
use rand_swim::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

/// An identity carries at most this many addresses; enough for a node
/// listening on a few interfaces and its UDP socket, small enough that a
/// packet still carries several membership updates.
const MAX_ADDRS: usize = 4;
/// The largest SWIM packet: one sealed datagram (see `net::datagrams`).
pub const MAX_PACKET_BYTES: usize = crate::net::datagrams::MAX_DATAGRAM_BODY;
/// Probes each member sends a period. Each member probes its members in
/// its own random order, so in a given probe round about 1/e of them are
/// probed by nobody: a dead member waits a few rounds to be found. Two
/// rounds a period halve that wait (a death known everywhere at N = 1,000
/// in 3.4–4.4 s instead of 5–7.5 s, `shoal bench sim`), while load reports
/// and the suspicion time stay per period.
pub const PROBES_PER_PERIOD: u32 = 2;
/// Every this many periods a node compares its view with a random
/// member's (by [`Membership::digest`]) and takes its list if they differ.
pub const COMPARE_EVERY_PERIODS: u32 = 10;
/// The largest member list sent to a newcomer: ~4,000 members of a real
/// cluster (an identity with an address is ~100 bytes).
pub const MAX_FULL_STATE_BYTES: usize = 448 * 1024;

/// A member as SWIM knows it: its peer id, where to dial it, and a
/// generation that grows each time it (re)starts or is wrongly declared
/// down, so the newest incarnation of a node always wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwimId {
    #[serde(with = "peer_bytes")]
    peer: PeerId,
    #[serde(with = "addr_bytes")]
    addrs: Vec<Multiaddr>,
    generation: u64,
}

impl SwimId {
    /// `generation` should grow across restarts (the start time in
    /// milliseconds does); only the first [`MAX_ADDRS`] addresses are kept.
    pub fn new(peer: PeerId, mut addrs: Vec<Multiaddr>, generation: u64) -> Self {
        addrs.truncate(MAX_ADDRS);
        SwimId {
            peer,
            addrs,
            generation,
        }
    }

    /// A node starting now, reachable at its listen addresses (routable
    /// ones first; a trailing `/p2p/<id>` is dropped) and, for membership
    /// datagrams, at `udp`; its generation is the start time so a restart
    /// outranks the node's previous life.
    pub fn for_node(peer: PeerId, listen: &[Multiaddr], udp: Option<SocketAddr>) -> Self {
        let mut addrs: Vec<Multiaddr> = listen
            .iter()
            .map(|addr| {
                let mut addr = addr.clone();
                if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                    addr.pop();
                }
                addr
            })
            .collect();
        addrs.sort_by_key(is_loopback);
        if let Some(udp) = udp {
            addrs.truncate(MAX_ADDRS - 1);
            addrs.push(udp_multiaddr(udp));
        }
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        SwimId::new(peer, addrs, generation)
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Every address, the UDP one included.
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// The addresses libp2p dials: all but the UDP one.
    pub fn dialable_addrs(&self) -> Vec<Multiaddr> {
        self.addrs
            .iter()
            .filter(|addr| !is_udp(addr))
            .cloned()
            .collect()
    }
}

impl Identity for SwimId {
    type Addr = PeerId;

    /// Declared down while alive (a long pause, a partition): come back at
    /// once under the next generation.
    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> PeerId {
        self.peer
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// How fast membership reacts, for a node that expects `members` members.
///
/// Each member probes [`PROBES_PER_PERIOD`] members a `period`; one that
/// fails a probe is suspected and declared down after `suspicion` unless it
/// refutes. Updates are piggybacked about 4·log10(N) times each (foca's LAN
/// rule), and while there is news, three random members hear it five times
/// a period, so it does not wait for probes.
pub fn config(members: usize, period: Duration, suspicion: Duration) -> foca::Config {
    let members = u32::try_from(members.max(2)).unwrap_or(u32::MAX);
    let mut config = foca::Config::new_lan(members.try_into().expect("at least 2"));
    config.probe_period = period / PROBES_PER_PERIOD;
    config.probe_rtt = config.probe_period / 2;
    config.suspect_to_down_after = suspicion;
    config.max_packet_size = NonZeroUsize::new(MAX_PACKET_BYTES).expect("non-zero");
    if let Some(gossip) = config.periodic_gossip.as_mut() {
        // Only sent while there is news, so an idle cluster pays nothing.
        gossip.frequency = period / 5;
    }
    config
}

/// A member came up or went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<I> {
    /// A new member, or a new generation of one that restarted.
    Up(I),
    Down(I),
}

/// What one step of the protocol asks of its host.
#[derive(Debug)]
pub struct Effects<I> {
    pub sends: Vec<(I, bytes::Bytes)>,
    pub changes: Vec<Change<I>>,
}

impl<I> Default for Effects<I> {
    fn default() -> Self {
        Effects {
            sends: Vec::new(),
            changes: Vec::new(),
        }
    }
}

/// What a member's identity must be: a foca identity that travels as
/// postcard. The node uses [`SwimId`]; the simulation a compact number.
pub trait MemberId: Identity + Serialize + for<'de> Deserialize<'de> {}
impl<I: Identity + Serialize + for<'de> Deserialize<'de>> MemberId for I {}

/// One node's membership protocol, driven by a clock the host supplies
/// (time since the host started, real or simulated).
pub struct Membership<I: MemberId> {
    foca: Foca<I, PostcardCodec, StdRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<I>,
    /// Foca's timers, by when they are due.
    timers: BinaryHeap<Reverse<Due<I>>>,
    /// Ties between timers due at once break by submission order.
    submitted: u64,
    period: Duration,
    suspicion: Duration,
    /// Foca's current timer token, as last seen on a timer it set: a timer
    /// set by this module must carry it to be honoured.
    token: Option<TimerToken>,
    /// The hash of each live member's identity, by address, and the XOR of
    /// them all: the [`Membership::digest`] kept up to date as members come
    /// and go, so comparing views costs O(1), not a hash of every member.
    live_hashes: HashMap<I::Addr, u64>,
    live_digest: u64,
}

/// A timer and when it is due; ordered by (at, order), which are unique,
/// so the timer itself (not `Ord`) is never compared.
#[derive(Debug)]
struct Due<I> {
    at: Duration,
    order: u64,
    timer: Timer<I>,
}

impl<I> PartialEq for Due<I> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<I> Eq for Due<I> {}
impl<I> PartialOrd for Due<I> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<I> Ord for Due<I> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Why a packet was not taken in.
pub type SwimError = foca::Error;

impl<I: MemberId> Membership<I> {
    /// A node that expects about `members` members, probing every `period`
    /// and declaring a silent suspect down after `suspicion`.
    pub fn new(me: I, members: usize, period: Duration, suspicion: Duration, seed: u64) -> Self {
        let config = config(members, period, suspicion);
        Membership {
            foca: Foca::new(me, config, StdRng::seed_from_u64(seed), PostcardCodec),
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            submitted: 0,
            period,
            suspicion,
            token: None,
            live_hashes: HashMap::new(),
            live_digest: 0,
        }
    }

    /// Asks `to` (any node of the cluster) to let this node in.
    pub fn announce(&mut self, to: I, now: Duration) -> Effects<I> {
        let result = self.foca.announce(to, &mut self.runtime);
        self.effects(result, now)
    }

    /// Takes in a packet from another member.
    pub fn receive(&mut self, packet: &[u8], now: Duration) -> Result<Effects<I>, SwimError> {
        let result = self.foca.handle_data(packet, &mut self.runtime);
        if let Err(error) = result {
            self.drain(now);
            return Err(error);
        }
        Ok(self.effects(Ok(()), now))
    }

    /// Every member this node knows, with its state, encoded for a node
    /// that just joined (at most `max_bytes`; only some members if more). An
    /// announcement only brings back the members that fit in one packet,
    /// and SWIM spreads changes, not old news, so without this a newcomer
    /// would learn of most members only as they happened to contact it.
    pub fn full_state(&self, max_bytes: usize) -> Vec<u8> {
        let mut members: Vec<&Member<I>> = self.foca.iter_membership_state().collect();
        loop {
            let encoded = postcard::to_allocvec(&members).unwrap_or_default();
            if encoded.len() <= max_bytes || members.is_empty() {
                return encoded;
            }
            let keep = members.len() * max_bytes / encoded.len();
            members.truncate(keep.min(members.len() - 1));
        }
    }

    /// A fingerprint of who is alive (this node included): two nodes with
    /// the same view have the same digest. Nodes compare digests now and
    /// then and swap member lists when they differ, which repairs what
    /// SWIM alone leaves wrong — a node that joined just after news of
    /// another's join had died down learns of it only when that one
    /// happens to contact it.
    pub fn digest(&self) -> u64 {
        self.live_digest ^ id_hash(self.foca.identity())
    }

    /// The digest computed from scratch, to check the kept one.
    #[cfg(test)]
    pub fn digest_from_scratch(&self) -> u64 {
        let me = std::iter::once(self.foca.identity());
        me.chain(self.members()).map(id_hash).fold(0, |d, h| d ^ h)
    }

    /// Keeps the digest as `id` comes up or goes down. Returns whether the
    /// change stands: the end of an older identity of a member whose newer
    /// one is live (a node that restarted, or rejoined after being wrongly
    /// declared down) is not the member's end, whatever order foca reports
    /// them in.
    fn follow(&mut self, id: &I, live: bool) -> bool {
        let hash = id_hash(id);
        let held = self.live_hashes.get(&id.addr()).copied();
        match (live, held) {
            (true, _) => {
                if let Some(old) = self.live_hashes.insert(id.addr(), hash) {
                    self.live_digest ^= old;
                }
                self.live_digest ^= hash;
                true
            }
            (false, Some(old)) if old != hash => false,
            (false, Some(old)) => {
                self.live_hashes.remove(&id.addr());
                self.live_digest ^= old;
                true
            }
            (false, None) => true,
        }
    }

    /// Takes in another member's [`Membership::full_state`]; the news is
    /// not gossiped on (everyone else knows it already).
    pub fn merge(&mut self, state: &[u8], now: Duration) -> Result<Effects<I>, SwimError> {
        let members: Vec<Member<I>> =
            postcard::from_bytes(state).map_err(|error| foca::Error::Decode(Box::new(error)))?;
        let result = self
            .foca
            .apply_many(members.into_iter(), false, &mut self.runtime);
        Ok(self.effects(result, now))
    }

    /// When the next timer is due, if any.
    pub fn next_due(&self) -> Option<Duration> {
        self.timers.peek().map(|Reverse(due)| due.at)
    }

    /// Runs every timer due by `now`.
    pub fn advance(&mut self, now: Duration) -> Effects<I> {
        let mut effects = Effects::default();
        while let Some(Reverse(due)) = self.timers.peek()
            && due.at <= now
        {
            let Reverse(due) = self.timers.pop().expect("peeked");
            let result = self.foca.handle_timer(due.timer, &mut self.runtime);
            let more = self.effects(result, now);
            effects.sends.extend(more.sends);
            effects.changes.extend(more.changes);
        }
        effects
    }

    /// Something outside SWIM suggests `peer` is gone (its call stream broke):
    /// suspect it now rather than wait for a probe. If it is alive it
    /// refutes; if not, it is down after the suspicion time.
    pub fn suspect(&mut self, peer: &I::Addr, now: Duration) -> Effects<I> {
        let member = self
            .foca
            .iter_membership_state()
            .find(|member| member.id().addr() == *peer && member.state() == State::Alive)
            .map(|member| Member::new(member.id().clone(), member.incarnation(), State::Suspect));
        let Some(member) = member else {
            return Effects::default();
        };
        let (member_id, incarnation) = (member.id().clone(), member.incarnation());
        let result = self
            .foca
            .apply_many(std::iter::once(member), true, &mut self.runtime);
        // Foca starts the suspecter's countdown to "down" only for its own
        // failed probes (a suspicion it applies counts down a period
        // longer, as one heard from others); this node is the suspecter.
        if let Some(token) = self.token {
            self.schedule(
                now + self.suspicion,
                Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    token,
                },
            );
        }
        self.effects(result, now)
    }

    /// Members believed alive, this node excluded.
    pub fn members(&self) -> impl Iterator<Item = &I> {
        self.foca.iter_members().map(Member::id)
    }

    /// How many members are believed alive, this node excluded.
    pub fn len(&self) -> usize {
        self.foca.num_members()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member SWIM holds, with its state (suspects and the recently
    /// dead included).
    pub fn states(&self) -> impl Iterator<Item = (&I, State)> {
        self.foca
            .iter_membership_state()
            .map(|member| (member.id(), member.state()))
    }

    /// Retunes for a cluster of `members` (updates are piggybacked more
    /// times as it grows); the period and suspicion time stay.
    pub fn resize(&mut self, members: usize) {
        let config = config(members, self.period, self.suspicion);
        if let Err(error) = self.foca.set_config(config) {
            tracing::debug!(%error, "membership config not changed");
        }
    }

    /// Collects what foca asked for into `Effects`, scheduling its timers.
    fn effects(&mut self, result: Result<(), SwimError>, now: Duration) -> Effects<I> {
        if let Err(error) = result {
            tracing::debug!(%error, "membership step failed");
        }
        self.drain(now)
    }

    fn schedule(&mut self, at: Duration, timer: Timer<I>) {
        if let Timer::ProbeRandomMember(token)
        | Timer::SendIndirectProbe { token, .. }
        | Timer::ChangeSuspectToDown { token, .. }
        | Timer::PeriodicAnnounce(token)
        | Timer::PeriodicAnnounceDown(token)
        | Timer::PeriodicGossip(token) = &timer
        {
            self.token = Some(*token);
        }
        self.submitted += 1;
        self.timers.push(Reverse(Due {
            at,
            order: self.submitted,
            timer,
        }));
    }

    fn drain(&mut self, now: Duration) -> Effects<I> {
        let mut effects = Effects::default();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.schedule(now + after, timer);
        }
        while let Some(send) = self.runtime.to_send() {
            effects.sends.push(send);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    let _ = self.follow(&id, true);
                    effects.changes.push(Change::Up(id));
                }
                OwnedNotification::MemberDown(id) if self.follow(&id, false) => {
                    effects.changes.push(Change::Down(id));
                }
                OwnedNotification::Rename(_, id) => {
                    // The new identity takes the old one's place, live or not.
                    if self.live_hashes.contains_key(&id.addr()) {
                        let _ = self.follow(&id, true);
                    }
                    effects.changes.push(Change::Up(id));
                }
                OwnedNotification::Rejoin(_) => {
                    tracing::info!("declared down while alive; rejoined the cluster");
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("no member answers; membership is waiting for one to come back")
                }
                _ => {}
            }
        }
        effects
    }
}

/// A member's part of the digest: the first 8 bytes of the SHA-256 of its
/// identity as it travels.
fn id_hash<I: Serialize>(id: &I) -> u64 {
    let bytes = postcard::to_allocvec(id).unwrap_or_default();
    let hash = sha2::Sha256::digest(&bytes);
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|part| match part {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

mod peer_bytes {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(peer: &PeerId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&peer.to_bytes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PeerId, D::Error> {
        let bytes: &[u8] = Deserialize::deserialize(deserializer)?;
        PeerId::from_bytes(bytes).map_err(D::Error::custom)
    }
}

mod addr_bytes {
    use libp2p::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(addrs: &[Multiaddr], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(addrs.len()))?;
        for addr in addrs {
            seq.serialize_element(&Raw(addr.as_ref()))?;
        }
        seq.end()
    }

    /// Bytes that serialize as bytes, not as a sequence of numbers.
    struct Raw<'a>(&'a [u8]);

    impl serde::Serialize for Raw<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Multiaddr>, D::Error> {
        let raw: Vec<&[u8]> = Deserialize::deserialize(deserializer)?;
        if raw.len() > super::MAX_ADDRS {
            return Err(D::Error::custom("too many addresses"));
        }
        raw.into_iter()
            .map(|bytes| Multiaddr::try_from(bytes.to_vec()).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests;
