//! Building and starting a node. Every part is handed what it needs when it
//! is built, in this order:
//!
//! 1. **listeners**: the HTTP port, so a busy port fails the start before
//!    anything runs;
//! 2. **network**: identity, the swarm's event loop, the call links and
//!    the Raft inbox;
//! 3. **functions**: the registry (the builder's functions, the queue's
//!    internal ones) and the scripts;
//! 4. **calls**: owner and executor, with the channels their reports go
//!    to; then the links' driver, which hands call frames to them;
//! 5. **consensus**: Raft, on its RPC client over the links;
//! 6. **tasks**, each on the node's task tracker: the Raft server, the
//!    thief, the progress recorder, Raft upkeep, the cluster task, the job
//!    runner, the HTTP server.
//!
//! Raft frames wait in their bounded inbox until the Raft server starts,
//! and streams are only read once the calls exist, so no part is ever
//! asked to work before it exists.

use super::drain_progress::DrainProgress;
use super::handle::{Node, NodeInner};
use crate::calls::context::{CallContext, ProgressReport};
use crate::calls::inbound::CallFrames;
use crate::calls::registry::{FnResult, Function, Registry};
use crate::calls::scripts::Scripts;
use crate::calls::workers::Workers;
use crate::calls::{Calls, CallsParts, StealAnswers, steal};
use crate::cluster::heartbeat::OwnHeartbeat;
use crate::cluster::peers::{PeerTable, PeerView};
use crate::cluster::swim::SwimId;
use crate::cluster::task::{ClusterTask, UNREACHABLE_QUEUE};
use crate::config::NodeConfig;
use crate::identity::IdentityError;
use crate::jobs::Capabilities;
use crate::jobs::runner::{JOBS_PER_SLOT, JobRunner};
use crate::net::links::{LinkDriver, LinkError, Links, RaftInbox};
use crate::net::{self, NetError, NetEvent, NetHandle, TopicDelivery};
use crate::queue::QueueStore;
use crate::raft::consensus::{Consensus, ConsensusError};
use crate::raft::network::RpcClient;
use crate::telemetry::alerts::Alerts;
use crate::telemetry::events::Events;
use crate::telemetry::logs::LogRing;
use crate::telemetry::usage::ProcessUsage;
use crate::topics::TopicHub;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use shoal_proto::NodeId;
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, atomic::AtomicUsize};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A suspected member has at least this long to refute: a node that was
/// merely slow to answer a probe (a busy machine, a short pause) hears of
/// the suspicion and clears it well within it.
const MIN_SUSPICION: Duration = Duration::from_secs(1);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("network: {0}")]
    Network(#[from] NetError),
    #[error("call links: {0}")]
    Links(#[from] LinkError),
    #[error(transparent)]
    Script(#[from] shoal_js::ScriptError),
    #[error("consensus: {0}")]
    Consensus(#[from] ConsensusError),
    #[error("cannot create the Raft directory {path}: {source}")]
    RaftDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "HTTP API: cannot listen on {addr}: {source} (pick another address with --http, or --http off)"
    )]
    Http {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Builds a [`Node`]: settings and functions first, then `start`.
pub struct NodeBuilder {
    config: NodeConfig,
    functions: Vec<Function>,
    memoized: HashSet<String>,
    scripts: Vec<shoal_js::Script>,
    logs: Arc<LogRing>,
}

impl Node {
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            config: NodeConfig::default(),
            functions: Vec::new(),
            memoized: HashSet::new(),
            scripts: Vec::new(),
            logs: LogRing::warnings(),
        }
    }
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

    /// Serves `logs` at `GET /v1/logs`. The ring fills only where its
    /// [`layer`](LogRing::layer) is in the process's `tracing` subscriber;
    /// without this the node serves an empty ring of its own.
    pub fn logs(mut self, logs: Arc<LogRing>) -> Self {
        self.logs = logs;
        self
    }

    /// Starts the node. Returns once it listens; it finds its peers after.
    pub async fn start(self) -> Result<Node, StartError> {
        let NodeBuilder {
            config,
            functions,
            memoized,
            scripts,
            logs,
        } = self;
        let lifetime = Lifetime {
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        let http = bind_http(&config).await?;
        let (network, link_driver) = start_network(&config, &lifetime).await?;
        let functions =
            load_functions(&config, &network, functions, memoized, scripts, &lifetime).await?;
        let calls = build_calls(&config, &network, &functions, &lifetime);
        let frames = Arc::new(CallFrames(Arc::clone(&calls.calls)));
        lifetime.tasks.spawn(link_driver.run(frames));
        let rpc = RpcClient::new(network.links.clone());
        let (consensus, raft_dir) =
            start_consensus(&config, network.me, rpc, network.peers.clone()).await?;
        let assembled = Assembled {
            config,
            network,
            functions,
            calls,
            consensus,
            raft_dir,
            logs,
            lifetime,
        };
        Ok(assembled.run(http))
    }
}

/// What every task of the node runs under: the tracker `shutdown` waits on,
/// and the token that tells them to stop.
struct Lifetime {
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Step 2's result: the network, the call links and the peer table.
struct Network {
    me: PeerId,
    handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    listen_addrs: Vec<Multiaddr>,
    udp_addr: Option<std::net::SocketAddr>,
    topic_deliveries: mpsc::Receiver<TopicDelivery>,
    links: Links,
    raft_inbox: RaftInbox,
    /// The peer table's writing end, for the cluster task.
    table: watch::Sender<PeerTable>,
    peers: PeerView,
}

/// Step 3's result: every function this node can run, and the services
/// whose internal functions are among them.
struct Functions {
    registry: Arc<Registry>,
    scripts: Arc<Scripts>,
    /// What the scripts loaded at start registered.
    script_functions: Vec<String>,
    queues: Arc<QueueStore>,
    topics: Arc<TopicHub>,
}

/// Step 4's result: the calls, and the receiving ends of what they report.
struct CallsBuilt {
    calls: Arc<Calls>,
    steal_answers: StealAnswers,
    progress: mpsc::Receiver<ProgressReport>,
    unreachable: mpsc::Receiver<PeerId>,
}

async fn bind_http(config: &NodeConfig) -> Result<Option<tokio::net::TcpListener>, StartError> {
    let Some(addr) = config.http else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Http { addr, source })?;
    Ok(Some(listener))
}

/// The network, and the links' driver, which must run for streams to open
/// and be read (it starts once the calls it hands frames to exist).
async fn start_network(
    config: &NodeConfig,
    lifetime: &Lifetime,
) -> Result<(Network, LinkDriver), StartError> {
    let keypair = crate::identity::load_or_create(config.data_dir.as_deref())?;
    let me = keypair.public().to_peer_id();
    let started = net::start(keypair, config, &lifetime.tasks, lifetime.shutdown.clone()).await?;
    let (links, link_driver, raft_inbox) = Links::new(
        started.control,
        config.idle_timeout,
        lifetime.tasks.clone(),
        lifetime.shutdown.clone(),
    )?;
    let (table, peers) = PeerView::new(PeerTable::new());
    let network = Network {
        me,
        handle: started.handle,
        events: started.events,
        listen_addrs: with_peer_id(&started.listen_addrs, me),
        udp_addr: started.udp_addr,
        topic_deliveries: started.topic_deliveries,
        links,
        raft_inbox,
        table,
        peers,
    };
    Ok((network, link_driver))
}

async fn load_functions(
    config: &NodeConfig,
    network: &Network,
    functions: Vec<Function>,
    memoized: HashSet<String>,
    scripts: Vec<shoal_js::Script>,
    lifetime: &Lifetime,
) -> Result<Functions, StartError> {
    let me = network.me;
    let queues = Arc::new(QueueStore::default());
    let topics = Arc::new(TopicHub::new(me, network.handle.clone()));
    let registry = Arc::new(Registry::default());
    let internal = queues
        .functions()
        .into_iter()
        .chain(crate::queue::functions::functions(&queues, &network.peers))
        .chain(crate::topics::functions::functions(&topics));
    for mut function in functions.into_iter().chain(internal) {
        function.memoize |= memoized.contains(function.name.as_ref());
        registry.insert(function);
    }
    let engines = shoal_js::EngineConfig {
        workers: config.slots.max(1) as usize,
        memory_limit: config.js_memory_limit,
        time_limit: config.js_time_limit,
        ..shoal_js::EngineConfig::default()
    };
    let runs_calls = config.slots > 0;
    let loaded = Arc::new(Scripts::new(
        engines,
        runs_calls,
        me.to_base58(),
        Arc::clone(&registry),
        lifetime.tasks.clone(),
    ));
    let mut script_functions = Vec::new();
    for script in scripts {
        let registered = loaded.load(script).await?;
        script_functions.extend(registered.into_iter().map(|f| f.name));
    }
    Ok(Functions {
        registry,
        scripts: loaded,
        script_functions,
        queues,
        topics,
    })
}

fn build_calls(
    config: &NodeConfig,
    network: &Network,
    functions: &Functions,
    lifetime: &Lifetime,
) -> CallsBuilt {
    let (progress_sender, progress) = mpsc::channel(crate::jobs::progress::PROGRESS_QUEUE);
    let (unreachable_sender, unreachable) = mpsc::channel(UNREACHABLE_QUEUE);
    let (calls, steal_answers) = Calls::new(CallsParts {
        me: network.me,
        slots: config.slots,
        queue_capacity: config.max_queued_calls,
        max_pending: config.max_pending_calls,
        default_deadline: config.default_deadline,
        memo_capacity: config.memo_capacity,
        registry: Arc::clone(&functions.registry),
        scripts: Arc::clone(&functions.scripts),
        peers: network.peers.clone(),
        links: network.links.clone(),
        progress: progress_sender,
        unreachable: unreachable_sender,
        tasks: lifetime.tasks.clone(),
    });
    CallsBuilt {
        calls,
        steal_answers,
        progress,
        unreachable,
    }
}

/// Everything built; what is left is to start the tasks.
struct Assembled {
    config: NodeConfig,
    network: Network,
    functions: Functions,
    calls: CallsBuilt,
    consensus: Arc<Consensus>,
    raft_dir: Option<tempfile::TempDir>,
    logs: Arc<LogRing>,
    lifetime: Lifetime,
}

impl Assembled {
    /// Step 6: starts every other task.
    fn run(self, http: Option<tokio::net::TcpListener>) -> Node {
        let Assembled {
            config,
            network,
            functions,
            calls,
            consensus,
            raft_dir,
            logs,
            lifetime: Lifetime { tasks, shutdown },
        } = self;
        let me = network.me;
        tasks.spawn(crate::raft::server::serve(
            Arc::clone(&consensus),
            network.raft_inbox,
            tasks.clone(),
            shutdown.clone(),
        ));
        if config.slots > 0 {
            let thief = steal::run(
                Arc::clone(&calls.calls),
                calls.steal_answers,
                shutdown.clone(),
            );
            tasks.spawn(thief);
        }
        tasks.spawn(crate::jobs::progress::record(
            Arc::clone(&consensus),
            calls.progress,
            shutdown.clone(),
        ));
        tasks.spawn(Arc::clone(&consensus).upkeep(shutdown.clone()));
        tasks.spawn(crate::topics::hub::receive(
            Arc::clone(&functions.topics),
            network.topic_deliveries,
            shutdown.clone(),
        ));
        let api_addr = http
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let swim_id = SwimId::for_node(me, &network.listen_addrs, network.udp_addr);
        let own = Arc::new(OwnHeartbeat {
            calls: Arc::clone(&calls.calls),
            registry: Arc::clone(&functions.registry),
            queues: Arc::clone(&functions.queues),
            addrs: network.listen_addrs,
            api: api_addr,
            labels: config.labels.clone(),
            resources: config.resources.clone(),
            usage: ProcessUsage::default(),
            consensus: Arc::clone(&consensus),
            version: config.protocol_version,
        });
        let events = Arc::<Events>::default();
        let cluster = ClusterTask {
            table: network.table,
            net: network.handle.clone(),
            net_events: network.events,
            unreachable: calls.unreachable,
            calls: Arc::clone(&calls.calls),
            own: Arc::clone(&own),
            consensus: Arc::clone(&consensus),
            events: Arc::clone(&events),
            alerts: Alerts::new(config.alert_load),
            heartbeat_interval: config.heartbeat_interval,
            suspicion: (config.heartbeat_interval * config.heartbeat_misses.max(1))
                .max(MIN_SUSPICION),
            me: swim_id,
        };
        tasks.spawn(cluster.run(shutdown.clone()));
        let jobs_running = Arc::new(AtomicUsize::new(0));
        // Every member runs one: a node without slots leases nothing, but
        // as the leader it still expires and releases leases.
        if config.raft {
            let runner = JobRunner {
                me,
                consensus: Arc::clone(&consensus),
                peers: network.peers.clone(),
                calls: Arc::clone(&calls.calls),
                scripts: Arc::clone(&functions.scripts),
                offer: Capabilities {
                    labels: config.labels.clone(),
                    resources: config.resources.clone(),
                },
                max_jobs: config.slots as usize * JOBS_PER_SLOT,
                max_local_jobs: config.slots as usize,
                running: Arc::clone(&jobs_running),
            };
            let jobs = crate::jobs::runner::run(runner, tasks.clone(), shutdown.clone());
            tasks.spawn(jobs);
        }
        let node = Node {
            inner: Arc::new(NodeInner {
                me,
                node_id: NodeId(me.to_base58()),
                config,
                workers: Workers::new(Arc::clone(&functions.registry), tasks.clone()),
                registry: functions.registry,
                peers: network.peers,
                calls: calls.calls,
                queues: functions.queues,
                scripts: functions.scripts,
                topics: functions.topics,
                script_subscribers: Mutex::default(),
                consensus,
                own,
                jobs_running,
                drain: DrainProgress::default(),
                _raft_dir: raft_dir,
                events,
                logs,
                started_at: Instant::now(),
                member_job_counts: Mutex::default(),
                api_addr,
                net: network.handle,
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
            }),
        };
        node.serve_script_subscribers(&functions.script_functions);
        if let Some(listener) = http {
            let app = crate::http::router(node.clone());
            tasks.spawn(crate::http::serve(listener, app, shutdown));
        }
        tracing::info!(peer_id = %me, api = ?api_addr, "node started");
        node
    }
}

fn with_peer_id(addrs: &[Multiaddr], me: PeerId) -> Vec<Multiaddr> {
    addrs
        .iter()
        .map(|addr| net::dialable(addr.clone(), me))
        .collect()
}

/// Starts Raft in `<data_dir>/raft`, or in a temporary directory for nodes
/// without a data directory; a node with nobody to join starts the group.
async fn start_consensus(
    config: &NodeConfig,
    me: PeerId,
    rpc: Arc<RpcClient>,
    peers: PeerView,
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
                .map_err(|source| StartError::RaftDir {
                    path: std::env::temp_dir(),
                    source,
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|source| StartError::RaftDir {
        path: dir.clone(),
        source,
    })?;
    let bootstrap = config.join.is_empty();
    let consensus = Consensus::start(
        &dir,
        me,
        rpc,
        peers,
        bootstrap,
        &config.raft_snapshots,
        config.raft_standbys,
    )
    .await?;
    Ok((consensus, temporary))
}
