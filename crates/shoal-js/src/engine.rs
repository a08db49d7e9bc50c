//! One worker thread and the QuickJS runtime it owns.
//!
//! The worker waits on its inbox; each message — load a script, run a call,
//! a nested call finished, a call was cancelled — is handled, then pending
//! promise jobs are drained and settled calls are answered. A call that
//! awaits `shoal.call` simply stays pending while the worker serves others.
//!
//! Nothing here blocks on the network: nested calls are spawned on the
//! node's tokio runtime and come back as `Msg::Nested`.

use crate::error::{JsError, ScriptError};
use crate::nested_caller::NestedCaller;
use crate::script::{RegisteredFunction, Script};
use rquickjs::context::EvalOptions;
use rquickjs::prelude::{Opt, Rest};
use rquickjs::{
    CaughtError, Context, Ctx, Exception, Function, Object, Persistent, Promise, Runtime,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type JsValue<'js> = rquickjs::Value<'js>;

/// Messages handled in one turn before promise jobs run, so a burst of
/// calls cannot delay the settling of earlier ones for long.
const MAX_MESSAGES_PER_TURN: usize = 64;

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
struct RunningCall {
    function: String,
    caller: Arc<dyn NestedCaller>,
    reply: oneshot::Sender<Result<String, JsError>>,
    /// Set when the function returned a promise still to settle.
    promise: Option<Persistent<Promise<'static>>>,
}

/// A `shoal.call` waiting for its result.
struct NestedWait {
    /// The running call that made it.
    call: u64,
    resolve: Persistent<Function<'static>>,
    reject: Persistent<Function<'static>>,
}

#[derive(Default)]
struct State {
    functions: HashMap<String, Persistent<Function<'static>>>,
    /// Functions registered by the script being loaded.
    registered: Vec<RegisteredFunction>,
    calls: HashMap<u64, RunningCall>,
    nested: HashMap<u64, NestedWait>,
    /// The call whose JavaScript is running, so `shoal.call` and
    /// `console.log` know whom they serve.
    current_call: Option<u64>,
    next_nested: u64,
}

/// What the script-facing functions share with the worker.
#[derive(Clone)]
struct Env {
    state: Rc<RefCell<State>>,
    runtime: tokio::runtime::Handle,
    inbox: mpsc::Sender<Msg>,
}

struct Engine {
    // Field order matters: the context must drop before the runtime.
    ctx: Context,
    rt: Runtime,
    env: Env,
    limits: Limits,
    /// When JavaScript last started running without yielding.
    slice_started: Rc<Cell<Option<Instant>>>,
    /// Set by the interrupt handler when it stopped a script.
    interrupted: Rc<Cell<bool>>,
}

impl Drop for Engine {
    /// Persistent handles keep JavaScript objects alive; they must go before
    /// the runtime does, or QuickJS finds live objects when it is freed.
    fn drop(&mut self) {
        let mut state = self.env.state.borrow_mut();
        state.functions.clear();
        state.calls.clear();
        state.nested.clear();
        drop(state);
        self.rt.run_gc();
    }
}

/// The worker thread's body: serve the inbox until every sender is gone.
pub(crate) fn run(
    limits: Limits,
    host: String,
    runtime: tokio::runtime::Handle,
    mut inbox: mpsc::Receiver<Msg>,
    own: mpsc::Sender<Msg>,
) {
    let mut engine = match Engine::new(limits, &host, runtime, own) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a JavaScript engine");
            return;
        }
    };
    while let Some(msg) = inbox.blocking_recv() {
        engine.handle(msg);
        // Take whatever else is already queued before running promise jobs
        // and settling: under load one wake-up serves many calls.
        for _ in 0..MAX_MESSAGES_PER_TURN {
            match inbox.try_recv() {
                Ok(msg) => engine.handle(msg),
                Err(_) => break,
            }
        }
        engine.run_promise_jobs();
        engine.settle();
    }
}

impl Engine {
    fn new(
        limits: Limits,
        host: &str,
        runtime: tokio::runtime::Handle,
        own: mpsc::Sender<Msg>,
    ) -> rquickjs::Result<Engine> {
        let rt = Runtime::new()?;
        rt.set_memory_limit(limits.memory);
        rt.set_max_stack_size(limits.stack);
        let slice_started = Rc::new(Cell::new(None::<Instant>));
        let interrupted = Rc::new(Cell::new(false));
        {
            let slice_started = Rc::clone(&slice_started);
            let interrupted = Rc::clone(&interrupted);
            rt.set_interrupt_handler(Some(Box::new(move || {
                let over = slice_started
                    .get()
                    .is_some_and(|t: Instant| t.elapsed() > limits.time);
                if over {
                    interrupted.set(true);
                }
                over
            })));
        }
        let ctx = Context::full(&rt)?;
        let env = Env {
            state: Rc::default(),
            runtime,
            inbox: own,
        };
        ctx.with(|ctx| install_globals(ctx, env.clone(), host))?;
        Ok(Engine {
            ctx,
            rt,
            env,
            limits,
            slice_started,
            interrupted,
        })
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Load { script, reply } => {
                let _ = reply.send(self.load(&script));
            }
            Msg::Run {
                id,
                function,
                args,
                caller,
                reply,
            } => self.start_call(id, function, args, caller, reply),
            Msg::Cancel { id } => {
                self.env.state.borrow_mut().calls.remove(&id);
            }
            Msg::Nested { id, result } => self.resume(id, result),
        }
    }

    fn load(&mut self, script: &Script) -> Result<Vec<RegisteredFunction>, ScriptError> {
        self.env.state.borrow_mut().registered.clear();
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(script.name.clone());
        let result = self.ctx.with(|ctx| {
            self.slice_started.set(Some(Instant::now()));
            let result = ctx.eval_with_options::<(), _>(script.source.as_bytes(), options);
            self.slice_started.set(None);
            result.map_err(|e| self.describe(&ctx, e).to_string())
        });
        self.run_promise_jobs();
        let registered = std::mem::take(&mut self.env.state.borrow_mut().registered);
        result.map_err(|message| ScriptError {
            script: script.name.clone(),
            message,
        })?;
        Ok(registered)
    }

    fn start_call(
        &mut self,
        id: u64,
        function: String,
        args: String,
        caller: Arc<dyn NestedCaller>,
        reply: oneshot::Sender<Result<String, JsError>>,
    ) {
        let body = self.env.state.borrow().functions.get(&function).cloned();
        let Some(body) = body else {
            let _ = reply.send(Err(JsError::UnknownFunction(function)));
            return;
        };
        {
            let mut state = self.env.state.borrow_mut();
            state.calls.insert(
                id,
                RunningCall {
                    function,
                    caller,
                    reply,
                    promise: None,
                },
            );
            state.current_call = Some(id);
        }
        let outcome = self.ctx.with(|ctx| {
            let args = match ctx.json_parse(args) {
                Ok(args) => args,
                Err(e) => {
                    return Some(Err(JsError::BadArguments(
                        self.describe(&ctx, e).to_string(),
                    )));
                }
            };
            let body = match body.restore(&ctx) {
                Ok(body) => body,
                Err(e) => return Some(Err(self.describe(&ctx, e))),
            };
            self.slice_started.set(Some(Instant::now()));
            let returned: rquickjs::Result<JsValue> = body.call((args,));
            self.slice_started.set(None);
            match returned {
                Err(e) => Some(Err(self.describe(&ctx, e))),
                Ok(value) => match value.as_promise() {
                    Some(promise) => {
                        let saved = Persistent::save(&ctx, promise.clone());
                        if let Some(call) = self.env.state.borrow_mut().calls.get_mut(&id) {
                            call.promise = Some(saved);
                        }
                        None
                    }
                    None => Some(to_json(&ctx, value)),
                },
            }
        });
        if let Some(outcome) = outcome {
            self.finish(id, outcome);
        }
    }

    /// A nested call finished: settle the promise the script awaits.
    fn resume(&mut self, nested_id: u64, result: Result<serde_json::Value, String>) {
        let wait = self.env.state.borrow_mut().nested.remove(&nested_id);
        let Some(wait) = wait else {
            return;
        };
        {
            let mut state = self.env.state.borrow_mut();
            if !state.calls.contains_key(&wait.call) {
                return; // its call was cancelled
            }
            state.current_call = Some(wait.call);
        }
        self.ctx.with(|ctx| {
            let settled = match result {
                Ok(value) => ctx
                    .json_parse(value.to_string())
                    .and_then(|value| wait.resolve.restore(&ctx)?.call::<_, ()>((value,))),
                Err(message) => Exception::from_message(ctx.clone(), &message)
                    .and_then(|error| wait.reject.restore(&ctx)?.call::<_, ()>((error,))),
            };
            if let Err(e) = settled {
                tracing::warn!(error = %self.describe(&ctx, e), "cannot hand a nested result to a script");
            }
        });
    }

    /// Runs promise reactions (QuickJS calls them jobs; no relation to
    /// durable jobs) until none are left; one slice of the limit.
    fn run_promise_jobs(&mut self) {
        self.slice_started.set(Some(Instant::now()));
        while self.rt.is_job_pending() {
            if let Err(e) = self.rt.execute_pending_job() {
                tracing::debug!(error = %e, "a promise job threw");
            }
        }
        self.slice_started.set(None);
        self.env.state.borrow_mut().current_call = None;
    }

    /// Answers every call whose promise has settled.
    fn settle(&mut self) {
        let waiting: Vec<(u64, Persistent<Promise<'static>>)> = self
            .env
            .state
            .borrow()
            .calls
            .iter()
            .filter_map(|(id, call)| call.promise.clone().map(|p| (*id, p)))
            .collect();
        for (id, promise) in waiting {
            let outcome = self.ctx.with(|ctx| {
                let promise = promise.restore(&ctx).ok()?;
                match promise.result::<JsValue>()? {
                    Ok(value) => Some(to_json(&ctx, value)),
                    Err(e) => Some(Err(self.describe(&ctx, e))),
                }
            });
            if let Some(outcome) = outcome {
                self.finish(id, outcome);
            }
        }
    }

    fn finish(&mut self, id: u64, outcome: Result<String, JsError>) {
        let call = self.env.state.borrow_mut().calls.remove(&id);
        if let Some(call) = call {
            if matches!(outcome, Err(JsError::MemoryLimit(_))) {
                self.rt.run_gc();
            }
            let _ = call.reply.send(outcome);
        }
    }

    /// Turns an engine error into what the caller sees.
    fn describe(&self, ctx: &Ctx<'_>, error: rquickjs::Error) -> JsError {
        if self.interrupted.replace(false) {
            return JsError::TimeLimit(self.limits.time);
        }
        if matches!(error, rquickjs::Error::Allocation) {
            return JsError::MemoryLimit(self.limits.memory);
        }
        match CaughtError::from_error(ctx, error) {
            CaughtError::Exception(exception) => {
                let message = exception.message().unwrap_or_default();
                if message.contains("out of memory") {
                    return JsError::MemoryLimit(self.limits.memory);
                }
                if message == "interrupted" {
                    return JsError::TimeLimit(self.limits.time);
                }
                let name: String = exception
                    .get("name")
                    .unwrap_or_else(|_| "Error".to_string());
                JsError::Thrown {
                    message: format!("{name}: {message}"),
                    stack: exception.stack().filter(|s| !s.is_empty()),
                }
            }
            CaughtError::Value(value) => JsError::Thrown {
                message: format!("uncaught {}", display(ctx, &value)),
                stack: None,
            },
            CaughtError::Error(error) => JsError::Thrown {
                message: error.to_string(),
                stack: None,
            },
        }
    }
}

fn to_json<'js>(ctx: &Ctx<'js>, value: JsValue<'js>) -> Result<String, JsError> {
    match ctx.json_stringify(value) {
        Ok(Some(text)) => text
            .to_string()
            .map_err(|e| JsError::BadResult(e.to_string())),
        Ok(None) => Ok("null".to_string()),
        Err(e) => {
            let reason = match CaughtError::from_error(ctx, e) {
                CaughtError::Exception(exception) => exception.message().unwrap_or_default(),
                other => other.to_string(),
            };
            Err(JsError::BadResult(reason))
        }
    }
}

/// A value as `console.log` shows it: strings bare, the rest as JSON.
fn display<'js>(ctx: &Ctx<'js>, value: &JsValue<'js>) -> String {
    if let Some(text) = value.as_string().and_then(|s| s.to_string().ok()) {
        return text;
    }
    match ctx.json_stringify(value.clone()) {
        Ok(Some(text)) => text.to_string().unwrap_or_default(),
        _ => format!("{:?}", value.type_of()),
    }
}

/// Defines `shoal` and `console` in the script's global scope.
fn install_globals<'js>(ctx: Ctx<'js>, env: Env, host: &str) -> rquickjs::Result<()> {
    let shoal = Object::new(ctx.clone())?;
    // The id of the node running the script, e.g. to report who did a chunk.
    shoal.set("node", host)?;

    let state = Rc::clone(&env.state);
    let register =
        move |ctx: Ctx<'js>, name: String, body: Function<'js>, options: Opt<Object<'js>>| {
            let memoize = options
                .0
                .and_then(|o| o.get::<_, Option<bool>>("memoize").ok().flatten())
                .unwrap_or(false);
            let mut state = state.borrow_mut();
            state
                .functions
                .insert(name.clone(), Persistent::save(&ctx, body));
            state.registered.push(RegisteredFunction { name, memoize });
        };
    shoal.set("register", Function::new(ctx.clone(), register)?)?;

    let call_env = env.clone();
    let call = move |ctx: Ctx<'js>,
                     name: String,
                     args: Opt<JsValue<'js>>|
          -> rquickjs::Result<Promise<'js>> {
        shoal_call(&ctx, &call_env, name, args.0)
    };
    shoal.set("call", Function::new(ctx.clone(), call)?)?;

    let state = Rc::clone(&env.state);
    let progress = move |fraction: f64, message: Opt<String>| {
        let state = state.borrow();
        if let Some(call) = state.current_call.and_then(|id| state.calls.get(&id)) {
            call.caller
                .progress(fraction.clamp(0.0, 1.0), message.0.unwrap_or_default());
        }
    };
    shoal.set("progress", Function::new(ctx.clone(), progress)?)?;
    ctx.globals().set("shoal", shoal)?;

    let console = Object::new(ctx.clone())?;
    for level in ["log", "info", "warn", "error", "debug"] {
        let state = Rc::clone(&env.state);
        let print = move |ctx: Ctx<'js>, values: Rest<JsValue<'js>>| {
            let text: Vec<String> = values.0.iter().map(|v| display(&ctx, v)).collect();
            let text = text.join(" ");
            let state = state.borrow();
            let function = state
                .current_call
                .and_then(|id| state.calls.get(&id))
                .map_or("<script>", |call| call.function.as_str());
            match level {
                "warn" => tracing::warn!(target: "shoal_js", function, "{text}"),
                "error" => tracing::error!(target: "shoal_js", function, "{text}"),
                "debug" => tracing::debug!(target: "shoal_js", function, "{text}"),
                _ => tracing::info!(target: "shoal_js", function, "{text}"),
            }
        };
        console.set(level, Function::new(ctx.clone(), print)?)?;
    }
    ctx.globals().set("console", console)?;
    Ok(())
}

/// `shoal.call(name, args)`: a promise settled when the node's call ends.
fn shoal_call<'js>(
    ctx: &Ctx<'js>,
    env: &Env,
    name: String,
    args: Option<JsValue<'js>>,
) -> rquickjs::Result<Promise<'js>> {
    let args_json = match args {
        Some(args) => ctx
            .json_stringify(args)?
            .map(|s| s.to_string())
            .transpose()?
            .unwrap_or_else(|| "null".to_string()),
        None => "null".to_string(),
    };
    let args: serde_json::Value = serde_json::from_str(&args_json).map_err(|e| {
        Exception::throw_type(ctx, &format!("shoal.call arguments are not JSON: {e}"))
    })?;
    let (promise, resolve, reject) = Promise::new(ctx)?;
    let (nested_id, caller) = {
        let mut state = env.state.borrow_mut();
        let Some(calling) = state.current_call else {
            return Err(Exception::throw_message(
                ctx,
                "shoal.call can only be used while a registered function runs",
            ));
        };
        let caller = match state.calls.get(&calling) {
            Some(running) => Arc::clone(&running.caller),
            None => {
                return Err(Exception::throw_message(
                    ctx,
                    "the calling function was cancelled",
                ));
            }
        };
        let nested_id = state.next_nested;
        state.next_nested += 1;
        state.nested.insert(
            nested_id,
            NestedWait {
                call: calling,
                resolve: Persistent::save(ctx, resolve),
                reject: Persistent::save(ctx, reject),
            },
        );
        (nested_id, caller)
    };
    let inbox = env.inbox.clone();
    env.runtime.spawn(async move {
        let result = caller.call(name, args).await;
        let _ = inbox
            .send(Msg::Nested {
                id: nested_id,
                result,
            })
            .await;
    });
    Ok(promise)
}
