//! Functions by name: native async Rust closures, blocking closures for
//! CPU-bound work, and (later) functions registered by scripts.
//!
//! A function gets a [`CallContext`] with which it calls other functions.
//! While those nested calls are awaited the function gives its worker slot
//! back, so a recursive computation spread over the cluster cannot tie up
//! every slot waiting on itself.

use crate::sched::{CallOptions, Sched};
use futures::future::BoxFuture;
use serde_json::Value;
use shoal_proto::{CallError, FunctionInfo, NodeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// What a function may fail with; any error type converts with `?`.
pub type FnError = Box<dyn std::error::Error + Send + Sync>;
pub type FnResult = Result<Value, FnError>;

type AsyncBody = dyn Fn(CallContext, Value) -> BoxFuture<'static, FnResult> + Send + Sync;
type BlockingBody = dyn Fn(Value) -> FnResult + Send + Sync;

/// How a function runs.
#[derive(Clone)]
pub enum Body {
    /// On the node's async runtime; may await nested calls.
    Async(Arc<AsyncBody>),
    /// On a blocking thread: for CPU-bound work that would stall the
    /// runtime's network tasks.
    Blocking(Arc<BlockingBody>),
}

/// A registered function.
#[derive(Clone)]
pub struct Function {
    pub name: Arc<str>,
    pub body: Body,
    pub memoize: bool,
    /// Internal functions (the distributed queue's) are on every node and
    /// are not advertised in heartbeats.
    pub internal: bool,
    /// Hash of the script that defined it (JavaScript functions only).
    pub script: Option<Arc<str>>,
}

impl Function {
    pub fn new_async<F, Fut>(name: &str, f: F) -> Function
    where
        F: Fn(CallContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = FnResult> + Send + 'static,
    {
        Function {
            name: Arc::from(name),
            body: Body::Async(Arc::new(move |ctx, args| Box::pin(f(ctx, args)))),
            memoize: false,
            internal: false,
            script: None,
        }
    }

    pub fn new_blocking<F>(name: &str, f: F) -> Function
    where
        F: Fn(Value) -> FnResult + Send + Sync + 'static,
    {
        Function {
            name: Arc::from(name),
            body: Body::Blocking(Arc::new(f)),
            memoize: false,
            internal: false,
            script: None,
        }
    }
}

/// The functions of one node.
#[derive(Default)]
pub struct Registry {
    functions: RwLock<HashMap<Arc<str>, Arc<Function>>>,
}

impl Registry {
    pub fn insert(&self, function: Function) {
        let name = Arc::clone(&function.name);
        self.functions
            .write()
            .expect("registry lock")
            .insert(name, Arc::new(function));
    }

    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.functions
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// What this node offers, for its heartbeat.
    pub fn advertised(&self) -> Vec<FunctionInfo> {
        let functions = self.functions.read().expect("registry lock");
        let mut infos: Vec<FunctionInfo> = functions
            .values()
            .filter(|f| !f.internal)
            .map(|f| FunctionInfo {
                name: f.name.to_string(),
                memoize: f.memoize,
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos.truncate(shoal_proto::heartbeat::MAX_ADVERTISED_FUNCTIONS);
        infos
    }
}

/// Handed to a running function: who runs it, until when, and a way to call
/// other functions.
#[derive(Clone)]
pub struct CallContext {
    pub(crate) sched: Arc<Sched>,
    pub(crate) slot: Arc<crate::sched::Slot>,
    pub(crate) deadline: Instant,
    /// The durable job this call runs for, if any.
    pub(crate) job: Option<shoal_proto::JobRef>,
    /// When progress was last reported; reports closer together than
    /// [`PROGRESS_INTERVAL`] are dropped, so a chatty loop cannot flood Raft.
    pub(crate) progress_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Least time between two progress reports of one call.
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl CallContext {
    /// Calls a function anywhere in the cluster. The caller's worker slot is
    /// free while this waits. The nested call inherits the caller's deadline.
    pub async fn call(&self, function: &str, args: Value) -> Result<Value, CallError> {
        let options = CallOptions {
            deadline: Some(self.deadline),
            script: None,
            job: None,
        };
        let nested = self.slot.enter_nested();
        let result = self.sched.call(function, args, options).await;
        nested.finish().await;
        result
    }

    /// The node running this call.
    pub fn node_id(&self) -> NodeId {
        self.sched.node_id().clone()
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
        self.sched.report_progress(job, fraction, message.into());
    }
}
