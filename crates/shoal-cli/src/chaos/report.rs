//! The verdict of a chaos run: counts of what held and what broke, the
//! recovery time after faults, and the first problems in words. The
//! checker fills it in; `shoal chaos` prints it (and, with `--json`, emits
//! it as figures).

use serde::Serialize;
use std::collections::BTreeMap;

/// The verdict, with the figures a reader wants.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub calls: usize,
    pub calls_ok: usize,
    pub calls_failed: BTreeMap<String, usize>,
    pub calls_wrong: usize,
    pub calls_unresolved: usize,
    pub jobs_submitted: usize,
    pub jobs_acknowledged: usize,
    pub jobs_completed_once: usize,
    /// Completed after an attempt that failed or was lost with its node.
    pub jobs_retried: usize,
    /// Completed after a draining node handed an attempt back.
    pub jobs_handed_back: usize,
    pub jobs_lost: usize,
    pub jobs_duplicated: usize,
    pub doc_writes: usize,
    pub doc_writes_acknowledged: usize,
    pub doc_write_conflicts: usize,
    pub doc_writes_lost: usize,
    pub doc_reads: usize,
    pub doc_reads_ok: usize,
    pub linearizability_violations: usize,
    /// In a run of graceful restarts only: jobs whose attempt ended
    /// because its lease ran out (a drained node should hand leases back).
    pub jobs_waited_for_lease: usize,
    /// Faults that went wrong: a node that did not drain and exit 0, or did
    /// not come back.
    pub fault_failures: usize,
    pub max_recovery_ms: f64,
    pub median_recovery_ms: f64,
    /// The fault (its index) after which the cluster took longest.
    pub slowest_fault: Option<usize>,
    /// The first few problems, in words.
    pub problems: Vec<String>,
}

impl Report {
    pub fn operations(&self) -> usize {
        self.calls + self.jobs_submitted + self.doc_writes + self.doc_reads
    }

    /// Operations whose effect or answer went missing.
    pub fn lost(&self) -> usize {
        self.calls_unresolved + self.calls_wrong + self.jobs_lost + self.doc_writes_lost
    }

    pub fn duplicates(&self) -> usize {
        self.jobs_duplicated
    }

    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.duplicates() == 0
            && self.linearizability_violations == 0
            && self.jobs_waited_for_lease == 0
            && self.fault_failures == 0
    }

    /// Notes a problem in words; only the first few are kept.
    pub fn problem(&mut self, text: String) {
        const KEPT: usize = 20;
        if self.problems.len() < KEPT {
            self.problems.push(text);
        }
    }
}
