//! The rules of single jobs: whether one may be leased, how an attempt
//! starts and fails, when a lease or a retention period is over.

use super::{Capabilities, Job, JobId, JobOutcome, JobSpec, JobState};
use std::collections::BTreeMap;

/// The first retry waits this long; each later one waits twice as long as
/// the one before, so a failing dependency is not hammered.
const RETRY_BACKOFF_BASE_MS: u64 = 100;

/// The longest wait between retries: half a minute keeps a job that fails
/// for a while from drifting hours behind once its cause is fixed.
const RETRY_BACKOFF_MAX_MS: u64 = 30_000;

/// Whether a job's function must run on the node that leased it: a job
/// with requirements runs where they are met; one without runs wherever
/// the calls place it.
pub fn runs_where_leased(spec: &JobSpec) -> bool {
    !spec.labels.is_empty() || !spec.resources.is_empty()
}

/// Old log entries (before `max_local`) leased without that limit.
pub(super) fn unlimited() -> u32 {
    u32::MAX
}

/// Whether `spec`'s resources fit in what `offer` has beside `held`.
pub(super) fn fits_beside(
    spec: &JobSpec,
    offer: &Capabilities,
    held: &BTreeMap<String, u64>,
) -> bool {
    spec.resources.iter().all(|(name, needed)| {
        let offered = offer.resources.get(name).copied().unwrap_or(0);
        let taken = held.get(name).copied().unwrap_or(0);
        taken.saturating_add(*needed) <= offered
    })
}

/// How long to wait before attempt `failed_attempt + 1` may start.
pub(super) fn retry_backoff_ms(failed_attempt: u32) -> u64 {
    // 100 ms << 9 already exceeds the cap, so clamping the shift keeps it
    // from overflowing without changing the result.
    let doublings = failed_attempt.saturating_sub(1).min(16);
    (RETRY_BACKOFF_BASE_MS << doublings).min(RETRY_BACKOFF_MAX_MS)
}

/// Whether a `Lease` at `now_ms` from a node offering `offer` would take `job`.
pub(super) fn is_leasable(job: &Job, offer: &Capabilities, now_ms: u64) -> bool {
    job.state == JobState::Queued && job.not_before_ms <= now_ms && offer_fits(&job.spec, offer)
}

/// Whether `job` is running on a lease its node stopped renewing.
pub(super) fn lease_overdue(job: &Job, now_ms: u64) -> bool {
    job.state == JobState::Running && job.lease_expires_ms <= now_ms
}

/// Whether a node offering `offer` may run a job needing `spec`: every
/// label matches and every resource is offered at least in that amount.
pub(super) fn offer_fits(spec: &JobSpec, offer: &Capabilities) -> bool {
    meets(&spec.labels, &spec.resources, offer)
}

/// Whether `offer` has every label of `labels` and at least `resources`.
pub(super) fn meets(
    labels: &BTreeMap<String, String>,
    resources: &BTreeMap<String, u64>,
    offer: &Capabilities,
) -> bool {
    let labels_match = labels
        .iter()
        .all(|(key, value)| offer.labels.get(key) == Some(value));
    let resources_suffice = resources
        .iter()
        .all(|(name, needed)| offer.resources.get(name).copied().unwrap_or(0) >= *needed);
    labels_match && resources_suffice
}

/// Ends attempt `job.attempt` as a failure: the job is queued again after a
/// back-off while attempts remain, and goes to the dead letters otherwise.
pub(super) fn fail_attempt(job: &mut Job, error: String, now_ms: u64) {
    job.error = Some(error);
    job.leased_by = None;
    if job.attempt.saturating_sub(job.handed_back) < job.spec.max_attempts {
        job.state = JobState::Queued;
        job.not_before_ms = now_ms.saturating_add(retry_backoff_ms(job.attempt));
    } else {
        job.state = JobState::DeadLetter;
        job.finished_ms = Some(now_ms);
    }
}

/// Why `attempt` of `job` may no longer act on it, or `None` if it holds
/// the current lease.
pub(super) fn stale_attempt_reason(job: &Job, attempt: u32) -> Option<String> {
    let id = job.id;
    if attempt > job.attempt {
        return Some(format!(
            "job {id} has no attempt {attempt} (its latest is {}); check the attempt number from the lease",
            job.attempt
        ));
    }
    let why = if attempt < job.attempt {
        format!("a newer attempt {} took it over", job.attempt)
    } else {
        match job.state {
            JobState::Running => return None,
            JobState::Queued => {
                "it failed or its lease expired, and it is queued for a retry".into()
            }
            JobState::Succeeded => "it already succeeded".into(),
            JobState::DeadLetter => "it went to the dead letters".into(),
            JobState::Cancelled => "it was cancelled".into(),
        }
    };
    Some(format!(
        "job {id} attempt {attempt} is no longer leased: {why}; stop working on it and drop its result"
    ))
}

pub(super) fn unknown_job(id: JobId) -> JobOutcome {
    JobOutcome::Rejected(format!(
        "unknown job {id}: check the id; finished jobs are forgotten after the retention period"
    ))
}

/// Hands `job` to `node` as a new attempt, fenced by the new attempt number.
pub(super) fn start_attempt(job: &mut Job, node: &str, now_ms: u64) {
    job.state = JobState::Running;
    job.attempt += 1;
    job.leased_by = Some(node.to_string());
    job.lease_expires_ms = now_ms.saturating_add(job.spec.lease_ms);
    job.progress = 0.0;
    job.message.clear();
}
