//! How a node meets its cluster: the DHT, where every member provides the
//! key `/shoal/cluster/<name>`, and the join addresses it was given.

use super::{Behaviour, EventLoop};
use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId, Swarm, kad};

/// The DHT key every member of `cluster` provides.
pub(super) fn rendezvous_key(cluster: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("/shoal/cluster/{cluster}"))
}

/// Dials a join address, or an address its name resolved to. The swarm
/// refuses an address it listens on: a name that also stands for this node
/// (every pod of a Kubernetes service) is skipped there.
pub(super) fn dial_join(swarm: &mut Swarm<Behaviour>, addr: Multiaddr) -> Result<(), DialError> {
    match swarm.dial(addr.clone()) {
        Err(DialError::NoAddresses) => {
            tracing::debug!(%addr, "skipped a join address of this node's own");
            Ok(())
        }
        dialed => dialed,
    }
}

impl EventLoop {
    /// Announces this node under its cluster's key and asks the DHT who
    /// else did; a few of the answers are dialed as they come. Each walk
    /// of the DHT dials some 20 to 60 peers: only a node that stays alone
    /// walks, not every node as it joins.
    pub(super) fn meet_cluster(&mut self) {
        self.announce_membership();
        self.swarm
            .behaviour_mut()
            .kad
            .get_providers(self.rendezvous.clone());
    }

    pub(super) fn announce_membership(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        if let Err(error) = kad.start_providing(self.rendezvous.clone()) {
            tracing::warn!(%error, "cannot announce this node in the DHT");
        }
    }

    /// Adds `peer` to the DHT's routing table, while this node knows no
    /// member: the DHT is how a lonely node meets its cluster, and a member
    /// learns of the others from membership. Fed every peer it connected
    /// to, kad walked the DHT whenever its table was small (at start) and
    /// dialed a full bucket's least recently seen peer at each newcomer;
    /// with idle connections closed, each of those dials was a handshake.
    /// Over 100 nodes starting on one machine, that was 30,000 dials in
    /// half a minute, both cores busy and thousands of members suspected
    /// (with a 1 s idle timeout; 67 dials and none suspected without it).
    pub(super) fn tell_dht(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        if !self.lonely {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for addr in addrs {
            kad.add_address(&peer, addr);
        }
    }

    pub(super) fn dial_if_new(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.local_peer || self.connected.contains(&peer) {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addrs)
            .build();
        let _ = self.swarm.dial(opts);
    }
}
