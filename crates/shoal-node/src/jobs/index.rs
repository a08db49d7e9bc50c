//! Which jobs are in which state, kept beside the job table.
//!
//! The table keeps finished jobs for the retention period (a day), so it
//! holds far more jobs than are queued or running. Leasing, ticking and
//! counting look here instead of at every job: each costs what the queued
//! or running jobs cost, not what the day's history does. (A lease scanned
//! every job; at 20,000 jobs kept, applying leases took most of each
//! replica's CPU.)
//!
//! Queued jobs are also kept by what they need of the node that runs them,
//! so a node finds the jobs it may run among those alone: jobs waiting for
//! a node it is not (20,000 waiting for a GPU, say) cost its look nothing.
//!
//! The index is derived state: it is never stored or sent, and it is built
//! again from the jobs whenever a table is read back from a snapshot.

use super::{Job, JobId, JobState};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// Where a queued job stands in line: highest priority first, then oldest.
type Place = (Reverse<i32>, JobId);

/// What a job needs of the node that runs it: labels, then resources.
pub type Needs = (BTreeMap<String, String>, BTreeMap<String, u64>);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobIndex {
    /// Queued jobs in the order leases take them.
    queued: BTreeSet<Place>,
    /// The same jobs, apart by what they need.
    queued_by_needs: BTreeMap<Needs, BTreeSet<Place>>,
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
                self.queued.insert(place(job));
                let line = self.queued_by_needs.entry(needs(job)).or_default();
                line.insert(place(job));
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
                self.queued.remove(&place(job));
                let needs = needs(job);
                if let Some(line) = self.queued_by_needs.get_mut(&needs) {
                    line.remove(&place(job));
                    if line.is_empty() {
                        self.queued_by_needs.remove(&needs);
                    }
                }
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

    /// Queued jobs whose needs `fits`, in the order leases take them.
    pub fn queued_fitting(
        &self,
        fits: impl Fn(&Needs) -> bool,
    ) -> impl Iterator<Item = JobId> + '_ {
        let mut lines: Vec<_> = self
            .queued_by_needs
            .iter()
            .filter(|(needs, _)| fits(needs))
            .map(|(_, line)| line.iter())
            .collect();
        // Each line is in order; the next job is the first of their heads.
        let mut heads: BinaryHeap<Reverse<(Place, usize)>> = lines
            .iter_mut()
            .enumerate()
            .filter_map(|(i, line)| line.next().map(|&head| Reverse((head, i))))
            .collect();
        std::iter::from_fn(move || {
            let Reverse(((_, id), i)) = heads.pop()?;
            if let Some(&head) = lines[i].next() {
                heads.push(Reverse((head, i)));
            }
            Some(id)
        })
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

fn place(job: &Job) -> Place {
    (Reverse(job.spec.priority), job.id)
}

fn needs(job: &Job) -> Needs {
    (job.spec.labels.clone(), job.spec.resources.clone())
}

fn finish_key(job: &Job) -> Option<(u64, JobId)> {
    Some((job.finished_ms?, job.id))
}
