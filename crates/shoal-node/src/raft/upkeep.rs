//! The leader's upkeep of the membership, once a second: it adds learners
//! from the live nodes, promotes caught-up ones to voters in place of dead
//! ones, and drops learners that died or are no longer needed (the rules
//! are [`membership::View::next_step`]). Every node also notices here when
//! its own role changes, so its heartbeat tells the cluster at once, and
//! stops openraft's ticker unless it votes.

use super::consensus::{Consensus, LEADER_WAIT};
use super::membership::{self, Step};
use super::types::{RaftPeer, TypeConfig, raft_id};
use libp2p::PeerId;
use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, RaftMetrics, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the leader reviews the membership.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A learner this close to the leader's last entry may become a voter: it
/// catches up on the rest within a heartbeat or two.
const CAUGHT_UP_ENTRIES: u64 = 1000;
/// How often a leaving node looks whether it still has a seat.
const LEAVE_POLL: Duration = Duration::from_millis(100);
/// A leadership hand-over not taken up by then is tried again (the
/// successor may have missed the request).
const HAND_OVER_RETRY: Duration = Duration::from_secs(1);

impl Consensus {
    /// Runs until `shutdown` on every node with a Raft instance.
    pub async fn upkeep(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        let mut seen_leader = None;
        let mut seen_voters = BTreeSet::new();
        let mut role = self.role();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(UPKEEP_INTERVAL) => {}
            }
            if let Some(inbox) = &self.incoming_snapshots {
                inbox.drop_abandoned(std::time::Instant::now());
            }
            let now = self.role();
            if now != role {
                role = now;
                tracing::info!(?role, "this node's part in Raft changed");
                self.announce();
            }
            let metrics = raft.metrics().borrow_watched().clone();
            let voters: BTreeSet<u64> =
                metrics.membership_config.membership().voter_ids().collect();
            // openraft's ticker (every 50 ms) serves elections and the
            // leader's heartbeats (and a removed leader's step-down): nodes
            // that neither vote nor lead let it sleep.
            let leads = metrics.current_leader == Some(self.me);
            raft.runtime_config()
                .tick(voters.contains(&self.me) || leads);
            if metrics.current_leader != seen_leader || voters != seen_voters {
                tracing::info!(term = metrics.current_term, leader = ?metrics.current_leader, ?voters, "raft membership");
                seen_leader = metrics.current_leader;
                seen_voters = voters;
            }
            if metrics.state != ServerState::Leader {
                continue;
            }
            let (view, peers) = self.membership_view(&metrics);
            let Some(step) = view.next_step() else {
                continue;
            };
            tracing::info!(?step, "changing the Raft membership");
            let change = match step {
                Step::AddLearners(ids) => ChangeMembers::AddNodes(
                    ids.into_iter()
                        .filter_map(|id| {
                            let peer = peers.get(&id)?;
                            Some((
                                id,
                                RaftPeer {
                                    peer_id: peer.to_base58(),
                                },
                            ))
                        })
                        .collect(),
                ),
                Step::ReplaceVoters(ids) => ChangeMembers::ReplaceAllVoters(ids),
                Step::RemoveLearners(ids) => ChangeMembers::RemoveNodes(ids),
            };
            let change = raft.change_membership(change, true);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                result = tokio::time::timeout(LEADER_WAIT, change) => match result {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "membership change failed; will retry"),
                    Err(_) => tracing::warn!("membership change not committed in time; will retry"),
                },
            }
        }
    }

    /// The node is draining: the leader gives its seat to another member
    /// (its heartbeat says it drains; as the leader, its own upkeep does
    /// it, and it steps down once the change commits). Waits until this
    /// node neither votes nor leads, or `within` passes; whether it got
    /// there.
    pub async fn leave(&self, within: Duration) -> bool {
        self.leaving.store(true, Ordering::Relaxed);
        self.announce();
        let Some(raft) = &self.raft else {
            return true;
        };
        let deadline = Instant::now() + within;
        let mut handed_over_at: Option<Instant> = None;
        loop {
            let metrics = raft.metrics().borrow_watched().clone();
            let membership = metrics.membership_config.membership();
            let votes = membership.voter_ids().any(|id| id == self.me);
            let leads = metrics.current_leader == Some(self.me);
            if !votes && !leads {
                return true;
            }
            // Out of the voters but still leading (openraft keeps a leader
            // that stays a learner): hand leadership to the voter whose log
            // is longest, which then starts an election at once.
            if leads && !votes && handed_over_at.is_none_or(|at| at.elapsed() >= HAND_OVER_RETRY) {
                let matched = |id: &u64| {
                    let replication = metrics.replication.as_ref()?;
                    replication.get(id).cloned().flatten().map(|log| log.index)
                };
                if let Some(to) = membership.voter_ids().max_by_key(matched) {
                    tracing::info!(to, "handing Raft leadership over");
                    let _ = raft.trigger().transfer_leader(to).await;
                    handed_over_at = Some(Instant::now());
                }
            }
            // Nobody could take the seat: the group stops with this node.
            if Instant::now() >= deadline || self.peers.raft_capable().is_empty() {
                return false;
            }
            tokio::time::sleep(LEAVE_POLL).await;
        }
    }

    /// The membership as the leader sees it, and the peer of each live
    /// node by Raft id.
    fn membership_view(
        &self,
        metrics: &RaftMetrics<TypeConfig>,
    ) -> (membership::View, BTreeMap<u64, PeerId>) {
        let membership = metrics.membership_config.membership();
        let peers: BTreeMap<u64, PeerId> = self
            .peers
            .raft_capable()
            .into_iter()
            .map(|peer| (raft_id(&peer), peer))
            .collect();
        let mut live: BTreeSet<u64> = peers.keys().copied().collect();
        let leaving = self.leaving.load(Ordering::Relaxed);
        if !leaving {
            live.insert(self.me);
        }
        let last = metrics.last_log_index.unwrap_or(0);
        let mut caught_up: BTreeSet<u64> = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(_, matched)| {
                matched.as_ref().map_or(0, |log_id| log_id.index) + CAUGHT_UP_ENTRIES >= last
            })
            .map(|(id, _)| *id)
            .collect();
        caught_up.insert(self.me);
        let view = membership::View {
            leader: self.me,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            live,
            caught_up,
            standbys: self.standbys,
            leader_leaving: leaving,
        };
        (view, peers)
    }
}
