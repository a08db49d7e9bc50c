//! Running a call on this node: take a slot (or wait in the queue), run the
//! function with a [`CallContext`], and deliver the outcome to the owner.
//!
//! A running call holds its slot except while it awaits nested calls: the
//! first nested call gives the slot back, the last one to finish asks for
//! it again, and a call resuming this way goes before queued ones.

use super::CallOptions;
use super::Calls;
use super::context::{CallContext, CallHost, ProgressReport};
use super::executor::{Offered, QueuedCall};
use super::memo::memo_key;
use super::registry::{Body, HandBack};
use super::scripts::GET_SCRIPT;
use super::work_queue::Admit;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use libp2p::PeerId;
use serde_json::{Value, json};
use shoal_proto::wire::MAX_PAYLOAD_BYTES;
use shoal_proto::{CallError, CallId, ErrorCode, NodeId, Outcome};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

impl Calls {
    /// Offers a call to this node's executor: it starts, waits its turn, or
    /// goes back to its owner as `overloaded` when the queue is full.
    pub(super) fn submit(self: &Arc<Self>, call: QueuedCall) {
        // Internal functions (queue, script fetch) answer in microseconds and
        // must work even on nodes without slots, so they skip the queue.
        if self
            .registry
            .get(&call.function)
            .is_some_and(|f| f.internal)
        {
            return self.spawn_run(call, false);
        }
        let admitted = match self.executor.admit(call) {
            Offered::Admitted(admitted) => admitted,
            Offered::Draining(call) => return self.hand_back(call, "is draining"),
        };
        match admitted {
            Admit::Start(call) => self.start(call),
            Admit::Queued => {}
            Admit::Full(call) => {
                self.stats
                    .refused_overloaded
                    .fetch_add(1, Ordering::Relaxed);
                self.hand_back(call, "has a full queue");
            }
        }
    }

    /// Gives a call that did not start back to its owner as `overloaded`,
    /// which places it elsewhere.
    pub(super) fn hand_back(self: &Arc<Self>, call: QueuedCall, why: &str) {
        let what = format!("'{}' goes elsewhere", call.function);
        self.send_back(call.owner, call.id, why, &what, call.deadline);
    }

    /// Tells `owner` that this node `why` and will not run call `id`, as
    /// `overloaded`, which has the owner place it elsewhere; tries until
    /// `until` (see [`deliver`](super::deliver)).
    fn send_back(
        self: &Arc<Self>,
        owner: PeerId,
        id: CallId,
        why: &str,
        what: &str,
        until: Instant,
    ) {
        let message = format!("node {} {why}; {what}", self.node_id.short());
        let error = CallError::new(ErrorCode::Overloaded, message);
        let calls = Arc::clone(self);
        self.tasks.spawn(async move {
            calls.deliver(owner, id, Err(error), until).await;
        });
    }

    /// Stops the calls `owner` made, queued or running (it left the
    /// cluster), and gives each back to it as `overloaded`.
    pub(super) fn give_back_calls_of(self: &Arc<Self>, owner: PeerId) {
        let (queued, running) = self.executor.drop_owner(owner);
        if queued.is_empty() && running.is_empty() {
            return;
        }
        tracing::info!(
            %owner,
            queued = queued.len(),
            running = running.len(),
            "stopped the calls of a node that left"
        );
        let why = "took the caller for dead";
        for call in queued {
            self.hand_back(call, why);
        }
        // The owner may come back and wait for these; how long, only it
        // knows.
        let until = Instant::now() + self.default_deadline;
        for id in running {
            self.send_back(
                owner,
                id,
                why,
                "the call was stopped and goes elsewhere",
                until,
            );
        }
    }

    /// Runs a call that holds a slot.
    pub(super) fn start(self: &Arc<Self>, call: QueuedCall) {
        self.spawn_run(call, true);
    }

    fn spawn_run(self: &Arc<Self>, call: QueuedCall, holds_slot: bool) {
        // Recorded before the task exists, so that its `finished` always
        // comes after: a call recorded late would stay "running" for good.
        let (abort, registration) = AbortHandle::new_pair();
        self.executor.started(call.owner, call.id, abort);
        // Made before the task too: an abort before its first poll drops
        // it, and with it the slot it holds.
        let running = Arc::new(RunningCall {
            calls: Arc::clone(self),
            slot: Mutex::new(SlotState {
                held: holds_slot,
                nested: 0,
                reacquiring: false,
            }),
        });
        let run = Abortable::new(Arc::clone(self).run(call, running), registration);
        self.tasks.spawn(async move {
            let _ = run.await;
        });
    }

    async fn run(self: Arc<Self>, call: QueuedCall, running: Arc<RunningCall>) {
        let started = Instant::now();
        let outcome = self.execute(&call, &running).await;
        running.release();
        self.stats.record_run(started.elapsed());
        self.executor.finished(call.owner, call.id);
        self.deliver(call.owner, call.id, outcome, call.deadline)
            .await;
    }

    async fn execute(self: &Arc<Self>, call: &QueuedCall, running: &Arc<RunningCall>) -> Outcome {
        let name = &call.function;
        if self.registry.get(name).is_none()
            && let Some(hash) = &call.script
        {
            // The call ships its script and this node has not seen it yet.
            // Boxed: fetching is rare, and its future (a whole call) would
            // otherwise make every running call's task that much larger.
            let fetch = self.call_on(call.owner, GET_SCRIPT, json!({ "hash": hash.as_ref() }));
            Box::pin(self.scripts.ensure(hash, fetch)).await?;
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
        let memo_key = function.memoize.then(|| memo_key(name, &call.args));
        if let Some(key) = &memo_key
            && let Some(value) = self.memo.get(key)
        {
            return Ok(value);
        }
        let args: Value = serde_json::from_slice(&call.args).map_err(|e| {
            CallError::new(
                ErrorCode::InvalidArguments,
                format!("arguments of '{name}' are not valid JSON: {e}"),
            )
        })?;
        let result = match &function.body {
            Body::Async(body) => {
                let host: Arc<dyn CallHost> = running.clone();
                let ctx = CallContext::new(host, call.deadline, call.job);
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
            Ok(Err(error)) if error.is::<HandBack>() => {
                return Err(CallError::new(
                    ErrorCode::Overloaded,
                    format!("node {node} handed '{name}' back: {error}"),
                ));
            }
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
            self.memo.store(key, bytes.clone());
        }
        Ok(bytes)
    }

    /// A peer cancelled a call it owns.
    pub(super) fn cancel_call(&self, owner: PeerId, id: CallId) {
        self.executor.cancel(owner, id);
    }

    fn release_slot(self: &Arc<Self>) {
        match self.executor.release() {
            Some(call) => self.start(call),
            // Free (or a resumed call's): a busy thief may look for work.
            None => self.slot_idle.notify_one(),
        }
    }

    async fn acquire_slot(self: &Arc<Self>) {
        let waiting = match self.executor.resume() {
            Ok(()) => return,
            Err(waiting) => waiting,
        };
        let mut wait = ResumeWait {
            calls: self,
            waiting,
            granted: false,
        };
        if (&mut wait.waiting).await.is_ok() {
            wait.granted = true;
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_string())
}

struct SlotState {
    held: bool,
    /// Nested calls in progress; the slot is given back while any are.
    nested: u32,
    /// One of the call's nested calls is waiting for the slot back; the
    /// others leave it to that one. Were two to wait, each with its own
    /// place in line, the call could get the slot through the first and
    /// then wait, holding it, for the second's turn.
    reacquiring: bool,
}

/// One call running on this node: its slot, and the host its context
/// reaches the node through.
struct RunningCall {
    calls: Arc<Calls>,
    slot: Mutex<SlotState>,
}

impl RunningCall {
    /// A nested call starts: the first one gives the slot back.
    fn enter_nested(&self) -> NestedCall<'_> {
        let release = {
            let mut state = self.slot.lock().expect("slot lock");
            state.nested += 1;
            std::mem::replace(&mut state.held, false)
        };
        if release {
            self.calls.release_slot();
        }
        NestedCall {
            running: self,
            done: false,
        }
    }

    /// The call ended: its slot, if it holds it, goes to the next call.
    fn release(&self) {
        let held = std::mem::replace(&mut self.slot.lock().expect("slot lock").held, false);
        if held {
            self.calls.release_slot();
        }
    }
}

impl Drop for RunningCall {
    fn drop(&mut self) {
        // An aborted call never reached `release`.
        if self.slot.get_mut().expect("slot lock").held {
            self.calls.release_slot();
        }
    }
}

impl CallHost for RunningCall {
    fn call_nested<'a>(
        &'a self,
        function: &'a str,
        args: Value,
        deadline: Instant,
        on: Option<PeerId>,
    ) -> BoxFuture<'a, Result<Value, CallError>> {
        Box::pin(async move {
            let nested = self.enter_nested();
            let result = match on {
                Some(peer) => {
                    self.calls
                        .call_on_until(peer, function, args, deadline)
                        .await
                }
                None => {
                    let options = CallOptions {
                        deadline: Some(deadline),
                        script: None,
                        job: None,
                        on: None,
                    };
                    self.calls.call(function, args, options).await
                }
            };
            nested.finish().await;
            result
        })
    }

    fn node_id(&self) -> &NodeId {
        &self.calls.node_id
    }

    fn report_progress(&self, report: ProgressReport) {
        match self.calls.progress.try_send(report) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(report)) => {
                tracing::debug!(
                    job = report.job.id,
                    "progress report dropped: the recorder is behind"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// One nested call in progress; `finish` takes the slot back when it is the
/// last one.
struct NestedCall<'a> {
    running: &'a RunningCall,
    done: bool,
}

impl NestedCall<'_> {
    async fn finish(mut self) {
        self.done = true;
        let last = {
            let mut state = self.running.slot.lock().expect("slot lock");
            state.nested -= 1;
            let last = state.nested == 0 && !state.held && !state.reacquiring;
            state.reacquiring |= last;
            last
        };
        if !last {
            return;
        }
        let reacquiring = Reacquiring(self.running);
        let calls = &self.running.calls;
        calls.acquire_slot().await;
        drop(reacquiring);
        let keep = {
            let mut state = self.running.slot.lock().expect("slot lock");
            // Another nested call may have started while we waited.
            let keep = state.nested == 0 && !state.held;
            if keep {
                state.held = true;
            }
            keep
        };
        if !keep {
            calls.release_slot();
        }
    }
}

/// A nested call waiting for the slot back; dropped, also when the wait is
/// abandoned, it lets another nested call of the same call wait instead.
struct Reacquiring<'a>(&'a RunningCall);

impl Drop for Reacquiring<'_> {
    fn drop(&mut self) {
        self.0.slot.lock().expect("slot lock").reacquiring = false;
    }
}

impl Drop for NestedCall<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.running.slot.lock().expect("slot lock").nested -= 1;
        }
    }
}

/// Waiting for a slot back; if abandoned after a slot was granted, the slot
/// is passed on instead of leaking.
struct ResumeWait<'a> {
    calls: &'a Arc<Calls>,
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
            self.calls.release_slot();
        }
    }
}
