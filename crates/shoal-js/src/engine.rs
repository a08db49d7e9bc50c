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
use crate::globals::{display, install_globals};
use crate::nested_caller::NestedCaller;
use crate::script::{RegisteredFunction, Script};
use crate::state::{Env, JsValue, Limits, Msg, RunningCall};
use rquickjs::context::EvalOptions;
use rquickjs::{CaughtError, Context, Ctx, Exception, Persistent, Promise, Runtime};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Messages handled in one turn before promise jobs run, so a burst of
/// calls cannot delay the settling of earlier ones for long.
const MAX_MESSAGES_PER_TURN: usize = 64;

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
