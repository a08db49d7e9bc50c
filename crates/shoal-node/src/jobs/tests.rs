use super::rules::retry_backoff_ms;
use super::*;
use proptest::prelude::*;
use serde_json::json;

const LEASE_MS: u64 = 1_000;

fn spec(function: &str) -> JobSpec {
    JobSpec {
        function: function.to_string(),
        args: json!(null),
        script: None,
        labels: BTreeMap::new(),
        resources: BTreeMap::new(),
        priority: 0,
        max_attempts: 3,
        lease_ms: LEASE_MS,
        idempotency_key: None,
    }
}

fn any_node() -> Capabilities {
    Capabilities::default()
}

/// Whether a runner on a node holding no job, offering `offer`, would
/// propose a lease at `now_ms`.
fn has_leasable(table: &JobTable, offer: &Capabilities, now_ms: u64) -> bool {
    let leasing = Leasing {
        node: "an idle node".into(),
        offer: offer.clone(),
        max_local: 1,
    };
    table.leasable(&leasing, now_ms, 1) > 0
}

/// A table plus the next log index, so tests read like a command log.
#[derive(Default)]
struct Log {
    table: JobTable,
    index: u64,
}

impl Log {
    fn apply(&mut self, command: JobCommand) -> JobOutcome {
        self.index += 1;
        self.table.apply(self.index, &command)
    }

    fn submit(&mut self, spec: JobSpec, now_ms: u64) -> JobId {
        match self.apply(JobCommand::Submit { spec, now_ms }) {
            JobOutcome::Submitted { id, .. } => id,
            other => panic!("submit gave {other:?}"),
        }
    }

    fn lease(&mut self, node: &str, offer: Capabilities, max: u32, now_ms: u64) -> Vec<Job> {
        let command = JobCommand::Lease {
            node: node.to_string(),
            offer,
            max,
            max_local: max,
            now_ms,
        };
        match self.apply(command) {
            JobOutcome::Leased(jobs) => jobs,
            other => panic!("lease gave {other:?}"),
        }
    }

    fn leased_ids(&mut self, offer: Capabilities, max: u32, now_ms: u64) -> Vec<JobId> {
        let jobs = self.lease("node-a", offer, max, now_ms);
        jobs.iter().map(|job| job.id).collect()
    }

    fn complete(&mut self, id: JobId, attempt: u32, result: Value, now_ms: u64) -> JobOutcome {
        self.apply(JobCommand::Complete {
            id,
            attempt,
            result,
            now_ms,
        })
    }

    fn fail(&mut self, id: JobId, attempt: u32, now_ms: u64) -> JobOutcome {
        let error = format!("attempt {attempt} broke");
        self.apply(JobCommand::Fail {
            id,
            attempt,
            error,
            now_ms,
        })
    }

    fn tick(&mut self, now_ms: u64, retention_ms: u64) {
        let outcome = self.apply(JobCommand::Tick {
            now_ms,
            retention_ms,
        });
        assert_eq!(outcome, JobOutcome::Done);
    }

    fn job(&self, id: JobId) -> &Job {
        self.table.get(id).expect("job exists")
    }
}

fn rejection(outcome: JobOutcome) -> String {
    match outcome {
        JobOutcome::Rejected(reason) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn submit_queues_a_job_named_by_its_command_id() {
    let mut log = Log::default();
    let mut no_attempts = spec("f");
    no_attempts.max_attempts = 0;
    let outcome = log.apply(JobCommand::Submit {
        spec: no_attempts,
        now_ms: 50,
    });
    assert_eq!(
        outcome,
        JobOutcome::Submitted {
            id: 1,
            existing: false
        }
    );
    let job = log.job(1);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempt, 0);
    assert_eq!(job.submitted_ms, 50);
    assert_eq!(job.spec.max_attempts, 1, "at least one attempt");
}

#[test]
fn the_same_idempotency_key_returns_the_first_job() {
    let mut log = Log::default();
    let mut keyed = spec("f");
    keyed.idempotency_key = Some("order-17".into());
    let first = log.submit(keyed.clone(), 0);
    let again = log.apply(JobCommand::Submit {
        spec: keyed,
        now_ms: 5,
    });
    assert_eq!(
        again,
        JobOutcome::Submitted {
            id: first,
            existing: true
        }
    );
    assert_eq!(log.table.list(None).count(), 1);
}

#[test]
fn idempotency_keys_survive_a_snapshot_which_lists_them_in_order() {
    let mut log = Log::default();
    for key in ["zebra", "apple", "mango"] {
        let mut keyed = spec("f");
        keyed.idempotency_key = Some(key.into());
        log.submit(keyed, 0);
    }
    let stored = serde_json::to_value(&log.table).expect("a table encodes");
    let keys: Vec<&String> = stored["by_key"].as_object().expect("keys").keys().collect();
    assert_eq!(keys, ["apple", "mango", "zebra"]);

    let mut restored = Log {
        table: serde_json::from_value(stored).expect("and reads back"),
        index: log.index,
    };
    let mut again = spec("f");
    again.idempotency_key = Some("mango".into());
    let outcome = restored.apply(JobCommand::Submit {
        spec: again,
        now_ms: 9,
    });
    assert_eq!(
        outcome,
        JobOutcome::Submitted {
            id: 3,
            existing: true
        }
    );
}

#[test]
fn lease_starts_an_attempt_on_the_node() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    let leased = log.lease("node-a", any_node(), 5, 10);
    assert_eq!(leased.len(), 1);
    let job = log.job(id);
    assert_eq!(leased[0], *job);
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempt, 1);
    assert_eq!(job.leased_by.as_deref(), Some("node-a"));
    assert_eq!(job.lease_expires_ms, 10 + LEASE_MS);
    assert!(log.lease("node-b", any_node(), 5, 10).is_empty());
    assert_eq!(log.table.next_lease_expiry(), Some(10 + LEASE_MS));
}

#[test]
fn lease_takes_highest_priority_then_oldest_up_to_max() {
    let mut log = Log::default();
    let low = log.submit(spec("low"), 0);
    let mut urgent = spec("urgent");
    urgent.priority = 5;
    let first_urgent = log.submit(urgent.clone(), 0);
    let second_urgent = log.submit(urgent, 0);
    assert_eq!(
        log.leased_ids(any_node(), 2, 0),
        vec![first_urgent, second_urgent]
    );
    assert_eq!(log.leased_ids(any_node(), 2, 0), vec![low]);
}

#[test]
fn a_job_waits_for_a_node_with_its_labels_and_resources() {
    let mut log = Log::default();
    let mut gpu_job = spec("train");
    gpu_job.labels.insert("accel".into(), "gpu".into());
    gpu_job.resources.insert("memory_mb".into(), 4_096);
    let id = log.submit(gpu_job, 0);

    let mut cpu_offer = any_node();
    cpu_offer.labels.insert("accel".into(), "none".into());
    cpu_offer.resources.insert("memory_mb".into(), 64_000);
    assert!(log.leased_ids(any_node(), 1, 0).is_empty());
    assert!(log.leased_ids(cpu_offer, 1, 0).is_empty());

    let mut small_gpu = any_node();
    small_gpu.labels.insert("accel".into(), "gpu".into());
    small_gpu.resources.insert("memory_mb".into(), 2_048);
    assert!(log.leased_ids(small_gpu.clone(), 1, 0).is_empty());

    let mut big_gpu = small_gpu;
    big_gpu.resources.insert("memory_mb".into(), 4_096);
    assert_eq!(log.leased_ids(big_gpu, 1, 0), vec![id]);
}

#[test]
fn renew_and_progress_apply_to_the_current_attempt_only() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    log.lease("node-a", any_node(), 1, 0);

    let renewed = log.apply(JobCommand::Renew {
        id,
        attempt: 1,
        now_ms: 600,
    });
    assert_eq!(renewed, JobOutcome::Done);
    assert_eq!(log.job(id).lease_expires_ms, 600 + LEASE_MS);

    let progress = log.apply(JobCommand::Progress {
        id,
        attempt: 1,
        fraction: 1.7,
        message: "almost".into(),
    });
    assert_eq!(progress, JobOutcome::Done);
    assert_eq!(log.job(id).progress, 1.0, "clamped");
    assert_eq!(log.job(id).message, "almost");

    let wrong = log.apply(JobCommand::Renew {
        id,
        attempt: 2,
        now_ms: 700,
    });
    assert!(rejection(wrong).contains("has no attempt 2"));
    let unknown = log.apply(JobCommand::Renew {
        id: 99,
        attempt: 1,
        now_ms: 700,
    });
    assert!(rejection(unknown).contains("unknown job 99"));
}

#[test]
fn complete_records_the_result() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    log.lease("node-a", any_node(), 1, 0);
    let outcome = log.complete(id, 1, json!({"sum": 3}), 400);
    assert_eq!(outcome, JobOutcome::Done);
    let job = log.job(id);
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(json!({"sum": 3})));
    assert_eq!(job.finished_ms, Some(400));
    assert_eq!(job.leased_by, None);
    let twice = log.complete(id, 1, json!({"sum": 4}), 500);
    assert!(rejection(twice).contains("already succeeded"));
    assert_eq!(log.job(id).result, Some(json!({"sum": 3})));
}

#[test]
fn failures_retry_with_backoff_then_go_to_the_dead_letters() {
    let mut log = Log::default();
    let id = log.submit(spec("flaky"), 0);
    let mut now = 0;
    for attempt in 1..=2 {
        log.lease("node-a", any_node(), 1, now);
        assert_eq!(log.fail(id, attempt, now), JobOutcome::Done);
        let job = log.job(id);
        assert_eq!(job.state, JobState::Queued);
        let backoff = 100 << (attempt - 1);
        assert_eq!(job.not_before_ms, now + backoff);
        assert!(
            log.leased_ids(any_node(), 1, now + backoff - 1).is_empty(),
            "not before the back-off"
        );
        now += backoff;
    }
    log.lease("node-a", any_node(), 1, now);
    assert_eq!(log.fail(id, 3, now), JobOutcome::Done);
    let job = log.job(id);
    assert_eq!(job.state, JobState::DeadLetter);
    assert_eq!(job.error.as_deref(), Some("attempt 3 broke"));
    assert_eq!(job.finished_ms, Some(now));
    assert!(log.leased_ids(any_node(), 1, now + 60_000).is_empty());
}

#[test]
fn backoff_doubles_up_to_half_a_minute() {
    let waits: Vec<u64> = [1, 2, 3, 9, 10, 40, u32::MAX]
        .into_iter()
        .map(retry_backoff_ms)
        .collect();
    assert_eq!(waits, vec![100, 200, 400, 25_600, 30_000, 30_000, 30_000]);
}

#[test]
fn an_expired_lease_fences_off_the_late_completion() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    log.lease("node-a", any_node(), 1, 0);

    log.tick(LEASE_MS, 60_000);
    let job = log.job(id);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.error.as_deref(), Some("lease expired on node node-a"));

    let now = LEASE_MS + 100;
    let relet = log.lease("node-b", any_node(), 1, now);
    assert_eq!(relet[0].attempt, 2);

    let late = log.complete(id, 1, json!("from node-a"), now);
    assert!(rejection(late).contains("a newer attempt 2 took it over"));
    assert_eq!(
        log.complete(id, 2, json!("from node-b"), now),
        JobOutcome::Done
    );
    assert_eq!(log.job(id).result, Some(json!("from node-b")));
}

#[test]
fn cancelling_a_running_job_fences_its_completion() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    log.lease("node-a", any_node(), 1, 0);
    let cancelled = log.apply(JobCommand::Cancel { id, now_ms: 10 });
    assert_eq!(cancelled, JobOutcome::Done);
    assert_eq!(log.job(id).state, JobState::Cancelled);
    assert_eq!(log.job(id).finished_ms, Some(10));

    let late = log.complete(id, 1, json!(1), 20);
    assert!(rejection(late).contains("it was cancelled"));
    assert_eq!(log.job(id).result, None);

    let again = log.apply(JobCommand::Cancel { id, now_ms: 30 });
    assert!(rejection(again).contains("already finished as cancelled"));
    let unknown = log.apply(JobCommand::Cancel { id: 99, now_ms: 30 });
    assert!(rejection(unknown).contains("unknown job 99"));
}

#[test]
fn finished_jobs_and_their_keys_are_forgotten_after_retention() {
    let mut log = Log::default();
    let mut keyed = spec("f");
    keyed.idempotency_key = Some("once".into());
    let done = log.submit(keyed.clone(), 0);
    let waiting = log.submit(spec("g"), 0);
    log.lease("node-a", any_node(), 1, 0);
    log.complete(done, 1, json!(1), 100);

    log.tick(100 + 4_999, 5_000);
    assert!(log.table.get(done).is_some(), "kept until retention ends");
    log.tick(100 + 5_000, 5_000);
    assert!(log.table.get(done).is_none());
    assert!(log.table.get(waiting).is_some(), "unfinished jobs stay");

    let resubmitted = log.apply(JobCommand::Submit {
        spec: keyed,
        now_ms: 6_000,
    });
    assert!(matches!(
        resubmitted,
        JobOutcome::Submitted {
            existing: false,
            ..
        }
    ));
}

fn gpu_node(gpus: u64) -> Capabilities {
    Capabilities {
        labels: BTreeMap::from([("printer".to_string(), "color".to_string())]),
        resources: BTreeMap::from([("gpu".to_string(), gpus)]),
    }
}

fn needing_a_gpu() -> JobSpec {
    JobSpec {
        resources: BTreeMap::from([("gpu".to_string(), 1)]),
        ..spec("render")
    }
}

#[test]
fn a_nodes_resources_are_reserved_while_its_jobs_run() {
    let mut log = Log::default();
    let first = log.submit(needing_a_gpu(), 0);
    let second = log.submit(needing_a_gpu(), 0);
    assert_eq!(
        log.leased_ids(gpu_node(1), 10, 1),
        vec![first],
        "one gpu, one job"
    );
    let looking = |node: &str| Leasing {
        node: node.into(),
        offer: gpu_node(1),
        max_local: 10,
    };
    assert_eq!(log.table.leasable(&looking("node-a"), 2, 10), 0);
    assert_eq!(log.table.leasable(&looking("node-b"), 2, 10), 1);
    assert!(
        log.leased_ids(gpu_node(1), 10, 2).is_empty(),
        "the gpu is taken until the first job ends"
    );
    assert_eq!(
        log.lease("node-b", gpu_node(1), 10, 3)
            .iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        vec![second],
        "another node's gpu is free"
    );
    log.complete(first, 1, json!("done"), 4);
    let third = log.submit(needing_a_gpu(), 5);
    assert_eq!(
        log.leased_ids(gpu_node(2), 10, 6),
        vec![third],
        "free again"
    );
}

#[test]
fn jobs_with_requirements_are_leased_only_up_to_the_local_limit() {
    let mut log = Log::default();
    let labelled = JobSpec {
        labels: BTreeMap::from([("printer".to_string(), "color".to_string())]),
        ..spec("print")
    };
    let plain: Vec<JobId> = (0..3).map(|_| log.submit(spec("f"), 0)).collect();
    let printed: Vec<JobId> = (0..3).map(|_| log.submit(labelled.clone(), 0)).collect();
    let leased = match log.apply(JobCommand::Lease {
        node: "node-a".to_string(),
        offer: gpu_node(0),
        max: 10,
        max_local: 1,
        now_ms: 1,
    }) {
        JobOutcome::Leased(jobs) => jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
        other => panic!("lease gave {other:?}"),
    };
    let mut expected = plain.clone();
    expected.push(printed[0]);
    assert_eq!(leased, expected, "every plain job, one labelled job");
}

#[test]
fn a_departed_nodes_leases_return_at_once_and_its_late_results_are_refused() {
    let mut log = Log::default();
    let id = log.submit(spec("f"), 0);
    let other = log.submit(spec("g"), 0);
    log.lease("node-a", any_node(), 1, 1);
    log.lease("node-b", any_node(), 1, 1);
    assert_eq!(log.table.lease_holders().len(), 2);
    let outcome = log.apply(JobCommand::Release {
        node: "node-a".to_string(),
        now_ms: 2,
    });
    assert_eq!(outcome, JobOutcome::Done);
    let job = log.job(id);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.not_before_ms, 2, "no back-off: not the job's fault");
    assert!(job.error.as_deref().unwrap().contains("node-a left"));
    assert_eq!(
        log.job(other).state,
        JobState::Running,
        "other nodes keep theirs"
    );
    assert_eq!(
        log.leased_ids(any_node(), 1, 2),
        vec![id],
        "runs again at once"
    );
    let late = log.complete(id, 1, json!("late"), 3);
    assert!(rejection(late).contains("newer attempt 2"));
}

#[test]
fn a_job_a_draining_node_hands_back_runs_again_without_losing_an_attempt() {
    let mut log = Log::default();
    let mut once = spec("f");
    once.max_attempts = 1;
    let id = log.submit(once, 0);
    log.lease("node-a", any_node(), 1, 1);
    let outcome = log.apply(JobCommand::HandBack {
        node: "node-a".to_string(),
        now_ms: 2,
    });
    assert_eq!(outcome, JobOutcome::Done);
    let job = log.job(id);
    assert_eq!(job.state, JobState::Queued, "its only attempt is not spent");
    assert_eq!(job.not_before_ms, 2, "no back-off");
    assert!(job.message.contains("draining"), "{}", job.message);
    let again = log.lease("node-b", any_node(), 1, 3);
    assert_eq!(
        again[0].attempt, 2,
        "a new attempt, so the old one is fenced"
    );
    assert!(rejection(log.complete(id, 1, json!("late"), 4)).contains("newer attempt 2"));
    log.fail(id, 2, 5);
    assert_eq!(
        log.job(id).state,
        JobState::DeadLetter,
        "a real failure still counts"
    );
}

#[test]
fn runner_checks_agree_with_lease_and_tick() {
    let mut log = Log::default();
    assert!(!has_leasable(&log.table, &any_node(), 0));
    let mut gpu_job = spec("train");
    gpu_job.labels.insert("accel".into(), "gpu".into());
    let id = log.submit(gpu_job, 0);
    assert_eq!(log.table.applied_id(), 1);
    assert!(!has_leasable(&log.table, &any_node(), 0));
    let mut gpu = any_node();
    gpu.labels.insert("accel".into(), "gpu".into());
    assert!(has_leasable(&log.table, &gpu, 0));

    let full = Leasing {
        node: "node-a".into(),
        offer: gpu.clone(),
        max_local: 0,
    };
    assert_eq!(log.table.leasable(&full, 0, 10), 0, "no room for it here");

    log.lease("node-a", gpu.clone(), 1, 0);
    assert!(!has_leasable(&log.table, &gpu, 0));
    assert!(!log.table.tick_due(LEASE_MS - 1, 5_000));
    assert!(log.table.tick_due(LEASE_MS, 5_000), "lease ran out");

    log.complete(id, 1, json!(1), 10);
    assert!(!log.table.tick_due(5_009, 5_000));
    assert!(log.table.tick_due(5_010, 5_000), "retention is over");
    log.tick(5_010, 5_000);
    assert!(!log.table.tick_due(5_010, 5_000));
    assert_eq!(log.table.applied_id(), 4);
}

#[test]
fn counts_group_jobs_by_state() {
    let mut log = Log::default();
    log.submit(spec("f"), 0);
    log.submit(spec("f"), 0);
    log.lease("node-a", any_node(), 1, 0);
    let counts = log.table.counts();
    assert_eq!(
        counts,
        BTreeMap::from([(JobState::Queued, 1), (JobState::Running, 1)])
    );
}

#[test]
fn the_wait_that_calls_in_more_runners_is_the_next_jobs_not_the_queues() {
    let mut log = Log::default();
    assert_eq!(log.table.next_in_line(0), None, "nothing waits");
    let first = log.submit(spec("f"), 1_000);
    assert_eq!(log.table.next_in_line(1_050), Some((first, 50)));
    // Jobs stream in: the queue never empties, but each is taken quickly.
    let second = log.submit(spec("f"), 1_100);
    assert_eq!(log.leased_ids(any_node(), 1, 1_100), vec![first]);
    assert_eq!(
        log.table.next_in_line(1_150),
        Some((second, 50)),
        "the job now next came at 1,100"
    );
    // A job waiting out its retry back-off is not waiting for a runner.
    let mut alone = Log::default();
    let id = alone.submit(spec("f"), 0);
    alone.leased_ids(any_node(), 1, 0);
    alone.fail(id, 1, 10);
    let ready_at = 10 + retry_backoff_ms(1);
    assert_eq!(alone.table.next_in_line(ready_at - 1), None);
    assert_eq!(alone.table.next_in_line(ready_at + 30), Some((id, 30)));
}

/// One step of a random command log; ids and attempts are picked among
/// the jobs that exist when the step runs, so most steps do something.
#[derive(Clone, Debug)]
enum Step {
    /// `gpu`: the job needs a node labelled `accel=gpu`.
    Submit {
        key: Option<u8>,
        priority: i32,
        gpu: bool,
    },
    /// `gpu`: the leasing node has that label.
    Lease {
        max: u32,
        gpu: bool,
    },
    Renew {
        job: prop::sample::Index,
        attempt_delta: i8,
    },
    Complete {
        job: prop::sample::Index,
        attempt_delta: i8,
    },
    Fail {
        job: prop::sample::Index,
        attempt_delta: i8,
    },
    Cancel {
        job: prop::sample::Index,
    },
    Tick {
        retention_ms: u64,
    },
    /// A node leaves (`hand_back: false`) or drains.
    Release {
        node: u8,
        hand_back: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let job = any::<prop::sample::Index>();
    let delta = -1i8..=1;
    // Weighted towards the lease life cycle, so completions often race
    // expiries and retries rather than mostly hitting cancelled jobs.
    prop_oneof![
        3 => (prop::option::of(0u8..3), -1i32..=1, any::<bool>())
            .prop_map(|(key, priority, gpu)| Step::Submit { key, priority, gpu }),
        3 => (0u32..3, any::<bool>()).prop_map(|(max, gpu)| Step::Lease { max, gpu }),
        2 => (job.clone(), delta.clone())
            .prop_map(|(job, attempt_delta)| Step::Renew { job, attempt_delta }),
        3 => (job.clone(), delta.clone())
            .prop_map(|(job, attempt_delta)| Step::Complete { job, attempt_delta }),
        2 => (job.clone(), delta).prop_map(|(job, attempt_delta)| Step::Fail { job, attempt_delta }),
        1 => job.prop_map(|job| Step::Cancel { job }),
        1 => (0u64..3_000).prop_map(|retention_ms| Step::Tick { retention_ms }),
        1 => (0u8..3, any::<bool>()).prop_map(|(node, hand_back)| Step::Release { node, hand_back }),
    ]
}

/// Turns a random step into a command against the current table.
fn command(table: &JobTable, step: &Step, index: u64, now_ms: u64) -> Option<JobCommand> {
    let ids: Vec<JobId> = table.list(None).map(|job| job.id).collect();
    let pick = |job: &prop::sample::Index| {
        let id = *job.get(&ids);
        let attempt = table.get(id).map_or(0, |job| job.attempt);
        (id, attempt)
    };
    let shifted = |attempt: u32, delta: i8| attempt.saturating_add_signed(delta.into());
    let command = match step {
        Step::Submit { key, priority, gpu } => {
            let mut spec = spec("f");
            spec.priority = *priority;
            spec.idempotency_key = key.map(|key| format!("key-{key}"));
            if *gpu {
                spec.labels.insert("accel".into(), "gpu".into());
            }
            JobCommand::Submit { spec, now_ms }
        }
        Step::Lease { max, gpu } => {
            let mut offer = any_node();
            if *gpu {
                offer.labels.insert("accel".into(), "gpu".into());
            }
            JobCommand::Lease {
                node: format!("node-{}", index % 3),
                offer,
                max: *max,
                max_local: *max,
                now_ms,
            }
        }
        Step::Renew { .. } | Step::Complete { .. } | Step::Fail { .. } | Step::Cancel { .. }
            if ids.is_empty() =>
        {
            return None;
        }
        Step::Renew { job, attempt_delta } => {
            let (id, attempt) = pick(job);
            let attempt = shifted(attempt, *attempt_delta);
            JobCommand::Renew {
                id,
                attempt,
                now_ms,
            }
        }
        Step::Complete { job, attempt_delta } => {
            let (id, attempt) = pick(job);
            let attempt = shifted(attempt, *attempt_delta);
            // Every completion carries a result no other one has.
            let result = json!(index);
            JobCommand::Complete {
                id,
                attempt,
                result,
                now_ms,
            }
        }
        Step::Fail { job, attempt_delta } => {
            let (id, attempt) = pick(job);
            let attempt = shifted(attempt, *attempt_delta);
            let error = "boom".to_string();
            JobCommand::Fail {
                id,
                attempt,
                error,
                now_ms,
            }
        }
        Step::Cancel { job } => JobCommand::Cancel {
            id: pick(job).0,
            now_ms,
        },
        Step::Tick { retention_ms } => JobCommand::Tick {
            now_ms,
            retention_ms: *retention_ms,
        },
        Step::Release { node, hand_back } => {
            let node = format!("node-{node}");
            if *hand_back {
                JobCommand::HandBack { node, now_ms }
            } else {
                JobCommand::Release { node, now_ms }
            }
        }
    };
    Some(command)
}

proptest! {
    #[test]
    fn results_are_recorded_once_and_finished_jobs_stay_finished(
        steps in prop::collection::vec((step(), 0u64..700), 1..80)
    ) {
        let mut table = JobTable::default();
        let mut now_ms = 0;
        // The first finished state and result each job was seen with.
        let mut finished: BTreeMap<JobId, (JobState, Option<Value>)> = BTreeMap::new();
        for (position, (step, elapsed_ms)) in steps.iter().enumerate() {
            now_ms += elapsed_ms;
            let index = position as u64 + 1;
            let Some(command) = command(&table, step, index, now_ms) else {
                continue;
            };
            let before = table.clone();
            let outcome = table.apply(index, &command);
            prop_assert_eq!(
                &table.index,
                &JobIndex::build(table.jobs.values()),
                "the index is what the jobs say after {:?}",
                command
            );

            if let (JobOutcome::Leased(jobs), JobCommand::Lease { node, offer, max, max_local, .. }) =
                (&outcome, &command)
            {
                let leasing = Leasing {
                    node: node.clone(),
                    offer: offer.clone(),
                    max_local: *max_local,
                };
                prop_assert_eq!(
                    before.leasable(&leasing, now_ms, *max as usize),
                    jobs.len(),
                    "a runner's look says what its lease takes"
                );
                // What a look at every queued job, in line, would take.
                let in_line: Vec<JobId> = before
                    .queued()
                    .filter(|job| is_leasable(job, offer, now_ms))
                    .take(*max as usize)
                    .map(|job| job.id)
                    .collect();
                let leased: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
                prop_assert_eq!(leased, in_line, "a lease takes the first it may, in line");
            }
            for job in table.list(None) {
                if job.state.is_finished() {
                    let first = finished
                        .entry(job.id)
                        .or_insert_with(|| (job.state, job.result.clone()));
                    prop_assert_eq!(&first.0, &job.state, "job {} changed state", job.id);
                    prop_assert_eq!(&first.1, &job.result, "job {} changed result", job.id);
                } else {
                    prop_assert!(!finished.contains_key(&job.id), "job {} was revived", job.id);
                }
                let succeeded = job.state == JobState::Succeeded;
                prop_assert_eq!(succeeded, job.result.is_some(), "job {}", job.id);
            }
        }
        let stored = serde_json::to_vec(&table).expect("a table serializes");
        let read: JobTable = serde_json::from_slice(&stored).expect("and reads back");
        prop_assert_eq!(read, table, "a snapshot's table, index included, is the table");
    }
}
