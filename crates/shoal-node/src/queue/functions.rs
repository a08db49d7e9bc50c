//! What `shoal.queue(name)` in JavaScript calls: `shoal.queue.push`,
//! `.pop`, `.size` and `.close`, run on the script's own node, reaching the
//! other nodes' shares through the running call's context (so the script's
//! worker slot is free while a pop waits).

use super::dist::DistQueue;
use super::store::{QueueStore, items_arg, queue_name};
use crate::calls::registry::Function;
use crate::cluster::peers::PeerView;
use serde_json::{Value, json};
use shoal_proto::api::MAX_POP_TIMEOUT_MS;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const PUSH: &str = "shoal.queue.push";
pub(crate) const POP: &str = "shoal.queue.pop";
pub(crate) const SIZE: &str = "shoal.queue.size";
pub(crate) const CLOSE: &str = "shoal.queue.close";

/// The queue's functions for scripts.
pub fn functions(store: &Arc<QueueStore>, peers: &PeerView) -> Vec<Function> {
    let queue = {
        let (store, peers) = (Arc::clone(store), peers.clone());
        move |ctx, args: &Value| -> Result<DistQueue<_>, String> {
            let name = queue_name(args)?;
            Ok(DistQueue::new(name, Arc::clone(&store), ctx, peers.clone()))
        }
    };
    let internal = |mut f: Function| {
        f.internal = true;
        f
    };
    let (push, pop, size, close) = (queue.clone(), queue.clone(), queue.clone(), queue);
    vec![
        internal(Function::new_async(PUSH, move |ctx, args| {
            let queue = push(ctx, &args);
            async move {
                let items = items_arg(&args)?;
                let count = items.len();
                queue?.push(items).await?;
                Ok(json!(count))
            }
        })),
        internal(Function::new_async(POP, move |ctx, args| {
            let queue = pop(ctx, &args);
            async move {
                let wait = args["timeout_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .min(MAX_POP_TIMEOUT_MS);
                Ok(queue?.pop(Duration::from_millis(wait)).await?)
            }
        })),
        internal(Function::new_async(SIZE, move |ctx, args| {
            let queue = size(ctx, &args);
            async move { Ok(json!(queue?.size().await?)) }
        })),
        internal(Function::new_async(CLOSE, move |ctx, args| {
            let queue = close(ctx, &args);
            async move {
                queue?.close().await?;
                Ok(Value::Null)
            }
        })),
    ]
}
