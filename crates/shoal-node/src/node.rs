//! A running node: the embedding API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shoal_node::Node;
//! use serde_json::json;
//! let node = Node::builder()
//!     .register("double", |_ctx, args| async move { Ok(json!(args.as_i64().unwrap_or(0) * 2)) })
//!     .start()
//!     .await?;
//! assert_eq!(node.call("double", json!(21)).await?, json!(42));
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Starting a node wires the pieces together: the network event loop, the
//! call links, the scheduler, and a cluster task that publishes heartbeats,
//! ages the peer table and tells the scheduler when a peer dies.

use crate::cluster::{Liveness, MemberEvent, PeerTable};
use crate::config::NodeConfig;
use crate::jobs::{Capabilities, Job};
use crate::net::links::{FrameHandler, Links};
use crate::net::{self, NetEvent, NetHandle};
use crate::queue::{DistQueue, QueueStore};
use crate::raft::consensus::Consensus;
use crate::raft::network::RpcClient;
use crate::registry::{CallContext, FnResult, Function, Registry};
use crate::router::Router;
use crate::sched::{CallOptions, Sched, SchedParts};
use crate::scripts::{ScriptFetcher, Scripts};
use futures::{Stream, StreamExt};
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use shoal_proto::wire::PROTOCOL_VERSION;
use shoal_proto::{CallError, Heartbeat, NodeId};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Dead peers are forgotten after this long, keeping the table bounded.
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(600);
/// How often an idle node looks for work to steal. Cheap (a lock and a
/// comparison) so an idle node still costs next to nothing.
const STEAL_INTERVAL: Duration = Duration::from_millis(20);
/// After a new connection, a heartbeat follows this soon so the peer learns
/// about us without waiting a full interval (gossipsub needs a moment to
/// exchange subscriptions first).
const GREETING_DELAY: Duration = Duration::from_millis(150);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("network: {0}")]
    Network(String),
    #[error("{0}")]
    Script(String),
    #[error("consensus: {0}")]
    Consensus(String),
}

/// Builds a [`Node`]: settings and functions first, then `start`.
pub struct NodeBuilder {
    config: NodeConfig,
    functions: Vec<Function>,
    memoized: HashSet<String>,
    scripts: Vec<shoal_js::Script>,
}

impl NodeBuilder {
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    pub fn config_mut(&mut self) -> &mut NodeConfig {
        &mut self.config
    }

    pub fn listen(mut self, addr: Multiaddr) -> Self {
        self.config.listen = vec![addr];
        self
    }

    pub fn join(mut self, addr: Multiaddr) -> Self {
        self.config.join.push(addr);
        self
    }

    pub fn slots(mut self, slots: u32) -> Self {
        self.config.slots = slots;
        self
    }

    /// Registers an async function. It may call others through its context.
    pub fn register<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(CallContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = FnResult> + Send + 'static,
    {
        self.functions.push(Function::new_async(name, f));
        self
    }

    /// Registers a CPU-bound function; it runs on a blocking thread.
    pub fn register_blocking<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Value) -> FnResult + Send + Sync + 'static,
    {
        self.functions.push(Function::new_blocking(name, f));
        self
    }

    /// Loads a JavaScript script at start; its `shoal.register` calls add
    /// functions. A script that does not load stops the start.
    pub fn script(mut self, script: shoal_js::Script) -> Self {
        self.scripts.push(script);
        self
    }

    /// Caches results of `name` by arguments; only for deterministic functions.
    pub fn memoize(mut self, name: &str) -> Self {
        self.memoized.insert(name.to_string());
        self
    }

    /// Starts the network and the scheduler. Returns once the node listens.
    pub async fn start(self) -> Result<Node, StartError> {
        let config = self.config;
        let keypair = crate::identity::load_or_create(config.data_dir.as_deref())?;
        let me = keypair.public().to_peer_id();
        let shutdown = CancellationToken::new();
        let started = net::start(keypair, &config, shutdown.clone())
            .await
            .map_err(|e| StartError::Network(format!("{e:#}")))?;

        let queues = Arc::new(QueueStore::default());
        let registry = Arc::new(Registry::default());
        for mut function in self.functions.into_iter().chain(queues.functions()) {
            function.memoize |= self.memoized.contains(function.name.as_ref());
            registry.insert(function);
        }
        let peers = Arc::new(Mutex::new(PeerTable::new(
            config.heartbeat_interval,
            config.heartbeat_misses,
        )));
        let links = Links::new(started.control, shutdown.clone());
        let sched = Sched::new(SchedParts {
            me,
            slots: config.slots,
            default_deadline: config.default_deadline,
            memo_capacity: config.memo_capacity,
            registry: Arc::clone(&registry),
            peers: Arc::clone(&peers),
            links: Arc::clone(&links),
        });
        let scripts = Arc::new(Scripts::new(
            shoal_js::EngineConfig {
                workers: config.slots.max(1) as usize,
                memory_limit: config.js_memory_limit,
                time_limit: config.js_time_limit,
                ..shoal_js::EngineConfig::default()
            },
            config.slots > 0,
            me.to_base58(),
            Arc::clone(&registry),
            Arc::downgrade(&sched),
        ));
        registry.insert(scripts.get_function());
        sched.set_script_source(Arc::new(ScriptFetcher(Arc::downgrade(&scripts))));
        for script in self.scripts {
            scripts
                .load(script)
                .await
                .map_err(|e| StartError::Script(e.to_string()))?;
        }
        let rpc = RpcClient::new(Arc::clone(&links));
        let router = Arc::new(Router {
            sched: Arc::clone(&sched),
            rpc: Arc::clone(&rpc),
            consensus: OnceLock::new(),
        });
        let handler: Weak<dyn FrameHandler> = Arc::downgrade(&router) as Weak<dyn FrameHandler>;
        links
            .start(handler)
            .map_err(|e| StartError::Network(e.to_string()))?;
        let (consensus, raft_dir) = start_consensus(&config, me, rpc, Arc::clone(&peers)).await?;
        let _ = router.consensus.set(Arc::clone(&consensus));
        sched.set_progress_sink(progress_sink(&consensus));

        let inner = Arc::new(NodeInner {
            me,
            node_id: NodeId(me.to_base58()),
            listen_addrs: started.listen_addrs,
            config,
            registry,
            peers,
            sched,
            queues,
            scripts,
            _router: router,
            consensus,
            _raft_dir: raft_dir,
            net: started.handle,
            heartbeat_seq: AtomicU64::new(0),
            peer_has_work: tokio::sync::Notify::new(),
            shutdown,
            tasks: tokio_util::task::TaskTracker::new(),
        });
        let net_task = started.task;
        inner.tasks.spawn(async move {
            let _ = net_task.await;
        });
        inner
            .tasks
            .spawn(cluster_loop(Arc::clone(&inner), started.events));
        inner.tasks.spawn(steal_loop(Arc::clone(&inner)));
        inner
            .tasks
            .spawn(Arc::clone(&inner.consensus).upkeep(inner.shutdown.clone()));
        let node = Node {
            inner: Arc::clone(&inner),
        };
        if inner.config.raft && inner.config.slots > 0 {
            let offer = Capabilities {
                labels: inner.config.labels.clone(),
                resources: inner.config.resources.clone(),
            };
            let max_jobs = inner.config.slots as usize * crate::jobs::runner::JOBS_PER_SLOT;
            let shutdown = inner.shutdown.clone();
            let consensus = Arc::clone(&inner.consensus);
            inner.tasks.spawn(crate::jobs::runner::run(
                node.clone(),
                consensus,
                offer,
                max_jobs,
                shutdown,
            ));
        }
        inner.tasks.close();
        tracing::info!(peer_id = %me, "node started");
        Ok(Node { inner })
    }
}

struct NodeInner {
    me: PeerId,
    node_id: NodeId,
    listen_addrs: Vec<Multiaddr>,
    config: NodeConfig,
    registry: Arc<Registry>,
    peers: Arc<Mutex<PeerTable>>,
    sched: Arc<Sched>,
    queues: Arc<QueueStore>,
    scripts: Arc<Scripts>,
    /// Owned here: the network holds it only weakly.
    _router: Arc<Router>,
    consensus: Arc<Consensus>,
    /// A temporary Raft directory for nodes without `data_dir`, removed
    /// when the node goes.
    _raft_dir: Option<tempfile::TempDir>,
    net: NetHandle,
    heartbeat_seq: AtomicU64,
    /// Wakes the steal loop when a heartbeat reports queued calls.
    peer_has_work: tokio::sync::Notify,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

/// One peer as this node sees it.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub peer_id: PeerId,
    pub liveness: Liveness,
    pub load: Heartbeat,
    /// Time since its last heartbeat.
    pub silent_for: Duration,
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl Node {
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            config: NodeConfig::default(),
            functions: Vec::new(),
            memoized: HashSet::new(),
            scripts: Vec::new(),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.inner.me
    }

    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// Where this node listens, each with its `/p2p/<peer id>` suffix so
    /// others can `--join` it.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner
            .listen_addrs
            .iter()
            .map(|addr| {
                addr.clone()
                    .with_p2p(self.inner.me)
                    .unwrap_or_else(|addr| addr)
            })
            .collect()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Calls `function` wherever it is best placed, with the default deadline.
    pub async fn call(&self, function: &str, args: Value) -> Result<Value, CallError> {
        self.inner
            .sched
            .call(function, args, CallOptions::default())
            .await
    }

    /// Calls `function` with a deadline `timeout` from now.
    pub async fn call_with_timeout(
        &self,
        function: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let options = CallOptions {
            deadline: Some(Instant::now() + timeout),
            script: None,
            job: None,
        };
        self.inner.sched.call(function, args, options).await
    }

    /// Runs many calls with at most `in_flight` at once; results come as
    /// they finish, each with the index of its call.
    pub fn call_many(
        &self,
        calls: impl IntoIterator<Item = (String, Value)>,
        in_flight: usize,
    ) -> impl Stream<Item = (usize, Result<Value, CallError>)> + Send + 'static {
        let node = self.clone();
        let calls: Vec<(String, Value)> = calls.into_iter().collect();
        futures::stream::iter(calls.into_iter().enumerate())
            .map(move |(index, (function, args))| {
                let node = node.clone();
                async move { (index, node.call(&function, args).await) }
            })
            .buffer_unordered(in_flight.max(1))
    }

    /// Loads a JavaScript script into this running node; returns the names
    /// of the functions it registered.
    pub async fn load_script(
        &self,
        script: shoal_js::Script,
    ) -> Result<Vec<String>, shoal_js::ScriptError> {
        let registered = self.inner.scripts.load(script).await?;
        Ok(registered.into_iter().map(|f| f.name).collect())
    }

    /// Calls `function` from `script`, which this node keeps and ships to
    /// whichever node runs the call, so no node needs it beforehand.
    pub async fn call_script(
        &self,
        script: shoal_js::Script,
        function: &str,
        args: Value,
    ) -> Result<Value, CallError> {
        let hash: Arc<str> = Arc::from(script.hash());
        self.inner
            .scripts
            .load(script)
            .await
            .map_err(|e| CallError::new(shoal_proto::ErrorCode::InvalidArguments, e.to_string()))?;
        let options = CallOptions {
            deadline: None,
            script: Some(hash),
            job: None,
        };
        self.inner.sched.call(function, args, options).await
    }

    /// A handle to the distributed queue `name`.
    pub fn queue(&self, name: &str) -> DistQueue {
        DistQueue {
            node: self.clone(),
            name: name.to_string(),
        }
    }

    /// Registers a function after start; peers learn it with the next heartbeat.
    pub fn register_function(&self, function: Function) {
        self.inner.registry.insert(function);
    }

    /// Every peer this node has heard of, dead ones included.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let peers = self.inner.peers.lock().expect("peers lock");
        let mut list: Vec<PeerStatus> = peers
            .all()
            .map(|(peer, info)| PeerStatus {
                peer_id: *peer,
                liveness: info.liveness,
                load: info.load.clone(),
                silent_for: now.saturating_duration_since(info.last_seen),
            })
            .collect();
        list.sort_by_key(|p| p.peer_id);
        list
    }

    pub(crate) fn live_peers(&self) -> Vec<PeerId> {
        let peers = self.inner.peers.lock().expect("peers lock");
        peers.live().map(|(peer, _)| *peer).collect()
    }

    /// Live peers that said they hold items of queue `name`, fullest first.
    pub(crate) fn queue_holders(&self, name: &str) -> Vec<PeerId> {
        let peers = self.inner.peers.lock().expect("peers lock");
        let mut holders: Vec<(PeerId, u64)> = peers
            .live()
            .filter_map(|(peer, info)| {
                let held = info.load.queue_items.iter().find(|(q, _)| q == name)?.1;
                Some((*peer, held))
            })
            .collect();
        holders.sort_by_key(|h| std::cmp::Reverse(h.1));
        holders.into_iter().map(|(peer, _)| peer).collect()
    }

    pub(crate) fn queues(&self) -> &QueueStore {
        &self.inner.queues
    }

    pub(crate) fn sched(&self) -> &Arc<Sched> {
        &self.inner.sched
    }

    /// Counters of the scheduler (executed, re-dispatched, stolen, ...).
    pub fn stats(&self) -> &crate::sched::Stats {
        &self.inner.sched.stats
    }

    /// Waits until `count` peers are alive, or `timeout` passes; returns
    /// how many are alive.
    pub async fn wait_for_peers(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live_peers().len();
            if live >= count || Instant::now() >= deadline {
                return live;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this node has direct connections to `count` peers, or
    /// `timeout` passes; returns how many it has.
    pub async fn wait_for_connections(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let connected = self.inner.net.connected_peers().await.len();
            if connected >= count || Instant::now() >= deadline {
                return connected;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Dials another node.
    pub async fn dial(&self, addr: Multiaddr) {
        self.inner.net.dial(addr).await;
    }

    /// Stops the node: pending calls fail with `shutting_down`, tasks end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.sched.fail_all_pending();
        self.inner.tasks.wait().await;
        self.inner.consensus.shutdown().await;
    }

    pub(crate) fn consensus(&self) -> &Arc<Consensus> {
        &self.inner.consensus
    }

    /// The call a job's attempt makes: its function, through the fast path,
    /// with the job's script shipped along if it has one.
    pub(crate) async fn run_job_call(&self, job: &Job) -> Result<Value, CallError> {
        let spec = &job.spec;
        let mut options = CallOptions {
            deadline: None,
            script: None,
            job: Some(shoal_proto::JobRef {
                id: job.id,
                attempt: job.attempt,
            }),
        };
        if let Some((name, source)) = &spec.script {
            let script = shoal_js::Script::new(name.clone(), source.clone());
            options.script = Some(Arc::from(script.hash()));
            self.inner.scripts.load(script).await.map_err(|e| {
                CallError::new(shoal_proto::ErrorCode::InvalidArguments, e.to_string())
            })?;
        }
        self.inner
            .sched
            .call(&spec.function, spec.args.clone(), options)
            .await
    }
}

/// Sends functions' progress reports to the job table as Raft writes, off
/// the caller's path; a report that cannot be written is only logged.
fn progress_sink(consensus: &Arc<Consensus>) -> crate::sched::ProgressSink {
    let consensus = Arc::downgrade(consensus);
    // Reports may come from JavaScript worker threads, outside the runtime.
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |job, fraction, message| {
        let Some(consensus) = consensus.upgrade() else {
            return;
        };
        runtime.spawn(async move {
            let progress = crate::jobs::JobCommand::Progress {
                id: job.id,
                attempt: job.attempt,
                fraction,
                message,
            };
            if let Err(e) = consensus
                .write(crate::raft::types::Command::Jobs(progress))
                .await
            {
                tracing::debug!(job = job.id, error = %e, "progress not recorded");
            }
        });
    })
}

/// Starts Raft in `<data_dir>/raft`, or in a temporary directory for nodes
/// without a data directory; a node with nobody to join starts the group.
async fn start_consensus(
    config: &NodeConfig,
    me: PeerId,
    rpc: Arc<RpcClient>,
    peers: Arc<Mutex<PeerTable>>,
) -> Result<(Arc<Consensus>, Option<tempfile::TempDir>), StartError> {
    if !config.raft {
        return Ok((Consensus::client_only(me, rpc, peers), None));
    }
    let (dir, temporary) = match &config.data_dir {
        Some(dir) => (dir.join("raft"), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("shoal-raft-")
                .tempdir()
                .map_err(|e| {
                    StartError::Consensus(format!("cannot create a temporary Raft directory: {e}"))
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Consensus(format!("cannot create {}: {e}", dir.display())))?;
    let consensus = Consensus::start(&dir, me, rpc, peers, config.join.is_empty())
        .await
        .map_err(|e| StartError::Consensus(e.to_string()))?;
    Ok((consensus, temporary))
}

fn heartbeat(inner: &NodeInner) -> Heartbeat {
    let load = inner.sched.load();
    let backlog = (load.queued + load.busy) as u64;
    Heartbeat {
        version: PROTOCOL_VERSION,
        seq: inner.heartbeat_seq.fetch_add(1, Ordering::Relaxed),
        slots: load.slots,
        queued: load.queued,
        running: load.busy,
        mean_task_us: load.mean_task_us,
        drain_ms: backlog * load.mean_task_us / u64::from(load.slots.max(1)) / 1000,
        functions: inner.registry.advertised(),
        queue_items: inner.queues.advertised(),
    }
}

fn on_member_events(inner: &NodeInner, events: Vec<MemberEvent>) {
    for event in events {
        match event {
            MemberEvent::Joined(peer) => tracing::info!(%peer, "node joined"),
            MemberEvent::Suspected(peer) => {
                tracing::warn!(%peer, "node is late with its heartbeat")
            }
            MemberEvent::Died(peer, reason) => {
                tracing::warn!(%peer, reason, "node left or died");
                inner.sched.on_peer_dead(peer);
            }
        }
    }
}

/// Publishes heartbeats, ages the peer table, and acts on membership changes.
async fn cluster_loop(inner: Arc<NodeInner>, mut events: mpsc::Receiver<NetEvent>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_versions = HashSet::new();
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            Some(event) = events.recv() => match event {
                NetEvent::Heartbeat(peer, load) => {
                    if load.version != PROTOCOL_VERSION {
                        if warned_versions.insert(peer) {
                            tracing::warn!(%peer, theirs = load.version, ours = PROTOCOL_VERSION,
                                "peer speaks another protocol version; run the same shoal version on every node");
                        }
                        continue;
                    }
                    if load.queued > 0 {
                        inner.peer_has_work.notify_one();
                    }
                    let event = inner.peers.lock().expect("peers lock").on_heartbeat(peer, load, Instant::now());
                    on_member_events(&inner, event.into_iter().collect());
                }
                NetEvent::Connected(_) => {
                    let greeter = Arc::clone(&inner);
                    tokio::spawn(async move {
                        tokio::time::sleep(GREETING_DELAY).await;
                        greeter.net.publish(heartbeat(&greeter).encode());
                    });
                }
                NetEvent::Disconnected(peer) => {
                    let event = inner.peers.lock().expect("peers lock").on_disconnected(peer);
                    on_member_events(&inner, event.into_iter().collect());
                }
            },
            _ = tick.tick() => {
                inner.net.publish(heartbeat(&inner).encode());
                let now = Instant::now();
                let events = {
                    let mut peers = inner.peers.lock().expect("peers lock");
                    peers.forget_dead(now, FORGET_DEAD_AFTER);
                    peers.tick(now)
                };
                on_member_events(&inner, events);
            }
        }
    }
}

/// Looks for work to steal while some peer reports queued calls, and sleeps
/// until a heartbeat reports some otherwise, so an idle cluster stays idle.
async fn steal_loop(inner: Arc<NodeInner>) {
    if inner.config.slots == 0 {
        return;
    }
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => break,
            _ = inner.peer_has_work.notified() => {}
        }
        while inner.sched.steal_tick() {
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(STEAL_INTERVAL) => {}
            }
        }
    }
}
