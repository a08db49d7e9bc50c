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
//!   FrameHandler::on_frame(peer, frame) ◄── decode ◄──────┘ (reads the same stream)
//! ```
//!
//! Frames are routed by content, not by stream: a result may travel on a
//! stream the other side opened. When the last stream to a peer ends, the
//! handler hears `on_link_lost` and re-dispatches what that peer held.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use shoal_proto::wire::{CALL_PROTOCOL, frame_len};
use shoal_proto::{Frame, FrameError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// Receives what arrives on call streams.
pub trait FrameHandler: Send + Sync + 'static {
    fn on_frame(&self, peer: PeerId, frame: Frame);
    /// The last stream to `peer` closed or failed.
    fn on_link_lost(&self, peer: PeerId);
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("cannot open a call stream to {peer}: {reason}")]
    Open { peer: PeerId, reason: String },
    #[error("the call stream to {0} closed")]
    Closed(PeerId),
}

struct StreamEntry {
    id: u64,
    queue: mpsc::Sender<Vec<u8>>,
}

/// All call streams of one node.
pub struct Links {
    control: Mutex<libp2p_stream::Control>,
    streams: Mutex<HashMap<PeerId, Vec<StreamEntry>>>,
    /// One opener at a time per peer, so a burst of first calls opens one
    /// stream, not hundreds.
    opening: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    handler: OnceLock<Weak<dyn FrameHandler>>,
    next_stream_id: AtomicU64,
    shutdown: CancellationToken,
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(CALL_PROTOCOL)
}

impl Links {
    pub fn new(control: libp2p_stream::Control, shutdown: CancellationToken) -> Arc<Links> {
        Arc::new(Links {
            control: Mutex::new(control),
            streams: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            handler: OnceLock::new(),
            next_stream_id: AtomicU64::new(0),
            shutdown,
        })
    }

    /// Sets who receives frames, and starts accepting inbound streams.
    pub fn start(self: &Arc<Self>, handler: Weak<dyn FrameHandler>) -> anyhow::Result<()> {
        let _ = self.handler.set(handler);
        let mut incoming = self
            .control
            .lock()
            .expect("control lock")
            .accept(protocol())
            .map_err(|e| anyhow::anyhow!("call protocol already registered: {e:?}"))?;
        let links = Arc::clone(self);
        tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                tokio::select! {
                    _ = links.shutdown.cancelled() => break,
                    next = incoming.next() => match next {
                        Some((peer, stream)) => { links.attach(peer, stream); }
                        None => break,
                    },
                }
            }
        });
        Ok(())
    }

    /// Sends `frame` to `peer`, opening a stream first if there is none.
    pub async fn send(self: &Arc<Self>, peer: PeerId, frame: &Frame) -> Result<(), LinkError> {
        let mut bytes = Vec::new();
        frame.encode_into(&mut bytes)?;
        let queue = match self.queue_for(&peer) {
            Some(queue) => queue,
            None => self.open(peer).await?,
        };
        queue.send(bytes).await.map_err(|_| LinkError::Closed(peer))
    }

    /// Sends without waiting, from code that must not await; a task does
    /// the waiting.
    pub fn send_soon(self: &Arc<Self>, peer: PeerId, frame: Frame) {
        let links = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = links.send(peer, &frame).await {
                tracing::debug!(%peer, error = %e, "frame not delivered");
            }
        });
    }

    fn queue_for(&self, peer: &PeerId) -> Option<mpsc::Sender<Vec<u8>>> {
        let streams = self.streams.lock().expect("streams lock");
        streams
            .get(peer)
            .and_then(|entries| entries.first())
            .map(|entry| entry.queue.clone())
    }

    async fn open(self: &Arc<Self>, peer: PeerId) -> Result<mpsc::Sender<Vec<u8>>, LinkError> {
        let gate = {
            let mut opening = self.opening.lock().expect("opening lock");
            Arc::clone(opening.entry(peer).or_default())
        };
        let _turn = gate.lock().await;
        if let Some(queue) = self.queue_for(&peer) {
            return Ok(queue);
        }
        let mut control = self.control.lock().expect("control lock").clone();
        let stream = tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol()))
            .await
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
    fn attach(self: &Arc<Self>, peer: PeerId, stream: libp2p::Stream) -> mpsc::Sender<Vec<u8>> {
        let id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let (queue, outgoing) = mpsc::channel(STREAM_QUEUE_FRAMES);
        self.streams
            .lock()
            .expect("streams lock")
            .entry(peer)
            .or_default()
            .push(StreamEntry {
                id,
                queue: queue.clone(),
            });
        let links = Arc::clone(self);
        let handler = self.handler.get().cloned();
        tokio::spawn(async move {
            let (reader, writer) = stream.split();
            let result = tokio::select! {
                _ = links.shutdown.cancelled() => Ok(()),
                r = read_frames(reader, peer, handler) => r,
                r = write_frames(writer, outgoing) => r,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "call stream ended");
            }
            links.detach(peer, id);
        });
        queue
    }

    fn detach(&self, peer: PeerId, id: u64) {
        let last_one = {
            let mut streams = self.streams.lock().expect("streams lock");
            let Some(entries) = streams.get_mut(&peer) else {
                return;
            };
            entries.retain(|entry| entry.id != id);
            let empty = entries.is_empty();
            if empty {
                streams.remove(&peer);
            }
            empty
        };
        if last_one
            && !self.shutdown.is_cancelled()
            && let Some(handler) = self.handler.get().and_then(Weak::upgrade)
        {
            handler.on_link_lost(peer);
        }
    }
}

async fn read_frames(
    reader: futures::io::ReadHalf<libp2p::Stream>,
    peer: PeerId,
    handler: Option<Weak<dyn FrameHandler>>,
) -> anyhow::Result<()> {
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
        let Some(handler) = handler.as_ref().and_then(Weak::upgrade) else {
            return Ok(());
        };
        handler.on_frame(peer, frame);
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
) -> anyhow::Result<()> {
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
