//! What a chaos run recorded, for the checker: every operation the clients
//! made, with when it began and ended (in microseconds since the start) and
//! what came back, and what the cluster held once every fault had healed.
//!
//! ```text
//!   workload clients ── one History each ──► History::absorb ─┐
//!   the healed cluster ── FinalState ─────────────────────────┴─► checker::check
//! ```

use serde::Serialize;
use serde_json::Value;
use shoal_client::Job;

/// Microseconds since the run started.
pub type Micros = u64;

/// What a call came back with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum CallOutcome {
    /// The result the function should give.
    Correct,
    /// A result, but not the right one.
    Wrong { got: Value, expected: Value },
    /// A clear error, by its code.
    Failed(String),
    /// Nothing came back before the deadline and its grace had passed.
    Unresolved,
}

/// A job submission: its idempotency key and, if acknowledged, the job id.
#[derive(Clone, Debug, Serialize)]
pub struct Submission {
    pub key: String,
    pub acknowledged: Option<u64>,
}

/// A compare-and-set write of a unique value to a document.
#[derive(Clone, Debug, Serialize)]
pub struct DocWrite {
    pub doc: usize,
    pub value: u64,
    pub invoked: Micros,
    pub completed: Micros,
    /// The version it created, when acknowledged. A write that failed may
    /// still have taken effect (its answer was lost), so it counts as
    /// maybe-applied.
    pub version: Option<u64>,
    /// The cluster answered that another write came first.
    pub conflict: bool,
}

/// A linearizable read of a document.
#[derive(Clone, Debug, Serialize)]
pub struct DocRead {
    pub doc: usize,
    pub invoked: Micros,
    pub completed: Micros,
    /// `(version, value)` when it succeeded.
    pub seen: Option<(u64, u64)>,
}

/// Everything the clients did and saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    pub calls: Vec<CallOutcome>,
    pub submissions: Vec<Submission>,
    pub writes: Vec<DocWrite>,
    pub reads: Vec<DocRead>,
    /// When each fault began, to measure recovery.
    pub faults: Vec<Micros>,
    /// Completion times of acknowledged writes of any kind (documents and
    /// job submissions), sorted when checked.
    pub acknowledged_at: Vec<(Micros, Micros)>,
}

impl History {
    /// Adds what another client did.
    pub fn absorb(&mut self, other: History) {
        self.calls.extend(other.calls);
        self.submissions.extend(other.submissions);
        self.writes.extend(other.writes);
        self.reads.extend(other.reads);
        self.faults.extend(other.faults);
        self.acknowledged_at.extend(other.acknowledged_at);
    }
}

/// What the cluster holds once the run is over and every fault healed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FinalState {
    /// Every job in the queue.
    pub jobs: Vec<Job>,
    /// Each document's `(version, value)`, read linearizably.
    pub docs: Vec<Option<(u64, u64)>>,
}
