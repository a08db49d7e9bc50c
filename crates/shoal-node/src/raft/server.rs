//! Serves Raft traffic from peers: requests go to this node's consensus
//! module (each in its own task, so a slow one cannot hold up the rest),
//! replies go to the requests this node is waiting on.
//!
//! ```text
//!  links ── (peer, RaftRequest{id}) ──► serve ─► task: Consensus::handle ─► RaftResponse{id}
//!        ── (peer, RaftResponse{id}) ─►       ─► RpcClient::on_response(id)
//! ```

use super::consensus::Consensus;
use super::network::{RaftReply, RaftRpc};
use libp2p::PeerId;
use shoal_proto::Frame;
use std::sync::Arc;
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
                    let reply = match serde_json::from_slice::<RaftRpc>(&body) {
                        Ok(request) => tokio::select! {
                            // The asker times out and retries elsewhere.
                            _ = shutdown.cancelled() => return,
                            reply = consensus.handle(request) => reply,
                        },
                        Err(e) => RaftReply::Failed(format!("undecodable Raft request: {e}")),
                    };
                    consensus.rpc().respond(peer, id, &reply).await;
                });
            }
            Frame::RaftResponse { id, body } => consensus.rpc().on_response(id, body),
            _ => tracing::warn!(%peer, "a call frame reached the Raft server; dropped"),
        }
    }
}
