//! Leases whose answer was lost: a runner's lease write that failed with no
//! clear answer (its leader died holding it, or it timed out) may still be
//! committed, by the next leader, and then the cluster says this node holds
//! jobs its runner never heard of. Nobody would run them until their lease
//! ran out (30 s by default), and no release comes for them: their holder
//! is alive.
//!
//! ```text
//!   Lease ──► leader ✗ (killed)      new leader commits the Lease anyway
//!   runner: "may or may not have been applied" ─► unsure for a while:
//!     every look: catch up ─► jobs held by this node ─► not taken here? ─► adopt (run them)
//! ```
//!
//! The runner remembers every attempt it started until that attempt's task
//! ends ([`Taken`]); an attempt the cluster says this node holds that is
//! not among them, as of a read that caught up with the leader, is an
//! orphan, and the runner runs it as if its lease had just answered. A
//! node that starts looks once too: attempts held under its name from
//! before a restart run again at once, not after their lease.

use super::{Job, JobId, JobState};
use crate::raft::consensus::Consensus;
use crate::raft::query::{MAX_PAGE, Query};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long after a lease without an answer the runner looks for orphans:
/// the next leader commits or drops the lease with its first entry, well
/// within this. A lease committed later still runs out as before.
const UNSURE_FOR: Duration = Duration::from_secs(30);
/// Looks at most this often while unsure; each is a read at the leader.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// A look that takes longer is given up (the leader may be gone), so the
/// runner's other work, such as releasing dead nodes' leases, goes on.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The attempts this runner started whose task has not ended.
#[derive(Clone, Default)]
pub(super) struct Taken(Arc<Mutex<HashMap<JobId, u32>>>);

impl Taken {
    /// Records that `job`'s attempt runs here until the guard is dropped.
    pub(super) fn take(&self, job: &Job) -> TakenGuard {
        self.lock().insert(job.id, job.attempt);
        TakenGuard {
            taken: self.clone(),
            id: job.id,
            attempt: job.attempt,
        }
    }

    fn snapshot(&self) -> HashSet<(JobId, u32)> {
        self.lock()
            .iter()
            .map(|(&id, &attempt)| (id, attempt))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, u32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forgets a taken attempt when its task ends, however it ends.
pub(super) struct TakenGuard {
    taken: Taken,
    id: JobId,
    attempt: u32,
}

impl Drop for TakenGuard {
    fn drop(&mut self) {
        let mut taken = self.taken.lock();
        if taken.get(&self.id) == Some(&self.attempt) {
            taken.remove(&self.id);
        }
    }
}

/// Whether, and when next, the runner looks for orphaned leases.
pub(super) struct Orphans {
    taken: Taken,
    unsure_until: Option<Instant>,
    /// Unsure only because the node started: one look that answers will do.
    just_started: bool,
    next_look: Instant,
}

impl Orphans {
    /// Unsure from the start, until one look answers: jobs held under this
    /// node's name from before a restart run at once.
    pub(super) fn new(taken: Taken) -> Orphans {
        let now = Instant::now();
        Orphans {
            taken,
            unsure_until: Some(now + UNSURE_FOR),
            just_started: true,
            next_look: now,
        }
    }

    /// A lease got no clear answer: it may yet be committed.
    pub(super) fn lease_unanswered(&mut self) {
        self.unsure_until = Some(Instant::now() + UNSURE_FOR);
        self.just_started = false;
    }

    /// The attempts the cluster says `me` holds that this runner did not
    /// start, when a look is due; none otherwise.
    pub(super) async fn find(&mut self, consensus: &Consensus, me: &str) -> Vec<Job> {
        let now = Instant::now();
        match self.unsure_until {
            Some(until) if now >= until => {
                self.unsure_until = None;
                return Vec::new();
            }
            None => return Vec::new(),
            Some(_) if now < self.next_look || !consensus.leader_known() => return Vec::new(),
            Some(_) => {}
        }
        self.next_look = now + LOOK_EVERY;
        // Taken before the read, which catches up with the leader: an
        // attempt whose task ended before this recorded its outcome before
        // it too, so the read shows it finished; one whose outcome could
        // not be recorded shows as held, and runs again, as it would once
        // its lease ran out. (Only this loop starts attempts, so none
        // starts during the read.)
        let started = self.taken.snapshot();
        let held = tokio::time::timeout(LOOK_TIMEOUT, held_by(consensus, me)).await;
        let Ok(Ok(held)) = held else {
            return Vec::new();
        };
        if self.just_started {
            self.unsure_until = None;
        }
        let orphans: Vec<Job> = held
            .into_iter()
            .filter(|job| !started.contains(&(job.id, job.attempt)))
            .collect();
        for job in &orphans {
            tracing::info!(
                job = job.id,
                attempt = job.attempt,
                "running a job leased to this node whose lease was not answered"
            );
        }
        orphans
    }
}

/// The running attempts leased to `me`, as of a read that caught up with
/// the leader (through a member if this node keeps no replica).
async fn held_by(consensus: &Consensus, me: &str) -> Result<Vec<Job>, String> {
    let mut held = Vec::new();
    let mut after = None;
    loop {
        let query = Query::Jobs {
            state: Some(JobState::Running),
            limit: MAX_PAGE,
            after,
        };
        let page = consensus
            .query(query, true)
            .await
            .map_err(|e| e.to_string())?;
        let page: Vec<Job> = serde_json::from_value(page).map_err(|e| e.to_string())?;
        let full = page.len() >= MAX_PAGE;
        after = page.last().map(|job| job.id);
        held.extend(
            page.into_iter()
                .filter(|job| job.leased_by.as_deref() == Some(me)),
        );
        if !full || after.is_none() {
            return Ok(held);
        }
    }
}
