//! The protocol's promises, checked in simulated time (see `cluster::sim`).

use super::*;
use crate::cluster::sim::{Sim, SimSettings};

const PERIOD: Duration = Duration::from_secs(1);
const CHECK: Duration = Duration::from_millis(50);

fn formed(nodes: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimSettings {
        nodes,
        seed,
        ..SimSettings::default()
    });
    for node in 1..nodes as u32 {
        sim.join(node, 0);
    }
    let took = sim.run_until(Duration::from_secs(60), CHECK, Sim::converged);
    assert!(took.is_some(), "{nodes} nodes never learned of each other");
    sim
}

#[test]
fn a_cluster_forms_from_one_known_node() {
    let sim = formed(50, 7);
    assert_eq!(sim.view_size(17), Some(49));
}

#[test]
fn a_killed_node_is_known_dead_everywhere_within_seconds() {
    let mut sim = formed(100, 3);
    sim.kill(42);
    let took = sim
        .run_until(Duration::from_secs(30), CHECK, Sim::converged)
        .expect("the death was never known everywhere");
    // Found by a probe within a few periods (each member probes one a
    // period), then the suspicion time, then a few periods to spread.
    assert!(
        took <= PERIOD * 6 + Duration::from_secs(3) + PERIOD * 3,
        "took {took:?}"
    );
}

#[test]
fn a_late_joiner_is_known_everywhere() {
    let mut sim = formed(60, 11);
    let newcomer = sim.add_node();
    sim.join(newcomer, 5);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(
        sim.view_size(newcomer),
        Some(60),
        "the member list came with the welcome"
    );
    let took = sim
        .run_until(Duration::from_secs(30), CHECK, Sim::converged)
        .expect("the newcomer was never known everywhere");
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    assert_eq!(sim.view_size(newcomer), Some(60));
}

#[test]
fn a_short_pause_leaves_the_node_a_member() {
    let mut sim = formed(30, 5);
    sim.pause(9, Duration::from_secs(2));
    sim.run_for(Duration::from_secs(15));
    assert!(sim.converged(), "a 2 s pause left the views apart");
    assert_eq!(sim.view_size(9), Some(29));
    assert_eq!(sim.view_size(0), Some(29));
}

#[test]
fn the_kept_digest_follows_joins_deaths_and_rejoins() {
    let mut sim = formed(40, 13);
    sim.kill(3);
    // Long enough to be declared down: it rejoins under a new identity.
    sim.pause(7, Duration::from_secs(8));
    let newcomer = sim.add_node();
    sim.join(newcomer, 11);
    sim.run_for(Duration::from_secs(30));
    assert!(sim.converged(), "the views never came together again");
    let mut views = std::collections::BTreeSet::new();
    for node in (0..=newcomer).filter(|&n| n != 3) {
        let membership = sim.membership(node).expect("alive");
        assert_eq!(
            membership.digest(),
            membership.digest_from_scratch(),
            "node {node}"
        );
        let mut view: Vec<u32> = membership.members().map(|id| id.addr()).collect();
        view.push(node);
        view.sort_unstable();
        views.insert(view);
    }
    assert_eq!(views.len(), 1, "every live node sees the same members");
}

#[test]
fn a_member_list_too_large_for_its_limit_is_cut_not_refused() {
    let peer = |n: u64| SwimId::new(PeerId::random(), Vec::new(), n);
    let mut big = Membership::new(peer(0), 500, PERIOD, PERIOD * 3, 1);
    let now = Duration::ZERO;
    let members: Vec<Member<SwimId>> = (1..500).map(|n| Member::alive(peer(n))).collect();
    let everyone = postcard::to_allocvec(&members).unwrap();
    big.merge(&everyone, now).unwrap();
    assert_eq!(big.len(), 499);
    let cut = big.full_state(4096);
    assert!(cut.len() <= 4096);
    let mut newcomer = Membership::new(peer(9999), 500, PERIOD, PERIOD * 3, 2);
    newcomer.merge(&cut, now).unwrap();
    assert!((20..499).contains(&newcomer.len()), "{}", newcomer.len());
    assert!(newcomer.merge(b"not a member list", now).is_err());
}

#[test]
fn identities_round_trip_and_reject_garbage() {
    let peer = PeerId::random();
    let addr: Multiaddr = "/ip4/10.0.0.7/tcp/4001".parse().unwrap();
    let id = SwimId::new(peer, vec![addr.clone(); 9], 1234);
    assert_eq!(id.addrs().len(), MAX_ADDRS);
    let bytes = postcard::to_allocvec(&id).unwrap();
    assert_eq!(postcard::from_bytes::<SwimId>(&bytes).unwrap(), id);
    assert!(postcard::from_bytes::<SwimId>(&bytes[..bytes.len() / 2]).is_err());
    assert!(postcard::from_bytes::<SwimId>(&[3, 1, 2, 3, 0, 0]).is_err());
    let renewed = id.renew().unwrap();
    assert!(renewed.win_addr_conflict(&id) && !id.win_addr_conflict(&renewed));
}

#[test]
fn an_older_identity_going_down_leaves_the_newer_one_up() {
    let me = SwimId::new(PeerId::random(), Vec::new(), 1);
    let mut membership = Membership::new(me, 2, PERIOD, Duration::from_secs(2), 7);
    let peer = PeerId::random();
    let old = SwimId::new(peer, Vec::new(), 1);
    let new = SwimId::new(peer, Vec::new(), 2);
    // foca may report a restarted member's new identity up before its old
    // one down.
    assert!(membership.follow(&new, true));
    assert!(
        !membership.follow(&old, false),
        "the old identity's end does not end the member"
    );
    assert_eq!(membership.live_hashes.get(&peer), Some(&id_hash(&new)));
    assert!(
        membership.follow(&new, false),
        "the new identity's end does"
    );
    assert!(membership.live_hashes.is_empty());
}

/// As 100 processes starting at once on two cores: packets dropped by the
/// hundred and nodes frozen for seconds while the cluster forms. Once it
/// calms, every view is whole again.
#[test]
fn a_cluster_formed_in_a_storm_of_loss_and_pauses_converges_once_it_calms() {
    use rand::{Rng, SeedableRng};
    for seed in 1..=3 {
        let nodes = 100;
        let mut sim = Sim::new(SimSettings {
            nodes,
            seed,
            ..SimSettings::default()
        });
        sim.set_loss(0.4);
        for node in 1..nodes as u32 {
            sim.join_after(node, 0, Duration::from_millis(10) * node);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..300 {
            let node = rng.random_range(0..nodes as u32);
            sim.pause(node, Duration::from_millis(rng.random_range(500..3000)));
            sim.run_for(Duration::from_millis(100));
        }
        sim.set_loss(0.01);
        let took = sim.run_until(Duration::from_secs(60), CHECK, Sim::converged);
        assert!(
            took.is_some(),
            "seed {seed}: views still differ a minute after the storm"
        );
    }
}

/// A member that hears of a suspicion and then nothing more (the
/// suspecter's verdict lost, the suspecter gone quiet) declares the suspect
/// down itself, a period after the suspecter would have, instead of holding
/// it suspect until one of its own probes happens to pick it.
#[test]
fn a_heard_suspicion_ends_in_down_even_when_the_verdict_is_lost() {
    use crate::cluster::sim::SimId;
    let id = |node| SimId {
        node,
        generation: 0,
    };
    let suspicion = Duration::from_secs(2);
    let everyone = |without: u32| {
        let members: Vec<Member<SimId>> = (0..40)
            .filter(|&n| n != without)
            .map(|n| Member::alive(id(n)))
            .collect();
        postcard::to_allocvec(&members).unwrap()
    };
    let (suspecter, hearer, suspect) = (0, 1, 2);
    let mut hearer_swim = Membership::new(id(hearer), 40, PERIOD, suspicion, 5);
    hearer_swim
        .merge(&everyone(hearer), Duration::ZERO)
        .unwrap();
    // The suspecter knows only the hearer and the suspect, so its next
    // gossip goes to the hearer.
    let mut suspecter_swim = Membership::new(id(suspecter), 3, PERIOD, suspicion, 6);
    let pair = vec![Member::alive(id(hearer)), Member::alive(id(suspect))];
    let pair = postcard::to_allocvec(&pair).unwrap();
    suspecter_swim.merge(&pair, Duration::ZERO).unwrap();
    let mut sends = suspecter_swim.suspect(&suspect, Duration::ZERO).sends;
    let mut now = Duration::ZERO;
    while !sends.iter().any(|(to, _)| to.node == hearer) {
        now += CHECK;
        assert!(now < PERIOD, "the suspecter never spoke to the hearer");
        sends = suspecter_swim.advance(now).sends;
    }
    for (_, packet) in sends.iter().filter(|(to, _)| to.node == hearer) {
        hearer_swim.receive(packet, now).unwrap();
    }
    let heard_at = now;
    let state_of_suspect = |swim: &Membership<SimId>| {
        swim.states()
            .find(|(member, _)| member.node == suspect)
            .map(|(_, state)| state)
    };
    assert_eq!(state_of_suspect(&hearer_swim), Some(State::Suspect));
    // From here on nothing reaches the hearer.
    let mut down_at = None;
    while down_at.is_none() && now < heard_at + Duration::from_secs(10) {
        now += CHECK;
        let changes = hearer_swim.advance(now).changes;
        if changes.contains(&Change::Down(id(suspect))) {
            down_at = Some(now);
        }
    }
    let took = down_at.expect("the suspect was never declared down") - heard_at;
    assert!(took <= suspicion + PERIOD + CHECK, "took {took:?}");
}
