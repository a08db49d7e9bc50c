//! Work stealing: an idle node takes queued, not-yet-started calls from the
//! busiest peer.
//!
//! ```text
//!  thief (steal task)                                victim
//!   a peer's report, its queue not yet drained
//!     ─► idle? ─► Frame::Steal{max} ───────────────► give_stolen:
//!                                                     take from the back of its queue,
//!   take_stolen ◄──── Frame::Stolen{calls} ◄──────── tell their owners (Frame::Moved)
//!   run them as if they were sent here
//! ```
//!
//! The thief's bookkeeping (whom it tried, whether a steal is in flight)
//! lives in its task alone; the victim's side only touches its executor.

use super::executor::QueuedCall;
use super::owner::remaining_ms;
use super::pending::Where;
use super::placement;
use super::{Calls, StealAnswers};
use libp2p::PeerId;
use shoal_proto::{CallRequest, Frame, NodeId, StolenCall};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Most calls handed over by one steal; keeps a steal reply small and
/// leaves work for other thieves.
pub const MAX_STEAL_BATCH: usize = 64;
/// Payload bytes handed over by one steal; well under the frame limit.
const MAX_STEAL_BYTES: usize = shoal_proto::wire::MAX_FRAME_BYTES / 2;
/// A queued call goes to a thief only once it has waited this long. A
/// fan-out reaches its last nodes a few milliseconds after its first, and
/// meanwhile those look idle: a steal then took two calls from the first,
/// and with its own calls on top the thief ran one wave more than every
/// other node (fan-out efficiency 0.77 in place of 0.91 over 100 nodes).
pub const STEAL_AFTER: Duration = Duration::from_millis(20);
/// A steal without an answer for this long is given up.
pub const STEAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle node looks for work to steal while peers report some.
/// Cheap (a lock and a comparison) so an idle node still costs next to nothing.
pub const STEAL_INTERVAL: Duration = Duration::from_millis(20);

/// What one look for work found, and so what the steal task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    /// No peer likely has queued calls (or this node drains): wait until
    /// one reports some.
    Nothing,
    /// Every slot here is taken: wait until one is free. Looking each
    /// interval meanwhile woke a busy node 50 times a second, while its
    /// peers reported queued calls, to read all of them for nothing.
    Busy,
    /// Some peer likely has queued calls: look again after an interval.
    Again,
}

/// What the thief remembers between looks; plain state, generic over how
/// peers are named so the placement simulation runs the same rules.
pub struct Thief<P> {
    in_flight_since: Option<Instant>,
    /// Report number of each peer when we last stole from it in vain:
    /// no second try until it reports again.
    tried: HashMap<P, u64>,
}

impl<P> Default for Thief<P> {
    fn default() -> Self {
        Thief {
            in_flight_since: None,
            tried: HashMap::new(),
        }
    }
}

/// The steal task: looks for work while some peer's report says it likely
/// still has queued calls and a slot here is free, and otherwise sleeps
/// until one is, so an idle cluster stays idle and a busy node is not
/// woken for nothing.
pub async fn run(calls: Arc<Calls>, mut answers: StealAnswers, shutdown: CancellationToken) {
    let mut thief = Thief::default();
    let mut look = Look::Nothing;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some((victim, got)) = answers.recv() => thief.answered(victim, got),
            _ = calls.peer_has_work.notified(), if look == Look::Nothing => {}
            _ = calls.slot_idle.notified(), if look == Look::Busy => {}
            _ = tokio::time::sleep(STEAL_INTERVAL), if look == Look::Again => {}
        }
        look = calls.steal_tick(&mut thief);
    }
}

impl<P: Copy + Eq + Hash> Thief<P> {
    /// Whether a steal may be asked now: none is in flight, or the last one
    /// went unanswered too long.
    pub fn ready(&self, now: Instant) -> bool {
        self.in_flight_since
            .is_none_or(|since| now.duration_since(since) >= STEAL_TIMEOUT)
    }

    /// Whom to ask for work, given each live peer's queued calls and report
    /// number: the peer with the most, among those not tried in vain since
    /// their last report. Remembers the try.
    pub fn pick(&mut self, now: Instant, peers: &[(P, u32, u64)]) -> Option<P> {
        let untried: Vec<(P, u32)> = peers
            .iter()
            .filter(|(peer, _, seq)| self.tried.get(peer) != Some(seq))
            .map(|(peer, queued, _)| (*peer, *queued))
            .collect();
        let victim = placement::choose_victim(&untried)?;
        let seq = peers
            .iter()
            .find(|(peer, _, _)| *peer == victim)
            .map_or(0, |(_, _, seq)| *seq);
        self.tried.insert(victim, seq);
        self.in_flight_since = Some(now);
        Some(victim)
    }

    /// A victim answered with `got` calls.
    pub fn answered(&mut self, victim: P, got: usize) {
        self.in_flight_since = None;
        if got > 0 {
            // It had work; ask again as soon as we are idle.
            self.tried.remove(&victim);
        }
    }
}

impl Calls {
    /// One look for work, and what to wait for before the next.
    fn steal_tick(&self, thief: &mut Thief<PeerId>) -> Look {
        if self.is_draining() {
            return Look::Nothing; // it takes no new work
        }
        let free = self.executor.idle_slots();
        if free == 0 {
            return Look::Busy;
        }
        let now = Instant::now();
        let peers: Vec<(PeerId, u32, u64)> = self.peers.read(|peers| {
            peers
                .live()
                .map(|(peer, info)| (*peer, info.still_queued(now), info.load.seq))
                .filter(|(_, queued, _)| *queued > 0)
                .collect()
        });
        if peers.is_empty() {
            return Look::Nothing;
        }
        if thief.ready(now)
            && let Some(victim) = thief.pick(now, &peers)
        {
            self.links.send_soon(victim, Frame::Steal { max: free });
        }
        Look::Again
    }

    /// A thief asked for work: hand over queued calls it can run.
    pub(super) fn give_stolen(self: &Arc<Self>, thief: PeerId, max: u32) {
        let thief_functions = self.peers.read(|peers| {
            peers
                .get(&thief)
                .map(|info| info.functions.clone())
                .unwrap_or_default()
        });
        let mut bytes = 0usize;
        let taken = self
            .executor
            .steal((max as usize).min(MAX_STEAL_BATCH), STEAL_AFTER, |call| {
                let fits = bytes + call.args.len() <= MAX_STEAL_BYTES;
                let can = fits
                    && call.owner != thief
                    && thief_functions.contains_key(call.function.as_ref());
                if can {
                    bytes += call.args.len();
                }
                can
            });
        let handed: Vec<StolenCall> = taken.iter().map(StolenCall::from).collect();
        if !handed.is_empty() {
            tracing::debug!(%thief, calls = handed.len(), "calls stolen from this node");
        }
        // The owners hear of the move only once the answer is on its way to
        // the thief: one that cannot go out leaves the calls here, where
        // their owners still look for them. (One lost on a stream that then
        // breaks is not recovered: the owners wait for the thief.)
        let calls = Arc::clone(self);
        self.tasks.spawn(async move {
            let answer = Frame::Stolen { calls: handed };
            match calls.links.send(thief, &answer).await {
                Ok(()) => {
                    for call in &taken {
                        calls.tell_moved(call, thief);
                    }
                }
                Err(_) if calls.links.is_stopping() => {}
                Err(error) => {
                    tracing::debug!(%thief, %error, "steal answer not delivered; its calls run here");
                    for call in taken {
                        calls.run_stolen(call);
                    }
                }
            }
        });
    }

    /// Tells `call`'s owner that it now runs at `thief`.
    fn tell_moved(&self, call: &QueuedCall, thief: PeerId) {
        if call.owner == self.me {
            self.moved(call.id, Where::Local, Where::Remote(thief));
        } else {
            let moved = Frame::Moved {
                id: call.id,
                to: NodeId(thief.to_base58()),
            };
            self.links.send_soon(call.owner, moved);
        }
    }

    /// A victim answered a steal: its calls run here as if they were sent
    /// here, and the thief's task hears how many came.
    pub(super) fn take_stolen(self: &Arc<Self>, victim: PeerId, calls: Vec<StolenCall>) {
        // A lost note only delays the next steal until the in-flight one
        // times out.
        let _ = self.steal_answers.try_send((victim, calls.len()));
        self.stats
            .stolen
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        for stolen in calls {
            let Ok(owner) = stolen.owner.0.parse::<PeerId>() else {
                tracing::warn!(%victim, owner = %stolen.owner, "stolen call with an invalid owner id; dropped");
                continue;
            };
            if owner == self.me {
                self.moved(stolen.request.id, Where::Remote(victim), Where::Local);
            }
            self.run_stolen(QueuedCall::from_request(owner, stolen.request));
        }
    }

    /// Takes a stolen call (or one a thief could not be given) ahead of the
    /// queue: a thief never refuses what it stole.
    fn run_stolen(self: &Arc<Self>, call: QueuedCall) {
        if let Some(call) = self.executor.admit_stolen(call) {
            self.start(call);
        }
    }
}

impl From<&QueuedCall> for StolenCall {
    fn from(call: &QueuedCall) -> Self {
        StolenCall {
            owner: NodeId(call.owner.to_base58()),
            request: CallRequest {
                id: call.id,
                function: call.function.to_string(),
                args: call.args.clone(),
                budget_ms: remaining_ms(call.deadline),
                script: call.script.as_deref().map(str::to_string),
                job: call.job,
                pinned: false,
            },
        }
    }
}
