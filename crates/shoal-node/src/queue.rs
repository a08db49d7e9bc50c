//! The p2pqueue seed's distributed queue — `push`, `pop(timeout)`, `size`,
//! `close` — built on the call machinery.
//!
//! Items stay on the node that pushed them until someone pops them. A pop
//! takes a local item if there is one, and otherwise pulls one from a peer
//! that holds some (heartbeats say who holds how many), so items flow to
//! wherever consumers are: balancing by pulling, like work stealing. Order
//! is not guaranteed, as in the seed. An item handed to a popper is gone
//! from its holder; items live and die with the node that holds them (use
//! durable jobs for work that must survive a node).

use crate::calls::Calls;
use crate::calls::registry::Function;
use crate::cluster::peers::PeerView;
use libp2p::PeerId;
use serde_json::{Value, json};
use shoal_proto::{CallError, ErrorCode};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Items one node holds per queue; a push past it is refused, not dropped.
pub const MAX_QUEUE_ITEMS: usize = 1_000_000;
/// Queues listed in one heartbeat, fullest first.
const MAX_ADVERTISED_QUEUES: usize = 64;
/// Between full sweeps of all peers during a pop, in case heartbeats lag.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// A waiting pop looks again at least this often.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub(crate) const TAKE: &str = "shoal.queue.take";
pub(crate) const SIZE: &str = "shoal.queue.size";
pub(crate) const CLOSE: &str = "shoal.queue.close";

#[derive(Default)]
struct LocalQueue {
    items: VecDeque<Value>,
    closed: bool,
}

/// This node's share of every distributed queue.
#[derive(Default)]
pub struct QueueStore {
    queues: Mutex<HashMap<String, LocalQueue>>,
    pushed: Notify,
}

impl QueueStore {
    fn push(&self, name: &str, items: Vec<Value>) -> Result<(), CallError> {
        let mut queues = self.queues.lock().expect("queue lock");
        let queue = queues.entry(name.to_string()).or_default();
        if queue.closed {
            return Err(closed_error(name));
        }
        if queue.items.len() + items.len() > MAX_QUEUE_ITEMS {
            return Err(CallError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "queue '{name}' holds {} items on this node; the limit is {MAX_QUEUE_ITEMS}",
                    queue.items.len()
                ),
            ));
        }
        queue.items.extend(items);
        drop(queues);
        self.pushed.notify_waiters();
        Ok(())
    }

    /// An item, or whether the queue is closed.
    fn take(&self, name: &str) -> Result<Value, bool> {
        let mut queues = self.queues.lock().expect("queue lock");
        let Some(queue) = queues.get_mut(name) else {
            return Err(false);
        };
        queue.items.pop_front().ok_or(queue.closed)
    }

    fn size(&self, name: &str) -> u64 {
        let queues = self.queues.lock().expect("queue lock");
        queues.get(name).map_or(0, |q| q.items.len() as u64)
    }

    fn close(&self, name: &str) {
        self.queues
            .lock()
            .expect("queue lock")
            .entry(name.to_string())
            .or_default()
            .closed = true;
        self.pushed.notify_waiters();
    }

    /// Non-empty queues and their sizes, for the heartbeat.
    pub fn advertised(&self) -> Vec<(String, u64)> {
        let queues = self.queues.lock().expect("queue lock");
        let mut sizes: Vec<(String, u64)> = queues
            .iter()
            .filter(|(_, q)| !q.items.is_empty())
            .map(|(name, q)| (name.clone(), q.items.len() as u64))
            .collect();
        sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
        sizes.truncate(MAX_ADVERTISED_QUEUES);
        sizes
    }

    /// The internal functions peers call to take from, size and close this
    /// node's share.
    pub fn functions(self: &Arc<Self>) -> Vec<Function> {
        let internal = |mut f: Function| {
            f.internal = true;
            f
        };
        let take = Arc::clone(self);
        let size = Arc::clone(self);
        let close = Arc::clone(self);
        vec![
            internal(Function::new_async(TAKE, move |_, args| {
                let store = Arc::clone(&take);
                async move {
                    Ok(match store.take(queue_name(&args)?) {
                        Ok(item) => json!({ "item": item }),
                        Err(closed) => json!({ "closed": closed }),
                    })
                }
            })),
            internal(Function::new_async(SIZE, move |_, args| {
                let store = Arc::clone(&size);
                async move { Ok(json!(store.size(queue_name(&args)?))) }
            })),
            internal(Function::new_async(CLOSE, move |_, args| {
                let store = Arc::clone(&close);
                async move {
                    store.close(queue_name(&args)?);
                    Ok(Value::Null)
                }
            })),
        ]
    }
}

fn queue_name(args: &Value) -> Result<&str, String> {
    args.get("queue")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("expected {{\"queue\": name}}, got {args}"))
}

fn closed_error(name: &str) -> CallError {
    CallError::new(ErrorCode::Closed, format!("queue '{name}' is closed"))
}

/// A handle to one named distributed queue.
#[derive(Clone)]
pub struct DistQueue {
    name: String,
    /// This node's share of every queue.
    store: Arc<QueueStore>,
    /// Reaches other nodes' shares.
    calls: Arc<Calls>,
    peers: PeerView,
}

impl DistQueue {
    pub(crate) fn new(
        name: &str,
        store: Arc<QueueStore>,
        calls: Arc<Calls>,
        peers: PeerView,
    ) -> Self {
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

    /// Adds items; they stay on this node until someone pops them.
    pub async fn push(&self, items: impl IntoIterator<Item = Value>) -> Result<(), CallError> {
        self.store.push(&self.name, items.into_iter().collect())
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
                    .call_on(peer, TAKE, json!({ "queue": self.name }))
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
                    format!("queue '{}' stayed empty for {timeout:?}", self.name),
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
                .call_on(peer, SIZE, json!({ "queue": self.name }))
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
                .call_on(peer, CLOSE, json!({ "queue": self.name }))
                .await?;
        }
        Ok(())
    }
}
