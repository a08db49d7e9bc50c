//! What a worker and the script-facing functions share: the worker's
//! messages, its limits, and the state of the calls it runs.

use crate::error::{JsError, ScriptError};
use crate::nested_caller::NestedCaller;
use crate::script::{RegisteredFunction, Script};
use rquickjs::{Function, Persistent, Promise};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(crate) type JsValue<'js> = rquickjs::Value<'js>;

/// What a worker is asked to do.
pub(crate) enum Msg {
    Load {
        script: Script,
        reply: oneshot::Sender<Result<Vec<RegisteredFunction>, ScriptError>>,
    },
    Run {
        id: u64,
        function: String,
        /// Arguments as JSON text.
        args: String,
        caller: Arc<dyn NestedCaller>,
        reply: oneshot::Sender<Result<String, JsError>>,
    },
    Cancel {
        id: u64,
    },
    /// A `shoal.call` made by a script finished.
    Nested {
        id: u64,
        result: Result<serde_json::Value, String>,
    },
}

/// Limits of one engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub memory: usize,
    pub time: Duration,
    pub stack: usize,
}

/// A call in progress on this worker: kept until its function returned,
/// or its promise settled, or the caller cancelled it.
pub(crate) struct RunningCall {
    pub(crate) function: String,
    pub(crate) caller: Arc<dyn NestedCaller>,
    pub(crate) reply: oneshot::Sender<Result<String, JsError>>,
    /// Set when the function returned a promise still to settle.
    pub(crate) promise: Option<Persistent<Promise<'static>>>,
}

/// A `shoal.call` waiting for its result.
pub(crate) struct NestedWait {
    /// The running call that made it.
    pub(crate) call: u64,
    pub(crate) resolve: Persistent<Function<'static>>,
    pub(crate) reject: Persistent<Function<'static>>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) functions: HashMap<String, Persistent<Function<'static>>>,
    /// Functions registered by the script being loaded.
    pub(crate) registered: Vec<RegisteredFunction>,
    pub(crate) calls: HashMap<u64, RunningCall>,
    pub(crate) nested: HashMap<u64, NestedWait>,
    /// The call whose JavaScript is running, so `shoal.call` and
    /// `console.log` know whom they serve.
    pub(crate) current_call: Option<u64>,
    pub(crate) next_nested: u64,
}

/// What the script-facing functions share with the worker.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) state: Rc<RefCell<State>>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) inbox: mpsc::Sender<Msg>,
}
