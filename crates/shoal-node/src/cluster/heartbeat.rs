//! This node as its heartbeat describes it: load, functions, queue items,
//! addresses, labels and resources.

use crate::calls::Calls;
use crate::calls::registry::Registry;
use crate::queue::QueueStore;
use crate::raft::consensus::Consensus;
use crate::telemetry::usage::ProcessUsage;
use libp2p::Multiaddr;
use shoal_proto::Heartbeat;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What this node's heartbeat is made from.
pub struct OwnHeartbeat {
    pub calls: Arc<Calls>,
    pub registry: Arc<Registry>,
    pub queues: Arc<QueueStore>,
    /// Listen addresses, each with its `/p2p/<peer id>` suffix.
    pub addrs: Vec<Multiaddr>,
    /// The HTTP API, if the node serves one.
    pub api: Option<std::net::SocketAddr>,
    pub labels: BTreeMap<String, String>,
    pub resources: BTreeMap<String, u64>,
    /// The process's CPU and memory, sampled before each heartbeat.
    pub usage: ProcessUsage,
    /// Its part in Raft, and whether jobs wait (on the leader).
    pub consensus: Arc<Consensus>,
    /// The protocol version it speaks (`NodeConfig::protocol_version`).
    pub version: u32,
}

impl OwnHeartbeat {
    /// This node now (unnumbered: `seq` 0).
    pub fn describe(&self) -> Heartbeat {
        let load = self.calls.load();
        let backlog = u64::from(load.queued + load.busy);
        let usage = self.usage.latest();
        Heartbeat {
            version: self.version,
            seq: 0,
            slots: load.slots,
            queued: load.queued,
            running: load.busy,
            mean_task_us: load.mean_task_us,
            drain_ms: backlog * load.mean_task_us / u64::from(load.slots.max(1)) / 1000,
            functions: self.registry.advertised(),
            queue_items: self.queues.advertised(),
            executed: self.calls.stats.executed.load(Ordering::Relaxed),
            addrs: self.addrs.iter().map(|a| a.to_string()).collect(),
            api: self.api.map(|addr| format!("http://{addr}")),
            labels: self.labels.clone().into_iter().collect(),
            resources: self.resources.clone().into_iter().collect(),
            cpu_percent: usage.cpu_percent,
            memory_bytes: usage.memory_bytes,
            raft: self.consensus.role(),
            jobs_waiting: self.consensus.jobs_waiting(),
            draining: self.calls.is_draining(),
        }
    }
}
