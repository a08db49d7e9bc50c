//! Functions by name: native async Rust closures, blocking closures for
//! CPU-bound work, and functions registered by scripts (see
//! [`scripts`](super::scripts)).
//!
//! A function gets a [`CallContext`] with which it calls other functions.

use super::context::CallContext;
use futures::future::BoxFuture;
use serde_json::Value;
use shoal_proto::FunctionInfo;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

/// What a function may fail with; any error type converts with `?`.
pub type FnError = Box<dyn std::error::Error + Send + Sync>;
pub type FnResult = Result<Value, FnError>;

type AsyncBody = dyn Fn(CallContext, Value) -> BoxFuture<'static, FnResult> + Send + Sync;
type BlockingBody = dyn Fn(Value) -> FnResult + Send + Sync;

/// What a function fails with to hand its call back: it could not run
/// here after all (its worker process went away), so the call's owner
/// places it elsewhere instead of reporting a failure.
#[derive(Debug)]
pub struct HandBack(pub String);

impl std::fmt::Display for HandBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandBack {}

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

    pub fn remove(&self, name: &str) {
        self.functions.write().expect("registry lock").remove(name);
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
