//! Small, loss-tolerant messages between members: SWIM packets, load
//! reports and a newcomer's copy of the member list, one message per
//! stream on `/shoal/<cluster>/members/1`.
//!
//! A stream costs one yamux frame to open on a connection that exists, and
//! libp2p dials the peer (from the addresses its membership identity
//! carries) when none does, so a node talks to any member without holding a
//! connection to every one. The protocol name holds the cluster's name: a
//! node of another cluster does not speak it, and never becomes a member.
//!
//! Sending never waits: a message that finds every sending slot busy is
//! dropped, as a lost packet would be, and SWIM and the next load report
//! make up for it.

use super::NetEvent;
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use shoal_proto::Heartbeat;
use std::sync::Arc;
use std::time::Duration;
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
}

/// The cluster's membership protocol name.
pub fn protocol(cluster: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/shoal/{cluster}/members/1"))
        .expect("the name starts with a slash")
}

impl Datagrams {
    /// Starts receiving (messages arrive as [`NetEvent`]s on `events`) and
    /// returns the sending side.
    pub fn start(
        control: libp2p_stream::Control,
        cluster: &str,
        events: mpsc::Sender<NetEvent>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Datagrams, libp2p_stream::AlreadyRegistered> {
        let protocol = protocol(cluster);
        let incoming = control.clone().accept(protocol.clone())?;
        tasks.spawn(receive(incoming, events, tasks.clone(), shutdown.clone()));
        Ok(Datagrams {
            control,
            protocol,
            sending: Arc::new(Semaphore::new(MAX_SENDING)),
            tasks: tasks.clone(),
            shutdown,
        })
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
            if let Some(event) = decode(peer, body) {
                // A full queue drops the message, as the network might.
                let _ = events.try_send(event);
            }
        });
    }
}

fn decode(peer: PeerId, mut body: Vec<u8>) -> Option<NetEvent> {
    let kind = *body.first()?;
    let rest = body.split_off(1);
    match kind {
        SWIM => Some(NetEvent::Swim(peer, Bytes::from(rest))),
        STATE_REQUEST => {
            let digest = <[u8; 8]>::try_from(rest.as_slice()).ok();
            Some(NetEvent::StateRequest(peer, digest.map(u64::from_le_bytes)))
        }
        STATE => Some(NetEvent::State(peer, Bytes::from(rest))),
        HEARTBEAT_REQUEST => Some(NetEvent::HeartbeatRequest(peer)),
        HEARTBEAT => match Heartbeat::decode(&rest) {
            Ok(heartbeat) => Some(NetEvent::Heartbeat(peer, Box::new(heartbeat))),
            Err(error) => {
                tracing::debug!(%peer, %error, "ignored an undecodable heartbeat");
                None
            }
        },
        _ => None,
    }
}
