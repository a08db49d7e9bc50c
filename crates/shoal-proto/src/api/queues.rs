//! The distributed queue's API bodies (`/v1/queues/{name}/…`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Longest wait a pop may ask for: 5 minutes.
pub const MAX_POP_TIMEOUT_MS: u64 = 300_000;

/// `POST /v1/queues/{name}/push`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// Items to add; they stay on the node that took the push until a pop
    /// anywhere takes them.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pushed {
    pub queue: String,
    pub pushed: usize,
}

/// `POST /v1/queues/{name}/pop`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PopBody {
    /// How long to wait for an item when the queue is empty everywhere
    /// (default 0: answer at once); at most 300,000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Popped {
    pub queue: String,
    #[schema(value_type = Object)]
    pub item: Value,
}

/// `GET /v1/queues/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueSize {
    pub queue: String,
    /// Items held across the cluster's live nodes.
    pub size: u64,
}

/// `POST /v1/queues/{name}/close`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueClosed {
    pub queue: String,
    pub closed: bool,
}
