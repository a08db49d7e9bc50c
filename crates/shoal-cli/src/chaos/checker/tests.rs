//! The checker on small hand-written histories: clean ones pass, and each
//! kind of broken guarantee is caught and counted.

use super::*;
use crate::chaos::history::Submission;

fn write(doc: usize, value: u64, span: (u64, u64), version: Option<u64>) -> DocWrite {
    DocWrite {
        doc,
        value,
        invoked: span.0,
        completed: span.1,
        version,
        conflict: false,
    }
}

fn read(doc: usize, span: (u64, u64), seen: (u64, u64)) -> DocRead {
    DocRead {
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
        handed_back: 0,
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
            submission("e", Some(5)),
        ],
        ..History::default()
    };
    let handed_back = Job {
        handed_back: 1,
        ..job(5, "e", JobState::Succeeded, 2)
    };
    let last = FinalState {
        jobs: vec![
            job(1, "a", JobState::Succeeded, 2),
            job(2, "b", JobState::Succeeded, 1),
            job(3, "b", JobState::Succeeded, 1),
            job(4, "d", JobState::DeadLetter, 10),
            handed_back,
        ],
        docs: Vec::new(),
    };
    let report = check(&history, &last);
    assert_eq!(report.jobs_acknowledged, 4);
    assert_eq!(report.jobs_completed_once, 3);
    assert_eq!(report.jobs_retried, 1, "a handed-back attempt is no retry");
    assert_eq!(report.jobs_handed_back, 1);
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
