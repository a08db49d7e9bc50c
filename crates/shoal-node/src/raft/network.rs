//! Raft messages between nodes, carried on the nodes' long-lived call
//! streams as `RaftRequest`/`RaftResponse` frames (JSON bodies), so a Raft
//! round trip costs what a call costs — no per-message stream negotiation.
//!
//! ```text
//!   openraft ─► RaftClient::append_entries ─► RpcClient::request(peer, rpc)
//!                  ─► Frame::RaftRequest{id} ══ stream ══► peer: Consensus::handle
//!   RpcClient::on_response(id) ◄── Frame::RaftResponse{id} ◄══════┘
//! ```
//!
//! A snapshot goes as a series of chunks, one request each (see
//! [`snapshot_transfer`](super::snapshot_transfer)), so it is never one
//! frame, however large it is.

use super::snapshot_store::SnapshotData;
use super::snapshot_transfer::{OutgoingSnapshot, SnapshotChunk};
use super::types::{CommandResult, LoggedCommand, RaftPeer, TypeConfig};
use crate::net::links::Links;
use bytes::Bytes;
use libp2p::PeerId;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use serde::{Deserialize, Serialize};
use shoal_proto::Frame;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// A request from one node's consensus module to another's.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// A leader that leaves hands its leadership to this node, which then
    /// starts an election at once instead of after a timeout.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A piece of a snapshot; the last one is answered once the snapshot
    /// is installed.
    SnapshotChunk(SnapshotChunk),
    /// A write forwarded to the leader, in the format its writer chose.
    Write(LoggedCommand),
    /// Asks the leader for a read index: once the asker has applied up to
    /// it, a local read is linearizable.
    ReadIndex,
    /// A read from a node that keeps no replica.
    Query {
        query: super::query::Query,
        linearizable: bool,
    },
    /// A request a member passed on towards the leader; not passed on again,
    /// so a confused view of who leads cannot make requests circle.
    Forwarded(Box<RaftRpc>),
}

/// The answer to a [`RaftRpc`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// A snapshot was installed (or refused for a newer vote).
    Snapshot(SnapshotResponse<TypeConfig>),
    /// A snapshot chunk was stored; send the next.
    ChunkStored,
    Written(CommandResult),
    ReadIndex(u64),
    Answer(Result<serde_json::Value, shoal_proto::api::ApiError>),
    /// The receiver is not the leader; `leader` is whom it believes leads.
    NotLeader {
        leader: Option<u64>,
    },
    /// Something failed on the receiver; the message says what.
    Failed(String),
}

/// Pending Raft requests to other nodes, matched to replies by id.
pub struct RpcClient {
    links: Links,
    /// Requests waiting for their reply, and whom they went to.
    pending: Mutex<HashMap<u64, (PeerId, oneshot::Sender<Bytes>)>>,
    next_id: AtomicU64,
}

/// Why a Raft request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    #[error("cannot reach {peer}: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    #[error("{peer} did not answer within {timeout:?}")]
    Timeout { peer: PeerId, timeout: Duration },
    /// The request was sent but the stream closed before the reply: the
    /// peer may or may not have acted on it.
    #[error("the stream to {peer} closed before its reply")]
    Lost { peer: PeerId },
    #[error("undecodable reply from {peer}: {reason}")]
    BadReply { peer: PeerId, reason: String },
}

impl RpcClient {
    pub fn new(links: Links) -> Arc<RpcClient> {
        Arc::new(RpcClient {
            links,
            pending: Mutex::default(),
            next_id: AtomicU64::new(crate::calls::first_id_of_this_life()),
        })
    }

    /// Sends `rpc` to `peer` and waits up to `timeout` for the reply.
    pub async fn request(
        &self,
        peer: PeerId,
        rpc: &RaftRpc,
        timeout: Duration,
    ) -> Result<RaftReply, RpcFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(serde_json::to_vec(rpc).expect("Raft messages serialize"));
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, (peer, tx));
        let _forget = Forget { client: self, id };
        self.links
            .send(peer, &Frame::RaftRequest { id, body })
            .await
            .map_err(|e| RpcFailure::Unreachable {
                peer,
                reason: e.to_string(),
            })?;
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| RpcFailure::Timeout { peer, timeout })?
            .map_err(|_| RpcFailure::Lost { peer })?;
        serde_json::from_slice(&reply).map_err(|e| RpcFailure::BadReply {
            peer,
            reason: e.to_string(),
        })
    }

    /// A reply arrived.
    pub fn on_response(&self, id: u64, body: Bytes) {
        if let Some((_, waiter)) = self.pending.lock().expect("pending lock").remove(&id) {
            let _ = waiter.send(body);
        }
    }

    /// A stream to `peer` broke: requests to it may get no reply, so every
    /// one waiting fails now (as lost) rather than at its timeout, those on
    /// a stream that still works too.
    pub fn on_link_lost(&self, peer: PeerId) {
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|_, (to, _)| *to != peer);
    }

    /// Answers a request from `peer`.
    pub async fn respond(&self, peer: PeerId, id: u64, reply: &RaftReply) {
        let body = Bytes::from(serde_json::to_vec(reply).expect("Raft replies serialize"));
        if let Err(e) = self
            .links
            .send(peer, &Frame::RaftResponse { id, body })
            .await
        {
            tracing::debug!(%peer, error = %e, "Raft reply not delivered");
        }
    }
}

/// Drops a request's waiter if the caller gives up.
struct Forget<'a> {
    client: &'a RpcClient,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.client
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
    }
}

/// Gives openraft a client per target node.
pub struct NetworkFactory {
    pub rpc: Arc<RpcClient>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = RaftClient;

    async fn new_client(&mut self, target: u64, node: &RaftPeer) -> RaftClient {
        RaftClient {
            target,
            peer: node.peer_id.parse().ok(),
            rpc: Arc::clone(&self.rpc),
        }
    }
}

/// openraft's view of one other node.
pub struct RaftClient {
    target: u64,
    peer: Option<PeerId>,
    rpc: Arc<RpcClient>,
}

/// How long a Raft message may take when openraft gives no deadline.
const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Snapshot chunk size when openraft names none.
const DEFAULT_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunk sizes are kept within these bounds: a chunk far below the frame
/// limit even as base64 (a third larger), and never so small that a large
/// snapshot becomes millions of round trips.
const CHUNK_BYTES: std::ops::RangeInclusive<usize> = 4 * 1024..=4 * 1024 * 1024;
/// The slowest a follower is expected to decode and store a snapshot: the
/// answer to the last chunk, which waits for that, gets this much time per
/// byte of the snapshot beyond a chunk's deadline.
const INSTALL_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;

impl RaftClient {
    async fn call(
        &self,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        let Some(peer) = self.peer else {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "Raft node {} has no valid peer id",
                self.target
            ))));
        };
        match self.rpc.request(peer, &rpc, timeout).await {
            Ok(RaftReply::Failed(reason)) => {
                Err(RPCError::Network(NetworkError::from_string(reason)))
            }
            Ok(reply) => Ok(reply),
            Err(failure @ RpcFailure::Timeout { .. }) => {
                Err(RPCError::Network(NetworkError::from_string(failure)))
            }
            Err(failure) => Err(RPCError::Unreachable(Unreachable::from_string(failure))),
        }
    }
}

fn unexpected(reply: RaftReply) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "unexpected Raft reply: {reply:?}"
    )))
}

fn ttl(option: &RPCOption) -> Duration {
    let hard = option.hard_ttl();
    if hard.is_zero() {
        DEFAULT_RPC_TIMEOUT
    } else {
        hard
    }
}

impl RaftNetworkV2<TypeConfig> for RaftClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRpc::Append(rpc), ttl(&option)).await? {
            RaftReply::Append(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRpc::Vote(rpc), ttl(&option)).await? {
            RaftReply::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRpc::PreVote(rpc), ttl(&option)).await? {
            RaftReply::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRpc::TransferLeader(rpc), ttl(&option))
            .await?
        {
            RaftReply::TransferLeader(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    /// Sends the snapshot a chunk at a time, each with the deadline
    /// openraft gives (the last one more, as the follower installs the
    /// snapshot before it answers); stops at once when openraft cancels.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut cancel = std::pin::pin!(cancel);
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(DEFAULT_CHUNK_BYTES)
            .clamp(*CHUNK_BYTES.start(), *CHUNK_BYTES.end());
        let mut outgoing = OutgoingSnapshot::new(vote, snapshot, chunk_bytes);
        let started = std::time::Instant::now();
        loop {
            let chunk = outgoing
                .next_chunk()
                .await
                .map_err(|e| unreadable(outgoing.meta(), &e))?;
            let (last, len) = (chunk.is_last(), chunk.data.len());
            let deadline = if last {
                ttl(&option) + Duration::from_secs(outgoing.total() / INSTALL_BYTES_PER_SEC)
            } else {
                ttl(&option)
            };
            let reply = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = self.call(RaftRpc::SnapshotChunk(chunk), deadline) => reply,
            };
            match reply.map_err(streaming_error)? {
                RaftReply::ChunkStored if !last => outgoing.stored(len),
                // The last chunk's answer, or an early one (a newer vote).
                RaftReply::Snapshot(response) => {
                    let (bytes, elapsed) = (outgoing.total(), started.elapsed());
                    tracing::info!(target = self.target, bytes, ?elapsed, "sent a snapshot");
                    return Ok(response);
                }
                other => {
                    return Err(StreamingError::Network(NetworkError::from_string(format!(
                        "unexpected reply to a snapshot chunk: {other:?}"
                    ))));
                }
            }
        }
    }
}

/// A failed chunk as openraft takes it: a refusal or a timeout is retried
/// at once (with a new transfer), an unreachable follower after a backoff.
fn streaming_error(error: RPCError<TypeConfig>) -> StreamingError<TypeConfig> {
    match error {
        RPCError::Unreachable(e) => StreamingError::Unreachable(e),
        RPCError::Network(e) => StreamingError::Network(e),
        e => StreamingError::Unreachable(Unreachable::from_string(e)),
    }
}

/// A snapshot that could not be read to send it.
fn unreadable(
    meta: &SnapshotMetaOf<TypeConfig>,
    error: &std::io::Error,
) -> StreamingError<TypeConfig> {
    use openraft::type_config::TypeConfigExt;
    let source = TypeConfig::err_from_error(error);
    StreamingError::StorageError(openraft::StorageError::read_snapshot(
        Some(meta.signature()),
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The Raft body of a `RaftRequest` frame comes from a peer: garbage
        // gets a `Failed` reply (router.rs), never a panic.
        #[test]
        fn decoding_garbage_raft_requests_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = serde_json::from_slice::<RaftRpc>(&bytes);
            let _ = serde_json::from_slice::<RaftReply>(&bytes);
        }

        #[test]
        fn decoding_json_shaped_raft_requests_never_panics(
            text in r#"\{"[A-Za-z]{0,12}":(\{.{0,64}\}|\[.{0,64}\]|null|[0-9]{1,20}|"[^"]{0,16}")\}"#,
        ) {
            let _ = serde_json::from_str::<RaftRpc>(&text);
        }
    }
}
