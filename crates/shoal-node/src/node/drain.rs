//! Draining: a node about to stop hands its work to the others first, so
//! a rolling restart, an autoscaler or `systemctl stop` costs no lease
//! timeout and loses no queue item.
//!
//! ```text
//!  drain(grace) ─► take no new work: slots read 0 in heartbeats, calls that
//!                  arrive or wait here go back to their owners (`overloaded`,
//!                  so they are placed elsewhere), the job runner stops leasing
//!               ─► move distributed-queue items to serving peers
//!               ─► wait up to `grace` for running calls and jobs to finish
//!               ─► hand back the leases of jobs still running (HandBack: queued
//!                  again at once, the attempt not counted)
//!               ─► give up the Raft seat (the leader replaces a draining voter;
//!                  a draining leader replaces itself and steps down)
//!               ─► drained: the caller stops the node
//! ```

use super::handle::Node;
use crate::clock::now_ms;
use crate::jobs::{JobCommand, JobOutcome};
use crate::queue::dist::offer_items;
use crate::raft::types::{Command, CommandResult};
use serde_json::Value;
use shoal_proto::api::{DrainState, DrainStatus};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a drain looks whether the running work has finished.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// The longest a drained node waits for the leader to give its Raft seat
/// to another node: a membership change takes a round or two.
const LEAVE_RAFT_WITHIN: Duration = Duration::from_secs(10);
/// Queue items moved in one call, so each message stays far below the
/// frame limit.
const ITEMS_PER_MOVE: usize = 1_000;

impl Node {
    /// Drains this node (see the module docs) and returns what it did.
    /// Running calls and jobs get `grace` to finish. If a drain is under
    /// way already, waits for that one. The node keeps serving reads and
    /// its share of Raft until [`Node::shutdown`].
    pub async fn drain(&self, grace: Duration) -> DrainStatus {
        self.start_drain(grace);
        self.drained().await;
        self.drain_status()
    }

    /// Starts draining in the background, unless a drain has begun
    /// already; whether this call began it. From its return on, the node
    /// takes no new work.
    pub fn start_drain(&self, grace: Duration) -> bool {
        {
            let mut started = self.inner.drain.started.lock().expect("drain lock");
            if started.is_some() {
                return false;
            }
            *started = Some(Instant::now());
        }
        tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
        self.inner.queues.start_draining();
        let calls_handed_back = self.inner.calls.drain() as u64;
        self.inner.consensus.announce();
        self.update_drain(|report| report.calls_handed_back = calls_handed_back);
        let node = self.clone();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                // Stopped before the drain finished: what is left is
                // what a stop without a drain leaves.
                _ = shutdown.cancelled() => {}
                () = node.finish_drain(grace) => {}
            }
        });
        true
    }

    async fn finish_drain(&self, grace: Duration) {
        let started = Instant::now();
        let (moved, left) = self.move_queue_items().await;
        self.update_drain(|report| {
            report.queue_items_moved = moved;
            report.queue_items_left = left;
        });

        let deadline = started + grace;
        while !self.holds_no_work() && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let jobs_handed_back = self.hand_back_jobs().await;
        self.update_drain(|report| report.jobs_handed_back = jobs_handed_back);

        let left_raft = self.inner.consensus.leave(LEAVE_RAFT_WITHIN).await;
        if !left_raft {
            tracing::warn!(
                "the Raft leader did not give this node's seat to another within {LEAVE_RAFT_WITHIN:?}; stopping anyway"
            );
        }
        self.update_drain(|report| {
            report.left_raft = left_raft;
            report.state = DrainState::Drained;
        });
        self.inner.drain.done.cancel();
        let status = self.drain_status();
        tracing::info!(
            took_ms = status.elapsed_ms,
            status.calls_handed_back,
            status.jobs_handed_back,
            status.queue_items_moved,
            status.queue_items_left,
            left_raft,
            "drained"
        );
    }

    /// Where this node's drain stands.
    pub fn drain_status(&self) -> DrainStatus {
        let drain = &self.inner.drain;
        let started = *drain.started.lock().expect("drain lock");
        let mut status = drain.report.lock().expect("drain lock").clone();
        status.calls_running = !self.inner.calls.is_idle();
        status.jobs_running = self.inner.jobs_running.load(Ordering::Relaxed) as u64;
        if let Some(started) = started {
            status.elapsed_ms = started.elapsed().as_millis() as u64;
            if status.state == DrainState::Serving {
                status.state = DrainState::Draining;
            }
        }
        status
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.calls.is_draining()
    }

    /// Resolves once a drain has finished, or the node stops without one
    /// (so nobody waits on a node that is gone).
    pub async fn drained(&self) {
        let stopping = self.stopping();
        tokio::select! {
            () = self.inner.drain.done.cancelled() => {}
            () = stopping.cancelled() => {}
        }
    }

    fn update_drain(&self, change: impl FnOnce(&mut DrainStatus)) {
        change(&mut self.inner.drain.report.lock().expect("drain lock"));
    }

    fn holds_no_work(&self) -> bool {
        self.inner.calls.is_idle() && self.inner.jobs_running.load(Ordering::Relaxed) == 0
    }

    /// Moves every distributed-queue item held here to serving peers, in
    /// turn; returns how many moved and how many stayed (no peer took
    /// them: they go with this node).
    async fn move_queue_items(&self) -> (u64, u64) {
        let held = self.inner.queues.take_all();
        if held.is_empty() {
            return (0, 0);
        }
        let peers = self.inner.peers.serving_peers();
        let (mut moved, mut left) = (0, 0);
        let mut turn = 0;
        for (queue, items) in held {
            for chunk in items.chunks(ITEMS_PER_MOVE) {
                let taken = self.move_chunk(&queue, chunk, &peers, &mut turn).await;
                if taken {
                    moved += chunk.len() as u64;
                } else {
                    left += chunk.len() as u64;
                    self.inner.queues.put_back(&queue, chunk.to_vec());
                }
            }
        }
        if left > 0 {
            tracing::warn!(
                items = left,
                "no other node took these queue items; they go with this node"
            );
        }
        (moved, left)
    }

    /// Offers `items` to the peers in turn, starting at `turn`; whether one
    /// took them.
    async fn move_chunk(
        &self,
        queue: &str,
        items: &[Value],
        peers: &[libp2p::PeerId],
        turn: &mut usize,
    ) -> bool {
        // Each chunk starts with the next peer, so chunks spread.
        let start = *turn % peers.len().max(1);
        *turn += 1;
        let in_turn: Vec<libp2p::PeerId> = peers[start..]
            .iter()
            .chain(&peers[..start])
            .copied()
            .collect();
        offer_items(&self.inner.calls, queue, items, in_turn)
            .await
            .is_ok()
    }

    /// Gives back the leases of the jobs still running here; how many.
    async fn hand_back_jobs(&self) -> u64 {
        let running = self.inner.jobs_running.load(Ordering::Relaxed) as u64;
        if running == 0 {
            return 0;
        }
        let hand_back = JobCommand::HandBack {
            node: self.inner.me.to_base58(),
            now_ms: now_ms(),
        };
        match self.inner.consensus.write(Command::Jobs(hand_back)).await {
            Ok(CommandResult::Jobs(JobOutcome::Done)) => {
                tracing::info!(
                    jobs = running,
                    "handed back the jobs still running; they run elsewhere now"
                );
                running
            }
            other => {
                tracing::warn!(
                    ?other,
                    "cannot hand back this node's jobs; their leases expire instead"
                );
                0
            }
        }
    }
}
