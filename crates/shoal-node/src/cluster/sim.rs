//! Membership in simulated time: many [`Membership`]s — the protocol code
//! the nodes run — exchanging packets through a simulated network that
//! delays and loses them. No sockets, no threads, no clock: a run is a
//! function of its settings and seed.
//!
//! `shoal bench sim` reports from it; the module's tests use it to check
//! the protocol's promises (a join and a death are known everywhere, a
//! short pause is survived) at sizes no test could start as processes.

use super::swim::{COMPARE_EVERY_PERIODS, MAX_FULL_STATE_BYTES, Membership};
use crate::timeline::Timeline;
use foca::Identity;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A simulated node's identity: its index and a generation, 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimId {
    pub node: u32,
    pub generation: u32,
}

impl Identity for SimId {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(SimId {
            generation: self.generation + 1,
            ..*self
        })
    }

    fn addr(&self) -> u32 {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// How the simulated cluster and network behave.
#[derive(Clone, Debug)]
pub struct SimSettings {
    pub nodes: usize,
    pub period: Duration,
    pub suspicion: Duration,
    /// Fraction of packets lost, 0.0–1.0.
    pub loss: f64,
    /// Each packet takes between half and one and a half times this.
    pub delay: Duration,
    pub seed: u64,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            nodes: 100,
            period: Duration::from_secs(1),
            suspicion: Duration::from_secs(3),
            loss: 0.01,
            delay: Duration::from_millis(1),
            seed: 1,
        }
    }
}

enum What {
    Deliver {
        to: u32,
        packet: bytes::Bytes,
    },
    Wake(u32),
    /// A node that joined and still knows nobody asks again, as a
    /// real node does while its first announcement may have been lost.
    Rejoin {
        node: u32,
        via: u32,
    },
    /// A newcomer asks the node it joined through for the member list (no
    /// digest), or a member compares views with another (its digest)…
    StateRequest {
        from: u32,
        to: u32,
        digest: Option<u64>,
    },
    /// A node's turn to compare views with a random member.
    Compare(u32),
    /// …and gets it.
    State {
        to: u32,
        state: Vec<u8>,
    },
}

struct SimNode {
    /// `None` while the node is dead.
    membership: Option<Membership<SimId>>,
    /// While paused, packets to the node are lost and its timers wait.
    paused_until: Duration,
    /// The earliest wake-up already queued for the node.
    wake: Option<Duration>,
}

/// A simulated cluster.
pub struct Sim {
    settings: SimSettings,
    nodes: Vec<SimNode>,
    events: Timeline<What>,
    now: Duration,
    rng: StdRng,
    /// Packets and bytes sent so far, by all nodes.
    pub packets: u64,
    pub bytes: u64,
}

impl Sim {
    /// `settings.nodes` nodes, none of which knows another yet.
    pub fn new(settings: SimSettings) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(settings.seed),
            nodes: Vec::new(),
            events: Timeline::default(),
            now: Duration::ZERO,
            packets: 0,
            bytes: 0,
            settings,
        };
        for _ in 0..sim.settings.nodes {
            sim.add_node();
        }
        sim
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    /// Adds a node that knows nobody; returns its index.
    pub fn add_node(&mut self) -> u32 {
        let node = u32::try_from(self.nodes.len()).expect("fewer than 2^32 nodes");
        let me = SimId {
            node,
            generation: 0,
        };
        let membership = Membership::new(
            me,
            self.settings.nodes,
            self.settings.period,
            self.settings.suspicion,
            self.settings.seed ^ u64::from(node).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        self.nodes.push(SimNode {
            membership: Some(membership),
            paused_until: Duration::ZERO,
            wake: None,
        });
        let first_compare = self.now + self.settings.period * COMPARE_EVERY_PERIODS;
        self.push(first_compare, What::Compare(node));
        node
    }

    /// Node `node` asks `via` to let it in, and asks again every period
    /// until it knows a member.
    pub fn join(&mut self, node: u32, via: u32) {
        let to = SimId {
            node: via,
            generation: 0,
        };
        let now = self.now;
        if let Some(membership) = self.nodes[node as usize].membership.as_mut()
            && membership.is_empty()
        {
            let effects = membership.announce(to, now);
            self.apply(node, effects.sends);
            let delay = self.delay();
            self.push(
                now + delay,
                What::StateRequest {
                    from: node,
                    to: via,
                    digest: None,
                },
            );
            self.push(now + self.settings.period, What::Rejoin { node, via });
        }
    }

    /// Node `node` asks `via` to let it in `after` from now (a cluster
    /// whose nodes start over a few seconds rather than at one instant).
    pub fn join_after(&mut self, node: u32, via: u32, after: Duration) {
        self.push(self.now + after, What::Rejoin { node, via });
    }

    /// Changes the fraction of packets the network loses from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.settings.loss = loss;
    }

    /// Kills `node` at once, as SIGKILL would.
    pub fn kill(&mut self, node: u32) {
        self.nodes[node as usize].membership = None;
    }

    /// Freezes `node` for `span`, as SIGSTOP would.
    pub fn pause(&mut self, node: u32, span: Duration) {
        self.nodes[node as usize].paused_until = self.now + span;
        self.schedule_wake(node, self.now + span);
    }

    pub fn is_alive(&self, node: u32) -> bool {
        self.nodes[node as usize].membership.is_some()
    }

    /// How many members `node` believes alive (itself excluded).
    pub fn view_size(&self, node: u32) -> Option<usize> {
        self.nodes[node as usize]
            .membership
            .as_ref()
            .map(Membership::len)
    }

    /// A live node's membership, for tests that look inside.
    #[cfg(test)]
    pub fn membership(&self, node: u32) -> Option<&Membership<SimId>> {
        self.nodes[node as usize].membership.as_ref()
    }

    /// Live nodes whose view is exactly the other live nodes, by count.
    pub fn converged(&self) -> bool {
        let live = self.nodes.iter().filter(|n| n.membership.is_some()).count();
        self.nodes
            .iter()
            .filter_map(|n| n.membership.as_ref())
            .all(|m| m.len() + 1 == live)
    }

    /// Runs until `done` holds (checked every `step`) or `limit` passes;
    /// returns the simulated time it took, or `None` at the limit.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    /// Runs every event of the next `span` of simulated time.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some((at, what)) = self.events.pop_until(end) {
            self.now = at;
            match what {
                What::Deliver { to, packet } => self.deliver(to, &packet),
                What::Wake(node) => self.wake(node),
                What::Rejoin { node, via } => self.join(node, via),
                What::StateRequest { from, to, digest } => self.send_state(from, to, digest),
                What::Compare(node) => self.compare(node),
                What::State { to, state } => self.merge_state(to, &state),
            }
        }
        self.now = end;
    }

    fn deliver(&mut self, to: u32, packet: &[u8]) {
        let now = self.now;
        let target = &mut self.nodes[to as usize];
        if target.paused_until > now {
            return;
        }
        let Some(membership) = target.membership.as_mut() else {
            return;
        };
        if let Ok(effects) = membership.receive(packet, now) {
            self.apply(to, effects.sends);
        }
    }

    fn send_state(&mut self, from: u32, to: u32, digest: Option<u64>) {
        let Some(membership) = self.awake(to) else {
            return;
        };
        if digest == Some(membership.digest()) {
            return;
        }
        let state = membership.full_state(MAX_FULL_STATE_BYTES);
        self.packets += 1;
        self.bytes += state.len() as u64;
        let at = self.now + self.delay();
        self.push(at, What::State { to: from, state });
    }

    /// As a node does every few periods: asks a random member for its list
    /// if their views differ.
    fn compare(&mut self, node: u32) {
        let pick = self.rng.random::<u64>() as usize;
        if let Some(membership) = self.awake(node)
            && !membership.is_empty()
        {
            let to = membership
                .members()
                .nth(pick % membership.len())
                .map(|id| id.node);
            let digest = Some(membership.digest());
            if let Some(to) = to {
                self.packets += 1;
                self.bytes += 8;
                let at = self.now + self.delay();
                let request = What::StateRequest {
                    from: node,
                    to,
                    digest,
                };
                self.push(at, request);
            }
        }
        if self.is_alive(node) {
            let next = self.now + self.settings.period * COMPARE_EVERY_PERIODS;
            self.push(next, What::Compare(node));
        }
    }

    fn merge_state(&mut self, to: u32, state: &[u8]) {
        let now = self.now;
        let Some(membership) = self.awake(to) else {
            return;
        };
        if let Ok(effects) = membership.merge(state, now) {
            self.apply(to, effects.sends);
        }
    }

    /// The node's protocol, if it is alive and not paused.
    fn awake(&mut self, node: u32) -> Option<&mut Membership<SimId>> {
        let target = &mut self.nodes[node as usize];
        if target.paused_until > self.now {
            return None;
        }
        target.membership.as_mut()
    }

    fn delay(&mut self) -> Duration {
        self.settings.delay.mul_f64(self.rng.random_range(0.5..1.5))
    }

    fn wake(&mut self, node: u32) {
        let now = self.now;
        let target = &mut self.nodes[node as usize];
        if target.wake.is_some_and(|at| at <= now) {
            target.wake = None;
        }
        if target.paused_until > now {
            let until = target.paused_until;
            self.schedule_wake(node, until);
            return;
        }
        let Some(membership) = target.membership.as_mut() else {
            return;
        };
        let effects = membership.advance(now);
        self.apply(node, effects.sends);
    }

    /// Queues `sends` through the lossy network and the node's next timer.
    fn apply(&mut self, node: u32, sends: Vec<(SimId, bytes::Bytes)>) {
        for (to, packet) in sends {
            self.packets += 1;
            self.bytes += packet.len() as u64;
            if self.rng.random_bool(self.settings.loss.clamp(0.0, 1.0)) {
                continue;
            }
            let delay = self.delay();
            self.push(
                self.now + delay,
                What::Deliver {
                    to: to.node,
                    packet,
                },
            );
        }
        let next = self.nodes[node as usize]
            .membership
            .as_ref()
            .and_then(Membership::next_due);
        if let Some(at) = next {
            self.schedule_wake(node, at);
        }
    }

    fn schedule_wake(&mut self, node: u32, at: Duration) {
        let slot = &mut self.nodes[node as usize].wake;
        if slot.is_some_and(|queued| queued <= at) {
            return;
        }
        *slot = Some(at);
        self.push(at, What::Wake(node));
    }

    fn push(&mut self, at: Duration, what: What) {
        self.events.push(at, what);
    }
}
