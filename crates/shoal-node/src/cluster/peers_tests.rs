//! Tests of the peer table: membership events, liveness, aging reports.

use super::*;

#[test]
fn a_new_member_joins_with_its_first_heartbeat() {
    let mut table = PeerTable::new();
    let peer = PeerId::random();
    let now = Instant::now();
    assert_eq!(table.on_up(peer, now), None);
    assert_eq!(table.on_up(peer, now), None);
    assert_eq!(
        table.live().count(),
        0,
        "nothing is known of what it offers"
    );
    let load = Heartbeat {
        slots: 4,
        ..Heartbeat::default()
    };
    assert_eq!(
        table.on_heartbeat(peer, load, now),
        Some(MemberEvent::Joined(peer))
    );
    assert_eq!(table.get(&peer).unwrap().load.slots, 4);
    assert_eq!(table.on_up(peer, now), None);
    assert_eq!(table.live().count(), 1);
}

#[test]
fn a_heartbeat_from_an_unknown_peer_joins() {
    let mut table = PeerTable::new();
    let peer = PeerId::random();
    assert_eq!(
        table.on_heartbeat(peer, Heartbeat::default(), Instant::now()),
        Some(MemberEvent::Joined(peer))
    );
}

#[test]
fn suspicion_is_reported_and_cleared_and_down_kills() {
    let mut table = PeerTable::new();
    let peer = PeerId::random();
    let now = Instant::now();
    table.on_heartbeat(peer, Heartbeat::default(), now);
    assert_eq!(
        table.on_suspicion(peer, true),
        Some(MemberEvent::Suspected(peer))
    );
    assert!(table.is_live(&peer), "a suspected peer is still used");
    assert!(!table.is_dead(&peer));
    assert!(
        !table.is_dead(&PeerId::random()),
        "a peer not heard of yet is not dead"
    );
    assert_eq!(table.on_suspicion(peer, true), None);
    assert_eq!(table.on_heartbeat(peer, Heartbeat::default(), now), None);
    assert_eq!(
        table.on_suspicion(peer, false),
        Some(MemberEvent::Recovered(peer)),
        "a heartbeat does not clear a suspicion; SWIM does"
    );
    assert!(matches!(table.on_down(peer), Some(MemberEvent::Died(p, _)) if p == peer));
    assert!(!table.is_live(&peer));
    assert!(table.is_dead(&peer));
    assert_eq!(table.on_down(peer), None, "dies once");
    assert_eq!(table.on_suspicion(peer, true), None);
    assert_eq!(
        table.on_up(peer, now),
        Some(MemberEvent::Joined(peer)),
        "back as it last described itself"
    );
}

#[test]
fn a_broken_call_stream_is_a_suspicion_that_swim_decides() {
    let mut table = PeerTable::new();
    let (cleared, dead) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    for peer in [cleared, dead] {
        table.on_heartbeat(peer, Heartbeat::default(), now);
        assert_eq!(
            table.on_unreachable(peer),
            Some(MemberEvent::Suspected(peer))
        );
        assert_eq!(table.on_unreachable(peer), None, "suspected once");
        assert!(table.is_live(&peer), "still a member");
    }
    assert_eq!(
        table.on_suspicion(cleared, false),
        Some(MemberEvent::Recovered(cleared)),
        "it answered SWIM's probes"
    );
    assert!(matches!(table.on_down(dead), Some(MemberEvent::Died(p, _)) if p == dead));
    assert_eq!(table.on_unreachable(dead), None, "a dead peer stays dead");
    assert!(!table.is_live(&dead));
}

#[test]
fn a_reported_backlog_counts_only_while_the_peer_could_not_have_worked_it_off() {
    let mut table = PeerTable::new();
    let peer = PeerId::random();
    let reported = Instant::now();
    let busy = Heartbeat {
        slots: 2,
        running: 2,
        queued: 8,
        mean_task_us: 50_000,
        ..Heartbeat::default()
    };
    table.on_heartbeat(peer, busy, reported);
    let info = table.get(&peer).unwrap();
    let ms = Duration::from_millis;
    assert_eq!(info.still_backlog(reported), 10);
    assert_eq!(
        info.still_backlog(reported + ms(100)),
        6,
        "two slots, 50 ms calls"
    );
    assert_eq!(info.still_backlog(reported + ms(250)), 0);
    assert_eq!(
        info.still_backlog(reported + Duration::from_secs(30)),
        0,
        "a report from an earlier fan-out says nothing of now"
    );
}

#[test]
fn long_dead_peers_are_forgotten() {
    let mut table = PeerTable::new();
    let peer = PeerId::random();
    let now = Instant::now();
    table.on_heartbeat(peer, Heartbeat::default(), now);
    table.on_down(peer);
    table.forget_dead(now + Duration::from_secs(600), Duration::from_secs(300));
    assert!(table.get(&peer).is_none());
}

#[test]
fn a_refused_peer_is_no_member_until_it_speaks_a_version_that_works() {
    let mut table = PeerTable::new();
    let (peer, now) = (PeerId::random(), Instant::now());
    table.on_up(peer, now);
    assert_eq!(table.on_refused(peer, 3, now), (true, None));
    assert_eq!(table.on_refused(peer, 3, now), (false, None), "told once");
    assert!(table.on_refused(peer, 4, now).0, "another version is news");
    assert_eq!(
        table.undescribed().count(),
        0,
        "its report is not asked again"
    );
    assert_eq!(table.on_up(peer, now), None);
    assert_eq!(table.undescribed().count(), 0);
    assert!(!table.is_live(&peer));
    assert_eq!(
        table.refused().map(|(_, r)| r.version).collect::<Vec<_>>(),
        [4]
    );
    // Upgraded: its next report makes it a member.
    assert_eq!(
        table.on_heartbeat(peer, Heartbeat::default(), now),
        Some(MemberEvent::Joined(peer))
    );
    assert_eq!(table.refused().count(), 0);
    // A member that comes back with a version too far away dies.
    let (news, died) = table.on_refused(peer, 3, now);
    assert!(news);
    assert!(matches!(died, Some(MemberEvent::Died(p, _)) if p == peer));
    assert!(table.get(&peer).is_none());
    table.forget_dead(now + Duration::from_secs(600), Duration::from_secs(300));
    assert_eq!(table.refused().count(), 0, "forgotten once silent");
}

#[test]
fn the_lowest_version_counts_every_known_peer() {
    let mut table = PeerTable::new();
    assert_eq!(table.lowest_version(), None);
    let now = Instant::now();
    let (old, new) = (PeerId::random(), PeerId::random());
    for (peer, version) in [(old, 4), (new, 5)] {
        let load = Heartbeat {
            version,
            ..Heartbeat::default()
        };
        table.on_heartbeat(peer, load, now);
    }
    table.on_down(old);
    assert_eq!(table.lowest_version(), Some(4), "a dead peer may come back");
}
