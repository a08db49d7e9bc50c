//! The fast path for calls.
//!
//! Every call has an *owner*, the node where it was made, which keeps it in
//! its pending table until it resolves; and an *executor*, the node where it
//! runs. Both roles live in [`Sched`].
//!
//! ```text
//!  call() ─► place ─► Local ───────────► work queue ─► slot ─► run ─┐
//!              │                                                    │ result
//!              └────► Remote(peer) ─► Frame::Call ─► peer's queue   ▼
//!                                                  (may be stolen) resolve(id): first wins
//! ```
//!
//! Failure handling lives on the owner: when the executor of a pending call
//! dies (connections closed, heartbeats missed, or its call stream broke),
//! the owner places the call again. Results that arrive after the first are
//! dropped, so the caller sees exactly one. A call whose caller stops waiting
//! (deadline, or the future dropped) is cancelled where it runs, and so are
//! the calls it started.

pub mod memo;
pub mod placement;
pub mod work_queue;

use crate::cluster::PeerTable;
use crate::metrics::CallMetrics;
use crate::net::links::{FrameHandler, Links};
use crate::registry::{Body, CallContext, Registry};
use bytes::Bytes;
use futures::FutureExt;
use libp2p::PeerId;
use memo::{Lookup, Memo, MemoKey};
use placement::{Load, Placement};
use serde_json::Value;
use shoal_proto::wire::MAX_PAYLOAD_BYTES;
use shoal_proto::{
    CallError, CallId, CallRequest, ErrorCode, Frame, JobRef, NodeId, Outcome, StolenCall,
};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use work_queue::WorkQueue;

/// Most calls handed over by one steal; keeps a steal reply small and
/// leaves work for other thieves.
const MAX_STEAL_BATCH: usize = 64;
/// Payload bytes handed over by one steal; well under the frame limit.
const MAX_STEAL_BYTES: usize = shoal_proto::wire::MAX_FRAME_BYTES / 2;
/// A steal without an answer for this long is given up.
const STEAL_TIMEOUT: Duration = Duration::from_secs(1);

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
}

/// Receives progress reports of functions running for durable jobs.
pub type ProgressSink = Arc<dyn Fn(JobRef, f64, String) + Send + Sync>;

/// Fetches and loads scripts that calls name by hash: the node's side of
/// "scripts travel with work".
pub trait ScriptSource: Send + Sync + 'static {
    /// Makes sure the script `hash` is loaded here, fetching it from `owner`
    /// if needed.
    fn ensure(
        &self,
        hash: Arc<str>,
        owner: PeerId,
    ) -> futures::future::BoxFuture<'static, Result<(), CallError>>;
}

/// Where a pending call runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Local,
    Remote(PeerId),
}

/// A call this node owns and waits for.
struct Pending {
    function: Arc<str>,
    args: Bytes,
    /// Hash of the script that defines the function, if the caller shipped one.
    script: Option<Arc<str>>,
    job: Option<JobRef>,
    deadline: Instant,
    at: Where,
    /// Pinned calls (internal ones aimed at one node) fail rather than move
    /// when that node is lost.
    pinned: bool,
    reply: oneshot::Sender<Outcome>,
}

/// The owner's table: pending calls and how many each peer holds.
#[derive(Default)]
struct Owned {
    pending: HashMap<CallId, Pending>,
    outstanding: HashMap<PeerId, u32>,
}

impl Owned {
    fn count(&mut self, at: Where, delta: i32) {
        if let Where::Remote(peer) = at {
            let count = self.outstanding.entry(peer).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.outstanding.remove(&peer);
            }
        }
    }

    fn insert(&mut self, id: CallId, pending: Pending) {
        self.count(pending.at, 1);
        self.pending.insert(id, pending);
    }

    fn remove(&mut self, id: CallId) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        self.count(pending.at, -1);
        Some(pending)
    }

    fn move_to(&mut self, id: CallId, at: Where) -> bool {
        let Some(pending) = self.pending.get_mut(&id) else {
            return false;
        };
        let from = std::mem::replace(&mut pending.at, at);
        self.count(from, -1);
        self.count(at, 1);
        true
    }
}

/// A call waiting for or holding a slot on this node.
struct Job {
    owner: PeerId,
    id: CallId,
    function: Arc<str>,
    args: Bytes,
    script: Option<Arc<str>>,
    job: Option<JobRef>,
    deadline: Instant,
}

/// Counters for status and benchmarks.
#[derive(Default)]
pub struct Stats {
    pub executed: AtomicU64,
    pub redispatched: AtomicU64,
    pub stolen: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    /// Exponential moving average of run time, microseconds.
    pub mean_task_us: AtomicU64,
}

impl Stats {
    fn record_run(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.mean_task_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.mean_task_us.store(new.max(1), Ordering::Relaxed);
        self.executed.fetch_add(1, Ordering::Relaxed);
    }
}

/// This node's load, for heartbeats and placement.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub slots: u32,
    pub queued: u32,
    pub busy: u32,
    pub mean_task_us: u64,
}

#[derive(Default)]
struct StealState {
    in_flight_since: Option<Instant>,
    /// Heartbeat number of each peer when we last stole from it in vain:
    /// no second try until it reports again.
    tried: HashMap<PeerId, u64>,
}

/// Owner and executor of calls on one node.
pub struct Sched {
    me: PeerId,
    node_id: NodeId,
    slots: u32,
    default_deadline: Duration,
    registry: Arc<Registry>,
    peers: Arc<Mutex<PeerTable>>,
    links: Arc<Links>,
    owned: Mutex<Owned>,
    work: Mutex<WorkQueue<Job>>,
    /// Calls running here, by (owner, id), so a cancel can stop them.
    running: Mutex<HashMap<(PeerId, CallId), AbortHandle>>,
    memo: Mutex<Memo>,
    steal: Mutex<StealState>,
    next_id: AtomicU64,
    pub stats: Stats,
    /// Outcomes and latency of the calls started here.
    pub calls: CallMetrics,
    scripts: std::sync::OnceLock<Arc<dyn ScriptSource>>,
    progress: std::sync::OnceLock<ProgressSink>,
    this: Weak<Sched>,
}

pub struct SchedParts {
    pub me: PeerId,
    pub slots: u32,
    pub default_deadline: Duration,
    pub memo_capacity: usize,
    pub registry: Arc<Registry>,
    pub peers: Arc<Mutex<PeerTable>>,
    pub links: Arc<Links>,
}

impl Sched {
    pub fn new(parts: SchedParts) -> Arc<Sched> {
        Arc::new_cyclic(|this| Sched {
            me: parts.me,
            node_id: NodeId(parts.me.to_base58()),
            slots: parts.slots,
            default_deadline: parts.default_deadline,
            registry: parts.registry,
            peers: parts.peers,
            links: parts.links,
            owned: Mutex::default(),
            work: Mutex::new(WorkQueue::new(parts.slots)),
            running: Mutex::default(),
            memo: Mutex::new(Memo::new(parts.memo_capacity)),
            steal: Mutex::default(),
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
            calls: CallMetrics::default(),
            scripts: std::sync::OnceLock::new(),
            progress: std::sync::OnceLock::new(),
            this: this.clone(),
        })
    }

    fn arc(&self) -> Arc<Sched> {
        self.this.upgrade().expect("sched is alive while used")
    }

    /// Sets where functions' job progress reports go.
    pub fn set_progress_sink(&self, sink: ProgressSink) {
        let _ = self.progress.set(sink);
    }

    pub(crate) fn report_progress(&self, job: JobRef, fraction: f64, message: String) {
        if let Some(sink) = self.progress.get() {
            sink(job, fraction, message);
        }
    }

    /// Sets who fetches scripts that calls name by hash.
    pub fn set_script_source(&self, source: Arc<dyn ScriptSource>) {
        let _ = self.scripts.set(source);
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn load(&self) -> LoadReport {
        let work = self.work.lock().expect("work lock");
        LoadReport {
            slots: work.slots(),
            queued: work.queued() as u32,
            busy: work.busy(),
            mean_task_us: self.stats.mean_task_us.load(Ordering::Relaxed),
        }
    }

    /// Calls pending on this node as owner.
    pub fn pending_calls(&self) -> usize {
        self.owned.lock().expect("owned lock").pending.len()
    }

    // ---- owner side -------------------------------------------------------

    /// Runs `function` wherever it is best placed and returns its result.
    pub async fn call(
        &self,
        function: &str,
        args: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let started = Instant::now();
        let outcome = self.call_unmetered(function, args, options).await;
        let code = outcome.as_ref().map(|_| ()).map_err(|e| e.code);
        self.calls.record(code, started.elapsed());
        outcome
    }

    async fn call_unmetered(
        &self,
        function: &str,
        args: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let args = encode_args(function, &args)?;
        let deadline = options
            .deadline
            .unwrap_or_else(|| Instant::now() + self.default_deadline);
        // A function a script defined carries that script, so nodes that
        // never loaded it can still run the call.
        let script = options
            .script
            .or_else(|| self.registry.get(function).and_then(|f| f.script.clone()));
        let result = if self.is_memoized(function) {
            self.call_memoized(function, args, deadline, script, options.job)
                .await?
        } else {
            self.call_bytes(function, args, deadline, None, script, options.job)
                .await?
        };
        serde_json::from_slice(&result).map_err(|e| {
            CallError::new(
                ErrorCode::Internal,
                format!("result of '{function}' is not valid JSON: {e}"),
            )
        })
    }

    /// Runs `function` on one given node; fails if that node is lost.
    pub async fn call_on(
        &self,
        peer: PeerId,
        function: &str,
        args: Value,
    ) -> Result<Value, CallError> {
        let args = encode_args(function, &args)?;
        let deadline = Instant::now() + self.default_deadline;
        let result = self
            .call_bytes(function, args, deadline, Some(peer), None, None)
            .await?;
        serde_json::from_slice(&result).map_err(|e| {
            CallError::new(
                ErrorCode::Internal,
                format!("bad result of '{function}': {e}"),
            )
        })
    }

    fn is_memoized(&self, function: &str) -> bool {
        if let Some(local) = self.registry.get(function) {
            return local.memoize;
        }
        let peers = self.peers.lock().expect("peers lock");
        peers
            .live()
            .any(|(_, info)| info.functions.get(function).copied().unwrap_or(false))
    }

    async fn call_memoized(
        &self,
        function: &str,
        args: Bytes,
        deadline: Instant,
        script: Option<Arc<str>>,
        job: Option<JobRef>,
    ) -> Outcome {
        let key: MemoKey = (Arc::from(function), args);
        loop {
            let lookup = self.memo.lock().expect("memo lock").lookup(&key);
            match lookup {
                Lookup::Hit(value) => return Ok(value),
                Lookup::Follow(rx) => match tokio::time::timeout_at(deadline.into(), rx).await {
                    Ok(Ok(outcome)) => return outcome,
                    Ok(Err(_)) => continue, // the leader was cancelled: lead ourselves
                    Err(_) => return Err(deadline_error(function)),
                },
                Lookup::Lead => {
                    let mut lead = MemoLead {
                        sched: self,
                        key: &key,
                        done: false,
                    };
                    let outcome = self
                        .call_bytes(function, key.1.clone(), deadline, None, script, job)
                        .await;
                    lead.finish(&outcome);
                    return outcome;
                }
            }
        }
    }

    async fn call_bytes(
        &self,
        function: &str,
        args: Bytes,
        deadline: Instant,
        pinned: Option<PeerId>,
        script: Option<Arc<str>>,
        job: Option<JobRef>,
    ) -> Outcome {
        let at = match pinned {
            Some(peer) if peer == self.me => Where::Local,
            Some(peer) => Where::Remote(peer),
            None => self
                .place(function, script.is_some())
                .ok_or_else(|| self.nowhere_error(function))?,
        };
        let id = CallId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (reply, outcome) = oneshot::channel();
        self.owned.lock().expect("owned lock").insert(
            id,
            Pending {
                function: Arc::from(function),
                args,
                script,
                job,
                deadline,
                at,
                pinned: pinned.is_some(),
                reply,
            },
        );
        let _cancel_if_abandoned = OwnedCall { sched: self, id };
        match at {
            Where::Local => self.dispatch_local(id),
            Where::Remote(peer) => self.send_call(id, peer).await,
        }
        match tokio::time::timeout_at(deadline.into(), outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(CallError::new(
                ErrorCode::ShuttingDown,
                "the node is shutting down",
            )),
            Err(_) => Err(deadline_error(function)),
        }
    }

    /// Where a new call of `function` should run, among live nodes that
    /// have it — or, when the call ships its script, among all live nodes
    /// with slots; `None` if nobody can run it.
    fn place(&self, function: &str, shipped: bool) -> Option<Where> {
        let local = (shipped || self.registry.get(function).is_some())
            .then_some(())
            .filter(|_| self.slots > 0)
            .map(|_| {
                let report = self.load();
                Load {
                    slots: report.slots,
                    backlog: report.busy + report.queued,
                    mean_task_us: report.mean_task_us,
                }
            });
        let mut remotes: Vec<(PeerId, Load)> = {
            let peers = self.peers.lock().expect("peers lock");
            peers
                .live()
                .filter(|(_, info)| {
                    (shipped || info.functions.contains_key(function)) && info.load.slots > 0
                })
                .map(|(peer, info)| {
                    let load = Load {
                        slots: info.load.slots,
                        backlog: info.load.queued + info.load.running,
                        mean_task_us: info.load.mean_task_us,
                    };
                    (*peer, load)
                })
                .collect()
        };
        if !remotes.is_empty() {
            // Heartbeats are up to a second old; what we sent since counts too.
            let owned = self.owned.lock().expect("owned lock");
            for (peer, load) in &mut remotes {
                let ours = owned.outstanding.get(peer).copied().unwrap_or(0);
                load.backlog = load.backlog.max(ours);
            }
        }
        match placement::place(local.as_ref(), &remotes, &mut rand::rng()) {
            Placement::Local => Some(Where::Local),
            Placement::Remote(peer) => Some(Where::Remote(peer)),
            Placement::Nowhere => None,
        }
    }

    fn nowhere_error(&self, function: &str) -> CallError {
        let known_dead = self
            .peers
            .lock()
            .expect("peers lock")
            .known_function(function);
        if known_dead || self.registry.get(function).is_some() {
            CallError::new(
                ErrorCode::Unavailable,
                format!(
                    "no live node can run '{function}': the nodes that registered it are gone or have no slots"
                ),
            )
        } else {
            CallError::new(
                ErrorCode::UnknownFunction,
                format!("no node in the cluster has registered a function named '{function}'"),
            )
        }
    }

    fn dispatch_local(&self, id: CallId) {
        let job = {
            let owned = self.owned.lock().expect("owned lock");
            let Some(pending) = owned.pending.get(&id) else {
                return;
            };
            Job {
                owner: self.me,
                id,
                function: Arc::clone(&pending.function),
                args: pending.args.clone(),
                script: pending.script.clone(),
                job: pending.job,
                deadline: pending.deadline,
            }
        };
        self.submit(job);
    }

    async fn send_call(&self, id: CallId, peer: PeerId) {
        let frame = {
            let owned = self.owned.lock().expect("owned lock");
            let Some(pending) = owned.pending.get(&id) else {
                return;
            };
            Frame::Call(CallRequest {
                id,
                function: pending.function.to_string(),
                args: pending.args.clone(),
                budget_ms: remaining_ms(pending.deadline),
                script: pending.script.as_deref().map(str::to_string),
                job: pending.job,
            })
        };
        if let Err(error) = self.links.send(peer, &frame).await {
            tracing::warn!(%peer, %error, "cannot send a call; placing it elsewhere");
            self.on_link_lost(peer);
        }
    }

    /// Places a pending call again, after its executor was lost.
    fn redispatch(&self, id: CallId) {
        let (function, pinned, shipped) = {
            let owned = self.owned.lock().expect("owned lock");
            let Some(pending) = owned.pending.get(&id) else {
                return;
            };
            (
                Arc::clone(&pending.function),
                pending.pinned,
                pending.script.is_some(),
            )
        };
        if pinned {
            let error = CallError::new(
                ErrorCode::Unavailable,
                format!("the node asked to run '{function}' was lost before it answered"),
            );
            return self.resolve(id, Err(error));
        }
        let Some(at) = self.place(&function, shipped) else {
            return self.resolve(id, Err(self.nowhere_error(&function)));
        };
        if !self.owned.lock().expect("owned lock").move_to(id, at) {
            return;
        }
        self.stats.redispatched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%id, %function, ?at, "re-dispatched a call whose node was lost");
        match at {
            Where::Local => self.dispatch_local(id),
            Where::Remote(peer) => {
                let sched = self.arc();
                tokio::spawn(async move { sched.send_call(id, peer).await });
            }
        }
    }

    /// Re-places every pending call held by `peer`.
    fn redispatch_from(&self, peer: PeerId) {
        let lost: Vec<CallId> = {
            let owned = self.owned.lock().expect("owned lock");
            owned
                .pending
                .iter()
                .filter(|(_, pending)| pending.at == Where::Remote(peer))
                .map(|(id, _)| *id)
                .collect()
        };
        if !lost.is_empty() {
            tracing::info!(%peer, calls = lost.len(), "node lost; running its calls elsewhere");
        }
        for id in lost {
            self.redispatch(id);
        }
    }

    /// The first outcome of a call wins; later ones are dropped.
    fn resolve(&self, id: CallId, outcome: Outcome) {
        let pending = self.owned.lock().expect("owned lock").remove(id);
        match pending {
            Some(pending) => {
                let _ = pending.reply.send(outcome);
            }
            None => {
                self.stats
                    .duplicates_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The caller stopped waiting: forget the call and stop it where it runs.
    fn abandon(&self, id: CallId) {
        let Some(pending) = self.owned.lock().expect("owned lock").remove(id) else {
            return;
        };
        match pending.at {
            Where::Local => self.cancel_job(self.me, id),
            Where::Remote(peer) => self.links.send_soon(peer, Frame::Cancel { id }),
        }
    }

    /// The node is stopping: every pending call fails now instead of hanging.
    pub fn fail_all_pending(&self) {
        let pending: Vec<Pending> = {
            let mut owned = self.owned.lock().expect("owned lock");
            owned.outstanding.clear();
            owned.pending.drain().map(|(_, pending)| pending).collect()
        };
        for pending in pending {
            let error = CallError::new(
                ErrorCode::ShuttingDown,
                format!("the node stopped before '{}' finished", pending.function),
            );
            let _ = pending.reply.send(Err(error));
        }
    }

    /// A node is gone: its calls run elsewhere, and calls it owned stop here.
    pub fn on_peer_dead(&self, peer: PeerId) {
        self.redispatch_from(peer);
        let orphans = self
            .work
            .lock()
            .expect("work lock")
            .remove_where(|job| job.owner == peer);
        let running: Vec<AbortHandle> = {
            let mut running = self.running.lock().expect("running lock");
            let keys: Vec<_> = running
                .keys()
                .filter(|(owner, _)| *owner == peer)
                .copied()
                .collect();
            keys.iter().filter_map(|key| running.remove(key)).collect()
        };
        for handle in &running {
            handle.abort();
        }
        if !orphans.is_empty() || !running.is_empty() {
            tracing::info!(%peer, queued = orphans.len(), running = running.len(), "dropped calls of a lost owner");
        }
    }

    // ---- executor side ----------------------------------------------------

    fn submit(&self, job: Job) {
        // Internal functions (queue, script fetch) answer in microseconds and
        // must work even on nodes without slots, so they skip the queue.
        if self.registry.get(&job.function).is_some_and(|f| f.internal) {
            return self.spawn_run(job, false);
        }
        let start = self.work.lock().expect("work lock").submit(job);
        if let Some(job) = start {
            self.start(job);
        }
    }

    /// Runs a job whose slot is already taken.
    fn start(&self, job: Job) {
        self.spawn_run(job, true);
    }

    fn spawn_run(&self, job: Job, holds_slot: bool) {
        let key = (job.owner, job.id);
        let sched = self.arc();
        let handle = tokio::spawn(async move { sched.run(job, holds_slot).await });
        let mut running = self.running.lock().expect("running lock");
        running.insert(key, handle.abort_handle());
        // A fast call may have finished before it was recorded.
        if handle.is_finished() {
            running.remove(&key);
        }
    }

    async fn run(self: Arc<Self>, job: Job, holds_slot: bool) {
        let slot = Arc::new(Slot {
            sched: Arc::clone(&self),
            state: Mutex::new(SlotState {
                held: holds_slot,
                nested: 0,
            }),
        });
        let started = Instant::now();
        let outcome = self.execute(&job, &slot).await;
        slot.release();
        self.stats.record_run(started.elapsed());
        self.running
            .lock()
            .expect("running lock")
            .remove(&(job.owner, job.id));
        self.deliver(job.owner, job.id, outcome).await;
    }

    async fn execute(&self, job: &Job, slot: &Arc<Slot>) -> Outcome {
        let name = &job.function;
        if self.registry.get(name).is_none()
            && let Some(hash) = &job.script
        {
            // The call ships its script and this node has not seen it yet.
            let Some(scripts) = self.scripts.get() else {
                return Err(CallError::new(
                    ErrorCode::Unavailable,
                    "this node cannot load scripts",
                ));
            };
            scripts.ensure(Arc::clone(hash), job.owner).await?;
        }
        let Some(function) = self.registry.get(name) else {
            return Err(CallError::new(
                ErrorCode::UnknownFunction,
                format!(
                    "function '{name}' is not registered on node {}",
                    self.node_id.short()
                ),
            ));
        };
        let memo_key = function
            .memoize
            .then(|| (Arc::clone(name), job.args.clone()));
        if let Some(key) = &memo_key
            && let Some(value) = self.memo.lock().expect("memo lock").get(key)
        {
            return Ok(value);
        }
        let args: Value = serde_json::from_slice(&job.args).map_err(|e| {
            CallError::new(
                ErrorCode::InvalidArguments,
                format!("arguments of '{name}' are not valid JSON: {e}"),
            )
        })?;
        let result = match &function.body {
            Body::Async(body) => {
                let ctx = CallContext {
                    sched: self.arc(),
                    slot: Arc::clone(slot),
                    deadline: job.deadline,
                    job: job.job,
                    progress_at: Arc::default(),
                };
                AssertUnwindSafe(body(ctx, args))
                    .catch_unwind()
                    .await
                    .map_err(panic_message)
            }
            Body::Blocking(body) => {
                let body = Arc::clone(body);
                tokio::task::spawn_blocking(move || body(args))
                    .await
                    .map_err(|e| match e.try_into_panic() {
                        Ok(payload) => panic_message(payload),
                        Err(e) => e.to_string(),
                    })
            }
        };
        let node = self.node_id.short();
        let value = match result {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => {
                return Err(CallError::new(
                    ErrorCode::FunctionFailed,
                    format!("function '{name}' failed on node {node}: {error}"),
                ));
            }
            Err(panic) => {
                return Err(CallError::new(
                    ErrorCode::FunctionPanicked,
                    format!("function '{name}' panicked on node {node}: {panic}"),
                ));
            }
        };
        let bytes = Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"));
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(CallError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "result of '{name}' is {} bytes, over the limit of {MAX_PAYLOAD_BYTES}",
                    bytes.len()
                ),
            ));
        }
        if let Some(key) = memo_key {
            self.memo
                .lock()
                .expect("memo lock")
                .store(key, bytes.clone());
        }
        Ok(bytes)
    }

    async fn deliver(&self, owner: PeerId, id: CallId, outcome: Outcome) {
        if owner == self.me {
            return self.resolve(id, outcome);
        }
        if let Err(error) = self.links.send(owner, &Frame::Result { id, outcome }).await {
            // The owner re-dispatches or is gone; either way it decides.
            tracing::debug!(%owner, %id, %error, "result not delivered");
        }
    }

    fn cancel_job(&self, owner: PeerId, id: CallId) {
        let removed = self
            .work
            .lock()
            .expect("work lock")
            .remove_where(|job| job.owner == owner && job.id == id);
        if removed.is_empty()
            && let Some(handle) = self
                .running
                .lock()
                .expect("running lock")
                .remove(&(owner, id))
        {
            // Dropping the task drops its nested calls, which cancels them too.
            handle.abort();
        }
    }

    fn release_slot(&self) {
        let next = self.work.lock().expect("work lock").release();
        if let Some(job) = next {
            self.start(job);
        }
    }

    async fn acquire_slot(&self) {
        let waiting = match self.work.lock().expect("work lock").resume() {
            Ok(()) => return,
            Err(waiting) => waiting,
        };
        let mut wait = ResumeWait {
            sched: self,
            waiting,
            granted: false,
        };
        if (&mut wait.waiting).await.is_ok() {
            wait.granted = true;
        }
    }

    // ---- stealing ---------------------------------------------------------

    /// Called periodically while peers report queued work: an idle node
    /// asks the most loaded peer for some. Returns whether any peer still
    /// reports queued calls (so the caller keeps ticking).
    pub fn steal_tick(&self) -> bool {
        let peers_have_work = self
            .peers
            .lock()
            .expect("peers lock")
            .live()
            .any(|(_, info)| info.load.queued > 0);
        if !peers_have_work {
            return false;
        }
        let free = {
            let work = self.work.lock().expect("work lock");
            if work.queued() > 0 {
                return true;
            }
            work.free_slots()
        };
        if free == 0 {
            return true;
        }
        let mut steal = self.steal.lock().expect("steal lock");
        if steal
            .in_flight_since
            .is_some_and(|since| since.elapsed() < STEAL_TIMEOUT)
        {
            return true;
        }
        let candidates: Vec<(PeerId, u32)> = {
            let peers = self.peers.lock().expect("peers lock");
            peers
                .live()
                .filter(|(peer, info)| steal.tried.get(*peer) != Some(&info.load.seq))
                .map(|(peer, info)| (*peer, info.load.queued))
                .collect()
        };
        let Some(victim) = placement::choose_victim(&candidates) else {
            return true;
        };
        let seq = self
            .peers
            .lock()
            .expect("peers lock")
            .get(&victim)
            .map_or(0, |info| info.load.seq);
        steal.tried.insert(victim, seq);
        steal.in_flight_since = Some(Instant::now());
        drop(steal);
        self.links.send_soon(victim, Frame::Steal { max: free });
        true
    }

    /// A thief asked for work: hand over queued calls it can run.
    fn give_stolen(&self, thief: PeerId, max: u32) {
        let thief_functions = self
            .peers
            .lock()
            .expect("peers lock")
            .get(&thief)
            .map(|info| info.functions.clone())
            .unwrap_or_default();
        let mut bytes = 0usize;
        let jobs = self.work.lock().expect("work lock").steal(
            (max as usize).min(MAX_STEAL_BATCH),
            |job| {
                let fits = bytes + job.args.len() <= MAX_STEAL_BYTES;
                let can = fits
                    && job.owner != thief
                    && thief_functions.contains_key(job.function.as_ref());
                if can {
                    bytes += job.args.len();
                }
                can
            },
        );
        let thief_id = NodeId(thief.to_base58());
        let mut calls = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.owner == self.me {
                self.owned
                    .lock()
                    .expect("owned lock")
                    .move_to(job.id, Where::Remote(thief));
            } else {
                let moved = Frame::Moved {
                    id: job.id,
                    to: thief_id.clone(),
                };
                self.links.send_soon(job.owner, moved);
            }
            calls.push(StolenCall {
                owner: NodeId(job.owner.to_base58()),
                request: CallRequest {
                    id: job.id,
                    function: job.function.to_string(),
                    args: job.args,
                    budget_ms: remaining_ms(job.deadline),
                    script: job.script.as_deref().map(str::to_string),
                    job: job.job,
                },
            });
        }
        if !calls.is_empty() {
            tracing::debug!(%thief, calls = calls.len(), "calls stolen from this node");
        }
        self.links.send_soon(thief, Frame::Stolen { calls });
    }

    /// A victim handed us calls: run them as if they were sent here.
    fn take_stolen(&self, victim: PeerId, calls: Vec<StolenCall>) {
        let got_some = !calls.is_empty();
        {
            let mut steal = self.steal.lock().expect("steal lock");
            steal.in_flight_since = None;
            if got_some {
                // It had work; ask again as soon as we are idle.
                steal.tried.remove(&victim);
            }
        }
        self.stats
            .stolen
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        for stolen in calls {
            let Ok(owner) = stolen.owner.0.parse::<PeerId>() else {
                tracing::warn!(%victim, owner = %stolen.owner, "stolen call with an invalid owner id; dropped");
                continue;
            };
            if owner == self.me {
                self.owned
                    .lock()
                    .expect("owned lock")
                    .move_to(stolen.request.id, Where::Local);
            }
            self.submit(job_from(owner, stolen.request));
        }
    }
}

impl FrameHandler for Sched {
    fn on_frame(&self, peer: PeerId, frame: Frame) {
        match frame {
            Frame::Call(request) => self.submit(job_from(peer, request)),
            Frame::Cancel { id } => self.cancel_job(peer, id),
            Frame::Result { id, outcome } => self.resolve(id, outcome),
            Frame::Moved { id, to } => match to.0.parse::<PeerId>() {
                Ok(to) => {
                    self.owned
                        .lock()
                        .expect("owned lock")
                        .move_to(id, Where::Remote(to));
                }
                Err(_) => tracing::warn!(%peer, to = %to, "move notice names an invalid node"),
            },
            Frame::Steal { max } => self.give_stolen(peer, max),
            Frame::Stolen { calls } => self.take_stolen(peer, calls),
            Frame::RaftRequest { .. } | Frame::RaftResponse { .. } => {
                tracing::warn!(%peer, "a Raft frame reached the scheduler; dropped");
            }
        }
    }

    fn on_link_lost(&self, peer: PeerId) {
        self.peers.lock().expect("peers lock").on_unreachable(peer);
        self.redispatch_from(peer);
    }
}

fn job_from(owner: PeerId, request: CallRequest) -> Job {
    Job {
        owner,
        id: request.id,
        function: Arc::from(request.function),
        args: request.args,
        deadline: Instant::now() + Duration::from_millis(request.budget_ms),
        script: request.script.map(Arc::from),
        job: request.job,
    }
}

fn encode_args(function: &str, args: &Value) -> Result<Bytes, CallError> {
    let bytes = serde_json::to_vec(args).expect("a JSON value serializes");
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(CallError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "arguments of '{function}' are {} bytes, over the limit of {MAX_PAYLOAD_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(Bytes::from(bytes))
}

fn deadline_error(function: &str) -> CallError {
    CallError::new(
        ErrorCode::DeadlineExceeded,
        format!("call to '{function}' did not finish before its deadline"),
    )
}

fn remaining_ms(deadline: Instant) -> u64 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(u64::MAX as u128) as u64
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_string())
}

/// Removes a call from the owner's table when its caller stops waiting
/// before it resolved (deadline, or the caller's future was dropped).
struct OwnedCall<'a> {
    sched: &'a Sched,
    id: CallId,
}

impl Drop for OwnedCall<'_> {
    fn drop(&mut self) {
        self.sched.abandon(self.id);
    }
}

/// The leader of a memoized call; if it is dropped before finishing, its
/// followers are released to try on their own.
struct MemoLead<'a> {
    sched: &'a Sched,
    key: &'a MemoKey,
    done: bool,
}

impl MemoLead<'_> {
    fn finish(&mut self, outcome: &Outcome) {
        self.done = true;
        self.sched
            .memo
            .lock()
            .expect("memo lock")
            .finish(self.key, Some(outcome));
    }
}

impl Drop for MemoLead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.sched
                .memo
                .lock()
                .expect("memo lock")
                .finish(self.key, None);
        }
    }
}

/// Waiting for a slot back; if abandoned after a slot was granted, the slot
/// is passed on instead of leaking.
struct ResumeWait<'a> {
    sched: &'a Sched,
    waiting: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for ResumeWait<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        self.waiting.close();
        if self.waiting.try_recv().is_ok() {
            self.sched.release_slot();
        }
    }
}

struct SlotState {
    held: bool,
    /// Nested calls in progress; the slot is given back while any are.
    nested: u32,
}

/// The worker slot of one running call.
pub struct Slot {
    sched: Arc<Sched>,
    state: Mutex<SlotState>,
}

impl Slot {
    /// A nested call starts: the first one gives the slot back.
    pub(crate) fn enter_nested(&self) -> NestedCall<'_> {
        let release = {
            let mut state = self.state.lock().expect("slot lock");
            state.nested += 1;
            std::mem::replace(&mut state.held, false)
        };
        if release {
            self.sched.release_slot();
        }
        NestedCall {
            slot: self,
            done: false,
        }
    }

    fn release(&self) {
        let held = std::mem::replace(&mut self.state.lock().expect("slot lock").held, false);
        if held {
            self.sched.release_slot();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.state.get_mut().expect("slot lock").held {
            self.sched.release_slot();
        }
    }
}

/// One nested call in progress; `finish` takes the slot back when it is the
/// last one.
pub(crate) struct NestedCall<'a> {
    slot: &'a Slot,
    done: bool,
}

impl NestedCall<'_> {
    pub(crate) async fn finish(mut self) {
        self.done = true;
        let last = {
            let mut state = self.slot.state.lock().expect("slot lock");
            state.nested -= 1;
            state.nested == 0 && !state.held
        };
        if !last {
            return;
        }
        self.slot.sched.acquire_slot().await;
        let keep = {
            let mut state = self.slot.state.lock().expect("slot lock");
            // Another nested call may have started while we waited.
            let keep = state.nested == 0 && !state.held;
            if keep {
                state.held = true;
            }
            keep
        };
        if !keep {
            self.slot.sched.release_slot();
        }
    }
}

impl Drop for NestedCall<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.slot.state.lock().expect("slot lock").nested -= 1;
        }
    }
}
