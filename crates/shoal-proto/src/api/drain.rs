//! Draining a node before it stops (`POST /v1/drain`, `GET /v1/drain`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/drain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    /// How long running calls and jobs may take to finish before their
    /// work is handed back (default: the node's `--drain-timeout`).
    #[serde(default)]
    pub grace_ms: Option<u64>,
    /// Answer once the drain is done (just before the node stops) instead
    /// of at once.
    #[serde(default)]
    pub wait: bool,
}

/// Where a node's drain stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrainState {
    /// Not draining: the node takes work.
    #[default]
    Serving,
    /// Taking no new work; running calls and jobs are finishing.
    Draining,
    /// Done: the node holds no work and no Raft seat; it stops now.
    Drained,
}

/// A node's drain, as `GET /v1/drain` and `shoal drain` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DrainStatus {
    pub state: DrainState,
    /// Calls running or waiting here.
    pub calls_running: bool,
    /// Durable jobs running here.
    pub jobs_running: u64,
    /// Calls that had not started, given back to their owners to run
    /// elsewhere.
    pub calls_handed_back: u64,
    /// Durable jobs still running when the grace period ended, queued
    /// again for other nodes (their attempt does not count).
    pub jobs_handed_back: u64,
    /// Distributed-queue items moved to other nodes.
    pub queue_items_moved: u64,
    /// Queue items no other node could take (lost when the node stops).
    pub queue_items_left: u64,
    /// Whether the node gave up its Raft seat (true if it had none).
    pub left_raft: bool,
    /// Time since the drain began, in milliseconds.
    pub elapsed_ms: u64,
}
