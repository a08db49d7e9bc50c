//! Checks a chaos run's history against Shoal's guarantees.
//!
//! - Calls: each one resolved, with the right result or a clear error.
//! - Jobs: each acknowledged submission ended up as exactly one job, which
//!   succeeded with its own result; no idempotency key made two jobs.
//! - Documents: no acknowledged write was lost, and reads are linearizable.
//!
//! The documents are registers written with compare-and-set on their
//! version, and every write stores a value no other write stores. The
//! version therefore names each write, and the versions order the writes
//! as the cluster applied them. With the order of writes known, a history
//! is linearizable exactly when no two operations contradict real time:
//! an operation that finished before another began must not come after it
//! in version order. So the checker compares pairs, instead of searching
//! all orders as a general linearizability checker must.

use serde::Serialize;
use serde_json::Value;
use shoal_client::{Job, JobState};
use std::collections::{BTreeMap, HashMap};

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
pub struct Write {
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
pub struct Read {
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
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
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
    pub jobs_retried: usize,
    pub jobs_lost: usize,
    pub jobs_duplicated: usize,
    pub doc_writes: usize,
    pub doc_writes_acknowledged: usize,
    pub doc_write_conflicts: usize,
    pub doc_writes_lost: usize,
    pub doc_reads: usize,
    pub doc_reads_ok: usize,
    pub linearizability_violations: usize,
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
        self.lost() == 0 && self.duplicates() == 0 && self.linearizability_violations == 0
    }

    fn problem(&mut self, text: String) {
        const KEPT: usize = 20;
        if self.problems.len() < KEPT {
            self.problems.push(text);
        }
    }
}

pub fn check(history: &History, last: &FinalState) -> Report {
    let mut report = Report::default();
    check_calls(history, &mut report);
    check_jobs(history, last, &mut report);
    check_docs(history, last, &mut report);
    let recoveries = recoveries(history);
    let mut sorted: Vec<Micros> = recoveries.iter().flatten().copied().collect();
    sorted.sort_unstable();
    report.median_recovery_ms = sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |&us| us as f64 / 1e3);
    report.max_recovery_ms = sorted.last().map_or(0.0, |&us| us as f64 / 1e3);
    report.slowest_fault = (0..recoveries.len()).max_by_key(|&i| recoveries[i]);
    report
}

fn check_calls(history: &History, report: &mut Report) {
    report.calls = history.calls.len();
    for outcome in &history.calls {
        match outcome {
            CallOutcome::Correct => report.calls_ok += 1,
            CallOutcome::Failed(code) => *report.calls_failed.entry(code.clone()).or_default() += 1,
            CallOutcome::Wrong { got, expected } => {
                report.calls_wrong += 1;
                report.problem(format!("a call returned {got} instead of {expected}"));
            }
            CallOutcome::Unresolved => {
                report.calls_unresolved += 1;
                report.problem("a call never resolved".into());
            }
        }
    }
}

fn check_jobs(history: &History, last: &FinalState, report: &mut Report) {
    report.jobs_submitted = history.submissions.len();
    let mut by_key: HashMap<&str, Vec<&Job>> = HashMap::new();
    for job in &last.jobs {
        match &job.spec.idempotency_key {
            Some(key) => by_key.entry(key).or_default().push(job),
            None => {
                report.jobs_duplicated += 1;
                report.problem(format!("job {} has no idempotency key", job.id));
            }
        }
    }
    let submitted: HashMap<&str, Option<u64>> = history
        .submissions
        .iter()
        .map(|s| (s.key.as_str(), s.acknowledged))
        .collect();
    for (key, jobs) in &by_key {
        if !submitted.contains_key(key) {
            report.jobs_duplicated += jobs.len();
            report.problem(format!("jobs {key:?} appeared that nobody submitted"));
        } else if jobs.len() > 1 {
            report.jobs_duplicated += jobs.len() - 1;
            let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
            report.problem(format!("key {key:?} made {} jobs: {ids:?}", jobs.len()));
        }
    }
    for submission in &history.submissions {
        let Some(id) = submission.acknowledged else {
            continue;
        };
        report.jobs_acknowledged += 1;
        let jobs = by_key.get(submission.key.as_str()).map_or(&[][..], |j| j);
        let Some(job) = jobs.iter().find(|j| j.id == id) else {
            report.jobs_lost += 1;
            report.problem(format!(
                "acknowledged job {id} ({}) is gone",
                submission.key
            ));
            continue;
        };
        let expected = serde_json::json!({ "key": submission.key });
        if job.state == JobState::Succeeded && job.result.as_ref() == Some(&expected) {
            report.jobs_completed_once += 1;
            if job.attempt > 1 {
                report.jobs_retried += 1;
            }
        } else {
            report.jobs_lost += 1;
            report.problem(format!(
                "acknowledged job {id} ended {} with result {:?} and error {:?}",
                job.state.as_str(),
                job.result,
                job.error
            ));
        }
    }
}

fn check_docs(history: &History, last: &FinalState, report: &mut Report) {
    report.doc_writes = history.writes.len();
    report.doc_reads = history.reads.len();
    report.doc_write_conflicts = history.writes.iter().filter(|w| w.conflict).count();
    for doc in 0..last.docs.len() {
        let writes: Vec<&Write> = history.writes.iter().filter(|w| w.doc == doc).collect();
        let reads: Vec<&Read> = history.reads.iter().filter(|r| r.doc == doc).collect();
        check_register(doc, &writes, &reads, last.docs[doc], report);
    }
}

/// One document: the version of each write, then real-time order.
fn check_register(
    doc: usize,
    writes: &[&Write],
    reads: &[&Read],
    last: Option<(u64, u64)>,
    report: &mut Report,
) {
    let by_value: HashMap<u64, &Write> = writes.iter().map(|w| (w.value, *w)).collect();
    // Which value each version holds, from acknowledgements and reads.
    let mut at_version: BTreeMap<u64, u64> = BTreeMap::new();
    for write in writes {
        let Some(version) = write.version else {
            continue;
        };
        report.doc_writes_acknowledged += 1;
        if let Some(other) = at_version.insert(version, write.value) {
            report.doc_writes_lost += 1;
            report.problem(format!(
                "doc {doc}: writes of {other} and {} were both acknowledged as version {version}",
                write.value
            ));
        }
    }
    let observed = reads
        .iter()
        .filter_map(|r| r.seen)
        .chain(last)
        .collect::<Vec<_>>();
    for &(version, value) in &observed {
        // Value 0 is the document as inserted before the run.
        if value != 0 && !by_value.contains_key(&value) {
            report.linearizability_violations += 1;
            report.problem(format!("doc {doc}: read value {value}, which nobody wrote"));
        }
        match at_version.get(&version) {
            Some(&known) if known != value => {
                report.doc_writes_lost += 1;
                report.problem(format!(
                    "doc {doc}: version {version} holds {value}, but the write of {known} \
                     was acknowledged as that version"
                ));
            }
            Some(_) => {}
            None => {
                at_version.insert(version, value);
            }
        }
    }
    if let Some((final_version, _)) = last {
        for (&version, value) in at_version.range(final_version + 1..) {
            report.doc_writes_lost += 1;
            report.problem(format!(
                "doc {doc}: version {version} ({value}) was seen, but the document ended at \
                 version {final_version}"
            ));
        }
    }

    // Real time. Every operation gets its version: writes the one they
    // created, reads the one they saw.
    let version_of_value: HashMap<u64, u64> = at_version.iter().map(|(v, x)| (*x, *v)).collect();
    let mut ops: Vec<Op> = Vec::new();
    for write in writes {
        if let Some(&version) = version_of_value.get(&write.value) {
            let acknowledged = write.version.is_some();
            ops.push(Op {
                invoked: write.invoked,
                // A write whose answer was lost may have taken effect at
                // any time after it was sent, even after its client gave up.
                completed: if acknowledged {
                    write.completed
                } else {
                    Micros::MAX
                },
                version,
                what: if acknowledged {
                    "acknowledged write"
                } else {
                    "unacknowledged write"
                },
            });
        }
    }
    report.doc_reads_ok += reads.iter().filter(|r| r.seen.is_some()).count();
    for read in reads {
        if let Some((version, _)) = read.seen {
            ops.push(Op {
                invoked: read.invoked,
                completed: read.completed,
                version,
                what: "read",
            });
        }
    }
    // An operation `a` that completed before `b` was invoked must not have
    // a later version, nor, when `b` is a write, the same one.
    let mut by_completion = ops.clone();
    by_completion.sort_by_key(|op| op.completed);
    ops.sort_by_key(|op| op.invoked);
    let mut finished = 0;
    // The op with the highest version among those complete so far.
    let mut highest: Option<&Op> = None;
    for b in &ops {
        while finished < by_completion.len() && by_completion[finished].completed < b.invoked {
            let a = &by_completion[finished];
            if highest.is_none_or(|h| a.version > h.version) {
                highest = Some(a);
            }
            finished += 1;
        }
        let Some(a) = highest else {
            continue;
        };
        let is_write = b.what != "read";
        if b.version < a.version || (is_write && b.version == a.version) {
            report.linearizability_violations += 1;
            report.problem(format!(
                "doc {doc}: a {} begun at {:.3} s has version {}, but a {} of version {} \
                 ended at {:.3} s, before it began",
                b.what,
                b.invoked as f64 / 1e6,
                b.version,
                a.what,
                a.version,
                a.completed as f64 / 1e6,
            ));
        }
    }
}

/// An operation on one document, placed in time and in version order.
#[derive(Clone, Debug)]
struct Op {
    invoked: Micros,
    completed: Micros,
    version: u64,
    what: &'static str,
}

/// For each fault, the wait from when it began to the completion of the
/// first acknowledged write sent after it (`None` if none was).
fn recoveries(history: &History) -> Vec<Option<Micros>> {
    history
        .faults
        .iter()
        .map(|&fault| {
            history
                .acknowledged_at
                .iter()
                .filter(|(invoked, _)| *invoked >= fault)
                .map(|(_, completed)| completed - fault)
                .min()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(doc: usize, value: u64, span: (u64, u64), version: Option<u64>) -> Write {
        Write {
            doc,
            value,
            invoked: span.0,
            completed: span.1,
            version,
            conflict: false,
        }
    }

    fn read(doc: usize, span: (u64, u64), seen: (u64, u64)) -> Read {
        Read {
            doc,
            invoked: span.0,
            completed: span.1,
            seen: Some(seen),
        }
    }

    fn docs(history: History, last: (u64, u64)) -> Report {
        check(
            &history,
            &FinalState {
                jobs: Vec::new(),
                docs: vec![Some(last)],
            },
        )
    }

    #[test]
    fn a_clean_register_history_passes() {
        let history = History {
            writes: vec![
                write(0, 10, (0, 10), Some(2)),
                write(0, 11, (5, 20), None), // answer lost, but applied
                write(0, 12, (30, 40), Some(4)),
            ],
            reads: vec![
                read(0, (12, 14), (2, 10)),
                read(0, (15, 25), (3, 11)),
                read(0, (41, 42), (4, 12)),
            ],
            ..History::default()
        };
        let report = docs(history, (4, 12));
        assert!(report.passed(), "{:?}", report.problems);
        assert_eq!(report.doc_writes_acknowledged, 2);
    }

    #[test]
    fn a_write_whose_answer_was_lost_may_take_effect_later() {
        let history = History {
            // The client gave up at 10; the write was applied at 50.
            writes: vec![write(0, 10, (0, 10), None)],
            reads: vec![read(0, (20, 30), (1, 0)), read(0, (60, 70), (2, 10))],
            ..History::default()
        };
        let report = docs(history, (2, 10));
        assert!(report.passed(), "{:?}", report.problems);
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let history = History {
            writes: vec![write(0, 10, (0, 10), Some(2))],
            reads: vec![read(0, (20, 30), (1, 0))],
            ..History::default()
        };
        let report = docs(history, (2, 10));
        assert_eq!(
            report.linearizability_violations, 1,
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn reads_going_back_in_time_are_a_violation() {
        let history = History {
            writes: vec![write(0, 10, (0, 100), Some(2))],
            reads: vec![read(0, (10, 20), (2, 10)), read(0, (30, 40), (1, 0))],
            ..History::default()
        };
        assert_eq!(docs(history, (2, 10)).linearizability_violations, 1);
    }

    #[test]
    fn two_writes_acknowledged_as_one_version_lose_one() {
        let history = History {
            writes: vec![
                write(0, 10, (0, 10), Some(2)),
                write(0, 11, (0, 10), Some(2)),
            ],
            ..History::default()
        };
        assert_eq!(docs(history, (2, 11)).doc_writes_lost, 1);
    }

    #[test]
    fn a_document_that_went_back_lost_writes() {
        let history = History {
            writes: vec![write(0, 10, (0, 10), Some(2))],
            ..History::default()
        };
        let report = docs(history, (1, 0));
        assert_eq!(report.doc_writes_lost, 1, "{:?}", report.problems);
    }

    #[test]
    fn a_value_nobody_wrote_is_a_violation() {
        let history = History {
            reads: vec![read(0, (0, 1), (2, 99))],
            ..History::default()
        };
        assert_eq!(docs(history, (2, 99)).linearizability_violations, 2);
    }

    fn job(id: u64, key: &str, state: JobState, attempt: u32) -> Job {
        let spec = shoal_client::JobSpec {
            idempotency_key: Some(key.into()),
            ..shoal_client::JobSpec::new("echo", serde_json::json!({ "key": key }))
        };
        Job {
            id,
            result: (state == JobState::Succeeded).then(|| spec.args.clone()),
            spec,
            state,
            attempt,
            leased_by: None,
            lease_expires_ms: 0,
            not_before_ms: 0,
            progress: 1.0,
            message: String::new(),
            error: None,
            submitted_ms: 0,
            finished_ms: None,
        }
    }

    fn submission(key: &str, acknowledged: Option<u64>) -> Submission {
        Submission {
            key: key.into(),
            acknowledged,
        }
    }

    #[test]
    fn jobs_are_checked_for_loss_and_duplicates() {
        let history = History {
            submissions: vec![
                submission("a", Some(1)),
                submission("b", Some(2)),
                submission("c", None),
                submission("d", Some(4)),
            ],
            ..History::default()
        };
        let last = FinalState {
            jobs: vec![
                job(1, "a", JobState::Succeeded, 2),
                job(2, "b", JobState::Succeeded, 1),
                job(3, "b", JobState::Succeeded, 1),
                job(4, "d", JobState::DeadLetter, 10),
            ],
            docs: Vec::new(),
        };
        let report = check(&history, &last);
        assert_eq!(report.jobs_acknowledged, 3);
        assert_eq!(report.jobs_completed_once, 2);
        assert_eq!(report.jobs_retried, 1);
        assert_eq!(report.jobs_duplicated, 1);
        assert_eq!(report.jobs_lost, 1);
        assert!(!report.passed());
    }

    #[test]
    fn recovery_is_the_wait_for_the_next_acknowledged_write() {
        let history = History {
            faults: vec![100, 1_000],
            acknowledged_at: vec![(50, 150), (120, 400), (900, 1_100), (1_500, 1_600)],
            ..History::default()
        };
        assert_eq!(recoveries(&history), vec![Some(300), Some(600)]);
        let report = check(&history, &FinalState::default());
        assert_eq!(
            (report.max_recovery_ms, report.slowest_fault),
            (0.6, Some(1))
        );
    }
}
