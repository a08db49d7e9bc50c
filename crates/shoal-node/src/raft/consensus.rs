//! A node's consensus module: its Raft instance (if it takes part), writes
//! forwarded to the leader, linearizable reads, and reads through a member
//! on nodes that hold no replica. The leader's upkeep of who holds the log
//! is in [`super::upkeep`].
//!
//! ```text
//!  write(cmd) ─► leader here? ─yes─► Raft::client_write ─► applied ─► result
//!                    │no
//!                    └─► RaftRpc::Write to the leader (or a member, which
//!                        forwards it once) ─► result
//!  query(q) ─► replica here? ─yes─► (linearizable: read index from the
//!                  │                 leader, wait until applied here)
//!                  │                 ─► answer from local state
//!                  └no─► RaftRpc::Query to a member
//! ```

use super::log_store::LogStore;
use super::network::{NetworkFactory, RaftReply, RaftRpc, RpcClient, RpcFailure};
use super::proposer::{Proposer, Refused};
use super::query::{Query, answer};
use super::snapshot_transfer::SnapshotInbox;
use super::state_machine::{StateMachine, StateReader};
use super::types::{Command, CommandResult, LoggedCommand, RPC_TIMEOUT, RaftPeer};
use super::types::{RaftNode, ShoalState, TypeConfig};
use super::types::{raft_config, raft_id};
use crate::clock::now_ms;
use crate::cluster::peers::PeerView;
use crate::config::RaftSnapshotConfig;
use libp2p::PeerId;
use openraft::Raft;
use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use shoal_proto::api::ApiError;
pub use shoal_proto::api::RaftStatus;
use shoal_proto::version::PROTOCOL_VERSION;
use shoal_proto::{ErrorCode, RaftRole};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a write or a read waits for a leader before giving up.
pub(super) const LEADER_WAIT: Duration = Duration::from_secs(10);
/// A member that has heard nothing from a leader for this long answers no
/// reads of its own: it may have been removed without being told (a leader
/// stops replicating to a node as soon as it proposes its removal).
const REPLICA_FRESH: Duration = Duration::from_secs(5);

/// Why a replicated write or read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsensusError {
    #[error(
        "no leader answered within {0:?}: the cluster cannot commit now (a majority of voters may be down or cut off); try again when they are back"
    )]
    NoLeader(Duration),
    #[error(
        "the write was not committed within {0:?}: a majority of voters may be down or cut off; it may still take effect if they come back"
    )]
    NotCommitted(Duration),
    #[error("the write may or may not have been applied: {0}")]
    Unknown(String),
    #[error("consensus failed: {0}")]
    Failed(String),
}

pub struct Consensus {
    /// `None` on nodes that only talk to the cluster (e.g. `shoal call`).
    pub(super) raft: Option<RaftNode>,
    /// Proposes this node's writes, and those forwarded to it, while it
    /// leads; `None` with `raft`.
    pub(super) proposer: Option<Proposer>,
    state: Option<StateReader<ShoalState>>,
    /// The log openraft writes, to save what it holds in memory on stop;
    /// `None` with `raft`.
    log: Option<LogStore<TypeConfig>>,
    /// Snapshots on their way here from a leader; `None` with `raft`.
    pub(super) incoming_snapshots: Option<SnapshotInbox>,
    pub(super) me: u64,
    pub(super) me_peer: PeerId,
    pub(super) rpc: Arc<RpcClient>,
    pub(super) peers: PeerView,
    /// Learners the leader keeps beside the voters.
    pub(super) standbys: usize,
    /// When a leader's entries last arrived here (ms since the epoch).
    pub(super) leader_heard_ms: AtomicU64,
    /// Spreads the reads of a node without a replica over the members.
    next_member: AtomicUsize,
    /// See [`Consensus::set_jobs_waiting`].
    jobs_waiting: AtomicBool,
    /// See [`Consensus::job_news`].
    job_news: Notify,
    /// The node is draining: it gives up its seat (see `upkeep.rs`).
    pub(super) leaving: AtomicBool,
    /// Told when this node's role or the jobs-waiting flag changes, so the
    /// cluster hears of it before the next heartbeat period.
    pub(super) news: Notify,
}

impl Consensus {
    /// Starts Raft with its storage in `dir`. A node with nobody to join
    /// (`bootstrap`) starts a cluster of one; others ask to be added.
    pub async fn start(
        dir: &Path,
        me_peer: PeerId,
        rpc: Arc<RpcClient>,
        peers: PeerView,
        bootstrap: bool,
        snapshots: &RaftSnapshotConfig,
        standbys: usize,
    ) -> Result<Arc<Consensus>, ConsensusError> {
        let failed = |e: &dyn std::fmt::Display| ConsensusError::Failed(e.to_string());
        let config = raft_config(snapshots).map_err(|e| failed(&e))?;
        let log = LogStore::open(dir).map_err(|e| failed(&e))?;
        let machine = StateMachine::open(dir).map_err(|e| failed(&e))?;
        let state = machine.reader();
        let me = raft_id(&me_peer);
        let network = NetworkFactory {
            rpc: Arc::clone(&rpc),
        };
        let raft = Raft::new(me, config, network, log.clone(), machine)
            .await
            .map_err(|e| failed(&e))?;
        if bootstrap && !raft.is_initialized().await.map_err(|e| failed(&e))? {
            let members = BTreeMap::from([(
                me,
                RaftPeer {
                    peer_id: me_peer.to_base58(),
                },
            )]);
            raft.initialize(members).await.map_err(|e| failed(&e))?;
            tracing::info!("started a new Raft group with this node as its only voter");
        }
        Ok(Arc::new(Consensus {
            proposer: Some(Proposer::start(raft.clone())),
            raft: Some(raft),
            state: Some(state),
            log: Some(log),
            incoming_snapshots: Some(SnapshotInbox::new(dir, snapshots.max_bytes)),
            me,
            me_peer,
            rpc,
            peers,
            standbys,
            leader_heard_ms: AtomicU64::new(0),
            next_member: AtomicUsize::new(0),
            jobs_waiting: AtomicBool::new(false),
            job_news: Notify::new(),
            leaving: AtomicBool::new(false),
            news: Notify::new(),
        }))
    }

    /// A consensus module for a node that does not take part in Raft: every
    /// write and read goes to a member.
    pub fn client_only(me_peer: PeerId, rpc: Arc<RpcClient>, peers: PeerView) -> Arc<Consensus> {
        Arc::new(Consensus {
            raft: None,
            proposer: None,
            state: None,
            log: None,
            incoming_snapshots: None,
            me: raft_id(&me_peer),
            me_peer,
            rpc,
            peers,
            standbys: 0,
            leader_heard_ms: AtomicU64::new(0),
            next_member: AtomicUsize::new(0),
            jobs_waiting: AtomicBool::new(false),
            job_news: Notify::new(),
            leaving: AtomicBool::new(false),
            news: Notify::new(),
        })
    }

    pub fn rpc(&self) -> &Arc<RpcClient> {
        &self.rpc
    }

    /// Reads the local replica (possibly behind the leader); `None` on a
    /// node that holds none.
    pub fn read_local<T>(&self, read: impl FnOnce(&ShoalState) -> T) -> Option<T> {
        if !self.holds_replica() {
            return None;
        }
        self.state.as_ref().map(|state| state.read(read))
    }

    pub(super) fn leader(&self) -> Option<u64> {
        let raft = self.raft.as_ref()?;
        raft.metrics().borrow_watched().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.me)
    }

    /// Whether a read through the leader may be answered now, as far as
    /// this node knows: its replica follows a leader, or, without one, it
    /// has heard of members to ask.
    pub fn leader_known(&self) -> bool {
        if self.holds_replica() {
            self.leader().is_some()
        } else {
            !self.peers.raft_members().is_empty()
        }
    }

    /// Whether this node keeps an up-to-date replica: it is a member (voter
    /// or learner) and leads or has heard from the leader lately.
    pub fn holds_replica(&self) -> bool {
        let Some(raft) = &self.raft else {
            return false;
        };
        let metrics = raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics
            .membership_config
            .membership()
            .get_node(&self.me)
            .is_none()
        {
            return false;
        }
        metrics.current_leader == Some(self.me)
            || now_ms().saturating_sub(self.leader_heard_ms.load(Ordering::Relaxed))
                < REPLICA_FRESH.as_millis() as u64
    }

    /// This node's part in Raft, for its heartbeat.
    pub fn role(&self) -> RaftRole {
        let Some(raft) = &self.raft else {
            return RaftRole::None;
        };
        if !self.holds_replica() {
            return RaftRole::Standby;
        }
        let metrics = raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics.current_leader == Some(self.me) {
            RaftRole::Leader
        } else if metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.me)
        {
            RaftRole::Voter
        } else {
            RaftRole::Learner
        }
    }

    /// On the leader: whether jobs wait for more runners than the members'
    /// (see `jobs::calling_in`), as its job runner last found; for its
    /// heartbeat.
    pub fn jobs_waiting(&self) -> bool {
        self.jobs_waiting.load(Ordering::Relaxed)
    }

    /// Records whether jobs wait; the cluster hears at once when they start
    /// to (when they stop, the next heartbeat period says so).
    pub fn set_jobs_waiting(&self, waiting: bool) {
        if !self.jobs_waiting.swap(waiting, Ordering::Relaxed) && waiting {
            self.announce();
        }
    }

    /// Resolves when jobs may have changed: entries were applied to this
    /// node's replica, or the leader's heartbeat says jobs started to wait.
    /// For one waiter, the job runner.
    pub async fn job_news(&self) {
        match &self.state {
            Some(state) => tokio::select! {
                () = state.applied() => {}
                () = self.job_news.notified() => {}
            },
            None => self.job_news.notified().await,
        }
    }

    /// The leader's heartbeat says jobs wait (see [`Consensus::job_news`]).
    pub fn leader_says_jobs_wait(&self) {
        self.job_news.notify_one();
    }

    /// Resolves when this node's role or its jobs-waiting flag may have
    /// changed.
    pub async fn news(&self) {
        self.news.notified().await
    }

    /// Tells the cluster task that this node's heartbeat changed.
    pub fn announce(&self) {
        self.news.notify_one();
    }

    /// The peer id of a Raft member, from the membership config.
    fn peer_of(&self, id: u64) -> Option<PeerId> {
        let raft = self.raft.as_ref()?;
        let metrics = raft.metrics().borrow_watched().clone();
        let node = metrics
            .membership_config
            .membership()
            .get_node(&id)?
            .clone();
        node.peer_id.parse().ok()
    }

    /// Live peers, as a fallback route.
    fn any_live_peers(&self) -> Vec<PeerId> {
        self.peers.live_peers()
    }

    /// Where to send a request meant for the leader: the leader a member
    /// follows, or else the members as their heartbeats tell, the leader
    /// first (a member passes a request on to the leader once).
    pub(super) fn leader_route(&self) -> Vec<PeerId> {
        if self.holds_replica() {
            return self
                .leader()
                .and_then(|id| self.peer_of(id))
                .into_iter()
                .collect();
        }
        self.member_route()
    }

    /// Members to ask, the leader first; any live peer for a node that
    /// knows of no member yet and takes no part in Raft.
    /// A node with a Raft copy of its own adds the members its membership
    /// config names, in case no heartbeat says so (a member briefly
    /// suspected, a report lost).
    fn member_route(&self) -> Vec<PeerId> {
        let mut members = self.peers.raft_members();
        let Some(raft) = &self.raft else {
            if members.is_empty() {
                return self.any_live_peers();
            }
            return members;
        };
        let metrics = raft.metrics().borrow_watched().clone();
        let configured = metrics.membership_config.membership().nodes();
        for (id, node) in configured {
            if let Ok(peer) = node.peer_id.parse::<PeerId>()
                && *id != self.me
                && !members.contains(&peer)
            {
                members.push(peer);
            }
        }
        members
    }

    /// The format version this node writes entries in: the lowest protocol
    /// version among this release and every node it knows of, so that all
    /// of them read what it writes (see [`shoal_proto::version`]).
    pub(super) fn write_format(&self) -> u32 {
        self.peers
            .lowest_version()
            .map_or(PROTOCOL_VERSION, |lowest| lowest.min(PROTOCOL_VERSION))
    }

    /// Replicates `command` and returns what applying it returned.
    pub async fn write(&self, command: Command) -> Result<CommandResult, ConsensusError> {
        let command = LoggedCommand::new(self.write_format(), command);
        let started = Instant::now();
        loop {
            if let Some(proposer) = &self.proposer
                && self.is_leader()
            {
                let remaining = LEADER_WAIT.saturating_sub(started.elapsed());
                match tokio::time::timeout(remaining, proposer.propose(command.clone())).await {
                    Ok(Ok(result)) => return Ok(result),
                    Ok(Err(Refused::NotLeader)) => {}
                    Ok(Err(Refused::Failed(reason))) => return Err(ConsensusError::Failed(reason)),
                    Err(_) => return Err(ConsensusError::NotCommitted(LEADER_WAIT)),
                }
            } else {
                for peer in self.leader_route() {
                    match self
                        .rpc
                        .request(peer, &RaftRpc::Write(command.clone()), RPC_TIMEOUT)
                        .await
                    {
                        Ok(RaftReply::Written(result)) => return Ok(result),
                        Ok(RaftReply::Failed(reason)) => {
                            return Err(ConsensusError::Failed(reason));
                        }
                        Ok(_) => {}
                        // Sent, but no answer: the write may have been
                        // applied, so sending it again could apply it twice.
                        Err(
                            failure @ (RpcFailure::Timeout { .. }
                            | RpcFailure::Lost { .. }
                            | RpcFailure::BadReply { .. }),
                        ) => {
                            return Err(ConsensusError::Unknown(failure.to_string()));
                        }
                        // Never sent: another peer may be the leader.
                        Err(RpcFailure::Unreachable { .. }) => {}
                    }
                }
            }
            if started.elapsed() >= LEADER_WAIT {
                return Err(ConsensusError::NoLeader(LEADER_WAIT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this node's replica has everything committed when the
    /// call began, so a local read after it is linearizable.
    pub async fn catch_up(&self) -> Result<(), ConsensusError> {
        let Some(raft) = &self.raft else {
            return Err(ConsensusError::Failed(
                "this node keeps no replica".to_string(),
            ));
        };
        let started = Instant::now();
        loop {
            let read_index = if self.is_leader() {
                match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                    Ok(read) => Some(read.log_id().index),
                    Err(_) => None,
                }
            } else {
                let mut index = None;
                for peer in self.leader_route() {
                    if let Ok(RaftReply::ReadIndex(i)) = self
                        .rpc
                        .request(peer, &RaftRpc::ReadIndex, RPC_TIMEOUT)
                        .await
                    {
                        index = Some(i);
                        break;
                    }
                }
                index
            };
            if let Some(index) = read_index {
                let remaining = LEADER_WAIT.saturating_sub(started.elapsed());
                return raft
                    .wait(Some(remaining))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await
                    .map(|_| ())
                    .map_err(|_| ConsensusError::NoLeader(LEADER_WAIT));
            }
            if started.elapsed() >= LEADER_WAIT {
                return Err(ConsensusError::NoLeader(LEADER_WAIT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Answers a read: here if this node keeps a replica (after catching up
    /// with the leader when `linearizable`), else at a member. Asked again
    /// each round: a member between leaders keeps no fresh replica for a
    /// moment, and this node may be the one elected (a lone node restarted
    /// on its data is, after an election of its own).
    pub async fn query(
        &self,
        query: Query,
        linearizable: bool,
    ) -> Result<serde_json::Value, ApiError> {
        let started = Instant::now();
        loop {
            if self.holds_replica() {
                return self.answer_here(&query, linearizable).await;
            }
            let rpc = RaftRpc::Query {
                query: query.clone(),
                linearizable,
            };
            let mut last_error = "no member of the cluster is reachable".to_string();
            let mut members = self.member_route();
            if !members.is_empty() {
                let start = self.next_member.fetch_add(1, Ordering::Relaxed) % members.len();
                members.rotate_left(start);
            }
            for peer in members {
                match self.rpc.request(peer, &rpc, RPC_TIMEOUT).await {
                    Ok(RaftReply::Answer(answer)) => return answer,
                    Ok(other) => last_error = format!("unexpected reply {other:?}"),
                    Err(e) => last_error = e.to_string(),
                }
            }
            // Members may come back (a false suspicion, a new leader):
            // a read waits for them as long as a write would.
            if started.elapsed() >= LEADER_WAIT {
                return Err(ApiError::new(ErrorCode::Unavailable, last_error));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answers a read from this node's replica.
    async fn answer_here(
        &self,
        query: &Query,
        linearizable: bool,
    ) -> Result<serde_json::Value, ApiError> {
        if *query == Query::RaftStatus {
            return serde_json::to_value(self.status())
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()));
        }
        if linearizable {
            self.catch_up()
                .await
                .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
        }
        self.read_local(|state| answer(state, query))
            .expect("a member keeps a replica")
    }

    /// Asks one given member a query (for example its Raft status).
    pub async fn query_at(
        &self,
        peer: PeerId,
        query: Query,
    ) -> Result<serde_json::Value, ApiError> {
        let rpc = RaftRpc::Query {
            query,
            linearizable: false,
        };
        match self.rpc.request(peer, &rpc, RPC_TIMEOUT).await {
            Ok(RaftReply::Answer(answer)) => answer,
            Ok(other) => Err(ApiError::new(
                ErrorCode::Internal,
                format!("unexpected reply {other:?}"),
            )),
            Err(e) => Err(ApiError::new(ErrorCode::Unavailable, e.to_string())),
        }
    }

    /// Raft as this node sees it, for `shoal status`.
    pub fn status(&self) -> RaftStatus {
        let Some(raft) = &self.raft else {
            return RaftStatus::default();
        };
        let metrics = raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let name = |id: &u64| {
            membership
                .get_node(id)
                .map_or_else(|| id.to_string(), |node| node.peer_id.clone())
        };
        RaftStatus {
            member: self.holds_replica(),
            state: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader.as_ref().map(name),
            voters: membership.voter_ids().map(|id| name(&id)).collect(),
            learners: membership.learner_ids().map(|id| name(&id)).collect(),
            last_applied: metrics.last_applied.map(|id| id.index),
            committed: metrics.cluster_committed.map(|id| id.index),
        }
    }

    pub async fn shutdown(&self) {
        if let Some(proposer) = &self.proposer {
            proposer.stop();
        }
        if let Some(raft) = &self.raft {
            let _ = raft.shutdown().await;
        }
        if let Some(proposer) = &self.proposer {
            proposer.stopped().await;
        }
        if let Some(log) = &self.log
            && let Err(e) = log.flush_committed().await
        {
            tracing::warn!(error = %e, "could not save the committed log id on stopping");
        }
    }
}
