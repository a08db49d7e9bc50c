//! Changes worth an event, looked for once per heartbeat: a new Raft
//! leader, nodes over or back under the load threshold, newly
//! dead-lettered jobs. Each is reported once, when it happens.

use super::events::Events;
use crate::jobs::{JobId, JobState};
use crate::raft::consensus::Consensus;
use libp2p::PeerId;
use shoal_proto::api::EventKind;
use std::collections::HashSet;

/// Jobs dead-lettered longer ago than this (seen while catching up on the
/// log) are not reported as news.
const DEAD_LETTER_NEWS_MS: u64 = 60_000;

/// The load of one node as the alerts see it. Named by peer id, not its
/// text: spelling out every peer's id each heartbeat cost more than the
/// rest of the look at 100 nodes.
pub struct NodeLoad {
    pub node: PeerId,
    pub slots: u32,
    /// Running and queued calls.
    pub backlog: u32,
}

/// What the alerts remember between looks, to report each change once.
pub struct Alerts {
    /// Running + queued calls per slot at which a node is overloaded.
    threshold: f64,
    leader: Option<String>,
    overloaded: HashSet<PeerId>,
    dead_letters: usize,
    newest_dead_letter_ms: u64,
}

impl Alerts {
    pub fn new(threshold: f64) -> Self {
        Alerts {
            threshold,
            leader: None,
            overloaded: HashSet::new(),
            dead_letters: 0,
            newest_dead_letter_ms: 0,
        }
    }

    /// One look: emits an event for each change since the last one.
    pub fn look(&mut self, events: &Events, consensus: &Consensus, loads: Vec<NodeLoad>) {
        self.leader_changes(events, consensus);
        self.load_changes(events, loads);
        self.dead_letters(events, consensus);
    }

    fn leader_changes(&mut self, events: &Events, consensus: &Consensus) {
        let raft = consensus.status();
        if raft.leader.is_some() && raft.leader != self.leader {
            let leader = raft.leader.clone();
            let message = format!(
                "Raft leader is now {} (term {})",
                leader.as_deref().unwrap_or("?"),
                raft.term
            );
            events.emit(EventKind::LeaderChanged, leader.clone(), message);
            self.leader = leader;
        }
    }

    fn load_changes(&mut self, events: &Events, loads: Vec<NodeLoad>) {
        for NodeLoad {
            node,
            slots,
            backlog,
        } in loads
        {
            if slots == 0 {
                continue;
            }
            let load = f64::from(backlog) / f64::from(slots);
            let over = load >= self.threshold;
            if over && self.overloaded.insert(node) {
                let message = format!(
                    "node {node} is overloaded: {backlog} calls for {slots} slots (alert at {} per slot)",
                    self.threshold
                );
                events.emit(EventKind::Overloaded, Some(node.to_base58()), message);
            } else if !over && load < self.threshold / 2.0 && self.overloaded.remove(&node) {
                let message = format!(
                    "node {node} is back to normal load: {backlog} calls for {slots} slots"
                );
                events.emit(EventKind::LoadNormal, Some(node.to_base58()), message);
            }
        }
    }

    fn dead_letters(&mut self, events: &Events, consensus: &Consensus) {
        let dead: Vec<(JobId, u64, String, String)> = consensus
            .read_local(|state| {
                let count = state
                    .jobs
                    .counts()
                    .get(&JobState::DeadLetter)
                    .copied()
                    .unwrap_or(0);
                if count == self.dead_letters {
                    return Vec::new();
                }
                self.dead_letters = count;
                state
                    .jobs
                    .list(Some(JobState::DeadLetter))
                    .filter(|job| job.finished_ms.unwrap_or(0) > self.newest_dead_letter_ms)
                    .map(|job| {
                        let error = job.error.clone().unwrap_or_default();
                        (
                            job.id,
                            job.finished_ms.unwrap_or(0),
                            job.spec.function.clone(),
                            error,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let recent = crate::clock::now_ms().saturating_sub(DEAD_LETTER_NEWS_MS);
        for (id, finished_ms, function, error) in dead {
            self.newest_dead_letter_ms = self.newest_dead_letter_ms.max(finished_ms);
            if finished_ms >= recent {
                let message = format!("job {id} ({function}) failed every attempt: {error}");
                events.emit(EventKind::JobDeadLettered, None, message);
            }
        }
    }
}
