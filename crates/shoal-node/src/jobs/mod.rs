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

mod calling_in;
mod index;
mod orphans;
pub mod progress;
mod rules;
pub mod runner;

use index::JobIndex;
pub use rules::runs_where_leased;
use rules::{fail_attempt, fits_beside, is_leasable, lease_overdue, meets};
use rules::{stale_attempt_reason, start_attempt, unknown_job};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub use shoal_proto::api::{Job, JobId, JobSpec, JobState, ScriptSource};

/// A node's offer when it asks for work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub labels: BTreeMap<String, String>,
    pub resources: BTreeMap<String, u64>,
}

/// Who would lease, with what, and with room for how many jobs with
/// requirements (those run on the leasing node itself).
#[derive(Clone, Debug, PartialEq)]
pub struct Leasing {
    pub node: String,
    pub offer: Capabilities,
    pub max_local: u32,
}

/// A change to the job table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobCommand {
    Submit {
        spec: JobSpec,
        now_ms: u64,
    },
    /// Lease up to `max` runnable jobs this node can run, highest priority
    /// first, then oldest; of those with requirements (labels or
    /// resources), which run on this node itself, at most `max_local`, and
    /// only while their resources fit next to those its running jobs hold.
    Lease {
        node: String,
        offer: Capabilities,
        max: u32,
        #[serde(default = "rules::unlimited")]
        max_local: u32,
        now_ms: u64,
    },
    /// `node` left the cluster: its running attempts end now, and their
    /// jobs are queued again at once (or dead-lettered if none are left).
    Release {
        node: String,
        now_ms: u64,
    },
    /// `node` is draining and gives its unfinished jobs back: they are
    /// queued again at once, and the attempt does not count against
    /// `max_attempts` (the job did not fail; its node stopped).
    HandBack {
        node: String,
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
#[serde(from = "StoredJobTable")]
pub struct JobTable {
    jobs: BTreeMap<JobId, Job>,
    /// Jobs by idempotency key. Every submit looks its key up, and a busy
    /// day's history holds millions: a hash map, where a B-tree spent a
    /// twentieth of a replica's CPU comparing keys. Stored in key order.
    #[serde(serialize_with = "in_key_order")]
    by_key: HashMap<String, JobId>,
    /// The id of the last command applied here (ids only grow), so a
    /// reader can tell whether the table may have changed since it last
    /// looked.
    last_applied: u64,
    /// Which jobs are queued, running and finished; every change of a job
    /// goes through [`JobTable::update`], which keeps it right.
    #[serde(skip)]
    index: JobIndex,
}

/// A job table as snapshots hold it: the index is built again on reading.
#[derive(Deserialize)]
struct StoredJobTable {
    jobs: BTreeMap<JobId, Job>,
    by_key: HashMap<String, JobId>,
    #[serde(default)]
    last_applied: u64,
}

impl From<StoredJobTable> for JobTable {
    fn from(stored: StoredJobTable) -> JobTable {
        JobTable {
            index: JobIndex::build(stored.jobs.values()),
            jobs: stored.jobs,
            by_key: stored.by_key,
            last_applied: stored.last_applied,
        }
    }
}

/// Writes `map` in key order, so that a snapshot's bytes depend only on
/// its contents.
fn in_key_order<S: serde::Serializer>(
    map: &HashMap<String, JobId>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().collect::<BTreeMap<_, _>>())
}

impl JobTable {
    /// Applies one committed command. `id` is the command's own (see
    /// `ShoalState::apply_command`: it grows from command to command, the
    /// same on every replica); a submitted job takes it.
    pub fn apply(&mut self, id: u64, command: &JobCommand) -> JobOutcome {
        self.last_applied = id;
        match command {
            JobCommand::Submit { spec, now_ms } => self.submit(id, spec, *now_ms),
            JobCommand::Lease {
                node,
                offer,
                max,
                max_local,
                now_ms,
            } => {
                let limits = LeaseLimits {
                    max: *max,
                    max_local: *max_local,
                };
                JobOutcome::Leased(self.lease(node, offer, limits, *now_ms))
            }
            JobCommand::Release { node, now_ms } => {
                self.release(node, *now_ms);
                JobOutcome::Done
            }
            JobCommand::HandBack { node, now_ms } => {
                self.hand_back(node, *now_ms);
                JobOutcome::Done
            }
            JobCommand::Renew {
                id,
                attempt,
                now_ms,
            } => self.with_current_lease(*id, *attempt, |job| {
                job.lease_expires_ms = now_ms.saturating_add(job.spec.lease_ms);
            }),
            JobCommand::Progress {
                id,
                attempt,
                fraction,
                message,
            } => self.with_current_lease(*id, *attempt, |job| {
                // NaN would not survive a JSON snapshot; keep the last value.
                if !fraction.is_nan() {
                    job.progress = fraction.clamp(0.0, 1.0);
                }
                job.message.clone_from(message);
            }),
            JobCommand::Complete {
                id,
                attempt,
                result,
                now_ms,
            } => self.with_current_lease(*id, *attempt, |job| {
                job.state = JobState::Succeeded;
                job.result = Some(result.clone());
                job.progress = 1.0;
                job.finished_ms = Some(*now_ms);
                job.leased_by = None;
            }),
            JobCommand::Fail {
                id,
                attempt,
                error,
                now_ms,
            } => self.with_current_lease(*id, *attempt, |job| {
                fail_attempt(job, error.clone(), *now_ms);
            }),
            JobCommand::Cancel { id, now_ms } => self.cancel(*id, *now_ms),
            JobCommand::Tick {
                now_ms,
                retention_ms,
            } => {
                self.expire_leases(*now_ms);
                self.forget_finished(*now_ms, *retention_ms);
                JobOutcome::Done
            }
        }
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Jobs in id order, optionally only those in `state`.
    pub fn list(&self, state: Option<JobState>) -> Box<dyn Iterator<Item = &Job> + '_> {
        match state {
            // The index has them in id order, apart from the day's history.
            Some(JobState::Running) => Box::new(self.running()),
            _ => Box::new(
                self.jobs
                    .values()
                    .filter(move |job| state.is_none_or(|s| job.state == s)),
            ),
        }
    }

    /// How many jobs are in each state; states with none are left out.
    pub fn counts(&self) -> BTreeMap<JobState, usize> {
        self.index.counts().clone()
    }

    /// Running jobs, in id order.
    fn running(&self) -> impl Iterator<Item = &Job> {
        self.index.running().filter_map(|id| self.jobs.get(&id))
    }

    /// Queued jobs, in the order leases take them.
    fn queued(&self) -> impl Iterator<Item = &Job> {
        self.index.queued().filter_map(|id| self.jobs.get(&id))
    }

    /// Queued jobs a node offering `offer` meets the needs of, in the
    /// order leases take them; those it does not meet are never looked at.
    fn queued_for<'a>(&'a self, offer: &'a Capabilities) -> impl Iterator<Item = &'a Job> {
        self.index
            .queued_fitting(|(labels, resources)| meets(labels, resources, offer))
            .filter_map(|id| self.jobs.get(&id))
    }

    /// Changes job `id` (if it exists) and keeps the index right.
    fn update<T>(&mut self, id: JobId, change: impl FnOnce(&mut Job) -> T) -> Option<T> {
        let job = self.jobs.get_mut(&id)?;
        self.index.remove(job);
        let out = change(job);
        self.index.add(job);
        Some(out)
    }

    /// When the next running lease runs out, so a runner knows when a
    /// `Tick` has work to do.
    pub fn next_lease_expiry(&self) -> Option<u64> {
        self.running().map(|job| job.lease_expires_ms).min()
    }

    /// The id of the last job command applied (0 before any).
    pub fn applied_id(&self) -> u64 {
        self.last_applied
    }

    /// Whether any job waits to be leased, by anyone.
    pub fn has_queued(&self) -> bool {
        self.index.has_queued()
    }

    /// The next job a lease would take (the first in lease order that may
    /// start by `now_ms`), if any may start, and how long it has waited.
    /// While jobs stream in, the queue is seldom empty, yet this wait stays
    /// short as long as the runners keep up.
    pub fn next_in_line(&self, now_ms: u64) -> Option<(JobId, u64)> {
        self.queued()
            .find(|job| job.not_before_ms <= now_ms)
            .map(|job| {
                let waited = now_ms.saturating_sub(job.not_before_ms.max(job.submitted_ms));
                (job.id, waited)
            })
    }

    /// How many jobs a `Lease` by `leasing` at `now_ms` would hand out,
    /// counting no further than `up_to`: a local read, so that a runner
    /// proposes a lease only when it takes something.
    pub fn leasable(&self, leasing: &Leasing, now_ms: u64, up_to: usize) -> usize {
        let limits = LeaseLimits {
            max: up_to.try_into().unwrap_or(u32::MAX),
            max_local: leasing.max_local,
        };
        self.choose(&leasing.node, &leasing.offer, limits, now_ms)
            .len()
    }

    /// Whether a `Tick` at `now_ms` would change anything: a lease ran out
    /// or a finished job is past `retention_ms`.
    pub fn tick_due(&self, now_ms: u64, retention_ms: u64) -> bool {
        self.running().any(|job| lease_overdue(job, now_ms))
            || self.expired(now_ms, retention_ms).next().is_some()
    }

    /// Finished jobs whose retention is over.
    fn expired(&self, now_ms: u64, retention_ms: u64) -> impl Iterator<Item = JobId> + '_ {
        self.index
            .finished()
            .take_while(move |&(finished_ms, _)| finished_ms.saturating_add(retention_ms) <= now_ms)
            .map(|(_, id)| id)
    }

    fn submit(&mut self, id: JobId, spec: &JobSpec, now_ms: u64) -> JobOutcome {
        if let Some(key) = &spec.idempotency_key {
            if let Some(&existing_id) = self.by_key.get(key) {
                return JobOutcome::Submitted {
                    id: existing_id,
                    existing: true,
                };
            }
            self.by_key.insert(key.clone(), id);
        }
        let mut spec = spec.clone();
        spec.max_attempts = spec.max_attempts.max(1);
        let job = Job {
            id,
            spec,
            state: JobState::Queued,
            attempt: 0,
            handed_back: 0,
            leased_by: None,
            lease_expires_ms: 0,
            not_before_ms: now_ms,
            progress: 0.0,
            message: String::new(),
            result: None,
            error: None,
            submitted_ms: now_ms,
            finished_ms: None,
        };
        self.index.add(&job);
        self.jobs.insert(id, job);
        JobOutcome::Submitted {
            id,
            existing: false,
        }
    }

    /// Starts a new attempt of runnable jobs that fit `offer`, within
    /// `limits` and next to the resources `node`'s running jobs hold.
    fn lease(
        &mut self,
        node: &str,
        offer: &Capabilities,
        limits: LeaseLimits,
        now_ms: u64,
    ) -> Vec<Job> {
        self.choose(node, offer, limits, now_ms)
            .into_iter()
            .filter_map(|id| {
                self.update(id, |job| {
                    start_attempt(job, node, now_ms);
                    job.clone()
                })
            })
            .collect()
    }

    /// The jobs a `Lease` would take, in the order it takes them.
    fn choose(
        &self,
        node: &str,
        offer: &Capabilities,
        limits: LeaseLimits,
        now_ms: u64,
    ) -> Vec<JobId> {
        // What the node's running jobs hold, looked up once a job needs it.
        let mut held = None;
        let mut local = 0;
        let mut chosen = Vec::new();
        for job in self
            .queued_for(offer)
            .filter(|job| is_leasable(job, offer, now_ms))
        {
            if chosen.len() >= limits.max as usize {
                break;
            }
            if runs_where_leased(&job.spec) {
                if local >= limits.max_local {
                    continue;
                }
                let held = held.get_or_insert_with(|| self.resources_held_by(node));
                if !fits_beside(&job.spec, offer, held) {
                    continue;
                }
                local += 1;
                for (name, amount) in &job.spec.resources {
                    *held.entry(name.clone()).or_default() += amount;
                }
            }
            chosen.push(job.id);
        }
        chosen
    }

    /// Running jobs leased by `node`.
    fn held_by(&self, node: &str) -> Vec<JobId> {
        self.running()
            .filter(|job| job.leased_by.as_deref() == Some(node))
            .map(|job| job.id)
            .collect()
    }

    /// What `node`'s running jobs hold of each resource.
    fn resources_held_by(&self, node: &str) -> BTreeMap<String, u64> {
        let mut held = BTreeMap::new();
        for job in self.running() {
            if job.leased_by.as_deref() == Some(node) {
                for (name, amount) in &job.spec.resources {
                    *held.entry(name.clone()).or_default() += amount;
                }
            }
        }
        held
    }

    /// Nodes holding leases of running jobs.
    pub fn lease_holders(&self) -> std::collections::BTreeSet<&str> {
        self.running()
            .filter_map(|job| job.leased_by.as_deref())
            .collect()
    }

    /// Ends every running attempt of `node`: it left the cluster.
    fn release(&mut self, node: &str, now_ms: u64) {
        for id in self.held_by(node) {
            self.update(id, |job| {
                fail_attempt(job, format!("node {node} left the cluster"), now_ms);
                // Not the job's fault: it may run again at once.
                if job.state == JobState::Queued {
                    job.not_before_ms = now_ms;
                }
            });
        }
    }

    /// Requeues the running attempts of a draining `node` without counting
    /// them as failures.
    fn hand_back(&mut self, node: &str, now_ms: u64) {
        for id in self.held_by(node) {
            self.update(id, |job| {
                job.state = JobState::Queued;
                job.leased_by = None;
                job.handed_back += 1;
                job.not_before_ms = now_ms;
                job.message = format!("handed back by node {node}, which is draining");
            });
        }
    }

    /// Runs `change` on job `id` only if `attempt` holds its current lease;
    /// this fencing is what makes each job's outcome recorded once.
    fn with_current_lease(
        &mut self,
        id: JobId,
        attempt: u32,
        change: impl FnOnce(&mut Job),
    ) -> JobOutcome {
        let Some(job) = self.jobs.get(&id) else {
            return unknown_job(id);
        };
        if let Some(reason) = stale_attempt_reason(job, attempt) {
            return JobOutcome::Rejected(reason);
        }
        self.update(id, change);
        JobOutcome::Done
    }

    fn cancel(&mut self, id: JobId, now_ms: u64) -> JobOutcome {
        let Some(job) = self.jobs.get(&id) else {
            return unknown_job(id);
        };
        if job.state.is_finished() {
            return JobOutcome::Rejected(format!(
                "job {id} already finished as {}; nothing to cancel",
                job.state
            ));
        }
        self.update(id, |job| {
            job.state = JobState::Cancelled;
            job.finished_ms = Some(now_ms);
            job.leased_by = None;
        });
        JobOutcome::Done
    }

    /// Fails the current attempt of every running job whose node stopped
    /// renewing its lease: the node is presumed dead.
    fn expire_leases(&mut self, now_ms: u64) {
        let overdue: Vec<JobId> = self
            .running()
            .filter(|job| lease_overdue(job, now_ms))
            .map(|job| job.id)
            .collect();
        for id in overdue {
            self.update(id, |job| {
                let node = job.leased_by.as_deref().unwrap_or("unknown");
                let error = format!("lease expired on node {node}");
                fail_attempt(job, error, now_ms);
            });
        }
    }

    /// Forgets jobs finished at least `retention_ms` ago, and their
    /// idempotency keys, so the table stays bounded.
    fn forget_finished(&mut self, now_ms: u64, retention_ms: u64) {
        let expired: Vec<JobId> = self.expired(now_ms, retention_ms).collect();
        for id in expired {
            let Some(job) = self.jobs.remove(&id) else {
                continue;
            };
            self.index.remove(&job);
            if let Some(key) = &job.spec.idempotency_key
                && self.by_key.get(key) == Some(&job.id)
            {
                self.by_key.remove(key);
            }
        }
    }
}

/// How much one lease may hand out.
#[derive(Clone, Copy, Debug)]
struct LeaseLimits {
    max: u32,
    /// Jobs with requirements, which run on the leasing node itself.
    max_local: u32,
}

#[cfg(test)]
mod tests;
