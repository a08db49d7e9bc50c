//! Who holds the log and who votes. The leader keeps the voter set at
//! `min(N, 2 + floor(ln N))` of the N live nodes able to hold a replica,
//! rounded to an odd number (an even count adds no fault tolerance), plus
//! a few learners as standbys that take a dead voter's place at once. Every
//! other node holds no replica: it reads and writes through the members, so
//! the leader's cost does not grow with the cluster.
//!
//! Pure functions of the current membership and who is alive, so the rules
//! are tested without a cluster.

use std::collections::BTreeSet;

/// How many voters a group of `members` live nodes should have.
pub fn voter_count(members: usize) -> usize {
    if members == 0 {
        return 0;
    }
    let wanted = (2 + (members as f64).ln().floor() as usize).min(members);
    if wanted % 2 == 1 {
        wanted
    } else if wanted < members {
        wanted + 1
    } else {
        wanted - 1
    }
}

/// The voter set the leader should move to, or `None` to keep the current
/// one: `wanted` voters drawn from `eligible` (live members whose log is
/// close to the leader's), keeping current voters first; `leader`, when
/// given, always stays a voter.
pub fn next_voters(
    voters: &BTreeSet<u64>,
    eligible: &BTreeSet<u64>,
    leader: Option<u64>,
    wanted: usize,
) -> Option<BTreeSet<u64>> {
    let mut next: BTreeSet<u64> = leader.into_iter().collect();
    // Keep live voters first: every change of the voter set costs a joint
    // consensus round, so stay put when possible.
    for id in voters
        .iter()
        .chain(eligible)
        .filter(|id| eligible.contains(id))
    {
        if next.len() >= wanted {
            break;
        }
        next.insert(*id);
    }
    (next != *voters).then_some(next)
}

/// What the leader sees when it reviews the membership.
#[derive(Debug)]
pub struct View {
    pub leader: u64,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    /// Live nodes able to hold a replica, members or not, the leader
    /// included.
    pub live: BTreeSet<u64>,
    /// Members whose log is close enough to the leader's to vote at once.
    pub caught_up: BTreeSet<u64>,
    /// Learners to keep beside the voters.
    pub standbys: usize,
    /// The leader is draining: it hands its seat to another member (and
    /// steps down once that change commits). It is not in `live`.
    pub leader_leaving: bool,
}

/// One change of the membership; the leader makes at most one at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Start replicating to these nodes, as learners.
    AddLearners(BTreeSet<u64>),
    /// Move to this voter set; voters left out stay as learners.
    ReplaceVoters(BTreeSet<u64>),
    /// Stop replicating to these learners: dead, or more than wanted.
    RemoveLearners(BTreeSet<u64>),
}

impl View {
    /// The next change to make, or `None` when the membership is right.
    pub fn next_step(&self) -> Option<Step> {
        let live_voters = self.voters.intersection(&self.live).count();
        // Without a live majority of the current voters no change can
        // commit; proposing one would only wait forever. A leaving leader
        // still votes until the change that replaces it commits.
        let voting = live_voters + usize::from(self.leader_leaving);
        if voting * 2 <= self.voters.len() {
            return None;
        }
        let wanted_voters = voter_count(self.live.len()).max(1);
        let wanted_members = (wanted_voters + self.standbys).min(self.live.len());
        let members: BTreeSet<u64> = self.voters.union(&self.learners).copied().collect();
        let live_members: BTreeSet<u64> = members.intersection(&self.live).copied().collect();

        let mut eligible: BTreeSet<u64> = live_members
            .intersection(&self.caught_up)
            .copied()
            .collect();
        let kept_leader = (!self.leader_leaving).then_some(self.leader);
        eligible.extend(kept_leader);
        // An odd count, and never fewer voters than are alive now for want
        // of caught-up learners: wait for them instead.
        let reachable = eligible.len().min(wanted_voters);
        if reachable == 0 {
            return None; // a leaving leader with nobody to take its seat
        }
        let target = reachable - usize::from(reachable.is_multiple_of(2));
        if (target == wanted_voters || target >= live_voters)
            && let Some(next) = next_voters(&self.voters, &eligible, kept_leader, target)
        {
            return Some(Step::ReplaceVoters(next));
        }

        if live_members.len() < wanted_members {
            let add: BTreeSet<u64> = self
                .live
                .difference(&members)
                .take(wanted_members - live_members.len())
                .copied()
                .collect();
            if !add.is_empty() {
                return Some(Step::AddLearners(add));
            }
        }

        let mut remove: BTreeSet<u64> = self.learners.difference(&self.live).copied().collect();
        // A leaving leader steps down once it no longer votes; it does not
        // remove itself (its successor does).
        remove.remove(&self.leader);
        let live_learners: Vec<u64> = self.learners.intersection(&self.live).copied().collect();
        // Dead voters wait for a learner to replace them: not counted.
        let keep = wanted_members.saturating_sub(live_voters);
        if live_learners.len() > keep {
            // Drop those furthest behind first.
            let mut extra = live_learners;
            extra.sort_by_key(|id| (self.caught_up.contains(id), *id));
            let surplus = extra.len() - keep;
            remove.extend(extra.into_iter().take(surplus));
        }
        (!remove.is_empty()).then_some(Step::RemoveLearners(remove))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        ids.into_iter().collect()
    }

    /// A view where every member is caught up and two standbys are wanted.
    fn view(voters: &[u64], learners: &[u64], live: impl IntoIterator<Item = u64>) -> View {
        let voters = set(voters.iter().copied());
        let learners = set(learners.iter().copied());
        View {
            leader: *voters.first().unwrap(),
            caught_up: voters.union(&learners).copied().collect(),
            voters,
            learners,
            live: set(live),
            standbys: 2,
            leader_leaving: false,
        }
    }

    #[test]
    fn voter_counts_follow_the_seed_formula_rounded_to_odd() {
        let counts: Vec<usize> = (1..=10).map(voter_count).collect();
        assert_eq!(counts, vec![1, 1, 3, 3, 3, 3, 3, 5, 5, 5]);
        assert_eq!(voter_count(21), 5);
        assert_eq!(voter_count(100), 7);
        assert_eq!(voter_count(1100), 9);
    }

    #[test]
    fn a_new_cluster_takes_learners_then_promotes_them() {
        let mut view = view(&[1], &[], 1..=100);
        assert_eq!(
            view.next_step(),
            Some(Step::AddLearners(set(2..=9))),
            "7 voters and 2 standbys"
        );
        view.learners = set(2..=9);
        assert_eq!(view.next_step(), None, "they catch up first");
        view.caught_up = set(1..=9);
        assert_eq!(view.next_step(), Some(Step::ReplaceVoters(set(1..=7))));
        view.voters = set(1..=7);
        view.learners = set(8..=9);
        assert_eq!(
            view.next_step(),
            None,
            "the rest of the cluster holds no replica"
        );
    }

    #[test]
    fn a_dead_voter_is_replaced_by_a_standby_then_dropped() {
        let mut view = view(&[1, 2, 3], &[4, 5], [1, 2, 4, 5, 6, 7]);
        assert_eq!(view.next_step(), Some(Step::ReplaceVoters(set([1, 2, 4]))));
        // openraft keeps the old voter as a learner.
        view.voters = set([1, 2, 4]);
        view.learners = set([3, 5]);
        assert_eq!(view.next_step(), Some(Step::AddLearners(set([6]))));
        view.learners = set([3, 5, 6]);
        assert_eq!(view.next_step(), Some(Step::RemoveLearners(set([3]))));
    }

    #[test]
    fn a_dead_voter_stays_until_a_replacement_has_caught_up() {
        let mut view = view(&[1, 2, 3], &[], [1, 2, 6, 7]);
        view.caught_up = set([1, 2]);
        assert_eq!(view.next_step(), Some(Step::AddLearners(set([6, 7]))));
        view.learners = set([6, 7]);
        assert_eq!(view.next_step(), None, "no shrinking to one voter");
        view.caught_up.insert(6);
        assert_eq!(view.next_step(), Some(Step::ReplaceVoters(set([1, 2, 6]))));
    }

    #[test]
    fn surplus_learners_go_those_behind_first() {
        let mut view = view(&[1, 2, 3], &[4, 5, 6], 1..=6);
        view.caught_up = set([1, 2, 3, 5]);
        assert_eq!(view.next_step(), Some(Step::RemoveLearners(set([4]))));
    }

    #[test]
    fn a_draining_leader_hands_its_seat_to_a_standby() {
        let mut five = view(&[1, 2, 3], &[4, 5], 2..=5);
        five.leader_leaving = true;
        assert_eq!(five.next_step(), Some(Step::ReplaceVoters(set([2, 3, 4]))));
        let mut alone = view(&[1], &[2, 3], [2, 3]);
        alone.leader_leaving = true;
        assert_eq!(
            alone.next_step(),
            Some(Step::ReplaceVoters(set([2]))),
            "the only voter may leave too"
        );
        let mut last = view(&[1], &[], []);
        last.leader_leaving = true;
        assert_eq!(last.next_step(), None, "nobody to take over");
    }

    #[test]
    fn without_a_live_majority_of_voters_nothing_changes() {
        let view = view(&[1, 2, 3], &[4, 5], [1, 4, 5]);
        assert_eq!(view.next_step(), None);
    }

    proptest! {
        #[test]
        fn voter_changes_keep_the_leader_and_stay_odd_and_live(
            voters in proptest::collection::btree_set(0u64..20, 1..8),
            learners in proptest::collection::btree_set(20u64..30, 0..4),
            live in proptest::collection::btree_set(0u64..40, 0..30),
            behind in proptest::collection::btree_set(0u64..30, 0..5),
        ) {
            let leader = *voters.first().unwrap();
            let mut live = live;
            live.insert(leader);
            let members: BTreeSet<u64> = voters.union(&learners).copied().collect();
            let view = View {
                leader,
                caught_up: members.difference(&behind).copied().collect(),
                voters: voters.clone(),
                learners: learners.clone(),
                live: live.clone(),
                standbys: 2,
                leader_leaving: false,
            };
            match view.next_step() {
                Some(Step::ReplaceVoters(next)) => {
                    prop_assert!(next.contains(&leader));
                    prop_assert!(next.iter().all(|id| live.contains(id) && members.contains(id)));
                    prop_assert!(next.iter().all(|id| *id == leader || !behind.contains(id)));
                    prop_assert_eq!(next.len() % 2, 1);
                    prop_assert!(next.len() <= voter_count(live.len()));
                }
                Some(Step::AddLearners(add)) => {
                    prop_assert!(add.iter().all(|id| live.contains(id) && !members.contains(id)));
                }
                Some(Step::RemoveLearners(remove)) => {
                    prop_assert!(remove.iter().all(|id| learners.contains(id)));
                }
                None => {}
            }
        }
    }
}
