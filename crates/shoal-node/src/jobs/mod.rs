//! Durable jobs: the replicated job table and the rules that change it.
//!
//! Everything here is plain state: commands in, outcomes out, no clock and
//! no I/O. Times come inside the commands (stamped by the node that proposed
//! them), so every replica applying the same log reaches the same state.
//!
//! ```text
//!   Submit ─► Queued ──Lease──► Running ──Complete──► Succeeded
//!               ▲                  │ Fail / lease expired
//!               └──(attempts left, after back-off)──┘ else ─► DeadLetter
//!   Cancel: Queued/Running ─► Cancelled (a running lease is fenced off)
//! ```
//!
//! A lease carries the job's attempt number; renewals, progress and
//! completions name the attempt they belong to, and any other attempt's are
//! rejected. That fencing makes a job's result recorded once.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A job's id: the Raft log index of its submission, unique and the same
/// on every replica.
pub type JobId = u64;

/// What to run and where it may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The function to call.
    pub function: String,
    pub args: Value,
    /// A script that defines `function`, kept with the job so any node can
    /// run it: (file name, source).
    pub script: Option<(String, String)>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::DeadLetter | JobState::Cancelled
        )
    }
}

/// A job and everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub state: JobState,
    /// Attempts started so far; the current lease's fencing token.
    pub attempt: u32,
    /// The node holding the current lease (its peer id).
    pub leased_by: Option<String>,
    pub lease_expires_ms: u64,
    /// Not leased again before this time (retry back-off).
    pub not_before_ms: u64,
    pub progress: f64,
    pub message: String,
    pub result: Option<Value>,
    /// The last attempt's error.
    pub error: Option<String>,
    pub submitted_ms: u64,
    pub finished_ms: Option<u64>,
}

/// A node's offer when it asks for work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub labels: BTreeMap<String, String>,
    pub resources: BTreeMap<String, u64>,
}

/// A change to the job table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobCommand {
    Submit {
        spec: JobSpec,
        now_ms: u64,
    },
    /// Lease up to `max` runnable jobs this node can run, highest priority
    /// first, then oldest.
    Lease {
        node: String,
        offer: Capabilities,
        max: u32,
        now_ms: u64,
    },
    Renew {
        id: JobId,
        attempt: u32,
        now_ms: u64,
    },
    Progress {
        id: JobId,
        attempt: u32,
        fraction: f64,
        message: String,
    },
    Complete {
        id: JobId,
        attempt: u32,
        result: Value,
        now_ms: u64,
    },
    Fail {
        id: JobId,
        attempt: u32,
        error: String,
        now_ms: u64,
    },
    Cancel {
        id: JobId,
        now_ms: u64,
    },
    /// Expire overdue leases and forget jobs finished more than
    /// `retention_ms` ago.
    Tick {
        now_ms: u64,
        retention_ms: u64,
    },
}

/// What a [`JobCommand`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// `existing` when an idempotency key matched an earlier job.
    Submitted {
        id: JobId,
        existing: bool,
    },
    Leased(Vec<Job>),
    Done,
    /// The command was refused: a stale attempt, an unknown or finished job.
    Rejected(String),
}

/// All jobs known to the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTable {
    jobs: BTreeMap<JobId, Job>,
    by_key: BTreeMap<String, JobId>,
}

impl JobTable {
    pub fn apply(&mut self, index: u64, command: &JobCommand) -> JobOutcome {
        let _ = (index, command);
        JobOutcome::Rejected("not implemented yet".to_string())
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Jobs in id order, optionally only those in `state`.
    pub fn list(&self, state: Option<JobState>) -> impl Iterator<Item = &Job> {
        self.jobs
            .values()
            .filter(move |job| state.is_none_or(|s| job.state == s))
    }
}
