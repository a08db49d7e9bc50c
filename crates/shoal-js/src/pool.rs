//! The pool of engine workers: one thread, one QuickJS runtime each.
//!
//! The pool owns the workers' inboxes and nothing else: a call goes to the
//! worker with the fewest calls in flight, as a message carrying a
//! `oneshot` for the answer; loading a script goes to every worker.

use crate::engine;
use crate::error::{JsError, ScriptError};
use crate::nested_caller::NestedCaller;
use crate::script::{RegisteredFunction, Script};
use crate::state::{Limits, Msg};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages queued per worker; bounded so a flood of calls waits instead of
/// growing memory.
const WORKER_INBOX: usize = 1024;

/// Sizes and limits of the pool.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Worker threads, each with its own engine (usually the node's slots).
    pub workers: usize,
    /// Heap limit of each engine, in bytes.
    pub memory_limit: usize,
    /// How long a script may run without yielding before it is interrupted.
    pub time_limit: Duration,
    /// Native stack for JavaScript recursion, in bytes.
    pub max_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: 256 * 1024 * 1024,
            time_limit: Duration::from_secs(60),
            max_stack: 1024 * 1024,
        }
    }
}

struct Worker {
    inbox: mpsc::Sender<Msg>,
    /// Calls sent and not yet answered; the least busy worker gets the next.
    in_flight: Arc<AtomicUsize>,
}

/// Worker threads running JavaScript. Dropping the pool stops them.
pub struct EnginePool {
    workers: Vec<Worker>,
    next_id: AtomicU64,
    config: EngineConfig,
    /// Loaded scripts by hash, and the functions each registered.
    scripts: Mutex<HashMap<String, Vec<RegisteredFunction>>>,
}

impl EnginePool {
    /// Starts the workers; nested calls of scripts are spawned on `runtime`.
    /// Scripts see `host` as `shoal.node`.
    pub fn start(config: EngineConfig, host: &str, runtime: tokio::runtime::Handle) -> EnginePool {
        let limits = Limits {
            memory: config.memory_limit,
            time: config.time_limit,
            stack: config.max_stack,
        };
        let workers = (0..config.workers.max(1))
            .map(|index| {
                let (inbox, messages) = mpsc::channel(WORKER_INBOX);
                let own = inbox.clone();
                let runtime = runtime.clone();
                let host = host.to_string();
                std::thread::Builder::new()
                    .name(format!("shoal-js-{index}"))
                    .spawn(move || engine::run(limits, host, runtime, messages, own))
                    .expect("spawn a JavaScript worker thread");
                Worker {
                    inbox,
                    in_flight: Arc::default(),
                }
            })
            .collect();
        EnginePool {
            workers,
            next_id: AtomicU64::new(0),
            config,
            scripts: Mutex::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Loads a script into every engine; returns the functions it registered.
    /// Loading the same source again is a no-op.
    pub async fn load(&self, script: &Script) -> Result<Vec<RegisteredFunction>, ScriptError> {
        let hash = script.hash();
        if let Some(functions) = self.scripts.lock().expect("scripts lock").get(&hash) {
            return Ok(functions.clone());
        }
        let mut replies = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            let (reply, answer) = oneshot::channel();
            let load = Msg::Load {
                script: script.clone(),
                reply,
            };
            worker.inbox.send(load).await.map_err(|_| stopped(script))?;
            replies.push(answer);
        }
        let mut registered = None;
        for answer in replies {
            let functions = answer.await.map_err(|_| stopped(script))??;
            registered.get_or_insert(functions);
        }
        let registered = registered.unwrap_or_default();
        self.scripts
            .lock()
            .expect("scripts lock")
            .insert(hash, registered.clone());
        Ok(registered)
    }

    /// Whether a script with this hash is loaded.
    pub fn has_script(&self, hash: &str) -> bool {
        self.scripts
            .lock()
            .expect("scripts lock")
            .contains_key(hash)
    }

    /// Runs a registered JavaScript function.
    pub async fn call(
        &self,
        function: &str,
        args: &Value,
        caller: Arc<dyn NestedCaller>,
    ) -> Result<Value, JsError> {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.in_flight.load(Ordering::Relaxed))
            .expect("at least one worker");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let run = Msg::Run {
            id,
            function: function.to_string(),
            args: args.to_string(),
            caller,
            reply,
        };
        worker.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight {
            worker,
            id,
            done: false,
        };
        worker
            .inbox
            .send(run)
            .await
            .map_err(|_| JsError::EngineStopped)?;
        let outcome = answer.await.map_err(|_| JsError::EngineStopped);
        in_flight.finish();
        let json = outcome??;
        serde_json::from_str(&json).map_err(|e| JsError::BadResult(e.to_string()))
    }
}

fn stopped(script: &Script) -> ScriptError {
    ScriptError {
        script: script.name.clone(),
        message: "the JavaScript engine stopped".to_string(),
    }
}

/// Counts a call against its worker; if the caller goes away first, the
/// worker is told to drop the call.
struct InFlight<'a> {
    worker: &'a Worker,
    id: u64,
    done: bool,
}

impl InFlight<'_> {
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.worker.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            let _ = self.worker.inbox.try_send(Msg::Cancel { id: self.id });
        }
    }
}
