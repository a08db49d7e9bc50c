//! Serves Raft traffic from peers: requests go to this node's consensus
//! module (each in its own task, so a slow one cannot hold up the rest),
//! replies go to the requests this node is waiting on. What a request does
//! here is [`Consensus::handle`].
//!
//! ```text
//!  links ── (peer, RaftRequest{id}) ──► serve ─► task: Consensus::handle ─► RaftResponse{id}
//!        ── (peer, RaftResponse{id}) ─►       ─► RpcClient::on_response(id)
//! ```

use super::consensus::Consensus;
use super::network::{RaftReply, RaftRpc};
use super::proposer::Refused;
use super::snapshot_transfer::{Received, SnapshotChunk};
use super::types::{Command, LoggedCommand, RPC_TIMEOUT, RaftNode};
use crate::clock::now_ms;
use crate::jobs::JobCommand;
use libp2p::PeerId;
use openraft::ReadPolicy;
use shoal_proto::Frame;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reads the Raft inbox until the node stops.
pub async fn serve(
    consensus: Arc<Consensus>,
    mut inbox: mpsc::Receiver<(PeerId, Frame)>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (peer, frame) = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = inbox.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        match frame {
            Frame::RaftRequest { id, body } => {
                let consensus = Arc::clone(&consensus);
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    // A node refused for its protocol version is no member:
                    // it neither votes nor gets entries here.
                    let request = match consensus.peers.refused_version(&peer) {
                        Some(version) => Err(format!(
                            "refused: this node does not work with protocol version {version}"
                        )),
                        None => serde_json::from_slice::<RaftRpc>(&body)
                            .map_err(|e| format!("undecodable Raft request: {e}")),
                    };
                    let reply = match request {
                        Ok(request) => tokio::select! {
                            // The asker times out and retries elsewhere.
                            _ = shutdown.cancelled() => return,
                            reply = consensus.handle(request) => reply,
                        },
                        Err(reason) => RaftReply::Failed(reason),
                    };
                    consensus.rpc().respond(peer, id, &reply).await;
                });
            }
            Frame::RaftResponse { id, body } => consensus.rpc().on_response(id, body),
            _ => tracing::warn!(%peer, "a call frame reached the Raft server; dropped"),
        }
    }
}

impl Consensus {
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
                Ok(response) => {
                    self.heard_from_leader();
                    RaftReply::Append(response)
                }
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
            RaftRpc::TransferLeader(request) => match raft.handle_transfer_leader(request).await {
                Ok(response) => RaftReply::TransferLeader(response),
                Err(e) => failed(&e),
            },
            RaftRpc::SnapshotChunk(chunk) => {
                self.heard_from_leader();
                self.receive_snapshot_chunk(raft, chunk).await
            }
            RaftRpc::Write(command) if self.is_leader() => {
                if let Some(reason) = self.refusal(&command.value) {
                    return RaftReply::Failed(reason);
                }
                let proposer = self.proposer.as_ref().expect("a Raft member proposes");
                // The writer may not know every node yet: no newer format
                // than the leader knows all nodes read.
                let format = command.format.min(self.write_format());
                let command = LoggedCommand::new(format, command.value);
                match proposer.propose(command).await {
                    Ok(result) => RaftReply::Written(result),
                    Err(Refused::NotLeader) => RaftReply::NotLeader {
                        leader: self.leader(),
                    },
                    Err(Refused::Failed(reason)) => RaftReply::Failed(reason),
                }
            }
            RaftRpc::ReadIndex if self.is_leader() => {
                match raft.get_read_log_id(ReadPolicy::ReadIndex).await {
                    Ok((read, _)) => RaftReply::ReadIndex(read.log_id().index),
                    Err(e) => failed(&e),
                }
            }
            RaftRpc::Forwarded(_) => {
                RaftReply::Failed("a forwarded request was forwarded again".to_string())
            }
            // Only a member answers, so a read never travels further.
            RaftRpc::Query {
                query,
                linearizable,
            } if self.holds_replica() => RaftReply::Answer(self.query(query, linearizable).await),
            RaftRpc::Query { .. } => RaftReply::Failed("this node holds no replica".to_string()),
            // Not the leader: pass it on once, so a client that reached any
            // member still gets an answer.
            rpc @ (RaftRpc::Write(_) | RaftRpc::ReadIndex) => {
                let leader = self.leader();
                match (forwarded_once, self.leader_route().first()) {
                    (false, Some(&peer)) if peer != self.me_peer => self
                        .rpc
                        .request(peer, &RaftRpc::Forwarded(Box::new(rpc)), RPC_TIMEOUT)
                        .await
                        .unwrap_or_else(|e| RaftReply::Failed(e.to_string())),
                    _ => RaftReply::NotLeader { leader },
                }
            }
        }
    }

    /// Why the leader will not propose `command` now, if it will not: a
    /// lease for a node it holds dead. Its runner releases the leases of
    /// such a node within a poll, so each lease it granted would only
    /// cost its jobs an attempt (a node back from a pause, not yet known
    /// alive again, burned all 20 of some jobs' attempts in a second).
    fn refusal(&self, command: &Command) -> Option<String> {
        let Command::Jobs(JobCommand::Lease { node, .. }) = command else {
            return None;
        };
        let peer: PeerId = node.parse().ok()?;
        self.peers.is_dead(&peer).then(|| {
            format!("the leader holds node {node} dead: it leases again once it is known alive")
        })
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

    fn heard_from_leader(&self) {
        self.leader_heard_ms.store(now_ms(), Ordering::Relaxed);
    }
}
