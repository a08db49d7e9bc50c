//! Functions served by worker processes: Python (`clients/python`), or any
//! program that speaks the worker protocol (`docs/workers.md`) over the
//! node's WebSocket.
//!
//! A worker registers functions with a concurrency; the node puts each in
//! its registry as an ordinary function, so placement, stealing,
//! memoization and durable jobs treat it like a native one. Its body hands
//! the call to a connected worker with a free permit and waits for the
//! answer:
//!
//! ```text
//!  call ─► registry body ─► choose worker (most free permits) ─► permit
//!        ─► ToWorker::Call ─► … ─► FromWorker::Result / Error ─► outcome
//!  worker gone mid-call ─► the next worker; none left ─► HandBack: the
//!  owner places the call elsewhere
//! ```
//!
//! A worker's functions leave the registry with its last worker. Bounded:
//! permits per worker and function, and the outbox to each worker.

use super::context::CallContext;
use super::registry::{FnResult, Function, HandBack, Registry};
use serde_json::Value;
use shoal_proto::ErrorCode;
use shoal_proto::api::{ToWorker, WorkerFunction};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// The function every Python worker serves to run a job's shipped script:
/// args `{name, source, function, args}`; it loads the script by its hash
/// and calls `function` in it.
pub const PYTHON_SCRIPT: &str = "shoal.python_script";
/// Messages waiting to be written to one worker's socket.
pub const OUTBOX: usize = 1024;
/// Most calls of one function one worker runs at once.
pub const MAX_CONCURRENCY: u32 = 1024;
/// Workers a call is offered to before it goes back to its owner.
const ATTEMPTS: usize = 3;
const MAX_NAME_BYTES: usize = 128;

/// One connected worker, as the node's WebSocket handler holds it.
pub type WorkerId = u64;
type Answer = Result<Value, String>;

/// The workers connected to this node.
pub struct Workers {
    registry: Arc<Registry>,
    /// The node's tasks: nested calls run in them, so shutdown waits.
    tasks: TaskTracker,
    state: Mutex<State>,
    next_worker: AtomicU64,
    next_call: AtomicU64,
}

#[derive(Default)]
struct State {
    workers: HashMap<WorkerId, Worker>,
    /// Functions this pool put in the registry (and may take out again).
    served: HashSet<Arc<str>>,
}

struct Worker {
    outbox: mpsc::Sender<ToWorker>,
    /// Free permits per function.
    functions: HashMap<Arc<str>, Arc<Semaphore>>,
    /// Told to send no more (it is stopping).
    draining: bool,
    calls: HashMap<u64, InFlight>,
}

struct InFlight {
    answer: oneshot::Sender<Answer>,
    ctx: CallContext,
}

impl Workers {
    pub fn new(registry: Arc<Registry>, tasks: TaskTracker) -> Arc<Workers> {
        Arc::new(Workers {
            registry,
            tasks,
            state: Mutex::default(),
            next_worker: AtomicU64::new(1),
            next_call: AtomicU64::new(1),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("workers lock")
    }

    /// A worker connected: its id, and what to write to it.
    pub fn connect(&self) -> (WorkerId, mpsc::Receiver<ToWorker>) {
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let (outbox, receiver) = mpsc::channel(OUTBOX);
        let worker = Worker {
            outbox,
            functions: HashMap::new(),
            draining: false,
            calls: HashMap::new(),
        };
        self.state().workers.insert(id, worker);
        (id, receiver)
    }

    /// A worker offers functions; the names registered, or why none was.
    pub fn register(
        self: &Arc<Self>,
        worker: WorkerId,
        functions: Vec<WorkerFunction>,
    ) -> Result<Vec<String>, String> {
        for function in &functions {
            check(function)?;
            let taken = self.registry.get(&function.name).is_some()
                && !self.state().served.contains(function.name.as_str());
            if taken {
                return Err(format!(
                    "'{}' is already a native or script function on this node",
                    function.name
                ));
            }
        }
        let mut state = self.state();
        let State { workers, served } = &mut *state;
        let Some(conn) = workers.get_mut(&worker) else {
            return Err("the worker is gone".to_string());
        };
        let mut names = Vec::new();
        for function in functions {
            let name: Arc<str> = Arc::from(function.name.as_str());
            let permits = Arc::new(Semaphore::new(function.concurrency as usize));
            conn.functions.insert(Arc::clone(&name), permits);
            if served.insert(Arc::clone(&name)) {
                let pool = Arc::clone(self);
                let body_name = Arc::clone(&name);
                let mut body = Function::new_async(&name, move |ctx, args| {
                    Arc::clone(&pool).run(Arc::clone(&body_name), ctx, args)
                });
                body.memoize = function.memoize;
                self.registry.insert(body);
            }
            names.push(function.name);
        }
        Ok(names)
    }

    /// A worker answered call `call`.
    pub fn answer(&self, worker: WorkerId, call: u64, answer: Answer) {
        let in_flight = self
            .state()
            .workers
            .get_mut(&worker)
            .and_then(|w| w.calls.remove(&call));
        if let Some(in_flight) = in_flight {
            let _ = in_flight.answer.send(answer);
        }
    }

    /// A worker reported progress on call `call`.
    pub fn progress(&self, worker: WorkerId, call: u64, fraction: f64, message: String) {
        let ctx = self
            .state()
            .workers
            .get(&worker)
            .and_then(|w| w.calls.get(&call))
            .map(|in_flight| in_flight.ctx.clone());
        if let Some(ctx) = ctx {
            ctx.progress(fraction, message);
        }
    }

    /// The running call `parent` makes a nested call (its slot is free while
    /// it waits); the answer goes to the worker as `returned` or `failed`.
    pub fn nested(&self, worker: WorkerId, parent: u64, id: u64, function: String, args: Value) {
        let found = self.state().workers.get(&worker).map(|w| {
            let ctx = w.calls.get(&parent).map(|in_flight| in_flight.ctx.clone());
            (ctx, w.outbox.clone())
        });
        let Some((ctx, outbox)) = found else {
            return;
        };
        self.tasks.spawn(async move {
            let reply = match ctx {
                None => ToWorker::Failed {
                    id,
                    code: ErrorCode::InvalidRequest.as_str().to_string(),
                    message: format!("call {parent} is not running on this worker"),
                },
                Some(ctx) => match ctx.call(&function, args).await {
                    Ok(result) => ToWorker::Returned { id, result },
                    Err(error) => ToWorker::Failed {
                        id,
                        code: error.code.as_str().to_string(),
                        message: error.message,
                    },
                },
            };
            let _ = outbox.send(reply).await;
        });
    }

    /// The worker is stopping: it finishes what it runs and gets nothing new.
    pub fn drain(&self, worker: WorkerId) {
        if let Some(worker) = self.state().workers.get_mut(&worker) {
            worker.draining = true;
        }
    }

    /// The worker's socket closed: its calls go to other workers (or back
    /// to their owners), and functions no worker serves any more leave the
    /// registry.
    pub fn disconnect(&self, worker: WorkerId) {
        let mut state = self.state();
        let Some(gone) = state.workers.remove(&worker) else {
            return;
        };
        for permits in gone.functions.values() {
            permits.close();
        }
        for name in gone.functions.keys() {
            let still_served = state
                .workers
                .values()
                .any(|w| w.functions.contains_key(name));
            if !still_served {
                state.served.remove(name);
                self.registry.remove(name);
            }
        }
        // Dropping `gone.calls` tells each waiting call its worker vanished.
    }

    /// The body of every worker function: a worker runs it, or another if
    /// that one vanishes; with none left, the call goes back to its owner.
    async fn run(self: Arc<Self>, name: Arc<str>, ctx: CallContext, args: Value) -> FnResult {
        for _ in 0..ATTEMPTS {
            let Some((worker, permits)) = self.choose(&name) else {
                break;
            };
            let Ok(_permit): Result<OwnedSemaphorePermit, _> = permits.acquire_owned().await else {
                continue; // the worker left while we waited
            };
            let id = self.next_call.fetch_add(1, Ordering::Relaxed);
            let (answer, answered) = oneshot::channel();
            let outbox = {
                let mut state = self.state();
                let Some(conn) = state.workers.get_mut(&worker) else {
                    continue;
                };
                let ctx = ctx.clone();
                conn.calls.insert(id, InFlight { answer, ctx });
                conn.outbox.clone()
            };
            let call = ToWorker::Call {
                id,
                function: name.to_string(),
                args: args.clone(),
            };
            if outbox.send(call).await.is_err() {
                continue;
            }
            let mut cancel = CancelOnDrop {
                workers: &self,
                worker,
                id,
                armed: true,
            };
            let answer = answered.await;
            cancel.armed = false;
            match answer {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(message)) => return Err(message.into()),
                Err(_) => continue, // the worker vanished mid-call
            }
        }
        Err(Box::new(HandBack(format!(
            "no worker on this node could run '{name}'"
        ))))
    }

    /// The worker offering `name` with the most free permits, not draining.
    fn choose(&self, name: &str) -> Option<(WorkerId, Arc<Semaphore>)> {
        let state = self.state();
        state
            .workers
            .iter()
            .filter(|(_, w)| !w.draining)
            .filter_map(|(id, w)| w.functions.get(name).map(|p| (*id, Arc::clone(p))))
            .max_by_key(|(id, permits)| (permits.available_permits(), std::cmp::Reverse(*id)))
    }

    /// Workers connected now.
    pub fn count(&self) -> usize {
        self.state().workers.len()
    }
}

fn check(function: &WorkerFunction) -> Result<(), String> {
    if function.name.is_empty() || function.name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a function name has 1 to {MAX_NAME_BYTES} bytes, not {}",
            function.name.len()
        ));
    }
    if !(1..=MAX_CONCURRENCY).contains(&function.concurrency) {
        return Err(format!(
            "'{}': concurrency is 1 to {MAX_CONCURRENCY}, not {}",
            function.name, function.concurrency
        ));
    }
    Ok(())
}

/// Tells the worker to stop a call whose caller stopped waiting (the call's
/// task was dropped before the answer came).
struct CancelOnDrop<'a> {
    workers: &'a Workers,
    worker: WorkerId,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.workers.state();
        if let Some(conn) = state.workers.get_mut(&self.worker) {
            conn.calls.remove(&self.id);
            // Best effort: a full outbox means the worker is far behind anyway.
            let _ = conn.outbox.try_send(ToWorker::Cancel { id: self.id });
        }
    }
}
