//! Who votes: the leader keeps the voter set at `min(N, 2 + floor(ln N))`
//! members, rounded to an odd number (an even count adds no fault
//! tolerance), preferring voters that are alive, then live learners.
//!
//! A pure function of the current voters and who is alive, so the rule is
//! tested without a cluster.

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
/// one. `live` holds every live member (voters and learners), the leader
/// included; `leader` always stays a voter.
pub fn next_voters(
    voters: &BTreeSet<u64>,
    live: &BTreeSet<u64>,
    leader: u64,
) -> Option<BTreeSet<u64>> {
    let wanted = voter_count(live.len()).max(1);
    let mut next: BTreeSet<u64> = BTreeSet::from([leader]);
    // Keep live voters first: every change of the voter set costs a joint
    // consensus round, so stay put when possible.
    for id in voters.iter().filter(|id| live.contains(id)) {
        if next.len() >= wanted {
            break;
        }
        next.insert(*id);
    }
    for id in live {
        if next.len() >= wanted {
            break;
        }
        next.insert(*id);
    }
    (next != *voters).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn voter_counts_follow_the_seed_formula_rounded_to_odd() {
        let counts: Vec<usize> = (1..=10).map(voter_count).collect();
        assert_eq!(counts, vec![1, 1, 3, 3, 3, 3, 3, 5, 5, 5]);
        assert_eq!(voter_count(21), 5);
        assert_eq!(voter_count(1100), 9);
    }

    #[test]
    fn dead_voters_are_replaced_by_live_learners() {
        let voters = BTreeSet::from([1, 2, 3]);
        let live = BTreeSet::from([1, 2, 4, 5]);
        assert_eq!(
            next_voters(&voters, &live, 1),
            Some(BTreeSet::from([1, 2, 4]))
        );
    }

    #[test]
    fn a_healthy_voter_set_stays() {
        let voters = BTreeSet::from([1, 2, 3]);
        let live = BTreeSet::from([1, 2, 3, 4]);
        assert_eq!(next_voters(&voters, &live, 2), None);
    }

    proptest! {
        #[test]
        fn next_voters_are_live_odd_and_include_the_leader(
            voters in proptest::collection::btree_set(0u64..20, 1..7),
            live in proptest::collection::btree_set(0u64..20, 1..15),
        ) {
            let leader = *live.iter().next().unwrap();
            let next = next_voters(&voters, &live, leader).unwrap_or(voters.clone());
            if next != voters {
                prop_assert!(next.contains(&leader));
                prop_assert!(next.iter().all(|id| live.contains(id)));
                prop_assert_eq!(next.len(), voter_count(live.len()).max(1));
                prop_assert_eq!(next.len() % 2, 1);
            }
        }
    }
}
