//! The executor's side of one node: worker slots, the bounded queue of
//! calls that have not started, and the calls running now.
//!
//! It decides, under one lock, what starts, what waits and what is
//! refused; running a call is [`run`](super::run)'s job. The queue's order
//! and the slot hand-over rules are in [`WorkQueue`].

use super::work_queue::{Admit, WorkQueue};
use bytes::Bytes;
use futures::future::AbortHandle;
use libp2p::PeerId;
use shoal_proto::{CallId, CallRequest, JobRef};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A call waiting for or holding a slot on this node.
#[derive(Debug)]
pub struct QueuedCall {
    pub owner: PeerId,
    pub id: CallId,
    pub function: Arc<str>,
    pub args: Bytes,
    pub script: Option<Arc<str>>,
    pub job: Option<JobRef>,
    pub deadline: Instant,
    /// Runs here or nowhere: a thief never takes it.
    pub pinned: bool,
    /// When it reached this node.
    pub arrived: Instant,
}

impl QueuedCall {
    /// A call that arrived from `owner`, with the time it has left.
    pub fn from_request(owner: PeerId, request: CallRequest) -> QueuedCall {
        QueuedCall {
            owner,
            id: request.id,
            function: Arc::from(request.function),
            args: request.args,
            deadline: Instant::now() + Duration::from_millis(request.budget_ms),
            script: request.script.map(Arc::from),
            job: request.job,
            pinned: request.pinned,
            arrived: Instant::now(),
        }
    }
}

/// This node's load, for heartbeats and placement.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub slots: u32,
    pub queued: u32,
    pub busy: u32,
    /// Mean run time of recent calls, microseconds; before any finished,
    /// how long the longest running has run (0 if none runs).
    pub mean_task_us: u64,
}

/// What a cancel found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It had not started; it is gone from the queue.
    Dequeued,
    /// It was running and has been stopped.
    Aborted,
    /// Not here (finished already, or never came).
    NotFound,
}

/// What became of a call offered to the executor.
pub enum Offered {
    Admitted(Admit<QueuedCall>),
    /// The node drains: the call goes back to its owner.
    Draining(QueuedCall),
}

type RunningKey = (PeerId, CallId);

/// A call running here.
struct Running {
    /// Stops it.
    abort: AbortHandle,
    since: Instant,
}

struct State {
    work: WorkQueue<QueuedCall>,
    /// Calls running here, so a cancel can stop them.
    running: HashMap<RunningKey, Running>,
    /// The node drains: it admits only calls pinned here.
    draining: bool,
}

/// Slots, queue and running calls; every method takes the lock once.
pub struct Executor {
    state: Mutex<State>,
}

impl Executor {
    /// An executor with `slots` slots and room for `capacity` queued calls.
    pub fn new(slots: u32, capacity: usize) -> Self {
        Executor {
            state: Mutex::new(State {
                work: WorkQueue::new(slots, capacity),
                running: HashMap::new(),
                draining: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("executor lock")
    }

    pub fn load(&self) -> LoadReport {
        let state = self.state();
        LoadReport {
            slots: state.work.slots(),
            queued: state.work.queued() as u32,
            busy: state.work.busy(),
            mean_task_us: 0,
        }
    }

    /// Free slots, if nothing is queued (see [`WorkQueue::idle_slots`]).
    pub fn idle_slots(&self) -> u32 {
        self.state().work.idle_slots()
    }

    /// Offers a call: start it, queue it, or hand it back when full; or,
    /// on a draining node, give it back unless it is pinned here.
    pub fn admit(&self, call: QueuedCall) -> Offered {
        let mut state = self.state();
        if state.draining && !call.pinned {
            return Offered::Draining(call);
        }
        Offered::Admitted(state.work.submit(call))
    }

    /// Starts draining: from now on only pinned calls are admitted, and
    /// the queued calls that are not pinned are returned, in one step so
    /// that none slips in between.
    pub fn drain(&self) -> Vec<QueuedCall> {
        let mut state = self.state();
        state.draining = true;
        state.work.steal(usize::MAX, |call| !call.pinned)
    }

    pub fn is_draining(&self) -> bool {
        self.state().draining
    }

    /// Takes a call this node stole; returns it if it may start now.
    pub fn admit_stolen(&self, call: QueuedCall) -> Option<QueuedCall> {
        self.state().work.submit_stolen(call)
    }

    /// Records a call about to start, so it can be stopped; `handle`
    /// aborts it even before its task first runs.
    pub fn started(&self, owner: PeerId, id: CallId, handle: AbortHandle) {
        let running = Running {
            abort: handle,
            since: Instant::now(),
        };
        self.state().running.insert((owner, id), running);
    }

    /// How long the call running longest here has run; `None` if none runs.
    pub fn longest_running(&self) -> Option<Duration> {
        let state = self.state();
        let now = Instant::now();
        state
            .running
            .values()
            .map(|running| now.saturating_duration_since(running.since))
            .max()
    }

    pub fn finished(&self, owner: PeerId, id: CallId) {
        self.state().running.remove(&(owner, id));
    }

    /// A slot is free again; returns the queued call that takes it, if any
    /// (a waiting resumer may take it instead).
    pub fn release(&self) -> Option<QueuedCall> {
        self.state().work.release()
    }

    /// Asks for a slot back after nested calls; see [`WorkQueue::resume`].
    pub fn resume(&self) -> Result<(), oneshot::Receiver<()>> {
        self.state().work.resume()
    }

    /// Stops one call, queued or running.
    pub fn cancel(&self, owner: PeerId, id: CallId) -> Cancelled {
        let mut state = self.state();
        let removed = state
            .work
            .remove_where(|call| call.owner == owner && call.id == id);
        if !removed.is_empty() {
            return Cancelled::Dequeued;
        }
        match state.running.remove(&(owner, id)) {
            // Dropping the task drops its nested calls, which cancels them too.
            Some(running) => {
                running.abort.abort();
                Cancelled::Aborted
            }
            None => Cancelled::NotFound,
        }
    }

    /// The owners of the calls queued or running here.
    pub fn owners(&self) -> HashSet<PeerId> {
        let state = self.state();
        let mut owners: HashSet<PeerId> = state.running.keys().map(|(owner, _)| *owner).collect();
        owners.extend(state.work.iter().map(|call| call.owner));
        owners
    }

    /// Stops every call `owner` made, queued or running: it left the
    /// cluster. Returns the queued calls and the ids of the running ones.
    pub fn drop_owner(&self, owner: PeerId) -> (Vec<QueuedCall>, Vec<CallId>) {
        let mut state = self.state();
        let queued = state.work.remove_where(|call| call.owner == owner);
        let running: Vec<RunningKey> = state
            .running
            .keys()
            .filter(|(of, _)| *of == owner)
            .copied()
            .collect();
        let mut aborted = Vec::with_capacity(running.len());
        for key in running {
            if let Some(running) = state.running.remove(&key) {
                running.abort.abort();
                aborted.push(key.1);
            }
        }
        (queued, aborted)
    }

    /// Stops everything (the node is stopping).
    pub fn stop_all(&self) {
        let mut state = self.state();
        state.work.remove_where(|_| true);
        for (_, running) in state.running.drain() {
            running.abort.abort();
        }
    }

    /// Whether nothing waits here and nothing runs.
    pub fn is_idle(&self) -> bool {
        let state = self.state();
        state.work.queued() == 0 && state.running.is_empty()
    }

    /// Takes up to `max` queued calls for a thief, never a pinned one nor
    /// one that arrived less than `waited` ago; see [`WorkQueue::steal`].
    pub fn steal(
        &self,
        max: usize,
        waited: Duration,
        mut take: impl FnMut(&QueuedCall) -> bool,
    ) -> Vec<QueuedCall> {
        let now = Instant::now();
        self.state().work.steal(max, |call| {
            !call.pinned && now.duration_since(call.arrived) >= waited && take(call)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(owner: PeerId, id: u64) -> QueuedCall {
        QueuedCall {
            owner,
            id: CallId(id),
            function: Arc::from("f"),
            args: Bytes::new(),
            script: None,
            job: None,
            deadline: Instant::now(),
            pinned: false,
            arrived: Instant::now(),
        }
    }

    #[tokio::test]
    async fn cancel_dequeues_or_aborts() {
        let owner = PeerId::random();
        let executor = Executor::new(1, 10);
        assert!(matches!(
            executor.admit(call(owner, 1)),
            Offered::Admitted(Admit::Start(_))
        ));
        let (abort, registration) = AbortHandle::new_pair();
        let task = tokio::spawn(futures::future::Abortable::new(
            std::future::pending::<()>(),
            registration,
        ));
        executor.started(owner, CallId(1), abort);
        assert!(matches!(
            executor.admit(call(owner, 2)),
            Offered::Admitted(Admit::Queued)
        ));
        assert_eq!(executor.cancel(owner, CallId(2)), Cancelled::Dequeued);
        assert_eq!(executor.cancel(owner, CallId(1)), Cancelled::Aborted);
        assert!(task.await.unwrap().is_err(), "the task was aborted");
        assert_eq!(executor.cancel(owner, CallId(1)), Cancelled::NotFound);
    }

    #[tokio::test]
    async fn the_longest_running_call_says_how_long_it_has_run() {
        let owner = PeerId::random();
        let executor = Executor::new(2, 10);
        assert_eq!(executor.longest_running(), None, "nothing runs");
        let (first, _) = AbortHandle::new_pair();
        executor.started(owner, CallId(1), first);
        std::thread::sleep(Duration::from_millis(30));
        let (second, _) = AbortHandle::new_pair();
        executor.started(owner, CallId(2), second);
        let longest = executor.longest_running().expect("two calls run");
        assert!(longest >= Duration::from_millis(30), "{longest:?}");
        executor.finished(owner, CallId(1));
        let longest = executor.longest_running().expect("one call runs");
        assert!(longest < Duration::from_millis(30), "{longest:?}");
        executor.finished(owner, CallId(2));
        assert_eq!(executor.longest_running(), None);
    }

    #[tokio::test]
    async fn dropping_an_owner_stops_its_calls_and_only_its_calls() {
        let (gone, staying) = (PeerId::random(), PeerId::random());
        let executor = Executor::new(2, 10);
        let mut tasks = Vec::new();
        for (owner, id) in [(gone, 1), (staying, 2)] {
            let _ = executor.admit(call(owner, id));
            let (abort, registration) = AbortHandle::new_pair();
            tasks.push(tokio::spawn(futures::future::Abortable::new(
                std::future::pending::<()>(),
                registration,
            )));
            executor.started(owner, CallId(id), abort);
        }
        let _ = executor.admit(call(gone, 3));
        let _ = executor.admit(call(staying, 4));
        let (queued, running) = executor.drop_owner(gone);
        let queued: Vec<u64> = queued.iter().map(|c| c.id.0).collect();
        assert_eq!((queued, running), (vec![3], vec![CallId(1)]));
        assert!(
            tasks.remove(0).await.unwrap().is_err(),
            "its running call was aborted"
        );
        assert_eq!(
            executor.load().queued,
            1,
            "the other owner's queued call stays"
        );
        assert_eq!(executor.cancel(staying, CallId(2)), Cancelled::Aborted);
    }

    #[test]
    fn a_draining_executor_gives_back_what_waits_and_admits_only_pinned_calls() {
        let owner = PeerId::random();
        let pinned = |id| QueuedCall {
            pinned: true,
            ..call(owner, id)
        };
        let executor = Executor::new(1, 10);
        let _ = executor.admit(call(owner, 1));
        let _ = executor.admit(call(owner, 2));
        let _ = executor.admit(pinned(3));
        let given_back: Vec<u64> = executor.drain().iter().map(|c| c.id.0).collect();
        assert_eq!(given_back, vec![2], "the running and the pinned call stay");
        assert!(executor.is_draining());
        assert!(matches!(
            executor.admit(call(owner, 4)),
            Offered::Draining(_)
        ));
        assert!(matches!(
            executor.admit(pinned(5)),
            Offered::Admitted(Admit::Queued)
        ));
    }

    /// Three calls on a one-slot executor, the first running and the
    /// second changed by `second`; the executor, and the ids a thief takes
    /// of calls that have `waited`.
    fn steal_from_three(
        second: impl FnOnce(QueuedCall) -> QueuedCall,
        waited: Duration,
    ) -> (Executor, Vec<u64>) {
        let owner = PeerId::random();
        let executor = Executor::new(1, 10);
        executor.admit(call(owner, 1));
        executor.admit(second(call(owner, 2)));
        executor.admit(call(owner, 3));
        let stolen = executor.steal(10, waited, |_| true);
        let ids = stolen.iter().map(|c| c.id.0).collect();
        (executor, ids)
    }

    #[test]
    fn a_thief_never_takes_a_pinned_call() {
        let pinned = |call| QueuedCall {
            pinned: true,
            ..call
        };
        let (executor, stolen) = steal_from_three(pinned, Duration::ZERO);
        assert_eq!(
            stolen,
            vec![3],
            "the running call stays, and so does the pinned one"
        );
        assert_eq!(executor.load().queued, 1);
    }

    #[test]
    fn a_thief_takes_only_calls_that_have_waited() {
        let long_ago = |call| QueuedCall {
            arrived: Instant::now() - Duration::from_secs(1),
            ..call
        };
        let (_, stolen) = steal_from_three(long_ago, Duration::from_millis(20));
        assert_eq!(stolen, vec![2], "call 1 runs; call 3 has only just come");
    }
}
