//! Long-lived call streams, one or two per pair of nodes.
//!
//! Opening a libp2p stream costs a protocol negotiation; doing that per call
//! would cap throughput near 10k calls/s. Instead the first frame for a peer
//! opens a stream that then carries every frame in both directions: frames
//! are encoded by the sender's task, queued on a bounded channel, and the
//! stream's task writes whatever is queued in one batch.
//!
//! ```text
//!   send(peer, frame) ── encode ──► [bounded queue] ──► stream task ── write batch ──►
//!                                                         │
//!   Inboxes.calls / Inboxes.raft ◄── decode ◄─────────────┘ (reads the same stream)
//! ```
//!
//! What arrives is sorted by protocol onto two bounded inboxes: Raft traffic
//! for the consensus module, everything else for the calls. Frames are
//! routed by content, not by stream: a result may travel on a stream the
//! other side opened. When the last stream to a peer ends, the calls inbox
//! gets [`Inbound::LinkLost`] after every frame that stream carried, so the
//! calls that peer held are placed again.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use shoal_proto::wire::{CALL_PROTOCOL, frame_len};
use shoal_proto::{Frame, FrameError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Encoded frames waiting for one stream. Bounds memory per peer; a full
/// queue makes senders wait, which is the backpressure we want.
const STREAM_QUEUE_FRAMES: usize = 4096;
/// A write batch stops growing here so one slow peer cannot hold a huge buffer.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Opening a stream includes dialing if needed; past this the peer counts
/// as unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream keeps its body buffer between frames up to this size; one
/// large frame does not pin megabytes for the stream's whole life.
const MAX_KEPT_BODY_BYTES: usize = 1024 * 1024;
/// Frames waiting for the calls' dispatcher. Full, it makes the streams'
/// readers wait, which slows the peers that send: backpressure, not loss.
const CALLS_INBOX: usize = 8192;
/// Raft frames waiting for the consensus module; Raft retries what times out.
const RAFT_INBOX: usize = 1024;

/// What the calls' dispatcher receives.
#[derive(Debug)]
pub enum Inbound {
    Frame(PeerId, Frame),
    /// The last stream to the peer closed or failed.
    LinkLost(PeerId),
}

/// The receiving ends of the links, by protocol.
pub struct Inboxes {
    /// Calls, results, cancels, steals, and lost links.
    pub calls: mpsc::Receiver<Inbound>,
    /// `RaftRequest` and `RaftResponse` frames.
    pub raft: mpsc::Receiver<(PeerId, Frame)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("cannot open a call stream to {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("the call stream to {0} closed")]
    Closed(PeerId),
    #[error("the call protocol is already registered with the swarm")]
    AlreadyAccepting,
    #[error("reading a call stream: {0}")]
    Io(#[from] std::io::Error),
}

struct StreamEntry {
    id: u64,
    queue: mpsc::Sender<Vec<u8>>,
}

/// All call streams of one node. Cheap to clone; every clone is the same
/// set of streams.
#[derive(Clone)]
pub struct Links(Arc<LinksInner>);

struct LinksInner {
    control: Mutex<libp2p_stream::Control>,
    streams: Mutex<HashMap<PeerId, Vec<StreamEntry>>>,
    /// One opener at a time per peer, so a burst of first calls opens one
    /// stream, not hundreds.
    opening: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    next_stream_id: AtomicU64,
    to_calls: mpsc::Sender<Inbound>,
    to_raft: mpsc::Sender<(PeerId, Frame)>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(CALL_PROTOCOL)
}

impl Links {
    /// Starts accepting inbound call streams. What arrives waits in the
    /// returned inboxes until their owners read them.
    pub fn start(
        control: libp2p_stream::Control,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(Links, Inboxes), LinkError> {
        let mut incoming = control
            .clone()
            .accept(protocol())
            .map_err(|_| LinkError::AlreadyAccepting)?;
        let (to_calls, calls) = mpsc::channel(CALLS_INBOX);
        let (to_raft, raft) = mpsc::channel(RAFT_INBOX);
        let links = Links(Arc::new(LinksInner {
            control: Mutex::new(control),
            streams: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            next_stream_id: AtomicU64::new(0),
            to_calls,
            to_raft,
            tasks,
            shutdown,
        }));
        let acceptor = links.clone();
        links.0.tasks.spawn(async move {
            let shutdown = acceptor.0.shutdown.clone();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = incoming.next() => match next {
                        Some((peer, stream)) => { acceptor.attach(peer, stream); }
                        None => break,
                    },
                }
            }
        });
        Ok((links, Inboxes { calls, raft }))
    }

    /// Sends `frame` to `peer`, opening a stream first if there is none.
    pub async fn send(&self, peer: PeerId, frame: &Frame) -> Result<(), LinkError> {
        let mut bytes = Vec::new();
        frame.encode_into(&mut bytes)?;
        let queue = match self.queue_for(&peer) {
            Some(queue) => queue,
            // Boxed: opening is rare and its future is large; every caller's
            // own future stays small without it.
            None => Box::pin(self.open(peer)).await?,
        };
        queue.send(bytes).await.map_err(|_| LinkError::Closed(peer))
    }

    /// Sends without waiting, from code that must not await; a task does
    /// the waiting.
    pub fn send_soon(&self, peer: PeerId, frame: Frame) {
        let links = self.clone();
        self.0.tasks.spawn(async move {
            if let Err(e) = links.send(peer, &frame).await {
                tracing::debug!(%peer, error = %e, "frame not delivered");
            }
        });
    }

    fn queue_for(&self, peer: &PeerId) -> Option<mpsc::Sender<Vec<u8>>> {
        let streams = self.0.streams.lock().expect("streams lock");
        streams
            .get(peer)
            .and_then(|entries| entries.first())
            .map(|entry| entry.queue.clone())
    }

    async fn open(&self, peer: PeerId) -> Result<mpsc::Sender<Vec<u8>>, LinkError> {
        let gate = {
            let mut opening = self.0.opening.lock().expect("opening lock");
            Arc::clone(opening.entry(peer).or_default())
        };
        let _turn = gate.lock().await;
        if let Some(queue) = self.queue_for(&peer) {
            return Ok(queue);
        }
        let mut control = self.0.control.lock().expect("control lock").clone();
        let opening = tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol()));
        let opened = tokio::select! {
            _ = self.0.shutdown.cancelled() => return Err(LinkError::Closed(peer)),
            opened = opening => opened,
        };
        let stream = opened
            .map_err(|_| LinkError::Open {
                peer,
                reason: format!("no answer within {OPEN_TIMEOUT:?}"),
            })?
            .map_err(|e| LinkError::Open {
                peer,
                reason: e.to_string(),
            })?;
        Ok(self.attach(peer, stream))
    }

    /// Registers a stream and spawns the task that reads and writes it.
    fn attach(&self, peer: PeerId, stream: libp2p::Stream) -> mpsc::Sender<Vec<u8>> {
        let id = self.0.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let (queue, outgoing) = mpsc::channel(STREAM_QUEUE_FRAMES);
        self.0
            .streams
            .lock()
            .expect("streams lock")
            .entry(peer)
            .or_default()
            .push(StreamEntry {
                id,
                queue: queue.clone(),
            });
        let links = self.clone();
        self.0.tasks.spawn(async move {
            let (reader, writer) = stream.split();
            let shutdown = links.0.shutdown.clone();
            let result = tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                r = links.read_frames(reader, peer) => r,
                r = write_frames(writer, outgoing) => r,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "call stream ended");
            }
            if links.detach(peer, id) && !shutdown.is_cancelled() {
                let _ = links.0.to_calls.send(Inbound::LinkLost(peer)).await;
            }
        });
        queue
    }

    /// Forgets a stream; returns whether it was the last one to `peer`.
    fn detach(&self, peer: PeerId, id: u64) -> bool {
        let mut streams = self.0.streams.lock().expect("streams lock");
        let Some(entries) = streams.get_mut(&peer) else {
            return false;
        };
        entries.retain(|entry| entry.id != id);
        let empty = entries.is_empty();
        if empty {
            streams.remove(&peer);
        }
        empty
    }

    /// Reads frames until the stream ends and sorts them onto the inboxes.
    async fn read_frames(
        &self,
        reader: futures::io::ReadHalf<libp2p::Stream>,
        peer: PeerId,
    ) -> Result<(), LinkError> {
        let mut reader = futures::io::BufReader::with_capacity(64 * 1024, reader);
        let mut body = Vec::new();
        loop {
            let mut prefix = [0u8; 4];
            match reader.read_exact(&mut prefix).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            // An oversized or malformed frame is a protocol violation: the stream
            // is closed (and its calls re-dispatched) rather than skipped.
            let len = frame_len(prefix)?;
            read_body(&mut reader, &mut body, len).await?;
            let frame = Frame::decode(&body)?;
            if body.capacity() > MAX_KEPT_BODY_BYTES {
                body = Vec::new();
            }
            let delivered = match frame {
                Frame::RaftRequest { .. } | Frame::RaftResponse { .. } => {
                    self.0.to_raft.send((peer, frame)).await.is_ok()
                }
                frame => self
                    .0
                    .to_calls
                    .send(Inbound::Frame(peer, frame))
                    .await
                    .is_ok(),
            };
            if !delivered {
                return Ok(()); // the node is stopping
            }
        }
    }
}

/// Reads a frame body of `len` bytes into `body`, which grows only as bytes
/// arrive: the length prefix is the peer's promise, not a reason to allocate,
/// so a peer that promises the largest frame and sends a little costs a
/// little on each stream it holds open.
async fn read_body(
    reader: &mut futures::io::BufReader<futures::io::ReadHalf<libp2p::Stream>>,
    body: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<()> {
    body.clear();
    // `read_to_end` grows the buffer as bytes come, never to `len` at once.
    (&mut *reader).take(len as u64).read_to_end(body).await?;
    if body.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

async fn write_frames(
    mut writer: futures::io::WriteHalf<libp2p::Stream>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) -> Result<(), LinkError> {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = outgoing.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < MAX_BATCH_BYTES {
            match outgoing.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        writer.write_all(&batch).await?;
        writer.flush().await?;
        batch.clear();
        if batch.capacity() > MAX_BATCH_BYTES * 2 {
            batch.shrink_to(64 * 1024);
        }
    }
    // Every sender is gone: the node dropped this stream.
    let _ = writer.close().await;
    Ok(())
}
