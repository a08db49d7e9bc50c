//! The types of the HTTP API, shared by the node that serves it, the Rust
//! client and the CLI. Every body is JSON; every error is an [`ApiError`].
//!
//! Jobs and documents are the same types the replicated state machine
//! stores, so what a client reads is exactly what the cluster agreed on.

mod docs;
mod drain;
mod events;
mod queues;
mod topics;
mod workers;

pub use docs::{
    CollectionInfo, Collections, CountReply, DeleteWhereBody, Deleted, Document, FindBody,
    FindReply, SortKey, UpdateBody, UpdateWhereBody, Updated, Written,
};

pub use drain::{DrainBody, DrainState, DrainStatus};
pub use events::{Event, EventKind};
pub use queues::{MAX_POP_TIMEOUT_MS, PopBody, Popped, PushBody, Pushed, QueueClosed, QueueSize};
pub use topics::{
    MAX_PUBLISHER_NAME_CHARS, MAX_RETAIN, MAX_TOPIC_NAME_CHARS, MAX_TOPIC_VALUE_BYTES, PublishBody,
    Published, TopicInfo, TopicMessage, check_topic_name,
};
pub use workers::{FromWorker, ToWorker, WorkerFunction};

use crate::error::{CallError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Requests with a larger body are refused with `payload_too_large`; the
/// same bound as a frame between nodes, so anything accepted can travel.
pub const MAX_BODY_BYTES: usize = crate::wire::MAX_FRAME_BYTES;
/// Calls in one batch request.
pub const MAX_BATCH_CALLS: usize = 10_000;
/// Jobs or documents in one page when the request names no limit, and the
/// most it may name.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 10_000;

/// Parses an HTTP request body as the node does: a body of only whitespace
/// reads as `{}`, exactly one JSON value must follow, and a refusal says
/// which field was wrong. The `Err` is the message an `invalid_request`
/// answer carries.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let error = e.into_inner();
        if field == "." {
            format!("the request body is not valid: {error}")
        } else {
            format!("the request body is not valid at '{field}': {error}")
        }
    })?;
    // One value, nothing after it: `{} {"args": 1}` is not a body.
    json.end()
        .map_err(|e| format!("the request body is not valid: {e}"))?;
    Ok(value)
}

/// Every error the API returns: a stable code to match on and a message
/// for people. Internal details stay in the node's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    #[schema(value_type = String, example = "unknown_function")]
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl From<ApiError> for CallError {
    fn from(e: ApiError) -> Self {
        CallError::new(e.code, e.message)
    }
}

// ---- calls ----

/// A JavaScript source shipped with a call or a job, so nodes that never
/// loaded it can run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScriptSource {
    /// A file name, for error messages and stacks.
    pub name: String,
    pub source: String,
}

/// `POST /v1/call/{function}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    /// The function's argument (any JSON; `null` when absent).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Fails with `deadline_exceeded` if no result came by then.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A script defining the function, for functions no node has loaded.
    #[serde(default)]
    pub script: Option<ScriptSource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallReply {
    #[schema(value_type = Object)]
    pub result: Value,
}

/// One call of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCall {
    pub function: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Value,
}

/// `POST /v1/batch`: many calls spread over the cluster at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub calls: Vec<BatchCall>,
    /// A deadline for every call of the batch.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Calls in flight at once (default: all of them).
    #[serde(default)]
    pub in_flight: Option<usize>,
}

/// The outcome of one call of a batch: `result` or `error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl BatchResult {
    pub fn into_result(self) -> Result<Value, ApiError> {
        match (self.result, self.error) {
            (_, Some(error)) => Err(error),
            (result, None) => Ok(result.unwrap_or(Value::Null)),
        }
    }
}

impl From<Result<Value, CallError>> for BatchResult {
    fn from(outcome: Result<Value, CallError>) -> Self {
        match outcome {
            Ok(result) => BatchResult {
                result: Some(result),
                error: None,
            },
            Err(e) => BatchResult {
                result: None,
                error: Some(e.into()),
            },
        }
    }
}

/// Results in the order of the calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchReply {
    pub results: Vec<BatchResult>,
}

// ---- jobs ----

/// A job's id: unique, the same on every replica, and larger for a job
/// submitted later (the Raft log index of its submission, or just above it
/// when several submissions shared a log entry).
pub type JobId = u64;

/// What to run and where it may run. Everything but `function` has a
/// default, so `{"function": "echo", "args": 1}` is a whole job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobSpec {
    /// The function to call.
    pub function: String,
    #[schema(value_type = Object)]
    pub args: Value,
    /// A script that defines `function`, kept with the job so any node can
    /// run it.
    pub script: Option<ScriptSource>,
    /// Labels a node must have, with these values.
    pub labels: BTreeMap<String, String>,
    /// Resources a node must offer at least this much of.
    pub resources: BTreeMap<String, u64>,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts before the job goes to the dead letters (at least 1).
    pub max_attempts: u32,
    /// How long one attempt's lease lasts without a renewal, in ms.
    pub lease_ms: u64,
    /// Submitting again with the same key returns the first job.
    pub idempotency_key: Option<String>,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            function: String::new(),
            args: Value::Null,
            script: None,
            labels: BTreeMap::new(),
            resources: BTreeMap::new(),
            priority: 0,
            max_attempts: 3,
            lease_ms: 30_000,
            idempotency_key: None,
        }
    }
}

/// The shortest lease a job may ask for: a lease is renewed every third
/// of its length, and each renewal is a Raft write.
pub const MIN_LEASE_MS: u64 = 300;

impl JobSpec {
    pub fn new(function: &str, args: Value) -> Self {
        JobSpec {
            function: function.to_string(),
            args,
            ..JobSpec::default()
        }
    }

    /// Why the cluster would refuse this job, if it would.
    pub fn check(&self) -> Result<(), String> {
        if self.function.is_empty() {
            return Err("a job needs a 'function' to call".into());
        }
        if self.lease_ms < MIN_LEASE_MS {
            return Err(format!(
                "'lease_ms' is {}: a lease must last at least {MIN_LEASE_MS} ms to be renewed in time",
                self.lease_ms
            ));
        }
        Ok(())
    }
}

/// Ordered so counts and listings group states the same way everywhere.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed every attempt.
    DeadLetter,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::DeadLetter,
        JobState::Cancelled,
    ];

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::DeadLetter | JobState::Cancelled
        )
    }

    /// The name used on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::DeadLetter => "dead_letter",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job state '{s}' (queued, running, succeeded, dead_letter, cancelled)"
                )
            })
    }
}

/// A job and everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// Attempts started so far; the current lease's fencing token.
    pub attempt: u32,
    /// Attempts a draining node handed back unfinished: they do not count
    /// against `max_attempts`, since the job did not fail.
    #[serde(default)]
    pub handed_back: u32,
    /// The node holding the current lease (its peer id).
    pub leased_by: Option<String>,
    pub lease_expires_ms: u64,
    /// Not leased again before this time (retry back-off).
    pub not_before_ms: u64,
    pub progress: f64,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The last attempt's error.
    pub error: Option<String>,
    pub submitted_ms: u64,
    pub finished_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub id: JobId,
}

/// A page of jobs in id order; `next` is the `after` of the next page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next: Option<JobId>,
}

// ---- cluster ----

/// Raft as one node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RaftStatus {
    /// Whether this node holds a replica (a voter or learner in touch with
    /// the leader).
    pub member: bool,
    pub state: String,
    pub term: u64,
    pub leader: Option<String>,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub last_applied: Option<u64>,
    pub committed: Option<u64>,
}

/// One node of the cluster as the answering node sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub peer_id: String,
    /// The answering node itself.
    pub is_self: bool,
    /// `alive`, `suspected` or `dead`; or `incompatible`: refused, its
    /// protocol version being too far from the answering node's.
    pub liveness: String,
    /// The protocol version it speaks; adjacent versions work together.
    #[serde(default)]
    pub protocol_version: u32,
    /// Addresses others can `--join`.
    pub addrs: Vec<String>,
    /// Its HTTP API, if it serves one.
    pub api: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub resources: BTreeMap<String, u64>,
    pub slots: u32,
    pub running: u32,
    pub queued: u32,
    /// Calls it has run since it started.
    pub executed: u64,
    pub mean_task_us: u64,
    pub drain_ms: u64,
    /// Time since its last heartbeat.
    pub silent_ms: u64,
    /// CPU its process used over the last heartbeat interval, in percent
    /// of one core (200 is two busy cores).
    #[serde(default)]
    pub cpu_percent: f32,
    /// Resident memory of its process, in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
}

impl Member {
    /// Running and queued calls per slot: 1.0 is a full node.
    pub fn load(&self) -> f64 {
        f64::from(self.running + self.queued) / f64::from(self.slots.max(1))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub members: Vec<Member>,
    pub raft: RaftStatus,
}

/// Calls this node started (as their owner) and ran (as executor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallCounters {
    /// Calls started here that returned a result.
    pub ok: u64,
    /// Calls started here that failed, by error code.
    pub failed: BTreeMap<String, u64>,
    /// Calls this node ran for anyone.
    pub executed: u64,
    pub stolen: u64,
    /// Calls sent again after the node running them was lost.
    pub redispatched: u64,
}

/// `GET /v1/status`: this node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub peer_id: String,
    /// The release it runs.
    pub version: String,
    /// The protocol version it speaks; adjacent versions work together.
    #[serde(default)]
    pub protocol_version: u32,
    pub uptime_ms: u64,
    pub listen: Vec<String>,
    pub api: Option<String>,
    pub slots: u32,
    pub running: u32,
    pub queued: u32,
    pub peers_alive: usize,
    /// CPU this node's process used over the last heartbeat interval, in
    /// percent of one core.
    #[serde(default)]
    pub cpu_percent: f32,
    /// Resident memory of this node's process, in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    pub calls: CallCounters,
    pub raft: RaftStatus,
    /// Jobs by state in this node's replica.
    pub jobs: BTreeMap<String, usize>,
}

// ---- logs ----

/// How severe a log line is, least first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One line of a node's log, as `GET /v1/logs` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Increases by one per line kept; a gap means older lines were dropped.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub level: LogLevel,
    /// The module that logged it.
    pub target: String,
    /// The message, then its fields as `key=value`.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_needs_only_a_function() {
        let spec: JobSpec = serde_json::from_value(json!({"function": "echo"})).unwrap();
        assert_eq!(spec, JobSpec::new("echo", Value::Null));
        assert_eq!(spec.max_attempts, 3);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let typo = serde_json::from_value::<JobSpec>(json!({"function": "f", "priorty": 2}));
        assert!(typo.unwrap_err().to_string().contains("priorty"));
    }

    #[test]
    fn job_states_parse_from_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("done".parse::<JobState>().unwrap_err().contains("done"));
    }

    #[test]
    fn batch_results_carry_a_result_or_an_error() {
        let ok = BatchResult::from(Ok(json!(2)));
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"result": 2}));
        let failed = BatchResult::from(Err(CallError::new(ErrorCode::UnknownFunction, "no f")));
        let back: BatchResult =
            serde_json::from_value(serde_json::to_value(&failed).unwrap()).unwrap();
        assert_eq!(
            back.into_result().unwrap_err().code,
            ErrorCode::UnknownFunction
        );
    }
}
