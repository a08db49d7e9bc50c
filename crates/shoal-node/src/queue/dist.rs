//! A distributed queue as its user sees it: push here, pop from anywhere.

use super::store::{CLOSE, PUT, PushRefused, QueueStore, SIZE, TAKE, closed_error};
use crate::calls::Calls;
use crate::calls::context::CallContext;
use crate::cluster::peers::PeerView;
use futures::future::BoxFuture;
use libp2p::PeerId;
use serde_json::{Value, json};
use shoal_proto::{CallError, ErrorCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between full sweeps of all peers during a pop, in case heartbeats lag.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// A waiting pop looks again at least this often.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How a queue reaches the other nodes' shares: through the node's calls
/// (the embedding API, HTTP), or through a running call's context (a
/// script, whose worker slot is free while it waits).
pub trait ShareCaller: Send + Sync {
    fn call_share<'a>(
        &'a self,
        peer: PeerId,
        function: &'static str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, CallError>>;
}

/// Offers `items` of `queue` to `peers` in turn until one takes them (a
/// draining node refuses them, so they move on).
pub(crate) async fn offer_items(
    calls: &impl ShareCaller,
    queue: &str,
    items: &[Value],
    peers: impl IntoIterator<Item = PeerId>,
) -> Result<(), CallError> {
    let args = json!({ "queue": queue, "items": items });
    let mut last_error = None;
    for peer in peers {
        match calls.call_share(peer, PUT, args.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "peer did not take queue items");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        CallError::new(
            ErrorCode::Unavailable,
            "this node is draining and no other node can take the items",
        )
    }))
}

impl ShareCaller for Arc<Calls> {
    fn call_share<'a>(
        &'a self,
        peer: PeerId,
        function: &'static str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, CallError>> {
        Box::pin(self.call_on(peer, function, args))
    }
}

impl ShareCaller for CallContext {
    fn call_share<'a>(
        &'a self,
        peer: PeerId,
        function: &'static str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, CallError>> {
        Box::pin(self.call_on(peer, function, args))
    }
}

/// A handle to one named distributed queue.
#[derive(Clone)]
pub struct DistQueue<C: ShareCaller = Arc<Calls>> {
    name: String,
    /// This node's share of every queue.
    store: Arc<QueueStore>,
    /// Reaches other nodes' shares.
    calls: C,
    peers: PeerView,
}

impl<C: ShareCaller> DistQueue<C> {
    pub(crate) fn new(name: &str, store: Arc<QueueStore>, calls: C, peers: PeerView) -> Self {
        DistQueue {
            name: name.to_string(),
            store,
            calls,
            peers,
        }
    }

    /// Live peers that said they hold items of this queue, fullest first.
    fn holders(&self) -> Vec<PeerId> {
        let mut holders: Vec<(PeerId, u64)> = self.peers.read(|peers| {
            peers
                .live()
                .filter_map(|(peer, info)| {
                    let held = info
                        .load
                        .queue_items
                        .iter()
                        .find(|(q, _)| *q == self.name)?
                        .1;
                    Some((*peer, held))
                })
                .collect()
        });
        holders.sort_by_key(|h| std::cmp::Reverse(h.1));
        holders.into_iter().map(|(peer, _)| peer).collect()
    }

    /// Adds items; they stay on this node until someone pops them (on a
    /// draining node, they go to another node at once).
    pub async fn push(&self, items: impl IntoIterator<Item = Value>) -> Result<(), CallError> {
        let items: Vec<Value> = items.into_iter().collect();
        match self.store.push(&self.name, items) {
            Ok(()) => Ok(()),
            Err(PushRefused::Draining(items)) => {
                offer_items(&self.calls, &self.name, &items, self.peers.serving_peers()).await
            }
            Err(PushRefused::Failed(error)) => Err(error),
        }
    }

    /// Takes one item from anywhere in the cluster, waiting up to `timeout`
    /// for one to appear. Fails with `closed` once the queue is closed and
    /// empty everywhere, or `timeout`.
    pub async fn pop(&self, timeout: Duration) -> Result<Value, CallError> {
        let deadline = Instant::now() + timeout;
        let mut last_sweep: Option<Instant> = None;
        loop {
            let pushed = self.store.pushed.notified();
            let mut closed = match self.store.take(&self.name) {
                Ok(item) => return Ok(item),
                Err(closed) => closed,
            };
            let sweep = last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_INTERVAL);
            let peers = if sweep {
                last_sweep = Some(Instant::now());
                self.peers.live_peers()
            } else {
                self.holders()
            };
            for peer in peers {
                let reply = self
                    .calls
                    .call_share(peer, TAKE, json!({ "queue": self.name }))
                    .await;
                match reply {
                    Ok(reply) if reply.get("item").is_some() => return Ok(reply["item"].clone()),
                    Ok(reply) => closed &= reply["closed"].as_bool().unwrap_or(false),
                    Err(e) => tracing::debug!(%peer, error = %e, "queue peer did not answer"),
                }
            }
            if closed && sweep {
                return Err(closed_error(&self.name));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CallError::new(
                    ErrorCode::Timeout,
                    format!(
                        "queue '{}' stayed empty for {} ms",
                        self.name,
                        timeout.as_millis()
                    ),
                ));
            }
            let wait = POLL_INTERVAL.min(deadline - now);
            let _ = tokio::time::timeout(wait, pushed).await;
        }
    }

    /// Items held across the cluster.
    pub async fn size(&self) -> Result<u64, CallError> {
        let mut total = self.store.size(&self.name);
        for peer in self.peers.live_peers() {
            let reply = self
                .calls
                .call_share(peer, SIZE, json!({ "queue": self.name }))
                .await?;
            total += reply.as_u64().unwrap_or(0);
        }
        Ok(total)
    }

    /// Closes the queue everywhere: pushes fail, pops drain what is left.
    pub async fn close(&self) -> Result<(), CallError> {
        self.store.close(&self.name);
        for peer in self.peers.live_peers() {
            self.calls
                .call_share(peer, CLOSE, json!({ "queue": self.name }))
                .await?;
        }
        Ok(())
    }
}
