//! What a running function is handed: who runs it, until when, and a way to
//! call other functions.
//!
//! The context reaches the node only through [`CallHost`], implemented by
//! the executor for each running call. While a nested call is awaited, the
//! host gives the caller's worker slot back, so a recursive computation
//! spread over the cluster cannot tie up every slot waiting on itself.

use futures::future::BoxFuture;
use libp2p::PeerId;
use serde_json::Value;
use shoal_proto::{CallError, JobRef, NodeId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Least time between two progress reports of one call, so a chatty loop
/// cannot flood Raft.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// A function's report on the durable job it runs for.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressReport {
    pub job: JobRef,
    pub fraction: f64,
    pub message: String,
}

/// The node as one running call sees it.
pub trait CallHost: Send + Sync + 'static {
    /// Calls `function` for the running call — anywhere in the cluster, or
    /// on one node (`on`, for internal functions aimed at a peer); the
    /// call's worker slot is free while this waits.
    fn call_nested<'a>(
        &'a self,
        function: &'a str,
        args: Value,
        deadline: Instant,
        on: Option<PeerId>,
    ) -> BoxFuture<'a, Result<Value, CallError>>;

    /// The node running the call.
    fn node_id(&self) -> &NodeId;

    /// Passes a progress report on towards the job table.
    fn report_progress(&self, report: ProgressReport);
}

/// Handed to a running function: who runs it, until when, and a way to call
/// other functions. Clones share the call.
#[derive(Clone)]
pub struct CallContext {
    host: Arc<dyn CallHost>,
    deadline: Instant,
    /// The durable job this call runs for, if any.
    job: Option<JobRef>,
    /// When progress was last reported.
    progress_at: Arc<Mutex<Option<Instant>>>,
}

impl CallContext {
    pub(crate) fn new(host: Arc<dyn CallHost>, deadline: Instant, job: Option<JobRef>) -> Self {
        CallContext {
            host,
            deadline,
            job,
            progress_at: Arc::default(),
        }
    }

    /// Calls a function anywhere in the cluster. The caller's worker slot is
    /// free while this waits. The nested call inherits the caller's deadline.
    pub async fn call(&self, function: &str, args: Value) -> Result<Value, CallError> {
        self.host
            .call_nested(function, args, self.deadline, None)
            .await
    }

    /// Calls `function` on one given node, like [`call`](Self::call)
    /// otherwise; fails if that node is lost.
    pub(crate) async fn call_on(
        &self,
        peer: PeerId,
        function: &str,
        args: Value,
    ) -> Result<Value, CallError> {
        self.host
            .call_nested(function, args, self.deadline, Some(peer))
            .await
    }

    /// The node running this call.
    pub fn node_id(&self) -> NodeId {
        self.host.node_id().clone()
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reports progress of the durable job this call runs for; outside a
    /// job it does nothing. Reports come at most every 200 ms (the final
    /// `1.0` always goes through).
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        let Some(job) = self.job else {
            return;
        };
        {
            let mut last = self.progress_at.lock().expect("progress lock");
            let now = Instant::now();
            let too_soon = last.is_some_and(|at| now.duration_since(at) < PROGRESS_INTERVAL);
            if too_soon && fraction < 1.0 {
                return;
            }
            *last = Some(now);
        }
        self.host.report_progress(ProgressReport {
            job,
            fraction,
            message: message.into(),
        });
    }
}
