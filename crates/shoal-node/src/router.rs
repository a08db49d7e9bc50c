//! Sorts what arrives on call streams: Raft traffic to the consensus
//! module, everything else to the scheduler.

use crate::net::links::FrameHandler;
use crate::raft::consensus::Consensus;
use crate::raft::network::{RaftReply, RaftRpc, RpcClient};
use crate::sched::Sched;
use libp2p::PeerId;
use shoal_proto::Frame;
use std::sync::{Arc, OnceLock};

pub struct Router {
    pub sched: Arc<Sched>,
    pub rpc: Arc<RpcClient>,
    /// Set once Raft has started; requests before that are answered with
    /// an error, and the sender retries.
    pub consensus: OnceLock<Arc<Consensus>>,
}

impl FrameHandler for Router {
    fn on_frame(&self, peer: PeerId, frame: Frame) {
        match frame {
            Frame::RaftRequest { id, body } => {
                let consensus = self.consensus.get().cloned();
                let rpc = Arc::clone(&self.rpc);
                tokio::spawn(async move {
                    let reply = match (consensus, serde_json::from_slice::<RaftRpc>(&body)) {
                        (Some(consensus), Ok(request)) => consensus.handle(request).await,
                        (None, _) => RaftReply::Failed("consensus is still starting".to_string()),
                        (_, Err(e)) => RaftReply::Failed(format!("undecodable Raft request: {e}")),
                    };
                    rpc.respond(peer, id, &reply).await;
                });
            }
            Frame::RaftResponse { id, body } => self.rpc.on_response(id, body),
            other => self.sched.on_frame(peer, other),
        }
    }

    fn on_link_lost(&self, peer: PeerId) {
        self.sched.on_link_lost(peer);
    }
}
