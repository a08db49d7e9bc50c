//! This node's share of every distributed queue, and the internal
//! functions peers call to take from, size and close it.

use crate::calls::registry::Function;
use serde_json::{Value, json};
use shoal_proto::{CallError, ErrorCode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// This node's share of every distributed queue.
#[derive(Default)]
pub struct QueueStore {
    queues: Mutex<HashMap<String, LocalQueue>>,
    /// Wakes pops waiting on this node when an item arrives.
    pub(crate) pushed: Notify,
    /// The node is draining: pushes through it go to other nodes.
    draining: AtomicBool,
}

impl QueueStore {
    pub(crate) fn push(&self, name: &str, items: Vec<Value>) -> Result<(), CallError> {
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
    pub(crate) fn take(&self, name: &str) -> Result<Value, bool> {
        let mut queues = self.queues.lock().expect("queue lock");
        let Some(queue) = queues.get_mut(name) else {
            return Err(false);
        };
        queue.items.pop_front().ok_or(queue.closed)
    }

    pub(crate) fn size(&self, name: &str) -> u64 {
        let queues = self.queues.lock().expect("queue lock");
        queues.get(name).map_or(0, |q| q.items.len() as u64)
    }

    pub(crate) fn close(&self, name: &str) {
        self.queues
            .lock()
            .expect("queue lock")
            .entry(name.to_string())
            .or_default()
            .closed = true;
        self.pushed.notify_waiters();
    }

    /// From now on, pushes through this node go to other nodes.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Takes every item out, queue by queue (the node is draining: they
    /// go to other nodes).
    pub(crate) fn take_all(&self) -> Vec<(String, Vec<Value>)> {
        let mut queues = self.queues.lock().expect("queue lock");
        queues
            .iter_mut()
            .filter(|(_, q)| !q.items.is_empty())
            .map(|(name, q)| (name.clone(), q.items.drain(..).collect()))
            .collect()
    }

    /// Puts back items that could not be moved.
    pub(crate) fn put_back(&self, name: &str, items: Vec<Value>) {
        let mut queues = self.queues.lock().expect("queue lock");
        queues
            .entry(name.to_string())
            .or_default()
            .items
            .extend(items);
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
                    // Items that came after the drain emptied the store
                    // would leave with the node: the sender tries another.
                    if store.is_draining() {
                        return Err("this node is draining: offer the items to another".into());
                    }
                    let items = items_arg(&args)?;
                    let count = items.len();
                    store.push(queue_name(&args)?, items)?;
                    Ok(json!(count))
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
