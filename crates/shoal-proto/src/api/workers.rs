//! The worker protocol (`GET /v1/workers`, a WebSocket of JSON text
//! messages, each with a `type`): how a worker process serves functions to
//! its node. `docs/workers.md` walks through it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A function a worker offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerFunction {
    pub name: String,
    /// Calls of it the worker runs at once (1–1,024).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Whether its results depend on its arguments alone, so the cluster
    /// may answer a repeated call from a cache.
    #[serde(default)]
    pub memoize: bool,
}

fn one() -> u32 {
    1
}

/// What a worker sends its node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromWorker {
    /// Offers functions; answered with `registered` or `refused`.
    Register { functions: Vec<WorkerFunction> },
    /// A call's result.
    Result {
        id: u64,
        #[schema(value_type = Object)]
        result: Value,
    },
    /// A call's failure, as the function raised it.
    Error { id: u64, message: String },
    /// Progress of the durable job a call runs for (0.0–1.0).
    Progress {
        id: u64,
        fraction: f64,
        #[serde(default)]
        message: String,
    },
    /// A nested call made by the running call `parent` (for example a
    /// fan-out); its slot is free while it waits. Answered with `returned`
    /// or `failed` carrying the same `id` (the worker's own numbering).
    Call {
        id: u64,
        parent: u64,
        function: String,
        #[serde(default)]
        #[schema(value_type = Object)]
        args: Value,
    },
    /// The worker is stopping: send no more calls; it finishes those it has.
    Drain,
}

/// What a node sends its worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToWorker {
    Registered {
        functions: Vec<String>,
    },
    /// A `register` was refused, or a message was not understood; the
    /// connection stays open.
    Refused {
        message: String,
    },
    Call {
        id: u64,
        function: String,
        #[schema(value_type = Object)]
        args: Value,
    },
    /// The caller stopped waiting: drop the call, send nothing for it.
    Cancel {
        id: u64,
    },
    /// A nested call's result.
    Returned {
        id: u64,
        #[schema(value_type = Object)]
        result: Value,
    },
    /// A nested call's failure, with its stable error code.
    Failed {
        id: u64,
        code: String,
        message: String,
    },
}
