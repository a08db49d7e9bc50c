//! What a node reports about itself and the cluster: `shoal status`,
//! `GET /v1/cluster` and `GET /metrics`.

use super::Read;
use super::handle::Node;
use crate::cluster::peers::Liveness;
use crate::telemetry::metrics;
use libp2p::PeerId;
use shoal_proto::Heartbeat;
use shoal_proto::api::{CallCounters, ClusterView, Member, NodeStatus};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long job counts asked of a member serve a node's status.
const STATUS_JOB_COUNTS_EVERY: Duration = Duration::from_secs(1);
/// How long a node's status waits for a member's job counts, and its
/// cluster view for a member's Raft status.
const MEMBER_WAIT: Duration = Duration::from_millis(500);

impl Node {
    /// This node: load, call counters, Raft, jobs in its replica.
    pub fn status(&self) -> NodeStatus {
        let inner = &self.inner;
        let load = inner.calls.load();
        let stats = &inner.calls.stats;
        let usage = inner.own.usage.latest();
        NodeStatus {
            peer_id: inner.me.to_base58(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: inner.own.version,
            uptime_ms: inner.started_at.elapsed().as_millis() as u64,
            listen: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            api: inner.api_addr.map(|addr| format!("http://{addr}")),
            slots: load.slots,
            running: load.busy,
            queued: load.queued,
            peers_alive: inner.peers.live_peers().len(),
            cpu_percent: usage.cpu_percent,
            memory_bytes: usage.memory_bytes,
            calls: CallCounters {
                ok: inner.calls.metrics.ok(),
                failed: inner.calls.metrics.failed(),
                executed: stats.executed.load(Ordering::Relaxed),
                stolen: stats.stolen.load(Ordering::Relaxed),
                redispatched: stats.redispatched.load(Ordering::Relaxed),
            },
            raft: inner.consensus.status(),
            jobs: self.local_job_counts(),
        }
    }

    /// Jobs by state, for `shoal status`: from this node's replica, or on a
    /// node without one from a member, asked at most once a second so that
    /// something polling every node's status does not flood the members.
    pub async fn job_counts_for_status(&self) -> BTreeMap<String, usize> {
        if self.inner.consensus.holds_replica() {
            return self.local_job_counts();
        }
        let fresh = |cached: &Option<(Instant, BTreeMap<String, usize>)>| {
            cached
                .as_ref()
                .filter(|(at, _)| at.elapsed() < STATUS_JOB_COUNTS_EVERY)
                .map(|(_, counts)| counts.clone())
        };
        if let Some(counts) = fresh(&self.inner.member_job_counts.lock().expect("lock")) {
            return counts;
        }
        // A member that died a moment ago must not hold the status up.
        let asked = tokio::time::timeout(MEMBER_WAIT, self.job_counts(Read::Stale));
        let Ok(Ok(counts)) = asked.await else {
            return BTreeMap::new();
        };
        *self.inner.member_job_counts.lock().expect("lock") =
            Some((Instant::now(), counts.clone()));
        counts
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

    /// Every node this one knows, itself first, and Raft as a member sees
    /// it (this node, if it holds a replica).
    pub async fn cluster_view(&self) -> ClusterView {
        let own = self.inner.own.describe();
        let mut members = vec![member(
            self.inner.me,
            &own,
            Liveness::Alive.as_str(),
            Duration::ZERO,
            true,
        )];
        members.extend(
            self.peers()
                .iter()
                .map(|p| member(p.peer_id, &p.load, p.liveness.as_str(), p.silent_for, false)),
        );
        // Refused peers are listed, so an operator sees which node waits
        // for an upgrade; all that is known of one is its version.
        let now = Instant::now();
        let refused: Vec<Member> = self.inner.peers.read(|table| {
            table
                .refused()
                .map(|(peer, refused)| {
                    let load = Heartbeat {
                        version: refused.version,
                        ..Heartbeat::default()
                    };
                    let silent = now.saturating_duration_since(refused.last_seen);
                    member(*peer, &load, "incompatible", silent, false)
                })
                .collect()
        });
        members.extend(refused);
        // A view of the members must come at once, even while the Raft
        // member asked has just died.
        let asked = tokio::time::timeout(MEMBER_WAIT, self.raft_status_of_cluster());
        let raft = match asked.await {
            Ok(Some(raft)) => raft,
            _ => self.raft_status(),
        };
        ClusterView { members, raft }
    }

    /// The node's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let status = self.status();
        let snapshot = metrics::Snapshot {
            slots: status.slots,
            busy: status.running,
            queued: status.queued,
            executed: status.calls.executed,
            stolen: status.calls.stolen,
            redispatched: status.calls.redispatched,
            peers_alive: status.peers_alive,
            cpu_percent: status.cpu_percent,
            memory_bytes: status.memory_bytes,
            jobs: status.jobs,
            raft: status.raft,
        };
        metrics::render(&self.inner.calls.metrics, snapshot)
    }
}

fn member(
    peer: PeerId,
    load: &Heartbeat,
    liveness: &str,
    silent: Duration,
    is_self: bool,
) -> Member {
    Member {
        peer_id: peer.to_base58(),
        is_self,
        liveness: liveness.to_string(),
        protocol_version: load.version,
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
        cpu_percent: load.cpu_percent,
        memory_bytes: load.memory_bytes,
    }
}
