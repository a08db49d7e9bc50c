//! Which jobs are in which state, kept beside the job table.
//!
//! The table keeps finished jobs for the retention period (a day), so it
//! holds far more jobs than are queued or running. Leasing, ticking and
//! counting look here instead of at every job: each costs what the queued
//! or running jobs cost, not what the day's history does. (A lease scanned
//! every job; at 20,000 jobs kept, applying leases took most of each
//! replica's CPU.)
//!
//! The index is derived state: it is never stored or sent, and it is built
//! again from the jobs whenever a table is read back from a snapshot.

use super::{Job, JobId, JobState};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobIndex {
    /// Queued jobs in the order leases take them: highest priority first,
    /// then oldest.
    queued: BTreeSet<(Reverse<i32>, JobId)>,
    running: BTreeSet<JobId>,
    /// Finished jobs by when they finished, oldest first, for the
    /// retention sweep (every finished job has a finish time).
    finished: BTreeSet<(u64, JobId)>,
    /// How many jobs are in each state; states with none are left out.
    counts: BTreeMap<JobState, usize>,
}

impl JobIndex {
    pub fn build<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> JobIndex {
        let mut index = JobIndex::default();
        for job in jobs {
            index.add(job);
        }
        index
    }

    /// Indexes `job` as it is now.
    pub fn add(&mut self, job: &Job) {
        match job.state {
            JobState::Queued => {
                self.queued.insert(queue_key(job));
            }
            JobState::Running => {
                self.running.insert(job.id);
            }
            _ => {
                if let Some(key) = finish_key(job) {
                    self.finished.insert(key);
                }
            }
        }
        *self.counts.entry(job.state).or_insert(0) += 1;
    }

    /// Forgets `job` as it was indexed: call before changing it.
    pub fn remove(&mut self, job: &Job) {
        match job.state {
            JobState::Queued => {
                self.queued.remove(&queue_key(job));
            }
            JobState::Running => {
                self.running.remove(&job.id);
            }
            _ => {
                if let Some(key) = finish_key(job) {
                    self.finished.remove(&key);
                }
            }
        }
        if let Some(count) = self.counts.get_mut(&job.state) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&job.state);
            }
        }
    }

    /// Queued jobs, in the order leases take them.
    pub fn queued(&self) -> impl Iterator<Item = JobId> + '_ {
        self.queued.iter().map(|&(_, id)| id)
    }

    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    pub fn running(&self) -> impl Iterator<Item = JobId> + '_ {
        self.running.iter().copied()
    }

    /// Finished jobs, oldest first, with when they finished.
    pub fn finished(&self) -> impl Iterator<Item = (u64, JobId)> + '_ {
        self.finished.iter().copied()
    }

    pub fn counts(&self) -> &BTreeMap<JobState, usize> {
        &self.counts
    }
}

fn queue_key(job: &Job) -> (Reverse<i32>, JobId) {
    (Reverse(job.spec.priority), job.id)
}

fn finish_key(job: &Job) -> Option<(u64, JobId)> {
    Some((job.finished_ms?, job.id))
}
