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
//!
//! The modules, from the caller inwards:
//!
//! - `script`: a script and the functions it registered;
//! - `nested_caller`: how a running script reaches back into the node;
//! - `pool`: the [`EnginePool`] the node holds, which picks a worker and
//!   waits for its answer;
//! - `engine`: one worker thread and the QuickJS runtime it owns;
//! - `error`: why loading a script or running a call failed;
//! - `bare`: a pool-less runtime, the baseline of `shoal bench js`.

mod bare;
mod engine;
mod error;
mod globals;
mod nested_caller;
mod pool;
mod script;
mod state;

pub use bare::time_bare;
pub use error::{JsError, ScriptError};
pub use nested_caller::NestedCaller;
pub use pool::{EngineConfig, EnginePool};
pub use script::{RegisteredFunction, Script};
