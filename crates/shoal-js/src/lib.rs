//! The JavaScript engine pool: user functions written in JavaScript run here
//! exactly as native functions run in the node.
//!
//! ```text
//!   EnginePool::call(name, args, caller)
//!        │  (least busy worker)
//!        ▼
//!   worker thread ── owns one QuickJS runtime + context, reused across calls
//!        │  runs the function; `await shoal.call(...)` returns a promise
//!        │  whose work is handed to `caller` (the node) on the tokio runtime;
//!        │  the worker meanwhile runs other calls
//!        ▼
//!   result JSON ──► back to the caller
//! ```
//!
//! Scripts get `shoal.register(name, fn, {memoize})`, `shoal.call(name,
//! args)`, `shoal.progress(fraction, message)` and `console.log`; nothing
//! else — no file system, network or process access. Each call runs under
//! a time limit (an interrupt handler stops JavaScript that runs too long
//! without yielding) and each engine under a memory limit.
//!
//! This crate knows nothing about networking: nested calls go through the
//! [`NestedCaller`] the node hands in with each call.

mod engine;
mod pool;

pub use pool::{EngineConfig, EnginePool};

use futures::future::BoxFuture;
use serde_json::Value;
use std::time::Duration;

/// A script: its file name (for messages) and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub source: String,
}

impl Script {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Script {
        Script {
            name: name.into(),
            source: source.into(),
        }
    }

    /// The script's identity: the SHA-256 of its source, in hex.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.source.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A function a script registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredFunction {
    pub name: String,
    pub memoize: bool,
}

/// How JavaScript reaches the rest of the cluster: given by the node with
/// each call, so nested calls run in that call's context.
pub trait NestedCaller: Send + Sync + 'static {
    /// Calls a function anywhere in the cluster; errors are messages for
    /// the script.
    fn call(&self, function: String, args: Value) -> BoxFuture<'static, Result<Value, String>>;

    /// Progress of the job this call runs for; calls outside jobs ignore it.
    fn progress(&self, _fraction: f64, _message: String) {}
}

/// Why a script could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("script {script}: {message}")]
pub struct ScriptError {
    pub script: String,
    pub message: String,
}

/// Why a JavaScript call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsError {
    /// The function threw (or its promise rejected).
    #[error("{message}{}", stack.as_deref().map(|s| format!("\n{s}")).unwrap_or_default())]
    Thrown {
        message: String,
        stack: Option<String>,
    },
    #[error("no script registered a function named '{0}'")]
    UnknownFunction(String),
    #[error("ran longer than the limit of {0:?} without yielding, and was interrupted")]
    TimeLimit(Duration),
    #[error("exceeded the script memory limit of {} MiB", .0 / (1024 * 1024))]
    MemoryLimit(usize),
    #[error("arguments are not valid JSON for JavaScript: {0}")]
    BadArguments(String),
    #[error("the result cannot be sent as JSON: {0}")]
    BadResult(String),
    #[error("the JavaScript engine stopped")]
    EngineStopped,
}

/// Times an expression in a bare QuickJS runtime (no pool, no threads, no
/// `shoal` beyond a stub), after evaluating `setup`: the baseline that
/// `shoal bench js` compares the pool against.
pub fn time_bare(setup: &str, expression: &str) -> Result<Duration, String> {
    let runtime = rquickjs::Runtime::new().map_err(|e| e.to_string())?;
    let context = rquickjs::Context::full(&runtime).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        ctx.eval::<(), _>("var shoal = { register() {}, call() {}, progress() {}, node: 'bare' };")
            .map_err(|e| e.to_string())?;
        ctx.eval::<(), _>(setup).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        ctx.eval::<rquickjs::Value, _>(expression)
            .map_err(|e| e.to_string())?;
        Ok(started.elapsed())
    })
}
