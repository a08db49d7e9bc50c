//! What a script sees: the `shoal` object (`register`, `call`, `progress`,
//! `publish`, `subscribe`, `queue`, `node`) and `console`.

use crate::script::RegisteredFunction;
use crate::state::{Env, JsValue, Msg, NestedWait};
use rquickjs::prelude::{Opt, Rest};
use rquickjs::{Ctx, Exception, Function, Object, Persistent, Promise};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// A value as `console.log` shows it: strings bare, the rest as JSON.
pub(crate) fn display<'js>(ctx: &Ctx<'js>, value: &JsValue<'js>) -> String {
    if let Some(text) = value.as_string().and_then(|s| s.to_string().ok()) {
        return text;
    }
    match ctx.json_stringify(value.clone()) {
        Ok(Some(text)) => text.to_string().unwrap_or_default(),
        _ => format!("{:?}", value.type_of()),
    }
}

/// Defines `shoal` and `console` in the script's global scope.
pub(crate) fn install_globals<'js>(ctx: Ctx<'js>, env: Env, host: &str) -> rquickjs::Result<()> {
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
    install_topics_and_queues(&ctx, &shoal, &env)?;
    // Scripts written for MaDRPC, which Shoal grows out of, run unchanged.
    ctx.globals().set("madrpc", shoal.clone())?;
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
    call_with_json(ctx, env, name, args)
}

/// A JavaScript value as JSON (`null` for what JSON cannot hold).
fn to_json_value<'js>(ctx: &Ctx<'js>, value: JsValue<'js>) -> rquickjs::Result<serde_json::Value> {
    let text = ctx
        .json_stringify(value)?
        .map(|s| s.to_string())
        .transpose()?
        .unwrap_or_else(|| "null".to_string());
    serde_json::from_str(&text)
        .map_err(|e| Exception::throw_type(ctx, &format!("not a JSON value: {e}")))
}

/// Calls a function of the node with JSON arguments; the promise settles
/// with its result.
fn call_with_json<'js>(
    ctx: &Ctx<'js>,
    env: &Env,
    name: String,
    args: serde_json::Value,
) -> rquickjs::Result<Promise<'js>> {
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

/// `shoal.publish`, `shoal.subscribe` and `shoal.queue`. Topics and the
/// queue are the node's internal functions (`shoal.topic.publish`,
/// `shoal.queue.*`), run on the script's own node. A `shoal.subscribe`
/// handler is registered as `shoal.subscriber:<topic>:<n>`, which the node
/// calls with each message; every worker loads scripts in the same order,
/// so the names agree.
fn install_topics_and_queues<'js>(
    ctx: &Ctx<'js>,
    shoal: &Object<'js>,
    env: &Env,
) -> rquickjs::Result<()> {
    let publish_env = env.clone();
    let publish = move |ctx: Ctx<'js>,
                        topic: String,
                        value: Opt<JsValue<'js>>,
                        options: Opt<Object<'js>>|
          -> rquickjs::Result<Promise<'js>> {
        let value = match value.0 {
            Some(value) => to_json_value(&ctx, value)?,
            None => serde_json::Value::Null,
        };
        let option = |key: &str| -> Option<JsValue<'js>> {
            options
                .0
                .as_ref()
                .and_then(|o| o.get::<_, JsValue>(key).ok())
        };
        let name = option("name").and_then(|v| v.as_string().and_then(|s| s.to_string().ok()));
        let retain = option("retain").and_then(|v| v.as_number());
        let args =
            serde_json::json!({ "topic": topic, "value": value, "name": name, "retain": retain });
        call_with_json(&ctx, &publish_env, "shoal.topic.publish".to_string(), args)
    };
    shoal.set("publish", Function::new(ctx.clone(), publish)?)?;

    let state = Rc::clone(&env.state);
    let subscribers: RefCell<HashMap<String, u32>> = RefCell::default();
    let subscribe = move |ctx: Ctx<'js>, topic: String, handler: Function<'js>| {
        let mut subscribers = subscribers.borrow_mut();
        let count = subscribers.entry(topic.clone()).or_default();
        let name = format!("shoal.subscriber:{topic}:{count}");
        *count += 1;
        let mut state = state.borrow_mut();
        state
            .functions
            .insert(name.clone(), Persistent::save(&ctx, handler));
        state.registered.push(RegisteredFunction {
            name,
            memoize: false,
        });
    };
    shoal.set("subscribe", Function::new(ctx.clone(), subscribe)?)?;

    let queue_env = env.clone();
    let queue = move |ctx: Ctx<'js>, name: String| -> rquickjs::Result<Object<'js>> {
        let queue = Object::new(ctx.clone())?;
        let op = |function: &'static str| {
            let (env, name) = (queue_env.clone(), name.clone());
            move |ctx: Ctx<'js>, extra: serde_json::Value| {
                let mut args = serde_json::json!({ "queue": name });
                if let (Some(args), serde_json::Value::Object(extra)) =
                    (args.as_object_mut(), extra)
                {
                    args.extend(extra);
                }
                call_with_json(&ctx, &env, function.to_string(), args)
            }
        };
        let push = op("shoal.queue.push");
        queue.set(
            "push",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, items: Rest<JsValue<'js>>| {
                    let items = items
                        .0
                        .into_iter()
                        .map(|item| to_json_value(&ctx, item))
                        .collect::<rquickjs::Result<Vec<_>>>()?;
                    push(ctx, serde_json::json!({ "items": items }))
                },
            )?,
        )?;
        let pop = op("shoal.queue.pop");
        queue.set(
            "pop",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, timeout_ms: Opt<f64>| {
                pop(ctx, serde_json::json!({ "timeout_ms": timeout_ms.0.unwrap_or(0.0).max(0.0) as u64 }))
            })?,
        )?;
        let size = op("shoal.queue.size");
        queue.set(
            "size",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
                size(ctx, serde_json::json!({}))
            })?,
        )?;
        let close = op("shoal.queue.close");
        queue.set(
            "close",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
                close(ctx, serde_json::json!({}))
            })?,
        )?;
        Ok(queue)
    };
    shoal.set("queue", Function::new(ctx.clone(), queue)?)?;
    Ok(())
}
