//! Checks a chaos run's history against Shoal's guarantees.
//!
//! - Calls: each one resolved, with the right result or a clear error.
//! - Jobs: each acknowledged submission ended up as exactly one job, which
//!   succeeded with its own result; no idempotency key made two jobs.
//! - Documents: no acknowledged write was lost, and reads are linearizable
//!   (how that is decided: `linearizability.rs`).
//!
//! ```text
//!   History + FinalState ──► calls, jobs, documents,
//!                            recovery after each fault ──► Report
//! ```

use super::history::{CallOutcome, DocRead, DocWrite, FinalState, History, Micros};
use super::linearizability::check_register;
use super::report::Report;
use shoal_client::{Job, JobState};
use std::collections::HashMap;

#[cfg(test)]
mod tests;

/// Everything the clients saw, and what the cluster holds, against the
/// guarantees; a pure function, so it is tested on hand-written histories.
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
            // A handed-back attempt did not fail: the job is not retried
            // for it (though the attempt number, a fencing token, grows).
            if job.attempt.saturating_sub(job.handed_back) > 1 {
                report.jobs_retried += 1;
            }
            if job.handed_back > 0 {
                report.jobs_handed_back += 1;
            }
        } else {
            report.jobs_lost += 1;
            report.problem(format!(
                "acknowledged job {id} ({}) ended {} with result {:?} and error {:?}",
                submission.key,
                job.state.as_str(),
                job.result,
                job.error
            ));
        }
    }
}

/// After graceful restarts only, no job should have waited for a lease to
/// run out: a draining node hands its leases back.
pub fn check_no_lease_waits(last: &FinalState, report: &mut Report) {
    for job in &last.jobs {
        if let Some(error) = job.error.as_deref().filter(|e| e.contains("lease expired")) {
            report.jobs_waited_for_lease += 1;
            report.problem(format!("job {} waited for its lease: {error}", job.id));
        }
    }
}

fn check_docs(history: &History, last: &FinalState, report: &mut Report) {
    report.doc_writes = history.writes.len();
    report.doc_reads = history.reads.len();
    report.doc_write_conflicts = history.writes.iter().filter(|w| w.conflict).count();
    for doc in 0..last.docs.len() {
        let writes: Vec<&DocWrite> = history.writes.iter().filter(|w| w.doc == doc).collect();
        let reads: Vec<&DocRead> = history.reads.iter().filter(|r| r.doc == doc).collect();
        check_register(doc, &writes, &reads, last.docs[doc], report);
    }
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
