//! Placement in simulated time: a few nodes fan calls out over many, and
//! every node places, queues, reports its load and steals with the nodes'
//! own code ([`placement::place`], [`WorkQueue`], [`Thief`], the load-report
//! rota of [`crate::cluster::task`]). The network delays every message and
//! loses load reports (datagrams); calls, results and steals travel on
//! streams, which delay but do not lose them. No sockets, no clock: a run
//! is a function of its settings and seed.
//!
//! Left out: membership (every node knows every other, as once a cluster
//! has formed; [`crate::cluster::sim`] simulates that) and CPU (placing a
//! call and the bookkeeping around it take no time).

use super::placement::{self, Load, Placement};
use super::steal::{MAX_STEAL_BATCH, STEAL_AFTER, STEAL_INTERVAL, Thief};
use super::work_queue::{Admit, WorkQueue};
use crate::cluster::task::REPORTS_PER_PERIOD;
use crate::timeline::Timeline;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a fan-out looks like, and the network it runs over.
#[derive(Clone, Debug)]
pub struct FanoutSettings {
    pub nodes: usize,
    /// Worker slots per node.
    pub slots: u32,
    /// Calls made at once, spread over the owners.
    pub calls: usize,
    /// How many nodes make the calls (the first ones).
    pub owners: usize,
    /// How long each call runs.
    pub task: Duration,
    /// How often a node reports its load (the heartbeat period).
    pub period: Duration,
    /// Fraction of load reports lost, 0.0–1.0.
    pub loss: f64,
    /// Each message takes between half and one and a half times this.
    pub delay: Duration,
    pub seed: u64,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        FanoutSettings {
            nodes: 100,
            slots: 2,
            calls: 1000,
            owners: 1,
            task: Duration::from_millis(50),
            period: Duration::from_secs(1),
            loss: 0.01,
            delay: Duration::from_millis(1),
            seed: 1,
        }
    }
}

/// How a fan-out went.
#[derive(Clone, Debug)]
pub struct FanoutOutcome {
    /// From the calls being made until the last result reached the owner.
    pub took: Duration,
    /// The ideal time (waves of calls over every slot × run time) over `took`.
    pub efficiency: f64,
    /// Calls that idle nodes stole.
    pub stolen: u64,
    /// Calls each node ran.
    pub ran: Vec<u32>,
    /// Every message sent (calls, results, load reports, steals), per node
    /// per second of the run.
    pub messages_per_node_per_s: f64,
}

/// A peer's load as the last report from it said.
#[derive(Clone, Copy, Debug)]
struct Heard {
    queued: u32,
    running: u32,
    seq: u64,
    /// When the report arrived.
    at: Duration,
}

enum What {
    /// A call reaches the node the owner placed it on.
    Call {
        to: u32,
        call: u32,
    },
    Finished {
        node: u32,
        call: u32,
    },
    /// A result reaches the call's owner.
    Result {
        call: u32,
    },
    /// A node's turn to report its load.
    Report(u32),
    Load {
        to: u32,
        from: u32,
        heard: Heard,
    },
    /// A node's steal task looks for work.
    Look(u32),
    Steal {
        victim: u32,
        thief: u32,
        max: u32,
    },
    Stolen {
        thief: u32,
        victim: u32,
        calls: Vec<u32>,
    },
    /// The owner hears that a call moved to a thief.
    Moved {
        call: u32,
        to: u32,
    },
}

struct SimNode {
    work: WorkQueue<u32>,
    /// Peers' last reports; a peer never heard from counts as idle.
    heard: BTreeMap<u32, Heard>,
    reports_sent: u64,
    cursor: usize,
    thief: Thief<u32>,
    looking: bool,
    /// It stopped looking with every slot taken: a slot left free restarts it.
    busy: bool,
    ran: u32,
}

struct FanoutSim {
    settings: FanoutSettings,
    nodes: Vec<SimNode>,
    events: Timeline<What>,
    now: Duration,
    rng: StdRng,
    /// Where its owner believes each call runs; `None` once it resolved.
    at: Vec<Option<u32>>,
    /// When each call last reached a node.
    arrived: Vec<Duration>,
    /// Calls each owner sent to each node and still waits for.
    outstanding: Vec<Vec<u32>>,
    resolved: usize,
    messages: u64,
    stolen: u64,
    /// The simulation's clock reads `base + now` for the thieves.
    base: Instant,
}

/// Runs one fan-out to its end.
pub fn fan_out(settings: FanoutSettings) -> FanoutOutcome {
    assert!(settings.nodes >= 1 && settings.slots >= 1);
    assert!((1..=settings.nodes).contains(&settings.owners));
    let mut sim = FanoutSim {
        rng: StdRng::seed_from_u64(settings.seed),
        nodes: (0..settings.nodes)
            .map(|_| SimNode {
                work: WorkQueue::new(settings.slots, usize::MAX),
                heard: BTreeMap::new(),
                reports_sent: 0,
                cursor: 0,
                thief: Thief::default(),
                looking: false,
                busy: false,
                ran: 0,
            })
            .collect(),
        events: Timeline::default(),
        now: Duration::ZERO,
        at: vec![None; settings.calls],
        arrived: vec![Duration::ZERO; settings.calls],
        outstanding: vec![vec![0; settings.nodes]; settings.owners],
        resolved: 0,
        messages: 0,
        stolen: 0,
        base: Instant::now(),
        settings,
    };
    for node in 0..sim.nodes.len() as u32 {
        let phase = sim.settings.period.mul_f64(sim.rng.random::<f64>());
        sim.push(phase, What::Report(node));
    }
    for call in 0..sim.settings.calls as u32 {
        sim.place(call);
    }
    while sim.resolved < sim.settings.calls {
        let Some((at, what)) = sim.events.pop_until(Duration::MAX) else {
            unreachable!("calls are pending, so events are too");
        };
        sim.now = at;
        sim.handle(what);
    }
    sim.outcome()
}

impl FanoutSim {
    fn push(&mut self, at: Duration, what: What) {
        self.events.push(at, what);
    }

    /// Sends a message from one node to another: it arrives after a delay.
    fn send(&mut self, what: What) {
        self.messages += 1;
        let delay = self.settings.delay.mul_f64(0.5 + self.rng.random::<f64>());
        self.push(self.now + delay, what);
    }

    fn handle(&mut self, what: What) {
        match what {
            What::Call { to, call } => self.admit(to, call),
            What::Finished { node, call } => self.finished(node, call),
            What::Result { call } => self.resolve(call),
            What::Report(node) => self.report(node),
            What::Load { to, from, heard } => {
                let heard = Heard {
                    at: self.now,
                    ..heard
                };
                self.nodes[to as usize].heard.insert(from, heard);
                if heard.queued > 0 {
                    self.start_looking(to);
                }
            }
            What::Look(node) => self.look(node),
            What::Steal { victim, thief, max } => self.give_stolen(victim, thief, max),
            What::Stolen {
                thief,
                victim,
                calls,
            } => self.take_stolen(thief, victim, calls),
            What::Moved { call, to } => self.moved(call, to),
        }
    }

    /// The node that made `call`.
    fn owner_of(&self, call: u32) -> u32 {
        call % self.settings.owners as u32
    }

    /// A call's owner places it, as `Calls::place` does.
    fn place(&mut self, call: u32) {
        let owner = self.owner_of(call);
        let me = &self.nodes[owner as usize];
        let local = Load {
            slots: me.work.slots(),
            backlog: me.work.busy() + me.work.queued() as u32,
        };
        let outstanding = &self.outstanding[owner as usize];
        let (slots, mean_task_us) = (self.settings.slots, self.settings.task.as_micros() as u64);
        let remotes: Vec<(u32, Load)> = (0..self.nodes.len() as u32)
            .filter(|peer| *peer != owner)
            .map(|peer| {
                let heard = me.heard.get(&peer);
                // As `PeerInfo::still_backlog`: what the report said, less
                // what the peer's slots have done since.
                let backlog = heard.map_or(0, |h| {
                    let age = self.now.saturating_sub(h.at);
                    placement::still_queued(h.queued + h.running, slots, mean_task_us, age)
                });
                let load = Load {
                    slots: self.settings.slots,
                    backlog: backlog.max(outstanding[peer as usize]),
                };
                (peer, load)
            })
            .collect();
        let to = match placement::place(Some(&local), &remotes, &mut self.rng) {
            Placement::Local | Placement::Nowhere => owner,
            Placement::Remote(peer) => peer,
        };
        self.at[call as usize] = Some(to);
        if to == owner {
            self.admit(owner, call);
        } else {
            self.outstanding[owner as usize][to as usize] += 1;
            self.send(What::Call { to, call });
        }
    }

    fn admit(&mut self, node: u32, call: u32) {
        self.arrived[call as usize] = self.now;
        match self.nodes[node as usize].work.submit(call) {
            Admit::Start(call) => self.run(node, call),
            Admit::Queued => {}
            Admit::Full(_) => unreachable!("queues are unbounded here"),
        }
    }

    fn run(&mut self, node: u32, call: u32) {
        self.push(self.now + self.settings.task, What::Finished { node, call });
    }

    fn finished(&mut self, node: u32, call: u32) {
        let runner = &mut self.nodes[node as usize];
        runner.ran += 1;
        match runner.work.release() {
            Some(next) => self.run(node, next),
            None if runner.busy => {
                runner.busy = false;
                self.start_looking(node);
            }
            None => {}
        }
        if node == self.owner_of(call) {
            self.resolve(call);
        } else {
            self.send(What::Result { call });
        }
    }

    /// The owner stops counting `call` where it ran, or from `call` moving
    /// `to` a thief; `to` `None` when it resolved.
    fn relocate(&mut self, call: u32, to: Option<u32>) {
        let owner = self.owner_of(call);
        let Some(from) = self.at[call as usize] else {
            return;
        };
        let outstanding = &mut self.outstanding[owner as usize];
        if from != owner {
            outstanding[from as usize] -= 1;
        }
        if let Some(to) = to
            && to != owner
        {
            outstanding[to as usize] += 1;
        }
        self.at[call as usize] = to;
    }

    fn resolve(&mut self, call: u32) {
        if self.at[call as usize].is_some() {
            self.relocate(call, None);
            self.resolved += 1;
        }
    }

    fn moved(&mut self, call: u32, to: u32) {
        self.relocate(call, Some(to));
    }

    /// A node's load report goes to the next few members in turn.
    fn report(&mut self, node: u32) {
        let count = self.nodes.len();
        let me = &mut self.nodes[node as usize];
        me.reports_sent += 1;
        let heard = Heard {
            queued: me.work.queued() as u32,
            running: me.work.busy(),
            seq: me.reports_sent,
            at: Duration::ZERO,
        };
        let others = count - 1;
        let targets: Vec<u32> = (0..REPORTS_PER_PERIOD.min(others))
            .map(|i| {
                // Members in order, this node left out.
                let index = ((me.cursor + i) % others) as u32;
                if index >= node { index + 1 } else { index }
            })
            .collect();
        if others > 0 {
            me.cursor = (me.cursor + targets.len()) % others;
        }
        for to in targets {
            if self.rng.random::<f64>() < self.settings.loss {
                self.messages += 1;
                continue;
            }
            self.send(What::Load {
                to,
                from: node,
                heard,
            });
        }
        self.push(self.now + self.settings.period, What::Report(node));
    }

    fn start_looking(&mut self, node: u32) {
        let me = &mut self.nodes[node as usize];
        if !me.looking {
            me.looking = true;
            self.push(self.now, What::Look(node));
        }
    }

    /// One look of the steal task, as `Calls::steal_tick`: every call runs
    /// `task`, so that is each peer's mean run time.
    fn look(&mut self, node: u32) {
        let now = self.base + self.now;
        let (slots, mean_task_us) = (self.settings.slots, self.settings.task.as_micros() as u64);
        let me = &mut self.nodes[node as usize];
        let free = me.work.idle_slots();
        if free == 0 {
            (me.looking, me.busy) = (false, true);
            return;
        }
        let peers: Vec<(u32, u32, u64)> = me
            .heard
            .iter()
            .map(|(peer, h)| {
                let age = self.now.saturating_sub(h.at);
                let queued = placement::still_queued(h.queued, slots, mean_task_us, age);
                (*peer, queued, h.seq)
            })
            .filter(|(_, queued, _)| *queued > 0)
            .collect();
        if peers.is_empty() {
            me.looking = false;
            return;
        }
        if me.thief.ready(now)
            && let Some(victim) = me.thief.pick(now, &peers)
        {
            self.send(What::Steal {
                victim,
                thief: node,
                max: free,
            });
        }
        self.push(self.now + STEAL_INTERVAL, What::Look(node));
    }

    /// A victim hands over queued calls from the back that have waited, as
    /// `give_stolen`.
    fn give_stolen(&mut self, victim: u32, thief: u32, max: u32) {
        let owners = self.settings.owners as u32;
        let (now, arrived) = (self.now, &self.arrived);
        let taken = self.nodes[victim as usize]
            .work
            .steal((max as usize).min(MAX_STEAL_BATCH), |call| {
                call % owners != thief && now - arrived[*call as usize] >= STEAL_AFTER
            });
        for &call in &taken {
            if victim == self.owner_of(call) {
                self.moved(call, thief);
            } else {
                self.send(What::Moved { call, to: thief });
            }
        }
        self.send(What::Stolen {
            thief,
            victim,
            calls: taken,
        });
    }

    fn take_stolen(&mut self, thief: u32, victim: u32, calls: Vec<u32>) {
        self.stolen += calls.len() as u64;
        self.nodes[thief as usize]
            .thief
            .answered(victim, calls.len());
        for call in calls {
            if let Some(call) = self.nodes[thief as usize].work.submit_stolen(call) {
                self.run(thief, call);
            }
        }
    }

    fn outcome(&self) -> FanoutOutcome {
        let settings = &self.settings;
        let slots = settings.nodes * settings.slots as usize;
        let waves = settings.calls.div_ceil(slots) as u32;
        let took = self.now.max(Duration::from_nanos(1));
        FanoutOutcome {
            took,
            efficiency: (settings.task * waves).as_secs_f64() / took.as_secs_f64(),
            stolen: self.stolen,
            ran: self.nodes.iter().map(|n| n.ran).collect(),
            messages_per_node_per_s: self.messages as f64
                / settings.nodes as f64
                / took.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_out_from_one_node_over_100_keeps_every_slot_busy() {
        let outcome = fan_out(FanoutSettings::default());
        assert_eq!(outcome.ran.iter().sum::<u32>(), 1000, "every call ran once");
        assert_eq!(outcome.ran.iter().max(), Some(&10), "{outcome:?}");
        assert!(outcome.efficiency > 0.9, "{outcome:?}");
        assert!(outcome.efficiency <= 1.0, "{outcome:?}");
    }

    #[test]
    fn ten_owners_that_do_not_see_each_others_calls_still_spread_them_evenly() {
        let outcome = fan_out(FanoutSettings {
            owners: 10,
            ..FanoutSettings::default()
        });
        assert_eq!(outcome.ran.iter().sum::<u32>(), 1000, "every call ran once");
        // An owner runs two of its own calls at once, so owners hold a
        // wave more than the rest.
        assert!(outcome.ran.iter().all(|&ran| ran <= 12), "{outcome:?}");
        assert!(outcome.efficiency > 0.8, "{outcome:?}");
    }

    #[test]
    fn calls_from_many_owners_all_resolve_and_idle_nodes_steal() {
        // 30 owners of 33 calls each pick 33 of the 100 nodes apiece, so
        // some nodes get far more than others.
        let outcome = fan_out(FanoutSettings {
            owners: 30,
            ..FanoutSettings::default()
        });
        assert_eq!(outcome.ran.iter().sum::<u32>(), 1000, "every call ran once");
        assert!(outcome.stolen > 0, "{outcome:?}");
    }

    #[test]
    fn one_node_runs_its_calls_in_waves() {
        let outcome = fan_out(FanoutSettings {
            nodes: 1,
            calls: 10,
            ..FanoutSettings::default()
        });
        assert_eq!(outcome.took, Duration::from_millis(250));
        assert_eq!(outcome.ran, vec![10]);
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let settings = FanoutSettings {
            nodes: 30,
            calls: 300,
            ..FanoutSettings::default()
        };
        let a = fan_out(settings.clone());
        let b = fan_out(settings);
        assert_eq!((a.took, a.stolen), (b.took, b.stolen));
    }
}
