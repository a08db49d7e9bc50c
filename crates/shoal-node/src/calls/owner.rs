//! The owner's side: a call made on this node stays in its
//! [`PendingTable`](super::pending::PendingTable) until it resolves.
//!
//! ```text
//!  call ─► memoized? ─► lead / follow / hit ─┐
//!    └──────────────────────────────────────┴► place ─► pending ─► Local: executor
//!                                                                └► Remote: Frame::Call
//!  resolve(id, outcome): first wins ─► caller      overloaded ─► place again, elsewhere
//!  executor lost ─► place again                     caller gone ─► Frame::Cancel
//! ```

use super::executor::QueuedCall;
use super::memo::{Lookup, MemoKey, memo_key};
use super::pending::{PendingCall, Where};
use super::{CallOptions, Calls};
use bytes::Bytes;
use libp2p::PeerId;
use serde_json::Value;
use shoal_proto::wire::MAX_PAYLOAD_BYTES;
use shoal_proto::{CallError, CallId, CallRequest, ErrorCode, Frame, JobRef, Outcome};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::oneshot;

/// A call about to enter the pending table.
pub(super) struct NewCall {
    pub function: Arc<str>,
    pub args: Bytes,
    pub script: Option<Arc<str>>,
    pub job: Option<JobRef>,
    pub deadline: Instant,
}

/// Where a call starts out: placed by load, or aimed at one node.
#[derive(Clone, Copy, Debug)]
enum Target {
    Placed,
    /// Internal calls aimed at one node fail rather than move when it is lost.
    Pinned(PeerId),
}

impl Calls {
    /// Runs `function` wherever it is best placed and returns its result.
    pub async fn call(
        self: &Arc<Self>,
        function: &str,
        args: Value,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let started = Instant::now();
        let outcome = self.call_unmetered(function, args, options).await;
        let code = outcome.as_ref().map(|_| ()).map_err(|e| e.code);
        self.metrics.record(code, started.elapsed());
        outcome
    }

    async fn call_unmetered(
        self: &Arc<Self>,
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
        let target = options.on.map_or(Target::Placed, Target::Pinned);
        let result = if self.is_memoized(function) {
            self.call_memoized(function, args, deadline, target, script, options.job)
                .await?
        } else {
            self.call_bytes(function, args, deadline, target, script, options.job)
                .await?
        };
        decode_result(function, &result)
    }

    /// Runs `function` on one given node; fails if that node is lost.
    pub async fn call_on(
        self: &Arc<Self>,
        peer: PeerId,
        function: &str,
        args: Value,
    ) -> Result<Value, CallError> {
        let deadline = Instant::now() + self.default_deadline;
        self.call_on_until(peer, function, args, deadline).await
    }

    /// [`call_on`](Self::call_on) with a deadline.
    pub async fn call_on_until(
        self: &Arc<Self>,
        peer: PeerId,
        function: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        let args = encode_args(function, &args)?;
        let result = self
            .call_bytes(function, args, deadline, Target::Pinned(peer), None, None)
            .await?;
        decode_result(function, &result)
    }

    pub(super) fn is_memoized(&self, function: &str) -> bool {
        if let Some(local) = self.registry.get(function) {
            return local.memoize;
        }
        self.peers.read(|peers| {
            peers
                .live()
                .any(|(_, info)| info.functions.get(function).copied().unwrap_or(false))
        })
    }

    async fn call_memoized(
        self: &Arc<Self>,
        function: &str,
        args: Bytes,
        deadline: Instant,
        target: Target,
        script: Option<Arc<str>>,
        job: Option<JobRef>,
    ) -> Outcome {
        let key = memo_key(&Arc::from(function), &args);
        loop {
            match self.memo.lookup(&key) {
                Lookup::Hit(value) => return Ok(value),
                Lookup::Follow(rx) => match tokio::time::timeout_at(deadline.into(), rx).await {
                    Ok(Ok(outcome)) => return outcome,
                    Ok(Err(_)) => continue, // the leader was cancelled: lead ourselves
                    Err(_) => return Err(deadline_error(function)),
                },
                Lookup::Lead => {
                    let mut lead = MemoLead {
                        calls: self,
                        key: &key,
                        done: false,
                    };
                    let outcome = self
                        .call_bytes(function, args.clone(), deadline, target, script, job)
                        .await;
                    lead.finish(&outcome);
                    return outcome;
                }
            }
        }
    }

    async fn call_bytes(
        self: &Arc<Self>,
        function: &str,
        args: Bytes,
        deadline: Instant,
        target: Target,
        script: Option<Arc<str>>,
        job: Option<JobRef>,
    ) -> Outcome {
        let at = match target {
            Target::Pinned(peer) if peer == self.me => Where::Local,
            Target::Pinned(peer) => Where::Remote(peer),
            Target::Placed => self
                .place(function, script.is_some(), &[])
                .ok_or_else(|| self.nowhere_error(function))?,
        };
        let call = NewCall {
            function: Arc::from(function),
            args,
            script,
            job,
            deadline,
        };
        let pinned = matches!(target, Target::Pinned(_));
        let (id, outcome) = self.admit(call, at, pinned)?;
        let _cancel_if_abandoned = AbandonOnDrop { calls: self, id };
        self.dispatch(&[(id, at)]).await;
        outcome_by(function, deadline, outcome).await
    }

    /// Enters a call placed at `at` in the pending table, unless the table
    /// is full; its outcome will come on the receiver.
    pub(super) fn admit(
        &self,
        call: NewCall,
        at: Where,
        pinned: bool,
    ) -> Result<(CallId, oneshot::Receiver<Outcome>), CallError> {
        let id = CallId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (reply, outcome) = oneshot::channel();
        let mut pending = self.pending.lock().expect("pending lock");
        if pending.len() >= self.max_pending {
            return Err(CallError::new(
                ErrorCode::Overloaded,
                format!(
                    "this node already waits for {} calls, its limit; '{}' was not started (try again later)",
                    pending.len(),
                    call.function
                ),
            ));
        }
        let call = PendingCall {
            function: call.function,
            args: call.args,
            script: call.script,
            job: call.job,
            deadline: call.deadline,
            at,
            pinned,
            refused_by: Vec::new(),
            reply,
        };
        pending.insert(id, call);
        Ok((id, outcome))
    }

    /// Hands pending calls to where they were placed: local ones to the
    /// executor, and each peer's calls in one write, so a fan-out wakes a
    /// peer once for all the calls it gets rather than once per call.
    pub(super) async fn dispatch(self: &Arc<Self>, placed: &[(CallId, Where)]) {
        let mut by_peer: Vec<(PeerId, Vec<Frame>)> = Vec::new();
        let mut index: HashMap<PeerId, usize> = HashMap::new();
        for &(id, at) in placed {
            let Some(queued) = self.queued_call(id) else {
                continue;
            };
            let Where::Remote(peer) = at else {
                self.submit(queued);
                continue;
            };
            let frame = Frame::Call(CallRequest {
                id,
                function: queued.function.to_string(),
                args: queued.args,
                budget_ms: remaining_ms(queued.deadline),
                script: queued.script.as_deref().map(str::to_string),
                job: queued.job,
                pinned: queued.pinned,
            });
            let slot = *index.entry(peer).or_insert_with(|| {
                by_peer.push((peer, Vec::new()));
                by_peer.len() - 1
            });
            by_peer[slot].1.push(frame);
        }
        // At once: a peer without a stream yet must not hold up the rest
        // while it is dialed.
        let sends = by_peer.iter().map(|(peer, frames)| async move {
            if let Err(error) = self.links.send_all(*peer, frames).await {
                tracing::warn!(%peer, %error, "cannot send calls; placing them elsewhere");
                self.on_link_lost(*peer).await;
            }
        });
        futures::future::join_all(sends).await;
    }

    /// A pending call as an executor takes it.
    fn queued_call(&self, id: CallId) -> Option<QueuedCall> {
        let pending = self.pending.lock().expect("pending lock");
        let call = pending.get(id)?;
        Some(QueuedCall {
            owner: self.me,
            id,
            function: Arc::clone(&call.function),
            args: call.args.clone(),
            script: call.script.clone(),
            job: call.job,
            deadline: call.deadline,
            pinned: call.pinned,
            arrived: Instant::now(),
        })
    }

    /// The call stream to `peer` broke: the cluster task has its calls
    /// placed again and suspects it until membership decides.
    pub(super) async fn on_link_lost(&self, peer: PeerId) {
        if self.unreachable.send(peer).await.is_err() {
            tracing::debug!(%peer, "link lost while the node stops");
        }
    }

    /// Places a pending call again, after its executor was lost or refused it.
    fn redispatch(self: &Arc<Self>, id: CallId) {
        let (function, pinned, shipped, refused) = {
            let pending = self.pending.lock().expect("pending lock");
            let Some(call) = pending.get(id) else {
                return;
            };
            (
                Arc::clone(&call.function),
                call.pinned,
                call.script.is_some(),
                call.refused_by.clone(),
            )
        };
        if pinned {
            let error = if refused.is_empty() {
                format!("the node asked to run '{function}' was lost before it answered")
            } else {
                format!("the node asked to run '{function}' has a full queue")
            };
            let code = if refused.is_empty() {
                ErrorCode::Unavailable
            } else {
                ErrorCode::Overloaded
            };
            return self.settle(id, Err(CallError::new(code, error)));
        }
        let Some(at) = self.place(&function, shipped, &refused) else {
            let error = if refused.is_empty() {
                self.nowhere_error(&function)
            } else {
                CallError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "every node that can run '{function}' has a full queue ({} refused it); try again later",
                        refused.len()
                    ),
                )
            };
            return self.settle(id, Err(error));
        };
        if !self.pending.lock().expect("pending lock").move_to(id, at) {
            return;
        }
        self.stats.redispatched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%id, %function, ?at, "placed a call again");
        match at {
            Where::Local => {
                if let Some(queued) = self.queued_call(id) {
                    self.submit(queued);
                }
            }
            Where::Remote(peer) => {
                let calls = Arc::clone(self);
                self.tasks
                    .spawn(async move { calls.dispatch(&[(id, Where::Remote(peer))]).await });
            }
        }
    }

    /// Re-places the pending calls held by peers this node holds dead. A
    /// call can reach such a peer after its death was handled (a steal
    /// moved it there, a dispatch crossed the news), and nothing else would
    /// move it on: it waited for its deadline.
    pub(crate) fn redispatch_from_the_dead(self: &Arc<Self>) {
        let holders = self.pending.lock().expect("pending lock").holders();
        let dead: Vec<PeerId> = self.peers.read(|peers| {
            holders
                .into_iter()
                .filter(|peer| peers.is_dead(peer))
                .collect()
        });
        for peer in dead {
            self.redispatch_from(peer);
        }
    }

    /// Re-places every pending call held by `peer`.
    pub(crate) fn redispatch_from(self: &Arc<Self>, peer: PeerId) {
        let lost = self.pending.lock().expect("pending lock").held_by(peer);
        if !lost.is_empty() {
            tracing::info!(%peer, calls = lost.len(), "node lost; running its calls elsewhere");
        }
        for id in lost {
            self.redispatch(id);
        }
    }

    /// An outcome arrived from `from`. The first outcome of a call wins and
    /// later ones are dropped — except `overloaded` from the place that
    /// holds the call, which sends the call elsewhere.
    pub(super) fn resolve(self: &Arc<Self>, id: CallId, outcome: Outcome, from: Where) {
        if let Err(error) = &outcome
            && error.code == ErrorCode::Overloaded
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if let Some(call) = pending.get(id) {
                // From elsewhere, the refusal is stale: the call moved on
                // (a thief never refuses what it stole).
                if call.at == from {
                    pending.refused(id, from);
                    drop(pending);
                    self.redispatch(id);
                }
                return;
            }
        }
        self.settle(id, outcome);
    }

    /// Hands the call's outcome to its caller, unless it already has one.
    fn settle(&self, id: CallId, outcome: Outcome) {
        let call = self.pending.lock().expect("pending lock").remove(id);
        match call {
            Some(call) => {
                let _ = call.reply.send(outcome);
            }
            None => {
                self.stats
                    .duplicates_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records that a pending call held at `from` now runs at `to` (it was
    /// stolen); a notice from a node that does not hold it is ignored.
    pub(super) fn moved(&self, id: CallId, from: Where, to: Where) {
        let here = |at: Where| match at {
            Where::Remote(peer) if peer == self.me => Where::Local,
            at => at,
        };
        let moved = self
            .pending
            .lock()
            .expect("pending lock")
            .move_from(id, here(from), here(to));
        if !moved {
            tracing::debug!(%id, ?from, ?to, "move notice for a call not held there; ignored");
        }
    }

    /// The caller stopped waiting: forget the call and stop it where it runs.
    fn abandon(&self, id: CallId) {
        let Some(call) = self.pending.lock().expect("pending lock").remove(id) else {
            return;
        };
        match call.at {
            Where::Local => {
                self.executor.cancel(self.me, id);
            }
            Where::Remote(peer) => self.links.send_soon(peer, Frame::Cancel { id }),
        }
    }

    /// Every pending call fails now instead of hanging (the node stops).
    pub(super) fn fail_all_pending(&self) {
        let calls = self.pending.lock().expect("pending lock").drain();
        for call in calls {
            let error = CallError::new(
                ErrorCode::ShuttingDown,
                format!("the node stopped before '{}' finished", call.function),
            );
            let _ = call.reply.send(Err(error));
        }
    }

    /// Calls pending on this node as owner.
    pub fn pending_calls(&self) -> usize {
        self.pending.lock().expect("pending lock").len()
    }
}

pub(super) fn encode_args(function: &str, args: &Value) -> Result<Bytes, CallError> {
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

pub(super) fn decode_result(function: &str, result: &[u8]) -> Result<Value, CallError> {
    serde_json::from_slice(result).map_err(|e| {
        CallError::new(
            ErrorCode::Internal,
            format!("result of '{function}' is not valid JSON: {e}"),
        )
    })
}

/// Waits for a pending call's outcome until its deadline.
pub(super) async fn outcome_by(
    function: &str,
    deadline: Instant,
    outcome: oneshot::Receiver<Outcome>,
) -> Outcome {
    match tokio::time::timeout_at(deadline.into(), outcome).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(CallError::new(
            ErrorCode::ShuttingDown,
            "the node is shutting down",
        )),
        Err(_) => Err(deadline_error(function)),
    }
}

fn deadline_error(function: &str) -> CallError {
    CallError::new(
        ErrorCode::DeadlineExceeded,
        format!("call to '{function}' did not finish before its deadline"),
    )
}

/// Milliseconds until `deadline`: the budget a call carries to its executor.
pub(super) fn remaining_ms(deadline: Instant) -> u64 {
    deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(u64::MAX as u128) as u64
}

/// Removes a call from the pending table when its caller stops waiting
/// before it resolved (deadline, or the caller's future was dropped).
pub(super) struct AbandonOnDrop<'a> {
    pub(super) calls: &'a Calls,
    pub(super) id: CallId,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.calls.abandon(self.id);
    }
}

/// The leader of a memoized call; if it is dropped before finishing, its
/// followers are released to try on their own.
struct MemoLead<'a> {
    calls: &'a Calls,
    key: &'a MemoKey,
    done: bool,
}

impl MemoLead<'_> {
    fn finish(&mut self, outcome: &Outcome) {
        self.done = true;
        self.calls.memo.finish(self.key, Some(outcome));
    }
}

impl Drop for MemoLead<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.calls.memo.finish(self.key, None);
        }
    }
}
