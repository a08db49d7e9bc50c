//! This node's share of every distributed queue, and the internal
//! functions peers call to take from, size and close it.

use crate::calls::registry::Function;
use serde_json::{Value, json};
use shoal_proto::{CallError, ErrorCode};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Items one node holds per queue; a push past it is refused, not dropped.
pub const MAX_QUEUE_ITEMS: usize = 1_000_000;
/// Queues listed in one heartbeat, fullest first.
const MAX_ADVERTISED_QUEUES: usize = 64;

pub(crate) const TAKE: &str = "shoal.queue.share.take";
pub(crate) const SIZE: &str = "shoal.queue.share.size";
pub(crate) const CLOSE: &str = "shoal.queue.share.close";
/// Takes items a draining node moves here.
pub(crate) const PUT: &str = "shoal.queue.share.put";

#[derive(Default)]
struct LocalQueue {
    items: VecDeque<Value>,
    closed: bool,
}

#[derive(Default)]
struct Shares {
    queues: HashMap<String, LocalQueue>,
    /// The node is draining: it takes no more items. Set under the same
    /// lock as every push, so no push lands after the drain took the items.
    draining: bool,
}

/// This node's share of every distributed queue.
#[derive(Default)]
pub struct QueueStore {
    shares: Mutex<Shares>,
    /// Wakes pops waiting on this node when an item arrives.
    pub(crate) pushed: Notify,
}

/// Why a push left its items where they were.
pub(crate) enum PushRefused {
    /// This node is draining: the items, to offer to another node.
    Draining(Vec<Value>),
    Failed(CallError),
}

impl QueueStore {
    fn lock(&self) -> MutexGuard<'_, Shares> {
        self.shares.lock().expect("queue lock")
    }

    pub(crate) fn push(&self, name: &str, items: Vec<Value>) -> Result<(), PushRefused> {
        let mut shares = self.lock();
        if shares.draining {
            return Err(PushRefused::Draining(items));
        }
        let queue = shares.queues.entry(name.to_string()).or_default();
        if queue.closed {
            return Err(PushRefused::Failed(closed_error(name)));
        }
        if queue.items.len() + items.len() > MAX_QUEUE_ITEMS {
            return Err(PushRefused::Failed(CallError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "queue '{name}' holds {} items on this node; the limit is {MAX_QUEUE_ITEMS}",
                    queue.items.len()
                ),
            )));
        }
        queue.items.extend(items);
        drop(shares);
        self.pushed.notify_waiters();
        Ok(())
    }

    /// An item, or whether the queue is closed.
    pub(crate) fn take(&self, name: &str) -> Result<Value, bool> {
        let mut shares = self.lock();
        let Some(queue) = shares.queues.get_mut(name) else {
            return Err(false);
        };
        queue.items.pop_front().ok_or(queue.closed)
    }

    pub(crate) fn size(&self, name: &str) -> u64 {
        let shares = self.lock();
        shares.queues.get(name).map_or(0, |q| q.items.len() as u64)
    }

    pub(crate) fn close(&self, name: &str) {
        self.lock()
            .queues
            .entry(name.to_string())
            .or_default()
            .closed = true;
        self.pushed.notify_waiters();
    }

    /// From now on, pushes through this node go to other nodes.
    pub(crate) fn start_draining(&self) {
        self.lock().draining = true;
    }

    /// Takes every item out, queue by queue (the node is draining: they
    /// go to other nodes).
    pub(crate) fn take_all(&self) -> Vec<(String, Vec<Value>)> {
        let mut shares = self.lock();
        shares
            .queues
            .iter_mut()
            .filter(|(_, q)| !q.items.is_empty())
            .map(|(name, q)| (name.clone(), q.items.drain(..).collect()))
            .collect()
    }

    /// Puts back items a draining node could not move (they go with it).
    pub(crate) fn put_back(&self, name: &str, items: Vec<Value>) {
        self.lock()
            .queues
            .entry(name.to_string())
            .or_default()
            .items
            .extend(items);
    }

    /// Non-empty queues and their sizes, for the heartbeat.
    pub fn advertised(&self) -> Vec<(String, u64)> {
        let shares = self.lock();
        let mut sizes: Vec<(String, u64)> = shares
            .queues
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
        let put = Arc::clone(self);
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
            internal(Function::new_async(PUT, move |_, args| {
                let store = Arc::clone(&put);
                async move {
                    let items = items_arg(&args)?;
                    let count = items.len();
                    match store.push(queue_name(&args)?, items) {
                        Ok(()) => Ok(json!(count)),
                        // Items that came after the drain emptied the store
                        // would leave with the node: the sender tries another.
                        Err(PushRefused::Draining(_)) => {
                            Err("this node is draining: offer the items to another".into())
                        }
                        Err(PushRefused::Failed(error)) => Err(error.into()),
                    }
                }
            })),
        ]
    }
}

pub(crate) fn queue_name(args: &Value) -> Result<&str, String> {
    args.get("queue")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("expected {{\"queue\": name}}, got {args}"))
}

/// The `items` of a push: `{"queue": name, "items": [...]}`.
pub(crate) fn items_arg(args: &Value) -> Result<Vec<Value>, String> {
    match args.get("items") {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(format!(
            "expected {{\"queue\", \"items\": [...]}}, got {args}"
        )),
    }
}

pub(crate) fn closed_error(name: &str) -> CallError {
    CallError::new(ErrorCode::Closed, format!("queue '{name}' is closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draining_store_gives_a_push_its_items_back_and_the_drain_takes_the_rest() {
        let store = QueueStore::default();
        assert!(store.push("q", vec![json!(1), json!(2)]).is_ok());
        store.start_draining();
        match store.push("q", vec![json!(3)]) {
            Err(PushRefused::Draining(items)) => assert_eq!(items, vec![json!(3)]),
            Err(PushRefused::Failed(e)) => panic!("refused for another reason: {e}"),
            Ok(()) => panic!("a draining store took an item that would leave with the node"),
        }
        assert_eq!(
            store.take_all(),
            vec![("q".to_string(), vec![json!(1), json!(2)])]
        );
        assert_eq!(store.size("q"), 0);
    }
}
