//! When the runners of nodes without a replica are called in, and how
//! often they then ask.
//!
//! The members' runners lease jobs from their own replicas, which costs the
//! rest of the cluster nothing. The leader calls in every other runner
//! (through its heartbeat) only when the next job has waited a while and
//! the members cannot keep up: nobody has taken that job for a while, or
//! the leader's own runner holds all the jobs it may. A queue that moves
//! while the leader has room is being served: each lease takes the jobs
//! next in line, as fast as Raft commits leases, and a hundred more runners
//! asking would only add leases to commit. Measured on 2026-12-01 with
//! `shoal bench cluster --nodes 100 --calls 0 --jobs 20000` on 2 cores:
//! when the next job's wait alone called them in, two runs of six did so;
//! those spent 370–400 µs of CPU per job instead of 190–270, and ran
//! 4,300–4,500 jobs/s instead of 6,100–8,400.
//!
//! Nobody takes the next job when the members hold no slots or cannot run
//! it (it needs what they do not have). When they are full, the queue may
//! still move, a job each time one of theirs ends, while the others idle:
//! a full leader stands for them.

use super::JobId;
use std::time::{Duration, Instant};

/// The next job has waited this long, and been next this long (or the
/// leader is full): the members cannot keep up.
pub(super) const STUCK_AFTER: Duration = Duration::from_millis(100);

/// The job next in line as the leader's runner saw it, look after look.
#[derive(Default)]
pub(super) struct Head {
    next: Option<(JobId, Instant)>,
}

impl Head {
    /// Whether the members cannot keep up, given the job next in line now
    /// and how long it has waited to be leased (none: no job may start),
    /// and whether the leader's runner holds all the jobs it may.
    pub(super) fn stuck(
        &mut self,
        next: Option<(JobId, u64)>,
        leader_full: bool,
        now: Instant,
    ) -> bool {
        let Some((id, waited_ms)) = next else {
            self.next = None;
            return false;
        };
        let since = match self.next {
            Some((seen, since)) if seen == id => since,
            _ => {
                self.next = Some((id, now));
                now
            }
        };
        waited_ms >= STUCK_AFTER.as_millis() as u64
            && (leader_full || now.duration_since(since) >= STUCK_AFTER)
    }
}

/// How a runner without a replica paces its questions to the members:
/// at once when the leader starts saying jobs wait, then less and less
/// often while it finds none it can lease.
pub(super) struct Asking {
    leader_said_waiting: bool,
    gap: Duration,
    next_at: Option<Instant>,
    /// The shortest and longest gap between questions.
    least: Duration,
    most: Duration,
}

impl Asking {
    pub(super) fn new(least: Duration, most: Duration) -> Asking {
        Asking {
            leader_said_waiting: false,
            gap: Duration::ZERO,
            next_at: None,
            least,
            most,
        }
    }

    pub(super) fn due(&mut self, leader_says_waiting: bool) -> bool {
        let rising = leader_says_waiting && !self.leader_said_waiting;
        self.leader_said_waiting = leader_says_waiting;
        if rising {
            self.found_work();
        }
        leader_says_waiting && self.next_at.is_none_or(|at| Instant::now() >= at)
    }

    pub(super) fn found_nothing(&mut self) {
        self.gap = (self.gap * 2).clamp(self.least, self.most);
        self.next_at = Some(Instant::now() + self.gap);
    }

    pub(super) fn found_work(&mut self) {
        self.gap = Duration::ZERO;
        self.next_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_queue_that_moves_calls_nobody_in_however_long_its_line() {
        let mut head = Head::default();
        let start = Instant::now();
        // Each look finds a new job next, each having waited 300 ms in a
        // long line: the members take them as they come.
        for look in 0..20u64 {
            let now = start + 50 * MS * look as u32;
            assert!(!head.stuck(Some((look, 300)), false, now), "look {look}");
        }
    }

    #[test]
    fn a_job_nobody_takes_calls_the_cluster_in() {
        let mut head = Head::default();
        let start = Instant::now();
        assert!(!head.stuck(Some((7, 500)), false, start), "just seen");
        assert!(!head.stuck(Some((7, 550)), false, start + 50 * MS));
        assert!(head.stuck(Some((7, 600)), false, start + STUCK_AFTER));
        // Taken at last: the next job starts its own watch.
        assert!(!head.stuck(Some((8, 600)), false, start + 2 * STUCK_AFTER));
        assert!(
            !head.stuck(None, false, start + 3 * STUCK_AFTER),
            "nothing waits"
        );
        assert!(!head.stuck(Some((8, 900)), false, start + 3 * STUCK_AFTER));
    }

    #[test]
    fn a_job_just_in_is_not_stuck_however_long_it_was_next() {
        let mut head = Head::default();
        let start = Instant::now();
        head.stuck(Some((3, 0)), false, start);
        assert!(!head.stuck(Some((3, 99)), false, start + STUCK_AFTER));
        assert!(head.stuck(Some((3, 100)), false, start + STUCK_AFTER));
    }

    #[test]
    fn a_queue_that_moves_only_as_full_members_finish_jobs_calls_the_cluster_in() {
        let mut head = Head::default();
        let start = Instant::now();
        // A job leaves the line now and then, each time a member's job
        // ends; the leader is full, and the others should help.
        assert!(!head.stuck(Some((1, 50)), true, start), "not waited long");
        assert!(head.stuck(Some((2, 150)), true, start + 50 * MS));
        assert!(head.stuck(Some((3, 200)), true, start + 100 * MS));
        assert!(
            !head.stuck(Some((4, 250)), false, start + 150 * MS),
            "room again"
        );
    }
}
