//! JavaScript in a node: scripts loaded at start (`--script`) or shipped
//! with calls, and the engine pool that runs their functions.
//!
//! A script is known by the hash of its source. Its functions go into the
//! node's registry like native ones, tagged with that hash; a call of such a
//! function carries the hash, and an executor that lacks the script asks the
//! call's owner for it (`shoal.script.get`), loads it, then runs the call.
//!
//! ```text
//!   owner: call("pi") ──Frame::Call{script: hash}──► executor
//!                                                     │ unknown hash?
//!   owner: shoal.script.get(hash) ◄───────────────────┘ fetch, verify, load
//! ```

use super::context::CallContext;
use super::registry::{Body, FnError, Function, Registry};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use shoal_js::{EngineConfig, EnginePool, NestedCaller, RegisteredFunction, Script, ScriptError};
use shoal_proto::{CallError, ErrorCode};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::task::TaskTracker;

/// Largest script source accepted, from a file or from a peer.
pub const MAX_SCRIPT_BYTES: usize = 4 * 1024 * 1024;
/// Scripts one node keeps; past it, shipped scripts are refused.
pub const MAX_SCRIPTS: usize = 256;

/// The internal function peers call to fetch a script's source.
pub(crate) const GET_SCRIPT: &str = "shoal.script.get";

/// Script sources by hash: what this node can ship to others.
#[derive(Default)]
struct Library {
    sources: Mutex<HashMap<String, Script>>,
}

impl Library {
    fn insert(&self, script: &Script) -> Result<(), ScriptError> {
        let mut sources = self.sources.lock().expect("sources lock");
        let hash = script.hash();
        if sources.len() >= MAX_SCRIPTS && !sources.contains_key(&hash) {
            return Err(ScriptError {
                script: script.name.clone(),
                message: format!("this node already holds {MAX_SCRIPTS} scripts"),
            });
        }
        sources.insert(hash, script.clone());
        Ok(())
    }

    fn get(&self, hash: &str) -> Option<Script> {
        self.sources
            .lock()
            .expect("sources lock")
            .get(hash)
            .cloned()
    }

    /// `shoal.script.get {hash}` → `{name, source}`.
    fn get_function(self: &Arc<Self>) -> Function {
        let library = Arc::clone(self);
        let mut function = Function::new_async(GET_SCRIPT, move |_ctx, args| {
            let library = Arc::clone(&library);
            async move {
                let hash = args["hash"].as_str().ok_or("expected {\"hash\": ...}")?;
                let script = library
                    .get(hash)
                    .ok_or_else(|| format!("no script with hash {hash} on this node"))?;
                Ok(json!({ "name": script.name, "source": script.source }))
            }
        });
        function.internal = true;
        function
    }
}

/// The scripts of one node and, once one is loaded, its engine pool.
pub struct Scripts {
    library: Arc<Library>,
    /// Started by the first script loaded, so a node without scripts runs
    /// no JavaScript threads.
    pool: OnceLock<Arc<EnginePool>>,
    config: EngineConfig,
    /// Whether this node runs calls at all; a node without slots keeps
    /// sources (to ship them) but starts no engines.
    runs_calls: bool,
    host: String,
    registry: Arc<Registry>,
    /// One fetch per missing script, however many calls need it at once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The node's tasks, which scripts' nested calls join.
    tasks: TaskTracker,
}

impl Scripts {
    /// The node's scripts; registers `shoal.script.get` in `registry` so
    /// peers can fetch the sources this node holds.
    pub fn new(
        config: EngineConfig,
        runs_calls: bool,
        host: String,
        registry: Arc<Registry>,
        tasks: TaskTracker,
    ) -> Self {
        let library = Arc::new(Library::default());
        registry.insert(library.get_function());
        Scripts {
            library,
            pool: OnceLock::new(),
            config,
            runs_calls,
            host,
            registry,
            fetching: Mutex::default(),
            tasks,
        }
    }

    fn pool(&self) -> &Arc<EnginePool> {
        self.pool.get_or_init(|| {
            Arc::new(EnginePool::start(
                self.config,
                &self.host,
                tokio::runtime::Handle::current(),
            ))
        })
    }

    /// Loads a script: its functions become callable here and, through
    /// heartbeats, known to the cluster.
    pub async fn load(&self, script: Script) -> Result<Vec<RegisteredFunction>, ScriptError> {
        if script.source.len() > MAX_SCRIPT_BYTES {
            return Err(ScriptError {
                script: script.name,
                message: format!("is larger than the limit of {MAX_SCRIPT_BYTES} bytes"),
            });
        }
        self.library.insert(&script)?;
        if !self.runs_calls {
            return Ok(Vec::new());
        }
        let pool = Arc::clone(self.pool());
        let registered = pool.load(&script).await?;
        let hash: Arc<str> = Arc::from(script.hash());
        for function in &registered {
            let function = js_function(&pool, function, Arc::clone(&hash), &self.tasks);
            self.registry.insert(function);
        }
        tracing::info!(script = %script.name, functions = registered.len(), "script loaded");
        Ok(registered)
    }

    fn is_loaded(&self, hash: &str) -> bool {
        self.pool.get().is_some_and(|pool| pool.has_script(hash))
    }

    /// Makes sure the script `hash` is loaded here. A script this node has
    /// never seen comes from `fetch` (the reply of `shoal.script.get` at
    /// the call's owner) and is checked against its hash before it loads.
    pub async fn ensure(
        &self,
        hash: &Arc<str>,
        fetch: impl Future<Output = Result<Value, CallError>>,
    ) -> Result<(), CallError> {
        let gate = {
            let mut fetching = self.fetching.lock().expect("fetching lock");
            Arc::clone(fetching.entry(hash.to_string()).or_default())
        };
        let _turn = gate.lock().await;
        if self.is_loaded(hash) {
            return Ok(());
        }
        let script = match self.library.get(hash) {
            Some(script) => script,
            None => {
                tracing::debug!(%hash, "fetching a script shipped with a call");
                let reply = fetch.await.map_err(|e| {
                    CallError::new(
                        ErrorCode::Unavailable,
                        format!("cannot fetch script {hash} from the caller: {e}"),
                    )
                })?;
                let name = reply["name"].as_str().unwrap_or("shipped.js");
                let source = reply["source"].as_str().unwrap_or_default();
                let script = Script::new(name, source);
                if script.hash() != hash.as_ref() {
                    return Err(CallError::new(
                        ErrorCode::Internal,
                        format!("script fetched for hash {hash} has another hash; refused"),
                    ));
                }
                script
            }
        };
        self.load(script)
            .await
            .map_err(|e| CallError::new(ErrorCode::FunctionFailed, e.to_string()))?;
        self.fetching
            .lock()
            .expect("fetching lock")
            .remove(hash.as_ref());
        Ok(())
    }
}

/// A registry entry whose body runs in the engine pool.
fn js_function(
    pool: &Arc<EnginePool>,
    function: &RegisteredFunction,
    script: Arc<str>,
    tasks: &TaskTracker,
) -> Function {
    let pool = Arc::clone(pool);
    let tasks = tasks.clone();
    let name: Arc<str> = Arc::from(function.name.as_str());
    let body_name = Arc::clone(&name);
    Function {
        name,
        body: Body::Async(Arc::new(move |ctx, args| {
            let pool = Arc::clone(&pool);
            let name = Arc::clone(&body_name);
            let tasks = tasks.clone();
            Box::pin(async move {
                let caller = Arc::new(ContextCaller { ctx, tasks });
                pool.call(&name, &args, caller)
                    .await
                    .map_err(|e| Box::new(e) as FnError)
            })
        })),
        memoize: function.memoize,
        // `shoal.*` names are Shoal's own (a script's `shoal.subscribe`
        // handlers): not advertised, never placed elsewhere.
        internal: function.name.starts_with("shoal."),
        script: Some(script),
    }
}

/// Nested calls of a script go through the context of the call it serves,
/// so they release its slot while they wait and share its deadline. The
/// engine pool spawns them; they are tracked with the node's tasks, so
/// shutting down waits for them too.
struct ContextCaller {
    ctx: CallContext,
    tasks: TaskTracker,
}

impl NestedCaller for ContextCaller {
    fn call(&self, function: String, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        let ctx = self.ctx.clone();
        let call = async move { ctx.call(&function, args).await.map_err(|e| e.to_string()) };
        Box::pin(self.tasks.track_future(call))
    }

    fn progress(&self, fraction: f64, message: String) {
        self.ctx.progress(fraction, message);
    }
}
