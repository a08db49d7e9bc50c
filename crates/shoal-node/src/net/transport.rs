//! The libp2p stack of a node: TCP, the optional `pnet` private-network
//! layer, noise encryption, yamux multiplexing, and the behaviours.

use crate::config::NodeConfig;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::TransportEvent;
use libp2p::core::transport::{Boxed, DialOpts, ListenerId, PortUse, Transport, TransportError};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{
    PeerId, StreamProtocol, Swarm, gossipsub, identify, kad, mdns, noise, peer_store, ping, tcp,
    yamux,
};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Protocol name of the cluster's Kademlia DHT; distinct from the public
/// IPFS DHT so Shoal nodes only ever route among themselves.
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/kad/1");

/// Each connection is pinged this often (libp2p's default is 15 s). SWIM
/// finds dead members; pings are kept so other libp2p peers get answers.
const PING_INTERVAL: Duration = Duration::from_secs(60);

/// A topic message is at most 64 KiB of value plus its envelope.
const MAX_GOSSIP_BYTES: usize = 256 * 1024;
/// Members whose addresses a node remembers; far more than it talks to.
const PEER_STORE_CAPACITY: usize = 100_000;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub stream: libp2p_stream::Behaviour,
    /// Members' addresses from membership, so a stream to any member dials
    /// it when no connection is open.
    pub peer_store: peer_store::Behaviour<peer_store::memory_store::MemoryStore>,
}

/// Builds the swarm for `keypair` with the settings of `config`.
pub fn build_swarm(keypair: Keypair, config: &NodeConfig) -> io::Result<Swarm<Behaviour>> {
    let psk = config.secret.map(PreSharedKey::new);
    let mdns_on = config.mdns;
    let heartbeat_interval = config.heartbeat_interval;
    let idle_timeout = config.idle_timeout;
    let transport = transport(&keypair, psk)?;
    let Ok(builder) = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport);
    let swarm = builder
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            behaviour(key, peer_id, mdns_on, heartbeat_interval)
        })
        .map_err(io::Error::other)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

fn transport(
    key: &Keypair,
    psk: Option<PreSharedKey>,
) -> io::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).map_err(io::Error::other)?;
    let tcp = FreshPorts(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    ));
    let yamux = yamux::Config::default();
    let transport = match psk {
        // pnet wraps the raw socket before anything else is said, so a peer
        // without the secret cannot even finish the noise handshake.
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    };
    Ok(transport)
}

/// TCP that dials every connection from a new port, never from its
/// listening one. Two nodes that dial each other at the same moment from
/// their listening ports (both start talking to a newcomer, both walk the
/// DHT) meet in one simultaneously-opened TCP connection in which both act
/// as the handshake's initiator, and it fails.
struct FreshPorts<T>(T);

impl<T: Transport + Unpin> Transport for FreshPorts<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: libp2p::Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: libp2p::Multiaddr,
        mut opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        opts.port_use = PortUse::New;
        self.0.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

fn behaviour(
    key: &Keypair,
    peer_id: PeerId,
    mdns_on: bool,
    heartbeat_interval: Duration,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(heartbeat_interval)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_BYTES)
        // Content-addressed ids over (author, content): a heartbeat carries
        // its author's sequence number, so equal ids mean the same message,
        // while two idle nodes' identical heartbeats stay distinct.
        .message_id_fn(|message: &gossipsub::Message| {
            use sha2::Digest;
            let mut hash = sha2::Sha256::new();
            if let Some(source) = &message.source {
                hash.update(source.to_bytes());
            }
            hash.update(&message.data);
            gossipsub::MessageId::from(hash.finalize().to_vec())
        })
        .build()?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    // The event loop runs its own lookups: a lonely node's, and a member's
    // walk on a timer.
    kad_config.set_periodic_bootstrap_interval(None);
    // Connections add no peer to the routing table: the event loop adds
    // those a lonely node meets (see `tell_dht`).
    kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Loopback and private addresses are never confirmed as external, so
    // without this every node would stay a DHT client and answer nothing.
    kad.set_mode(Some(kad::Mode::Server));

    let mdns = if mdns_on {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };

    Ok(Behaviour {
        // No cache of the addresses identify heard: the DHT and the peer
        // store hold them spelled with `/p2p/`, and identify's spelling
        // without it made the swarm dial each peer twice at once, cutting
        // one handshake short every time.
        identify: identify::Behaviour::new(
            identify::Config::new("/shoal/1".to_string(), key.public()).with_cache_size(0),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
        kad,
        gossipsub,
        mdns: mdns.into(),
        stream: libp2p_stream::Behaviour::new(),
        peer_store: peer_store::Behaviour::new(peer_store::memory_store::MemoryStore::new(
            peer_store::memory_store::Config::default().set_peer_capacity(
                std::num::NonZeroUsize::new(PEER_STORE_CAPACITY).expect("non-zero"),
            ),
        )),
    })
}
