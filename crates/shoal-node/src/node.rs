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
use crate::events::Events;
use crate::jobs::{Capabilities, Job, JobId, JobState};
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
use shoal_proto::api::{CallCounters, ClusterView, EventKind, Member, NodeStatus};
use shoal_proto::wire::PROTOCOL_VERSION;
use shoal_proto::{CallError, Heartbeat, NodeId};
use std::collections::{BTreeMap, HashSet};
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
/// How long HTTP requests under way may take to finish once the node stops.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Jobs dead-lettered longer ago than this (seen while catching up on the
/// log) are not reported as news.
const DEAD_LETTER_NEWS_MS: u64 = 60_000;

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
    #[error("HTTP API: {0}")]
    Http(String),
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
        let http_listener = match config.http {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                StartError::Http(format!(
                    "cannot listen on {addr}: {e} (pick another address with --http, or --http off)"
                ))
            })?),
            None => None,
        };
        let api_addr = match &http_listener {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .map_err(|e| StartError::Http(e.to_string()))?,
            ),
            None => None,
        };
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
            events: Arc::new(Events::default()),
            started_at: Instant::now(),
            api_addr,
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
        if let Some(listener) = http_listener {
            let app = crate::http::router(node.clone());
            let shutdown = inner.shutdown.clone();
            inner.tasks.spawn(async move {
                let server = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
                // Requests under way get a moment to finish; then their
                // connections are closed, so a client that never hangs up
                // cannot hold the node open.
                let grace = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(HTTP_SHUTDOWN_GRACE).await;
                };
                tokio::select! {
                    served = server => if let Err(e) = served {
                        tracing::error!(error = %e, "HTTP API stopped");
                    },
                    () = grace => tracing::debug!("HTTP connections closed after the grace period"),
                }
            });
        }
        inner.tasks.close();
        tracing::info!(peer_id = %me, api = ?api_addr, "node started");
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
    events: Arc<Events>,
    started_at: Instant,
    api_addr: Option<std::net::SocketAddr>,
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
        listen_addrs(&self.inner)
    }

    /// Where this node serves its HTTP API, if it does.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.api_addr
    }

    /// Cancelled when the node begins to stop; long-running streams end then.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// What this node saw happen: joins, departures, leader changes, alerts.
    pub fn events(&self) -> &Events {
        &self.inner.events
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
        self.call_with(function, args, Some(timeout), None).await
    }

    /// Calls `function` with an optional deadline `timeout` from now and an
    /// optional script that defines it (shipped to whichever node runs it).
    pub async fn call_with(
        &self,
        function: &str,
        args: Value,
        timeout: Option<Duration>,
        script: Option<shoal_js::Script>,
    ) -> Result<Value, CallError> {
        let script = match script {
            Some(script) => {
                let hash: Arc<str> = Arc::from(script.hash());
                self.inner.scripts.load(script).await.map_err(|e| {
                    CallError::new(shoal_proto::ErrorCode::InvalidArguments, e.to_string())
                })?;
                Some(hash)
            }
            None => None,
        };
        let options = CallOptions {
            deadline: timeout.map(|timeout| Instant::now() + timeout),
            script,
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
        self.call_with(function, args, None, Some(script)).await
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

    /// Outcomes and latency of the calls started on this node.
    pub fn call_metrics(&self) -> &crate::metrics::CallMetrics {
        &self.inner.sched.calls
    }

    /// This node: load, call counters, Raft, jobs in its replica.
    pub fn status(&self) -> NodeStatus {
        let inner = &self.inner;
        let load = inner.sched.load();
        let stats = &inner.sched.stats;
        NodeStatus {
            peer_id: inner.me.to_base58(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: inner.started_at.elapsed().as_millis() as u64,
            listen: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            api: inner.api_addr.map(|addr| format!("http://{addr}")),
            slots: load.slots,
            running: load.busy,
            queued: load.queued,
            peers_alive: self.live_peers().len(),
            calls: CallCounters {
                ok: inner.sched.calls.ok(),
                failed: inner.sched.calls.failed(),
                executed: stats.executed.load(Ordering::Relaxed),
                stolen: stats.stolen.load(Ordering::Relaxed),
                redispatched: stats.redispatched.load(Ordering::Relaxed),
            },
            raft: inner.consensus.status(),
            jobs: self.local_job_counts(),
        }
    }

    /// Jobs by state in this node's replica (empty on non-members).
    fn local_job_counts(&self) -> BTreeMap<String, usize> {
        self.inner
            .consensus
            .read_local(|state| {
                let counts = state.jobs.counts();
                counts
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_string(), n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every node this one knows, itself first, and Raft as it sees it.
    pub fn cluster_view(&self) -> ClusterView {
        let own = heartbeat(&self.inner);
        let mut members = vec![member(
            self.inner.me,
            &own,
            Liveness::Alive,
            Duration::ZERO,
            true,
        )];
        members.extend(
            self.peers()
                .iter()
                .map(|p| member(p.peer_id, &p.load, p.liveness, p.silent_for, false)),
        );
        ClusterView {
            members,
            raft: self.inner.consensus.status(),
        }
    }

    /// The node's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let status = self.status();
        let snapshot = crate::metrics::Snapshot {
            slots: status.slots,
            busy: status.running,
            queued: status.queued,
            executed: status.calls.executed,
            stolen: status.calls.stolen,
            redispatched: status.calls.redispatched,
            peers_alive: status.peers_alive,
            jobs: status.jobs,
            raft: status.raft,
        };
        crate::metrics::render(&self.inner.sched.calls, snapshot)
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
        if let Some(source) = &spec.script {
            let script = shoal_js::Script::new(source.name.clone(), source.source.clone());
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

/// Publishes this node's heartbeat, numbered so each message is unique.
fn publish_heartbeat(inner: &NodeInner) {
    let seq = inner.heartbeat_seq.fetch_add(1, Ordering::Relaxed);
    inner.net.publish(
        Heartbeat {
            seq,
            ..heartbeat(inner)
        }
        .encode(),
    );
}

/// This node as its heartbeat describes it (unnumbered).
fn heartbeat(inner: &NodeInner) -> Heartbeat {
    let load = inner.sched.load();
    let backlog = (load.queued + load.busy) as u64;
    Heartbeat {
        version: PROTOCOL_VERSION,
        seq: 0,
        slots: load.slots,
        queued: load.queued,
        running: load.busy,
        mean_task_us: load.mean_task_us,
        drain_ms: backlog * load.mean_task_us / u64::from(load.slots.max(1)) / 1000,
        functions: inner.registry.advertised(),
        queue_items: inner.queues.advertised(),
        executed: inner.sched.stats.executed.load(Ordering::Relaxed),
        addrs: listen_addrs(inner).iter().map(|a| a.to_string()).collect(),
        api: inner.api_addr.map(|addr| format!("http://{addr}")),
        labels: inner.config.labels.clone().into_iter().collect(),
        resources: inner.config.resources.clone().into_iter().collect(),
    }
}

fn member(
    peer: PeerId,
    load: &Heartbeat,
    liveness: Liveness,
    silent: Duration,
    is_self: bool,
) -> Member {
    Member {
        peer_id: peer.to_base58(),
        is_self,
        liveness: liveness.as_str().to_string(),
        addrs: load.addrs.clone(),
        api: load.api.clone(),
        labels: load.labels.iter().cloned().collect(),
        resources: load.resources.iter().cloned().collect(),
        slots: load.slots,
        running: load.running,
        queued: load.queued,
        executed: load.executed,
        mean_task_us: load.mean_task_us,
        drain_ms: load.drain_ms,
        silent_ms: silent.as_millis() as u64,
    }
}

fn listen_addrs(inner: &NodeInner) -> Vec<Multiaddr> {
    inner
        .listen_addrs
        .iter()
        .map(|addr| addr.clone().with_p2p(inner.me).unwrap_or_else(|addr| addr))
        .collect()
}

fn on_member_events(inner: &NodeInner, events: Vec<MemberEvent>) {
    for event in events {
        let (kind, peer, message) = match event {
            MemberEvent::Joined(peer) => {
                (EventKind::NodeJoined, peer, format!("node {peer} joined"))
            }
            MemberEvent::Suspected(peer) => (
                EventKind::NodeSuspected,
                peer,
                format!("node {peer} is late with its heartbeat"),
            ),
            MemberEvent::Recovered(peer) => (
                EventKind::NodeRecovered,
                peer,
                format!("node {peer} is heard from again"),
            ),
            MemberEvent::Died(peer, reason) => {
                inner.sched.on_peer_dead(peer);
                (
                    EventKind::NodeLeft,
                    peer,
                    format!("node {peer} left or died: {reason}"),
                )
            }
        };
        inner.events.emit(kind, Some(peer.to_base58()), message);
    }
}

/// What the cluster loop remembers between ticks to report changes once.
#[derive(Default)]
struct Watch {
    leader: Option<String>,
    overloaded: HashSet<String>,
    dead_letters: usize,
    newest_dead_letter_ms: u64,
}

/// Reports changes seen once per heartbeat: a new Raft leader, nodes over
/// or back under the load threshold, newly dead-lettered jobs.
fn watch_tick(inner: &NodeInner, watch: &mut Watch) {
    let raft = inner.consensus.status();
    if raft.leader.is_some() && raft.leader != watch.leader {
        let leader = raft.leader.clone();
        let message = format!(
            "Raft leader is now {} (term {})",
            leader.as_deref().unwrap_or("?"),
            raft.term
        );
        inner
            .events
            .emit(EventKind::LeaderChanged, leader.clone(), message);
        watch.leader = leader;
    }

    let own = (inner.me.to_base58(), heartbeat_load(inner));
    let loads: Vec<(String, u32, u32)> = {
        let peers = inner.peers.lock().expect("peers lock");
        peers
            .live()
            .map(|(peer, info)| {
                (
                    peer.to_base58(),
                    info.load.slots,
                    info.load.running + info.load.queued,
                )
            })
            .chain(std::iter::once((own.0, own.1.0, own.1.1)))
            .collect()
    };
    for (node, slots, backlog) in loads {
        if slots == 0 {
            continue;
        }
        let load = f64::from(backlog) / f64::from(slots);
        let over = load >= inner.config.alert_load;
        if over && watch.overloaded.insert(node.clone()) {
            let message = format!(
                "node {node} is overloaded: {backlog} calls for {slots} slots (alert at {} per slot)",
                inner.config.alert_load
            );
            inner
                .events
                .emit(EventKind::Overloaded, Some(node), message);
        } else if !over && load < inner.config.alert_load / 2.0 && watch.overloaded.remove(&node) {
            let message =
                format!("node {node} is back to normal load: {backlog} calls for {slots} slots");
            inner
                .events
                .emit(EventKind::LoadNormal, Some(node), message);
        }
    }

    let dead: Vec<(JobId, u64, String, String)> = inner
        .consensus
        .read_local(|state| {
            let count = state
                .jobs
                .counts()
                .get(&JobState::DeadLetter)
                .copied()
                .unwrap_or(0);
            if count == watch.dead_letters {
                return Vec::new();
            }
            watch.dead_letters = count;
            state
                .jobs
                .list(Some(JobState::DeadLetter))
                .filter(|job| job.finished_ms.unwrap_or(0) > watch.newest_dead_letter_ms)
                .map(|job| {
                    let error = job.error.clone().unwrap_or_default();
                    (
                        job.id,
                        job.finished_ms.unwrap_or(0),
                        job.spec.function.clone(),
                        error,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let recent = crate::jobs::runner::now_ms().saturating_sub(DEAD_LETTER_NEWS_MS);
    for (id, finished_ms, function, error) in dead {
        watch.newest_dead_letter_ms = watch.newest_dead_letter_ms.max(finished_ms);
        if finished_ms >= recent {
            let message = format!("job {id} ({function}) failed every attempt: {error}");
            inner.events.emit(EventKind::JobDeadLettered, None, message);
        }
    }
}

/// (slots, running + queued) of this node.
fn heartbeat_load(inner: &NodeInner) -> (u32, u32) {
    let load = inner.sched.load();
    (load.slots, load.busy + load.queued)
}

/// Publishes heartbeats, ages the peer table, and acts on membership changes.
async fn cluster_loop(inner: Arc<NodeInner>, mut events: mpsc::Receiver<NetEvent>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_versions = HashSet::new();
    let mut watch = Watch::default();
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
                        publish_heartbeat(&greeter);
                    });
                }
                NetEvent::Disconnected(peer) => {
                    let event = inner.peers.lock().expect("peers lock").on_disconnected(peer);
                    on_member_events(&inner, event.into_iter().collect());
                }
            },
            _ = tick.tick() => {
                publish_heartbeat(&inner);
                let now = Instant::now();
                let events = {
                    let mut peers = inner.peers.lock().expect("peers lock");
                    peers.forget_dead(now, FORGET_DEAD_AFTER);
                    peers.tick(now)
                };
                on_member_events(&inner, events);
                watch_tick(&inner, &mut watch);
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
