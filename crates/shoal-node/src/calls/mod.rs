//! The fast path for calls.
//!
//! Every call has an *owner*, the node where it was made, which keeps it in
//! its pending table until it resolves; and an *executor*, the node where it
//! runs. One [`Calls`] per node plays both roles, each in its own file, and
//! each piece of state has one owner:
//!
//! | file | role | state it owns |
//! |---|---|---|
//! | [`owner`] | make calls, place them, re-place them, first result wins | [`PendingTable`](pending::PendingTable) |
//! | [`batch`] | many calls at once, placed in a row and sent a peer at a time | — |
//! | `placing` | the owner's picture of who can take a call, and how loaded | — |
//! | [`run`] | run a call in a slot, give the slot back during nested calls | [`Executor`](executor::Executor) (slots, bounded queue, running calls) |
//! | `deliver` | hand the outcome to the owner, trying again until it gets there | bytes of outcomes held for another try |
//! | [`steal`] | idle nodes take queued calls from busy ones | the thief's own state, inside its task |
//! | [`inbound`] | frames from peers, handed to the roles above | — |
//! | [`memo`] | results of memoized functions, and calls identical ones can join | [`SharedMemo`](memo::SharedMemo) |
//!
//! [`placement`] (where a call runs, whom to steal from), [`pending`],
//! [`executor`], [`work_queue`] and [`memo`] are plain state and pure
//! functions, tested without a network. [`registry`] holds the functions,
//! [`context`] what a running function is handed, [`scripts`] JavaScript,
//! [`workers`] functions served by worker processes (Python).
//!
//! ```text
//!  call() ─► place ─► Local ───────────► executor queue ─► slot ─► run ─┐
//!              │                                                        │ outcome
//!              └────► Remote(peer) ─► Frame::Call ─► peer's queue       ▼
//!                                                  (may be stolen) resolve(id): first wins
//! ```
//!
//! Failure handling lives on the owner: when the executor of a pending call
//! dies (connections closed, heartbeats missed, or its call stream broke),
//! or answers that its queue is full, the owner places the call again.
//! Results that arrive after the first are dropped, so the caller sees
//! exactly one. A call whose caller stops waiting (deadline, or the future
//! dropped) is cancelled where it runs, and so are the calls it started;
//! the calls of a caller held dead for 30 s stop where they run too.

pub mod batch;
pub mod context;
mod deliver;
pub mod executor;
pub mod inbound;
pub mod memo;
pub mod owner;
pub mod pending;
pub mod placement;
mod placing;
pub mod registry;
pub mod run;
pub mod scripts;
pub mod sim;
pub mod steal;
pub mod work_queue;
pub mod workers;

use crate::cluster::peers::PeerView;
use crate::net::links::Links;
use crate::telemetry::metrics::CallMetrics;
use context::ProgressReport;
use executor::{Executor, LoadReport};
use libp2p::PeerId;
use memo::SharedMemo;
use pending::PendingTable;
use registry::Registry;
use scripts::Scripts;
use shoal_proto::{JobRef, NodeId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

/// Answers to steals, waiting for the thief's task; a thief has at most one
/// steal in flight, so a few slots are plenty.
const STEAL_ANSWERS: usize = 16;

/// Per-call settings.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// When the caller stops waiting; the node's default when `None`.
    pub deadline: Option<Instant>,
    /// Hash of a script that defines the function; nodes that lack it fetch
    /// it from this node, so any node can run the call.
    pub script: Option<Arc<str>>,
    /// The durable job this call runs for (set by the job runner).
    pub job: Option<JobRef>,
    /// Run on this node and nowhere else (a job whose requirements only
    /// some nodes meet); fails if the node is lost.
    pub on: Option<PeerId>,
}

/// Counters for status and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub executed: AtomicU64,
    pub redispatched: AtomicU64,
    pub stolen: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    /// Calls a full executor queue handed back to their owner.
    pub refused_overloaded: AtomicU64,
    /// Exponential moving average of run time, microseconds.
    pub mean_task_us: AtomicU64,
}

impl Stats {
    fn record_run(&self, took: Duration) {
        let sample = micros(took);
        let old = self.mean_task_us.load(Ordering::Relaxed);
        self.mean_task_us
            .store(next_mean_task_us(old, sample), Ordering::Relaxed);
        self.executed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where this life of the node starts numbering the requests it matches
/// answers to (calls, Raft requests): at random. A node restarted on its
/// data keeps its peer id, and an answer meant for a request of its last
/// life, still on its way or held for another try, would otherwise match a
/// request of this one that got the same number. Half of the range is
/// left, so the numbers never wrap.
pub(crate) fn first_id_of_this_life() -> u64 {
    rand::random::<u64>() >> 1
}

/// `duration` in whole microseconds, saturating.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The mean run time after one more run of `sample_us`: an exponential
/// moving average that gives the newest run an eighth of the weight; never
/// 0 once a call ran, since 0 means unknown.
fn next_mean_task_us(old: u64, sample_us: u64) -> u64 {
    let new = if old == 0 {
        sample_us
    } else {
        (old * 7 + sample_us) / 8
    };
    new.max(1)
}

/// What [`Calls::new`] needs; everything comes in built.
pub struct CallsParts {
    pub me: PeerId,
    pub slots: u32,
    /// Calls that may wait in this node's executor queue.
    pub queue_capacity: usize,
    /// Calls this node may own (wait for) at once.
    pub max_pending: usize,
    pub default_deadline: Duration,
    pub memo_capacity: usize,
    pub registry: Arc<Registry>,
    pub scripts: Arc<Scripts>,
    pub peers: PeerView,
    pub links: Links,
    /// Where functions' job progress reports go.
    pub progress: mpsc::Sender<ProgressReport>,
    /// Tells the cluster task about peers whose call stream broke.
    pub unreachable: mpsc::Sender<PeerId>,
    pub tasks: TaskTracker,
}

/// What the steal task reads: which victim answered, with how many calls.
pub type StealAnswers = mpsc::Receiver<(PeerId, usize)>;

/// Owner and executor of calls on one node.
pub struct Calls {
    me: PeerId,
    node_id: NodeId,
    default_deadline: Duration,
    max_pending: usize,
    registry: Arc<Registry>,
    scripts: Arc<Scripts>,
    peers: PeerView,
    links: Links,
    /// The owner's calls; only [`owner`] touches it.
    pending: Mutex<PendingTable>,
    executor: Executor,
    memo: SharedMemo,
    progress: mpsc::Sender<ProgressReport>,
    unreachable: mpsc::Sender<PeerId>,
    /// Tells the steal task how its steals were answered.
    steal_answers: mpsc::Sender<(PeerId, usize)>,
    /// Wakes the steal task when a peer reports queued calls.
    peer_has_work: Notify,
    /// Wakes the steal task when a slot here is left free.
    slot_idle: Notify,
    next_id: AtomicU64,
    pub stats: Stats,
    /// Outcomes and latency of the calls started here.
    pub metrics: CallMetrics,
    tasks: TaskTracker,
    /// A permit per byte of the outcomes waiting to be sent again (see
    /// `deliver`).
    undelivered_bytes: Semaphore,
}

impl Calls {
    /// Builds the node's calls; the steal task reads the returned answers.
    pub fn new(parts: CallsParts) -> (Arc<Calls>, StealAnswers) {
        let (steal_answers, answers) = mpsc::channel(STEAL_ANSWERS);
        let calls = Calls {
            me: parts.me,
            node_id: NodeId(parts.me.to_base58()),
            default_deadline: parts.default_deadline,
            max_pending: parts.max_pending,
            registry: parts.registry,
            scripts: parts.scripts,
            peers: parts.peers,
            links: parts.links,
            pending: Mutex::default(),
            executor: Executor::new(parts.slots, parts.queue_capacity),
            memo: SharedMemo::new(parts.memo_capacity),
            progress: parts.progress,
            unreachable: parts.unreachable,
            steal_answers,
            peer_has_work: Notify::new(),
            slot_idle: Notify::new(),
            next_id: AtomicU64::new(first_id_of_this_life()),
            stats: Stats::default(),
            metrics: CallMetrics::default(),
            tasks: parts.tasks,
            undelivered_bytes: Semaphore::new(deliver::MAX_HELD_BYTES),
        };
        (Arc::new(calls), answers)
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// This node's load, for heartbeats and placement; a draining node
    /// says it has no slots, so no call is placed on it.
    pub fn load(&self) -> LoadReport {
        let mut load = LoadReport {
            mean_task_us: self.mean_task_us(),
            ..self.executor.load()
        };
        if self.is_draining() {
            load.slots = 0;
        }
        load
    }

    /// How long a call takes here: the mean of recent runs; until one has
    /// finished, how long the longest running has run, a lower bound of
    /// it (0 while none runs). A report with a backlog and a time of 0
    /// was read as lasting until the next one (at 100 nodes, about 30 s
    /// later): a node that reported while its first calls of a fan-out ran
    /// got none of the calls of the next fan-outs, which ran a wave longer
    /// on the nodes that took them (efficiency 0.77 where it is 0.9).
    fn mean_task_us(&self) -> u64 {
        match self.stats.mean_task_us.load(Ordering::Relaxed) {
            0 => self
                .executor
                .longest_running()
                .map_or(0, |ran| micros(ran).max(1)),
            mean => mean,
        }
    }

    /// Starts draining: calls that have not started go back to their
    /// owners, who place them elsewhere, and new ones are refused the same
    /// way (those pinned here excepted: they can run nowhere else). Running
    /// calls finish. Returns how many calls were handed back.
    pub fn drain(self: &Arc<Self>) -> usize {
        let queued = self.executor.drain();
        let handed_back = queued.len();
        for call in queued {
            self.hand_back(call, "is draining");
        }
        handed_back
    }

    pub fn is_draining(&self) -> bool {
        self.executor.is_draining()
    }

    /// Whether no call waits or runs here.
    pub fn is_idle(&self) -> bool {
        self.executor.is_idle()
    }

    /// A peer reported queued calls: an idle node may steal some.
    pub fn peer_has_work(&self) {
        self.peer_has_work.notify_one();
    }

    /// The node is stopping: pending calls fail now instead of hanging, and
    /// the calls running here stop.
    pub fn stop(&self) {
        self.fail_all_pending();
        self.executor.stop_all();
    }

    /// A node is gone: its calls run elsewhere. Calls it owned run on here
    /// for now: a node declared dead may only have been paused or cut off
    /// for a moment, and would wait for calls dropped here until their
    /// deadline (see [`Calls::stop_calls_of_the_long_dead`]).
    pub fn on_peer_dead(self: &Arc<Self>, peer: PeerId) {
        self.redispatch_from(peer);
    }

    /// Stops the calls, queued or running here, of owners held dead for
    /// `grace` or longer, so that a caller's death frees the slots its
    /// calls hold instead of leaving them busy until their deadline (5
    /// minutes by default). Each goes back to its owner as `overloaded`:
    /// one that was paused for that long and comes back places it again
    /// instead of waiting for it. Called once a membership period.
    pub fn stop_calls_of_the_long_dead(self: &Arc<Self>, grace: Duration) {
        let owners = self.executor.owners();
        if owners.is_empty() {
            return;
        }
        let now = Instant::now();
        let gone: Vec<PeerId> = self.peers.read(|peers| {
            owners
                .into_iter()
                .filter(|owner| {
                    peers.get(owner).is_some_and(|info| {
                        info.dead_since
                            .is_some_and(|since| now.saturating_duration_since(since) >= grace)
                    })
                })
                .collect()
        });
        for owner in gone {
            self.give_back_calls_of(owner);
        }
    }
}
