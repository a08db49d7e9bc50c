//! Small, loss-tolerant messages between members: SWIM packets, load
//! reports and a newcomer's copy of the member list.
//!
//! A message goes as one UDP datagram, sealed with the cluster's key (see
//! [`sealed`](super::sealed)), when this node knows the member's UDP
//! address and the message fits in one; membership messages are small, so
//! that is nearly always. Probing a random member each period therefore
//! opens no connection, and a node holds TCP connections only to the
//! members it calls or replicates to. A member's UDP address comes from its
//! membership identity, and from the source of each packet it sends.
//!
//! Anything else — a member list, a message to a node known only by its
//! peer id (a join address) or to a member without UDP — goes as one message
//! per stream on `/shoal/<cluster>/members/1`, which libp2p dials when no
//! connection is open. The protocol name holds the cluster's name: a node
//! of another cluster does not speak it, and never becomes a member.
//!
//! Sending never waits: a message that finds every sending slot busy, or
//! the socket's buffer full, is dropped, as a lost packet would be, and
//! SWIM and the next load report make up for it.

use super::NetEvent;
use super::sealed::{OVERHEAD_BYTES, Sealer};
use crate::config::NodeConfig;
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A load report lists function names, so it may be much larger than a
/// SWIM packet; anything larger is not read.
const MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// Messages being sent at once; more are dropped.
const MAX_SENDING: usize = 256;
/// Messages being read at once; further streams are refused.
const MAX_RECEIVING: usize = 256;
/// Opening, writing or reading one message takes at most this long.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest datagram sent: one Ethernet frame, so no datagram is
/// fragmented on its way (a lost fragment would lose the whole of it).
const MAX_DATAGRAM_BYTES: usize = 1400;
/// The largest message body sent as a datagram; larger ones take a stream.
pub const MAX_DATAGRAM_BODY: usize = MAX_DATAGRAM_BYTES - OVERHEAD_BYTES;
/// Members whose UDP address a node remembers; far more than it talks to.
const MAX_UDP_ADDRS: usize = 100_000;

/// A failed dial is tried once more after this long.
const REDIAL_AFTER: Duration = Duration::from_millis(100);

const SWIM: u8 = 1;
const HEARTBEAT: u8 = 2;
const STATE_REQUEST: u8 = 3;
const STATE: u8 = 4;
const HEARTBEAT_REQUEST: u8 = 5;

/// Sends membership messages; cheap to clone.
#[derive(Clone)]
pub struct Datagrams {
    control: libp2p_stream::Control,
    protocol: StreamProtocol,
    sending: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    udp: Option<Udp>,
}

/// This node's membership socket, and where members' sockets are.
#[derive(Clone)]
pub struct Udp {
    socket: Arc<UdpSocket>,
    /// Where members reach the socket.
    addr: SocketAddr,
    sealer: Arc<Sealer>,
    me: PeerId,
    addrs: Arc<Mutex<HashMap<PeerId, SocketAddr>>>,
}

impl Udp {
    /// Binds this node's membership socket beside its first TCP listener
    /// (`listening`, as bound): the same address and port if free
    /// (operators open one port number for both), else another port, which
    /// the node's identity announces. `None` if the node listens on no IP
    /// address or no socket could be bound; members then reach it on
    /// streams.
    pub async fn bind(config: &NodeConfig, listening: &[Multiaddr], me: PeerId) -> Option<Udp> {
        let tcp = listening.iter().find_map(ip_and_tcp)?;
        let bind_ip = config
            .listen
            .iter()
            .find_map(ip_and_tcp)
            .map_or(tcp.ip(), |a| a.ip());
        let socket = match UdpSocket::bind((bind_ip, tcp.port())).await {
            Ok(socket) => socket,
            Err(_) => match UdpSocket::bind((bind_ip, 0)).await {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::warn!(%bind_ip, %error, "no membership socket; members will use streams");
                    return None;
                }
            },
        };
        let port = socket.local_addr().ok()?.port();
        // Bound to every interface: announce a routable one.
        let reach_ip = if bind_ip.is_unspecified() {
            listening
                .iter()
                .filter_map(ip_and_tcp)
                .map(|a| a.ip())
                .filter(|ip| ip.is_ipv4() == bind_ip.is_ipv4())
                .min_by_key(|ip| ip.is_loopback())
                .unwrap_or(tcp.ip())
        } else {
            bind_ip
        };
        Some(Udp {
            socket: Arc::new(socket),
            addr: SocketAddr::new(reach_ip, port),
            sealer: Arc::new(Sealer::new(&config.cluster_name, config.secret.as_ref())),
            me,
            addrs: Arc::default(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.addrs
            .lock()
            .expect("udp addrs lock")
            .get(peer)
            .copied()
    }

    fn learn(&self, peer: PeerId, addr: SocketAddr) {
        let mut addrs = self.addrs.lock().expect("udp addrs lock");
        if addrs.len() < MAX_UDP_ADDRS || addrs.contains_key(&peer) {
            addrs.insert(peer, addr);
        }
    }

    /// Sends at once or not at all: a full socket buffer loses the
    /// message, as the network might.
    fn send(&self, to: SocketAddr, kind: u8, body: &[u8]) {
        let packet = self.sealer.seal(&self.me, kind, body);
        if let Err(error) = self.socket.try_send_to(&packet, to) {
            tracing::trace!(%to, %error, "membership datagram not sent");
        }
    }
}

/// The IP address and port of `addr` if it is `/ip4|ip6/<ip>/tcp/<port>`,
/// or `/udp/<port>` if `udp`.
fn socket_addr(addr: &Multiaddr, udp: bool) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (parts.next()?, udp) {
        (Protocol::Tcp(port), false) | (Protocol::Udp(port), true) => {
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

fn ip_and_tcp(addr: &Multiaddr) -> Option<SocketAddr> {
    socket_addr(addr, false)
}

/// Whether `addr` is a UDP address (`/ip4/…/udp/…` or `/ip6/…/udp/…`).
pub fn is_udp(addr: &Multiaddr) -> bool {
    socket_addr(addr, true).is_some()
}

/// The UDP address among `addrs`.
pub fn udp_addr(addrs: &[Multiaddr]) -> Option<SocketAddr> {
    addrs.iter().find_map(|addr| socket_addr(addr, true))
}

/// `addr` as a multiaddr, for a membership identity.
pub fn udp_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Udp(addr.port()))
}

/// The cluster's membership protocol name.
pub fn protocol(cluster: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/shoal/{cluster}/members/1"))
        .expect("the name starts with a slash")
}

impl Datagrams {
    /// Starts receiving, on streams and on `udp` if there is one (messages
    /// arrive as [`NetEvent`]s on `events`), and returns the sending side.
    pub fn start(
        control: libp2p_stream::Control,
        cluster: &str,
        udp: Option<Udp>,
        events: mpsc::Sender<NetEvent>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Datagrams, libp2p_stream::AlreadyRegistered> {
        let protocol = protocol(cluster);
        let incoming = control.clone().accept(protocol.clone())?;
        tasks.spawn(receive(
            incoming,
            events.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
        if let Some(udp) = &udp {
            tasks.spawn(receive_datagrams(udp.clone(), events, shutdown.clone()));
        }
        Ok(Datagrams {
            control,
            protocol,
            sending: Arc::new(Semaphore::new(MAX_SENDING)),
            tasks: tasks.clone(),
            shutdown,
            udp,
        })
    }

    /// Remembers the UDP address among a member's `addrs`, if it has one.
    pub fn learn(&self, peer: PeerId, addrs: &[Multiaddr]) {
        if let (Some(udp), Some(addr)) = (&self.udp, udp_addr(addrs)) {
            udp.learn(peer, addr);
        }
    }

    /// Sends a SWIM packet to `peer`.
    pub fn send_swim(&self, peer: PeerId, packet: Bytes) {
        self.send(peer, SWIM, packet);
    }

    /// Sends this node's encoded heartbeat to `peer`.
    pub fn send_heartbeat(&self, peer: PeerId, heartbeat: Bytes) {
        self.send(peer, HEARTBEAT, heartbeat);
    }

    /// Asks `peer` for its heartbeat (its first one did not arrive).
    pub fn request_heartbeat(&self, peer: PeerId) {
        self.send(peer, HEARTBEAT_REQUEST, Bytes::new());
    }

    /// Asks `peer` for every member it knows: this node just joined (no
    /// digest), or their views may differ (this node's digest).
    pub fn request_state(&self, peer: PeerId, digest: Option<u64>) {
        let body = digest.map_or_else(Bytes::new, |d| Bytes::copy_from_slice(&d.to_le_bytes()));
        self.send(peer, STATE_REQUEST, body);
    }

    /// Sends a newcomer the member list.
    pub fn send_state(&self, peer: PeerId, state: Bytes) {
        self.send(peer, STATE, state);
    }

    fn send(&self, peer: PeerId, kind: u8, body: Bytes) {
        if let Some(udp) = &self.udp
            && kind != STATE
            && body.len() <= MAX_DATAGRAM_BODY
            && let Some(addr) = udp.addr_of(&peer)
        {
            udp.send(addr, kind, &body);
            return;
        }
        let Ok(permit) = Arc::clone(&self.sending).try_acquire_owned() else {
            tracing::debug!(%peer, "membership messages are backed up; dropped one");
            return;
        };
        let mut control = self.control.clone();
        let protocol = self.protocol.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            let sending = async {
                let mut stream = open(&mut control, peer, protocol).await?;
                stream.write_all(&[kind]).await?;
                stream.write_all(&body).await?;
                stream.close().await
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                sent = tokio::time::timeout(MESSAGE_TIMEOUT, sending) => {
                    if let Ok(Err(error)) = sent {
                        tracing::trace!(%peer, %error, "membership message not sent");
                    }
                }
            }
        });
    }
}

/// Opens a stream to `peer`, trying once more shortly after a failed dial:
/// a member's addresses reach the swarm moments after membership learns of
/// it, and the first message to it may race them.
async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> std::io::Result<libp2p::Stream> {
    match control.open_stream(peer, protocol.clone()).await {
        Ok(stream) => Ok(stream),
        Err(libp2p_stream::OpenStreamError::Io(_)) => {
            tokio::time::sleep(REDIAL_AFTER).await;
            control
                .open_stream(peer, protocol)
                .await
                .map_err(std::io::Error::other)
        }
        Err(unsupported) => Err(std::io::Error::other(unsupported)),
    }
}

async fn receive(
    mut incoming: libp2p_stream::IncomingStreams,
    events: mpsc::Sender<NetEvent>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let receiving = Arc::new(Semaphore::new(MAX_RECEIVING));
    loop {
        let (peer, stream) = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = incoming.next() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let Ok(permit) = Arc::clone(&receiving).try_acquire_owned() else {
            continue;
        };
        let events = events.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut body = Vec::new();
            let mut limited = stream.take(MAX_MESSAGE_BYTES as u64 + 1);
            let reading = limited.read_to_end(&mut body);
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = tokio::time::timeout(MESSAGE_TIMEOUT, reading) => read,
            };
            if !matches!(read, Ok(Ok(_))) || body.len() > MAX_MESSAGE_BYTES {
                return;
            }
            let Some((&kind, rest)) = body.split_first() else {
                return;
            };
            if let Some(event) = decode(peer, kind, rest.to_vec()) {
                // A full queue drops the message, as the network might.
                let _ = events.try_send(event);
            }
        });
    }
}

/// Receives sealed datagrams until `shutdown`, learning each sender's
/// address from its packets.
async fn receive_datagrams(udp: Udp, events: mpsc::Sender<NetEvent>, shutdown: CancellationToken) {
    let mut buffer = vec![0; u16::MAX as usize];
    loop {
        let (len, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = udp.socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    // An ICMP error from an earlier send, on some systems.
                    tracing::debug!(%error, "membership socket");
                    tokio::time::sleep(REDIAL_AFTER).await;
                    continue;
                }
            },
        };
        let Some(opened) = udp.sealer.open(&buffer[..len]) else {
            tracing::trace!(%from, "dropped a datagram that is not this cluster's");
            continue;
        };
        udp.learn(opened.from, from);
        if let Some(event) = decode(opened.from, opened.kind, opened.body) {
            let _ = events.try_send(event);
        }
    }
}

fn decode(peer: PeerId, kind: u8, rest: Vec<u8>) -> Option<NetEvent> {
    match kind {
        SWIM => Some(NetEvent::Swim(peer, Bytes::from(rest))),
        STATE_REQUEST => {
            let digest = <[u8; 8]>::try_from(rest.as_slice()).ok();
            Some(NetEvent::StateRequest(peer, digest.map(u64::from_le_bytes)))
        }
        STATE => Some(NetEvent::State(peer, Bytes::from(rest))),
        HEARTBEAT_REQUEST => Some(NetEvent::HeartbeatRequest(peer)),
        HEARTBEAT => Some(NetEvent::Heartbeat(peer, Bytes::from(rest))),
        _ => None,
    }
}
