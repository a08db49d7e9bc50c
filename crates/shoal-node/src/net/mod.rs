//! The only code that touches libp2p.
//!
//! One task owns the [`Swarm`]; the rest of the node holds a cloneable
//! [`NetHandle`] that sends it commands, and receives [`NetEvent`]s on a
//! bounded channel. Call traffic does not pass through this task: it flows
//! on long-lived streams (see [`links`]) opened through `libp2p-stream`,
//! and membership messages in sealed UDP datagrams (see [`datagrams`]), so
//! the swarm loop only handles discovery, user topics and connections.
//! [`transport`] builds the swarm: TCP, noise, yamux, `pnet`, and the
//! behaviours; [`join`] looks up the host names of join addresses.
//!
//! ```text
//!   NetHandle ──NetCommand──► event loop (owns Swarm) ──NetEvent──► node
//!       │                         │  identify → kad addresses (while alone)
//!       │                         │  kad providers / mdns → dial a member
//!       │                         │  peer store ← members' addresses
//!       │                         └─ gossipsub ← → user topics
//!       └─ Datagrams ═ one sealed UDP datagram per message ═► peer ──NetEvent──► node
//! ```
//!
//! Nodes find their cluster by its name (see [`discovery`]): each
//! announces itself in the Kademlia DHT as a provider of the key
//! `/shoal/cluster/<name>`, and a node that knows no member yet asks the
//! DHT for the other providers and dials a few, so a node that knows any
//! DHT peer — a member, or a node of another cluster — finds the members.
//! Once it is a member, membership (SWIM) tells it of the others, and it
//! connects to a member only to talk to it.

mod connection_failures;
pub mod datagrams;
mod discovery;
pub mod join;
pub mod links;
pub mod sealed;
pub mod transport;

use crate::config::NodeConfig;
use bytes::Bytes;
use datagrams::Datagrams;
use discovery::{dial_join, rendezvous_key};
use futures::StreamExt;
use join::Joining;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use transport::{Behaviour, BehaviourEvent};

/// Commands queued for the event loop; a small bound is enough because each
/// is handled in microseconds.
const COMMAND_CAPACITY: usize = 256;
/// Events queued for the node; a full queue drops membership messages and
/// heartbeats (lost packets, as far as SWIM is concerned) rather than
/// stalling the network.
const EVENT_CAPACITY: usize = 4096;
/// While a node has no peer at all it re-dials its `--join` addresses this often.
const REJOIN_INTERVAL: Duration = Duration::from_secs(2);
/// A DHT walk refreshes the routing table, and the node announces itself
/// as a member again, this often (kad's own default). Each walk talks to
/// some 20 nodes, so walking often would hold connections open to most of a
/// cluster of 100.
const BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(300);
/// A node that knows no member dials at most this many of the members the
/// DHT names; membership introduces it to the rest.
const MEMBERS_TO_DIAL: usize = 3;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot build the libp2p swarm: {0}")]
    Swarm(#[from] std::io::Error),
    #[error("the membership protocol is registered twice")]
    Membership(#[from] libp2p_stream::AlreadyRegistered),
    #[error(
        "cannot listen on {0}: a listen address is an IP address (like /ip4/0.0.0.0/tcp/7000), not a host name; names belong in join addresses"
    )]
    ListenOnName(Multiaddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: Multiaddr,
        #[source]
        source: libp2p::TransportError<std::io::Error>,
    },
    #[error("listener failed: {0}")]
    Listener(std::io::Error),
}

/// A message on a user topic, as gossip delivered it: the topic's name,
/// its publisher (checked against the message's signature), the bytes.
#[derive(Debug)]
pub struct TopicDelivery {
    pub topic: String,
    pub publisher: PeerId,
    pub data: Vec<u8>,
}

/// Topic messages waiting for the node; a full queue drops messages
/// (topics are best effort), never stalls the swarm.
const TOPIC_CAPACITY: usize = 4096;

/// Something the network saw that the node must know.
#[derive(Debug)]
pub enum NetEvent {
    /// A member's load report, as sent: the cluster task reads it.
    Heartbeat(PeerId, Bytes),
    /// A member asks for this node's load report.
    HeartbeatRequest(PeerId),
    /// A membership (SWIM) packet.
    Swim(PeerId, Bytes),
    /// A member asks for the member list: a newcomer (no digest), or one
    /// whose view may differ from this node's (its digest).
    StateRequest(PeerId, Option<u64>),
    /// The member list, for this node that just joined.
    State(PeerId, Bytes),
    Connected(PeerId),
}

enum NetCommand {
    Dial(Multiaddr),
    /// Where a member can be dialed.
    AddAddresses(PeerId, Vec<Multiaddr>),
    /// Whether the node knows no member (and so looks for them).
    SetLonely(bool),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Subscribe(String),
    Unsubscribe(String),
    PublishTopic {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    TopicPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// A cloneable way to talk to the event loop.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<NetCommand>,
    datagrams: Datagrams,
}

impl NetHandle {
    /// Sends membership messages and load reports to members.
    pub fn datagrams(&self) -> &Datagrams {
        &self.datagrams
    }

    /// Remembers where `peer` can be dialed; dropped if the loop is behind
    /// (membership repeats itself).
    pub fn add_addresses(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let _ = self
            .commands
            .try_send(NetCommand::AddAddresses(peer, addrs));
    }

    /// Tells the network whether the node knows no member, so it looks for
    /// them through its join addresses and the DHT.
    pub fn set_lonely(&self, lonely: bool) {
        let _ = self.commands.try_send(NetCommand::SetLonely(lonely));
    }

    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(NetCommand::Dial(addr)).await;
    }

    /// Starts receiving a user topic's messages.
    pub async fn subscribe_topic(&self, topic: &str) {
        let _ = self
            .commands
            .send(NetCommand::Subscribe(topic.to_string()))
            .await;
    }

    /// Stops receiving a user topic's messages.
    pub async fn unsubscribe_topic(&self, topic: &str) {
        let _ = self
            .commands
            .send(NetCommand::Unsubscribe(topic.to_string()))
            .await;
    }

    /// Stops receiving a user topic's messages, from code that must not
    /// wait; if the event loop is behind, the node stays subscribed.
    pub fn unsubscribe_topic_soon(&self, topic: &str) {
        let _ = self
            .commands
            .try_send(NetCommand::Unsubscribe(topic.to_string()));
    }

    /// Gossips a message on a user topic. Having nobody to tell yet is
    /// not an error; the message is simply not delivered anywhere else.
    pub async fn publish_topic(&self, topic: &str, data: Vec<u8>) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        let command = NetCommand::PublishTopic {
            topic: topic.to_string(),
            data,
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Err("the node is stopping".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the node is stopping".to_string()))
    }

    /// Peers known to be subscribed to a user topic.
    pub async fn topic_peers(&self, topic: &str) -> Vec<PeerId> {
        let (reply, answer) = oneshot::channel();
        let command = NetCommand::TopicPeers {
            topic: topic.to_string(),
            reply,
        };
        if self.commands.send(command).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(NetCommand::ConnectedPeers(tx))
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// A started network: the handle, the stream control for call links, the
/// addresses it listens on, and its events.
pub struct Started {
    pub handle: NetHandle,
    pub control: libp2p_stream::Control,
    pub listen_addrs: Vec<Multiaddr>,
    /// Where members send this node membership datagrams, if it has a socket.
    pub udp_addr: Option<std::net::SocketAddr>,
    pub events: mpsc::Receiver<NetEvent>,
    /// Messages of the user topics this node subscribed to.
    pub topic_deliveries: mpsc::Receiver<TopicDelivery>,
}

/// Builds the swarm, starts listening, and spawns the event loop on
/// `tasks`. Returns once every listener has its address.
pub async fn start(
    keypair: Keypair,
    config: &NodeConfig,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<Started, NetError> {
    let local_peer = keypair.public().to_peer_id();
    if let Some(named) = config.listen.iter().find(|a| join::has_host_name(a)) {
        return Err(NetError::ListenOnName(named.clone()));
    }
    let mut swarm = transport::build_swarm(keypair, config)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|source| NetError::Listen {
                addr: addr.clone(),
                source,
            })?;
    }
    let mut listen_addrs = Vec::new();
    while listen_addrs.len() < config.listen.len() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
            SwarmEvent::ListenerError { error, .. } => return Err(NetError::Listener(error)),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => return Err(NetError::Listener(error)),
            _ => {}
        }
    }
    let mut joining = Joining::new(config.join.clone());
    for addr in joining.due() {
        if let Err(e) = dial_join(&mut swarm, addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial join address");
        }
    }
    let udp = datagrams::Udp::bind(config, &listen_addrs, local_peer).await;
    let udp_addr = udp.as_ref().map(datagrams::Udp::addr);
    let control = swarm.behaviour().stream.new_control();
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
    let (topic_tx, topic_rx) = mpsc::channel(TOPIC_CAPACITY);
    let datagrams = Datagrams::start(
        control.clone(),
        &config.cluster_name,
        udp,
        event_tx.clone(),
        tasks,
        shutdown.clone(),
    )?;
    let event_loop = EventLoop {
        swarm,
        local_peer,
        user_topic_prefix: user_topic_prefix(&config.cluster_name),
        rendezvous: rendezvous_key(&config.cluster_name),
        lonely: true,
        lonely_while_connected: false,
        joining,
        has_secret: config.secret.is_some(),
        connected: HashSet::new(),
        commands: command_rx,
        events: event_tx,
        topic_deliveries: topic_tx,
    };
    tasks.spawn(event_loop.run(shutdown));
    Ok(Started {
        handle: NetHandle {
            commands: command_tx,
            datagrams,
        },
        control,
        listen_addrs,
        udp_addr,
        events: event_rx,
        topic_deliveries: topic_rx,
    })
}

/// The gossip topic names of user topics start with this.
fn user_topic_prefix(cluster: &str) -> String {
    format!("/shoal/{cluster}/topic/")
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    local_peer: PeerId,
    user_topic_prefix: String,
    /// The key this node provides in the DHT, and looks up, to meet its
    /// cluster.
    rendezvous: kad::RecordKey,
    /// Whether the node knows no member; while it does not, it looks for
    /// them every [`REJOIN_INTERVAL`].
    lonely: bool,
    /// Lonely at the last rejoin tick too, with a peer connected: the
    /// peers are no members (or let nobody in), so the DHT is asked.
    lonely_while_connected: bool,
    joining: Joining,
    /// Whether this node uses a cluster secret: handshake failures then
    /// most likely mean a peer with another secret, and the log says so.
    has_secret: bool,
    connected: HashSet<PeerId>,
    commands: mpsc::Receiver<NetCommand>,
    events: mpsc::Sender<NetEvent>,
    topic_deliveries: mpsc::Sender<TopicDelivery>,
}

impl EventLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        // `start` dialed the join addresses: at once again would cut a handshake.
        let first_rejoin = tokio::time::Instant::now() + REJOIN_INTERVAL;
        let mut rejoin = tokio::time::interval_at(first_rejoin, REJOIN_INTERVAL);
        // Not at once: a node that just joined needs no walk, and 100 nodes
        // started together, each walking the DHT as it joined, dialed each
        // other about 30,000 times (see `tell_dht`). Spread, so the walks
        // do not come together either.
        let first_walk = BOOTSTRAP_INTERVAL.mul_f64(0.1 + 0.9 * rand::random::<f64>());
        let mut bootstrap =
            tokio::time::interval_at(tokio::time::Instant::now() + first_walk, BOOTSTRAP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(command) = self.commands.recv() => self.on_command(command),
                // A member may well have no connection open: idle ones close.
                _ = rejoin.tick(), if self.lonely => {
                    if self.connected.is_empty() {
                        self.lonely_while_connected = false;
                        for addr in self.joining.due() {
                            let _ = dial_join(&mut self.swarm, addr);
                        }
                    } else if self.lonely_while_connected {
                        self.meet_cluster();
                    } else {
                        // A peer is a way into the DHT, but one that is a
                        // member lets this node in before the next tick.
                        self.lonely_while_connected = true;
                    }
                }
                Some(found) = self.joining.next(), if self.joining.is_looking_up() => {
                    for addr in self.joining.looked_up(found) {
                        if let Err(error) = dial_join(&mut self.swarm, addr.clone()) {
                            tracing::debug!(%addr, %error, "cannot dial a resolved address");
                        }
                    }
                }
                _ = bootstrap.tick(), if !self.lonely => {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    self.announce_membership();
                }
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, command: NetCommand) {
        match command {
            NetCommand::AddAddresses(peer, addrs) => {
                let store = self.swarm.behaviour_mut().peer_store.store_mut();
                for addr in addrs {
                    store.add_address(&peer, &dialable(addr, peer));
                }
            }
            NetCommand::SetLonely(lonely) => {
                self.lonely = lonely;
                self.lonely_while_connected &= lonely;
            }
            NetCommand::Dial(addr) => {
                if let Some(addr) = self.joining.dial_once(addr)
                    && let Err(e) = self.swarm.dial(addr.clone())
                {
                    tracing::warn!(%addr, error = %e, "cannot dial");
                }
            }
            NetCommand::ConnectedPeers(reply) => {
                let _ = reply.send(self.connected.iter().copied().collect());
            }
            NetCommand::Subscribe(topic) => {
                let topic = self.user_topic(&topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    tracing::warn!(%topic, error = %e, "cannot subscribe to a topic");
                }
            }
            NetCommand::Unsubscribe(topic) => {
                let topic = self.user_topic(&topic);
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            }
            NetCommand::PublishTopic { topic, data, reply } => {
                let topic = self.user_topic(&topic);
                let published = match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                    Err(gossipsub::PublishError::AllQueuesFull(peers)) => Err(format!(
                        "the send queues to all {peers} subscribed peers are full; publish more slowly"
                    )),
                    Err(e) => Err(format!("gossip refused the message: {e}")),
                };
                let _ = reply.send(published);
            }
            NetCommand::TopicPeers { topic, reply } => {
                let hash = self.user_topic(&topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(peer, _)| *peer)
                    .collect();
                let _ = reply.send(peers);
            }
        }
    }

    fn user_topic(&self, name: &str) -> gossipsub::IdentTopic {
        gossipsub::IdentTopic::new(format!("{}{name}", self.user_topic_prefix))
    }

    fn emit(&self, event: NetEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            tracing::warn!(?event, "node is behind on network events; dropped one");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                established_in,
                ..
            } if self.connected.insert(peer_id) => {
                tracing::debug!(
                    peer = %peer_id,
                    addr = %endpoint.get_remote_address(),
                    dialer = endpoint.is_dialer(),
                    ?established_in,
                    "connected"
                );
                self.emit(NetEvent::Connected(peer_id));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } if self.connected.remove(&peer_id) => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                connection_failures::outgoing(peer_id, &error, self.has_secret);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => connection_failures::incoming(&send_back_addr, &error, self.has_secret),
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    /// Hands a user topic's message to the node; dropped if it is behind.
    fn deliver_topic_message(&self, publisher: PeerId, message: gossipsub::Message) {
        let Some(topic) = message.topic.as_str().strip_prefix(&self.user_topic_prefix) else {
            return;
        };
        let delivery = TopicDelivery {
            topic: topic.to_string(),
            publisher,
            data: message.data,
        };
        if self.topic_deliveries.try_send(delivery).is_err() {
            tracing::debug!(%publisher, %topic, "node is behind on topic messages; dropped one");
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                let sender = message.source.unwrap_or(propagation_source);
                self.deliver_topic_message(sender, message);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let addrs = info.listen_addrs.into_iter();
                self.tell_dht(peer_id, addrs.map(|addr| dialable(addr, peer_id)));
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            }) if self.lonely => {
                // While the query runs, kad knows the addresses it was told.
                for peer in providers.into_iter().take(MEMBERS_TO_DIAL) {
                    self.dial_if_new(peer, Vec::new());
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.tell_dht(peer, [addr.clone()]);
                    self.dial_if_new(peer, vec![addr]);
                }
            }
            _ => {}
        }
    }
}

/// `addr` ending in `/p2p/<peer>`, as the swarm dials it and the peer store
/// records a dialed address: one address under two spellings would be
/// dialed twice at once, and the loser's handshake cut short.
pub fn dialable(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    addr.with_p2p(peer).unwrap_or_else(|addr| addr)
}
