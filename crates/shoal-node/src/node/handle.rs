//! The embedding API: a [`Node`] handle to call functions, load scripts,
//! use queues, look at peers and stop the node.

use super::drain_progress::DrainProgress;
use crate::calls::registry::{Function, Registry};
use crate::calls::scripts::Scripts;
use crate::calls::workers::Workers;
use crate::calls::{CallOptions, Calls, Stats};
use crate::cluster::heartbeat::OwnHeartbeat;
use crate::cluster::peers::{Liveness, PeerView};
use crate::config::NodeConfig;
use crate::net::NetHandle;
use crate::queue::{DistQueue, QueueStore};
use crate::raft::consensus::Consensus;
use crate::telemetry::events::Events;
use crate::telemetry::logs::LogRing;
use crate::telemetry::metrics::CallMetrics;
use crate::topics::TopicHub;
use futures::{Stream, StreamExt};
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use shoal_proto::{CallError, ErrorCode, Heartbeat, NodeId};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The parts of a running node, as the builder assembled them.
pub(crate) struct NodeInner {
    pub(crate) me: PeerId,
    pub(crate) node_id: NodeId,
    pub(crate) config: NodeConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) peers: PeerView,
    pub(crate) calls: Arc<Calls>,
    pub(crate) queues: Arc<QueueStore>,
    pub(crate) scripts: Arc<Scripts>,
    /// Worker processes serving functions (`GET /v1/workers`).
    pub(crate) workers: Arc<Workers>,
    pub(crate) topics: Arc<TopicHub>,
    /// The `shoal.subscribe` handlers of loaded scripts being served.
    pub(crate) script_subscribers: Mutex<HashSet<String>>,
    pub(crate) consensus: Arc<Consensus>,
    /// This node as its heartbeat describes it.
    pub(crate) own: Arc<OwnHeartbeat>,
    /// Durable jobs running here now.
    pub(crate) jobs_running: Arc<AtomicUsize>,
    /// Where a drain stands.
    pub(crate) drain: DrainProgress,
    /// A temporary Raft directory for nodes without `data_dir`, removed
    /// when the node goes.
    pub(crate) _raft_dir: Option<tempfile::TempDir>,
    pub(crate) events: Arc<Events>,
    /// Recent warnings and errors, for `GET /v1/logs`.
    pub(crate) logs: Arc<LogRing>,
    pub(crate) started_at: Instant,
    /// Job counts a member gave this node (which holds no replica), and
    /// when; see `Node::job_counts_for_status`.
    pub(crate) member_job_counts: Mutex<Option<(Instant, BTreeMap<String, usize>)>>,
    pub(crate) api_addr: Option<std::net::SocketAddr>,
    pub(crate) net: NetHandle,
    pub(crate) shutdown: CancellationToken,
    /// Every task the node started; `shutdown` waits for all of them.
    pub(crate) tasks: TaskTracker,
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
    pub(crate) inner: Arc<NodeInner>,
}

impl Node {
    pub fn peer_id(&self) -> PeerId {
        self.inner.me
    }

    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// Where this node listens, each with its `/p2p/<peer id>` suffix so
    /// others can `--join` it.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.own.addrs.clone()
    }

    /// Where this node serves its HTTP API, if it does.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.api_addr
    }

    /// Cancelled when the node begins to stop; long-running streams end then.
    /// The worker processes connected to this node.
    pub fn workers(&self) -> Arc<Workers> {
        Arc::clone(&self.inner.workers)
    }

    pub fn stopping(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// What this node saw happen: joins, departures, leader changes, alerts.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// This node's recent log lines (see [`NodeBuilder::logs`](crate::NodeBuilder::logs)).
    pub fn logs(&self) -> &LogRing {
        &self.inner.logs
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Calls `function` wherever it is best placed, with the default deadline.
    pub async fn call(&self, function: &str, args: Value) -> Result<Value, CallError> {
        self.inner
            .calls
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
                self.inner
                    .scripts
                    .load(script)
                    .await
                    .map_err(|e| CallError::new(ErrorCode::InvalidArguments, e.to_string()))?;
                Some(hash)
            }
            None => None,
        };
        let options = CallOptions {
            deadline: timeout.map(|timeout| Instant::now() + timeout),
            script,
            job: None,
            on: None,
        };
        self.inner.calls.call(function, args, options).await
    }

    /// Runs every call at once, each with an optional deadline `timeout`
    /// from now; the results in the calls' order. Placed in a row against
    /// one picture of the load and sent a peer at a time, which suits a
    /// fan-out better than [`call_many`](Self::call_many).
    pub async fn call_all(
        &self,
        calls: Vec<(String, Value)>,
        timeout: Option<Duration>,
    ) -> Vec<Result<Value, CallError>> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        self.inner.calls.call_all(calls, deadline).await
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
        let names: Vec<String> = registered.into_iter().map(|f| f.name).collect();
        self.serve_script_subscribers(&names);
        Ok(names)
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
        DistQueue::new(
            name,
            Arc::clone(&self.inner.queues),
            Arc::clone(&self.inner.calls),
            self.inner.peers.clone(),
        )
    }

    /// Registers a function after start; peers learn it with the next heartbeat.
    pub fn register_function(&self, function: Function) {
        self.inner.registry.insert(function);
    }

    /// Every peer this node has heard of, dead ones included.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut list: Vec<PeerStatus> = self.inner.peers.read(|peers| {
            peers
                .all()
                .map(|(peer, info)| PeerStatus {
                    peer_id: *peer,
                    liveness: info.liveness,
                    load: info.load.clone(),
                    silent_for: now.saturating_duration_since(info.last_seen),
                })
                .collect()
        });
        list.sort_by_key(|p| p.peer_id);
        list
    }

    /// Counters of the calls (executed, re-dispatched, stolen, ...).
    pub fn stats(&self) -> &Stats {
        &self.inner.calls.stats
    }

    /// Outcomes and latency of the calls started on this node.
    pub fn call_metrics(&self) -> &CallMetrics {
        &self.inner.calls.metrics
    }

    /// Waits until `count` peers are alive, or `timeout` passes; returns
    /// how many are alive.
    pub async fn wait_for_peers(&self, count: usize, timeout: Duration) -> usize {
        self.inner
            .peers
            .wait_for(timeout, |peers| peers.live().count() >= count)
            .await;
        self.inner.peers.live_peers().len()
    }

    /// The peers this node holds a connection to now.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        self.inner.net.connected_peers().await
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

    /// How many tasks this node is running (0 once it has shut down).
    pub fn running_tasks(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Stops the node: pending calls fail with `shutting_down`, calls
    /// running here stop, and every task the node started ends before this
    /// returns.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.calls.stop();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.consensus.shutdown().await;
    }

    pub(crate) fn consensus(&self) -> &Arc<Consensus> {
        &self.inner.consensus
    }
}
