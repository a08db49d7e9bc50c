//! A node's consensus module: its Raft instance (if it takes part), writes
//! forwarded to the leader, linearizable reads, joining, and the leader's
//! upkeep of the voter set.
//!
//! ```text
//!  write(cmd) ─► leader here? ─yes─► Raft::client_write ─► applied ─► result
//!                    │no
//!                    └─► RaftRpc::Write to the leader (or any peer, which
//!                        forwards it once) ─► result
//!  query(q, linearizable) ─► read index from the leader ─► wait until
//!                             applied here ─► answer from local state
//! ```

use super::log_store::LogStore;
use super::membership;
use super::network::{NetworkFactory, RaftReply, RaftRpc, RpcClient, RpcFailure};
use super::query::{Query, answer};
use super::snapshot_transfer::{Received, SnapshotChunk, SnapshotInbox};
use super::state_machine::{StateMachine, StateReader};
use super::types::{Command, CommandResult, RaftPeer, ShoalState, TypeConfig, raft_id};
use crate::cluster::peers::PeerView;
use crate::config::RaftSnapshotConfig;
use libp2p::PeerId;
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Raft, ReadPolicy, ServerState};
use shoal_proto::ErrorCode;
use shoal_proto::api::ApiError;
pub use shoal_proto::api::RaftStatus;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type RaftNode = Raft<TypeConfig, StateMachine<TypeConfig, ShoalState>>;

/// How long a write or a read waits for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Raft messages get this long before the sender retries.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the leader reviews the voter set and a joiner retries.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// openraft's settings for this node.
fn raft_config(
    snapshots: &RaftSnapshotConfig,
) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: "shoal".to_string(),
        // Leader heartbeats four times a second: cheap when idle, and a
        // dead leader is replaced within about two seconds.
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        max_payload_entries: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshots.every_entries),
        max_in_snapshot_log_to_keep: snapshots.keep_entries,
        snapshot_max_chunk_size: snapshots.chunk_bytes as u64,
        // The deadline of each snapshot chunk (its default, 200 ms, is for
        // a whole small snapshot on a fast network).
        install_snapshot_timeout: RPC_TIMEOUT.as_millis() as u64,
        // openraft preallocates its channels; its defaults (65,536
        // slots) cost an idle node ~30 MB. These still absorb bursts of
        // thousands of writes, and a full channel only makes writers wait.
        api_channel_size: Some(4096),
        notification_channel_size: Some(4096),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

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
    raft: Option<RaftNode>,
    state: Option<StateReader<ShoalState>>,
    /// Snapshots on their way here from a leader; `None` with `raft`.
    incoming_snapshots: Option<SnapshotInbox>,
    me: u64,
    me_peer: PeerId,
    rpc: Arc<RpcClient>,
    peers: PeerView,
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
        let raft = Raft::new(me, config, network, log, machine)
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
            raft: Some(raft),
            state: Some(state),
            incoming_snapshots: Some(SnapshotInbox::new(dir, snapshots.max_bytes)),
            me,
            me_peer,
            rpc,
            peers,
        }))
    }

    /// A consensus module for a node that does not take part in Raft: every
    /// write and read goes to a member.
    pub fn client_only(me_peer: PeerId, rpc: Arc<RpcClient>, peers: PeerView) -> Arc<Consensus> {
        Arc::new(Consensus {
            raft: None,
            state: None,
            incoming_snapshots: None,
            me: raft_id(&me_peer),
            me_peer,
            rpc,
            peers,
        })
    }

    pub fn rpc(&self) -> &Arc<RpcClient> {
        &self.rpc
    }

    /// Reads the local replica (possibly behind the leader).
    pub fn read_local<T>(&self, read: impl FnOnce(&ShoalState) -> T) -> Option<T> {
        self.state.as_ref().map(|state| state.read(read))
    }

    fn leader(&self) -> Option<u64> {
        let raft = self.raft.as_ref()?;
        raft.metrics().borrow_watched().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.me)
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

    /// Where to send a request meant for the leader.
    fn leader_route(&self) -> Vec<PeerId> {
        match self.leader().and_then(|id| self.peer_of(id)) {
            Some(peer) => vec![peer],
            None if self.raft.is_none() => self.any_live_peers(),
            None => Vec::new(),
        }
    }

    /// Replicates `command` and returns what applying it returned.
    pub async fn write(&self, command: Command) -> Result<CommandResult, ConsensusError> {
        let started = Instant::now();
        loop {
            if let Some(raft) = &self.raft
                && self.is_leader()
            {
                let remaining = LEADER_WAIT.saturating_sub(started.elapsed());
                match tokio::time::timeout(remaining, raft.client_write(command.clone())).await {
                    Ok(Ok(response)) => return Ok(response.data),
                    Ok(Err(e)) if e.forward_to_leader().is_some() => {}
                    Ok(Err(e)) => return Err(ConsensusError::Failed(e.to_string())),
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
    /// with the leader when `linearizable`), else at a member.
    pub async fn query(
        &self,
        query: Query,
        linearizable: bool,
    ) -> Result<serde_json::Value, ApiError> {
        if self.state.is_some() {
            if query == Query::RaftStatus {
                return serde_json::to_value(self.status())
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()));
            }
            if linearizable {
                self.catch_up()
                    .await
                    .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
            }
            return self
                .read_local(|state| answer(state, &query))
                .expect("a member keeps a replica");
        }
        let rpc = RaftRpc::Query {
            query,
            linearizable,
        };
        let mut last_error = "no member of the cluster is reachable".to_string();
        for peer in self.any_live_peers() {
            match self.rpc.request(peer, &rpc, RPC_TIMEOUT).await {
                Ok(RaftReply::Answer(answer)) => return answer,
                Ok(other) => last_error = format!("unexpected reply {other:?}"),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(ApiError::new(ErrorCode::Unavailable, last_error))
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

    /// Serves a Raft request from another node.
    pub async fn handle(&self, rpc: RaftRpc) -> RaftReply {
        match rpc {
            RaftRpc::Forwarded(inner) => self.serve(*inner, true).await,
            rpc => self.serve(rpc, false).await,
        }
    }

    async fn serve(&self, rpc: RaftRpc, forwarded_once: bool) -> RaftReply {
        let Some(raft) = &self.raft else {
            return RaftReply::Failed("this node takes no part in Raft".to_string());
        };
        let failed = |e: &dyn std::fmt::Display| RaftReply::Failed(e.to_string());
        match rpc {
            RaftRpc::Append(request) => match raft.append_entries(request).await {
                Ok(response) => RaftReply::Append(response),
                Err(e) => failed(&e),
            },
            RaftRpc::Vote(request) => match raft.vote(request).await {
                Ok(response) => RaftReply::Vote(response),
                Err(e) => failed(&e),
            },
            RaftRpc::PreVote(request) => match raft.pre_vote(request).await {
                Ok(response) => RaftReply::Vote(response),
                Err(e) => failed(&e),
            },
            RaftRpc::SnapshotChunk(chunk) => self.receive_snapshot_chunk(raft, chunk).await,
            RaftRpc::Write(command) if self.is_leader() => match raft.client_write(command).await {
                Ok(response) => RaftReply::Written(response.data),
                Err(e) if e.forward_to_leader().is_some() => RaftReply::NotLeader {
                    leader: self.leader(),
                },
                Err(e) => failed(&e),
            },
            RaftRpc::ReadIndex if self.is_leader() => {
                match raft.get_read_log_id(ReadPolicy::ReadIndex).await {
                    Ok((read, _)) => RaftReply::ReadIndex(read.log_id().index),
                    Err(e) => failed(&e),
                }
            }
            RaftRpc::Join { raft_id, peer } if self.is_leader() => {
                match raft.add_learner(raft_id, peer, false).await {
                    Ok(_) => RaftReply::Joined,
                    Err(e) => failed(&e),
                }
            }
            RaftRpc::Forwarded(_) => {
                RaftReply::Failed("a forwarded request was forwarded again".to_string())
            }
            RaftRpc::Query {
                query,
                linearizable,
            } => RaftReply::Answer(self.query(query, linearizable).await),
            // Not the leader: pass it on once, so a client that reached any
            // member still gets an answer.
            rpc @ (RaftRpc::Write(_) | RaftRpc::ReadIndex | RaftRpc::Join { .. }) => {
                let leader = self.leader();
                match (forwarded_once, leader.and_then(|id| self.peer_of(id))) {
                    (false, Some(peer)) if peer != self.me_peer => self
                        .rpc
                        .request(peer, &RaftRpc::Forwarded(Box::new(rpc)), RPC_TIMEOUT)
                        .await
                        .unwrap_or_else(|e| RaftReply::Failed(e.to_string())),
                    _ => RaftReply::NotLeader { leader },
                }
            }
        }
    }

    /// Stores a chunk of a snapshot from the leader; installs the snapshot
    /// once its last chunk is in.
    async fn receive_snapshot_chunk(&self, raft: &RaftNode, chunk: SnapshotChunk) -> RaftReply {
        let Some(inbox) = &self.incoming_snapshots else {
            return RaftReply::Failed("this node takes no part in Raft".to_string());
        };
        match inbox.receive(chunk).await {
            Ok(Received::Stored) => RaftReply::ChunkStored,
            Ok(Received::Complete { vote, snapshot }) => {
                let bytes = snapshot.snapshot.len();
                match raft.install_full_snapshot(vote, snapshot).await {
                    Ok(response) => {
                        tracing::info!(bytes, "installed a snapshot from the leader");
                        RaftReply::Snapshot(response)
                    }
                    Err(e) => RaftReply::Failed(e.to_string()),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot chunk refused");
                RaftReply::Failed(e.to_string())
            }
        }
    }

    /// Whether this node is in the Raft membership (voter or learner).
    fn is_member(&self) -> bool {
        let Some(raft) = &self.raft else {
            return false;
        };
        let metrics = raft.metrics().borrow_watched().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&self.me)
            .is_some()
    }

    /// Background upkeep, once a second: a non-member asks to join; the
    /// leader adjusts the voter set to the live members.
    pub async fn upkeep(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        let mut seen_leader = None;
        let mut seen_voters = BTreeSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(UPKEEP_INTERVAL) => {}
            }
            if let Some(inbox) = &self.incoming_snapshots {
                inbox.drop_abandoned(std::time::Instant::now());
            }
            let metrics = raft.metrics().borrow_watched().clone();
            let voters: BTreeSet<u64> =
                metrics.membership_config.membership().voter_ids().collect();
            if metrics.current_leader != seen_leader || voters != seen_voters {
                tracing::info!(term = metrics.current_term, leader = ?metrics.current_leader, ?voters, "raft membership");
                seen_leader = metrics.current_leader;
                seen_voters = voters.clone();
            }
            if !self.is_member() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.ask_to_join() => {}
                }
                continue;
            }
            if metrics.state != ServerState::Leader {
                continue;
            }
            let live = self.live_members(&metrics);
            // Without a live majority of the current voters no change can
            // commit; proposing one would only wait forever.
            let live_voters = voters.iter().filter(|id| live.contains(id)).count();
            if live_voters * 2 <= voters.len() {
                continue;
            }
            if let Some(next) = membership::next_voters(&voters, &live, self.me) {
                tracing::info!(from = ?voters, to = ?next, "changing the voter set");
                let change = raft.change_membership(ChangeMembers::ReplaceAllVoters(next), true);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    result = tokio::time::timeout(LEADER_WAIT, change) => match result {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "voter change failed; will retry"),
                        Err(_) => tracing::warn!("voter change not committed in time; will retry"),
                    },
                }
            }
        }
    }

    /// Members (voters and learners) that are alive, by Raft id.
    fn live_members(&self, metrics: &openraft::RaftMetrics<TypeConfig>) -> BTreeSet<u64> {
        self.peers.read(|peers| {
            metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, node)| {
                    **id == self.me
                        || node
                            .peer_id
                            .parse::<PeerId>()
                            .is_ok_and(|peer| peers.is_live(&peer))
                })
                .map(|(id, _)| *id)
                .collect()
        })
    }

    async fn ask_to_join(&self) {
        let join = RaftRpc::Join {
            raft_id: self.me,
            peer: RaftPeer {
                peer_id: self.me_peer.to_base58(),
            },
        };
        for peer in self.any_live_peers() {
            match self.rpc.request(peer, &join, RPC_TIMEOUT).await {
                Ok(RaftReply::Joined) => {
                    tracing::info!(via = %peer, "joined the Raft group as a learner");
                    return;
                }
                Ok(other) => tracing::debug!(via = %peer, reply = ?other, "join not accepted yet"),
                Err(e) => tracing::debug!(via = %peer, error = %e, "join request failed"),
            }
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
            member: membership.get_node(&self.me).is_some(),
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
        if let Some(raft) = &self.raft {
            let _ = raft.shutdown().await;
        }
    }
}
