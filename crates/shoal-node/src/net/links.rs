//! Long-lived call streams, one or two per pair of nodes.
//!
//! Opening a libp2p stream costs a protocol negotiation; doing that per call
//! would cap throughput near 10k calls/s. Instead the first frame for a peer
//! opens a stream that then carries every frame in both directions: frames
//! are encoded by the sender's task, queued on a bounded channel, and the
//! stream's task writes whatever is queued in one batch.
//!
//! ```text
//!   Links::send(peer, frame) ── encode ──► [bounded queue] ──► stream task ── write batch ──►
//!        │ no stream yet?                                         │
//!        └──► LinkDriver: open one (one opener per peer)          │ reads the same stream
//!                                                                 ▼
//!               call frames ──► FrameHandler::on_frame (on the reader, no hop)
//!               Raft frames ──► Raft inbox (bounded)
//! ```
//!
//! Two halves, so nothing holds itself: [`Links`] is what senders hold (the
//! table of open streams); the [`LinkDriver`] task owns the stream control
//! and the handler, accepts streams, opens them on request, and gives every
//! stream's reader the handler. Frames are routed by content, not by
//! stream: a result may travel on a stream the other side opened. When a
//! stream to a peer breaks, the handler hears
//! [`on_link_lost`](FrameHandler::on_link_lost) after every frame that
//! stream carried.
//!
//! A stream with no frame either way for the link's idle time is closed
//! cleanly, so that a node does not hold a stream (and with it a
//! connection) to every peer it ever called: it leaves the table, says
//! [`Frame::Bye`], and reads on until the other side has closed too. A
//! stream that ends after a Bye either way is no loss; one that ends
//! without one is, even when another stream to the peer remains.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use shoal_proto::wire::{CALL_PROTOCOL, frame_len};
use shoal_proto::{Frame, FrameError};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod driver;
pub use driver::LinkDriver;
use driver::OPEN_REQUESTS;

/// Encoded frames (or groups of them) waiting for one stream. Bounds
/// memory per peer; a full queue makes senders wait, which is the
/// backpressure we want.
const STREAM_QUEUE_FRAMES: usize = 4096;
/// A write batch stops growing here so one slow peer cannot hold a huge buffer.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Frames sent together share one queue entry up to about this size.
const GROUP_BYTES: usize = 64 * 1024;
/// A stream keeps its body buffer between frames up to this size; one
/// large frame does not pin megabytes for the stream's whole life.
const MAX_KEPT_BODY_BYTES: usize = 1024 * 1024;
/// Raft frames waiting for the consensus module. Full, it makes the
/// streams' readers wait: backpressure, not loss.
const RAFT_INBOX: usize = 1024;
/// After a Bye, how long a stream waits for the other side to close.
const LINGER: Duration = Duration::from_secs(5);

/// Receives the call frames that arrive on any stream. It is called on the
/// stream's reader task, so it must not block: take a lock for a moment,
/// spawn whatever has to wait.
pub trait FrameHandler: Send + Sync + 'static {
    fn on_frame(&self, peer: PeerId, frame: Frame);
    /// A stream to `peer` ended without a clean Bye: frames on it may be
    /// lost.
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
    #[error("the call protocol is already registered with the swarm")]
    AlreadyAccepting,
    #[error("reading a call stream: {0}")]
    Io(#[from] std::io::Error),
}

type Queue = mpsc::Sender<Vec<u8>>;
/// Raft frames as they arrive: the sender and the frame.
pub type RaftInbox = mpsc::Receiver<(PeerId, Frame)>;
type OpenReply = oneshot::Sender<Result<Queue, String>>;

struct StreamEntry {
    id: u64,
    queue: Queue,
}

/// The call streams of one node, as senders see them. Cheap to clone;
/// every clone is the same set of streams.
#[derive(Clone)]
pub struct Links(Arc<Shared>);

struct Shared {
    /// Open streams by peer; written by the driver (attach) and the
    /// streams' own tasks (detach).
    streams: Mutex<HashMap<PeerId, Vec<StreamEntry>>>,
    /// Asks the driver to open a stream.
    open_requests: mpsc::Sender<(PeerId, OpenReply)>,
    next_stream_id: AtomicU64,
    to_raft: mpsc::Sender<(PeerId, Frame)>,
    /// A stream with no frame either way for this long is closed.
    idle: Duration,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What a stream's reader, writer and idle watch share.
struct StreamLife {
    /// When a frame last went either way (ms since the epoch).
    last_frame_ms: AtomicU64,
    /// A Bye went one way or the other: the end is no loss.
    said_bye: AtomicBool,
    /// The other side said Bye.
    heard_bye: tokio::sync::Notify,
}

impl StreamLife {
    fn touch(&self) {
        self.last_frame_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        Duration::from_millis(crate::clock::now_ms().saturating_sub(last))
    }
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(CALL_PROTOCOL)
}

impl Links {
    /// The links, the driver that must run for streams to open and be
    /// read, and the inbox of Raft frames.
    pub fn new(
        control: libp2p_stream::Control,
        idle: Duration,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(Links, LinkDriver, RaftInbox), LinkError> {
        let incoming = control
            .clone()
            .accept(protocol())
            .map_err(|_| LinkError::AlreadyAccepting)?;
        let (open_requests, requests) = mpsc::channel(OPEN_REQUESTS);
        let (to_raft, raft) = mpsc::channel(RAFT_INBOX);
        let links = Links(Arc::new(Shared {
            streams: Mutex::new(HashMap::new()),
            open_requests,
            next_stream_id: AtomicU64::new(0),
            to_raft,
            idle,
            tasks,
            shutdown,
        }));
        let driver = LinkDriver::new(links.clone(), control, incoming, requests);
        Ok((links, driver, raft))
    }

    /// Sends `frame` to `peer`, opening a stream first if there is none.
    pub async fn send(&self, peer: PeerId, frame: &Frame) -> Result<(), LinkError> {
        let mut bytes = Vec::new();
        frame.encode_into(&mut bytes)?;
        let queue = self.queue_or_open(peer).await?;
        queue.send(bytes).await.map_err(|_| LinkError::Closed(peer))
    }

    /// Sends `frames` to `peer` in order, queued as one write (or a few,
    /// past `GROUP_BYTES`): a fan-out's calls to one peer leave in one
    /// packet and wake it once, where one send each cost a system call and
    /// a wake-up per call on both sides.
    pub async fn send_all(&self, peer: PeerId, frames: &[Frame]) -> Result<(), LinkError> {
        let mut groups = vec![Vec::new()];
        for frame in frames {
            if groups
                .last()
                .is_some_and(|group| group.len() >= GROUP_BYTES)
            {
                groups.push(Vec::new());
            }
            frame.encode_into(groups.last_mut().expect("a group at least"))?;
        }
        let queue = self.queue_or_open(peer).await?;
        for bytes in groups.into_iter().filter(|group| !group.is_empty()) {
            queue
                .send(bytes)
                .await
                .map_err(|_| LinkError::Closed(peer))?;
        }
        Ok(())
    }

    /// The queue of a stream to `peer`, opened first if there is none.
    async fn queue_or_open(&self, peer: PeerId) -> Result<Queue, LinkError> {
        match self.queue_for(&peer) {
            Some(queue) => Ok(queue),
            // Boxed: opening is rare, and every caller's own future stays
            // small without it.
            None => Box::pin(self.open(peer)).await,
        }
    }

    /// Whether the node is stopping.
    pub fn is_stopping(&self) -> bool {
        self.0.shutdown.is_cancelled()
    }

    /// Completes once the node stops.
    pub async fn stopped(&self) {
        self.0.shutdown.cancelled().await
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

    fn queue_for(&self, peer: &PeerId) -> Option<Queue> {
        let streams = self.0.streams.lock().expect("streams lock");
        streams
            .get(peer)
            .and_then(|entries| entries.first())
            .map(|entry| entry.queue.clone())
    }

    /// Asks the driver for a stream to `peer` and waits for it.
    async fn open(&self, peer: PeerId) -> Result<Queue, LinkError> {
        let (reply, opened) = oneshot::channel();
        let stopping = || LinkError::Closed(peer);
        self.0
            .open_requests
            .send((peer, reply))
            .await
            .map_err(|_| stopping())?;
        let opened = tokio::select! {
            _ = self.0.shutdown.cancelled() => return Err(stopping()),
            opened = opened => opened.map_err(|_| stopping())?,
        };
        opened.map_err(|reason| LinkError::Open { peer, reason })
    }

    /// Registers a stream and spawns the task that reads and writes it.
    fn attach<S>(&self, peer: PeerId, stream: S, handler: Arc<dyn FrameHandler>) -> Queue
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
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
        let bye = queue.clone();
        self.0
            .tasks
            .spawn(async move { links.serve(peer, id, stream, outgoing, bye, handler).await });
        queue
    }

    /// Carries frames both ways on one stream until it ends.
    ///
    /// After a Bye either way the stream winds down in order: a side whose
    /// reader met the end still writes what it has queued, and a side done
    /// writing still reads what comes, each for at most [`LINGER`]. (Ending
    /// with the first half to finish dropped the frames still queued, calls
    /// among them, whose owners then waited until their deadline.)
    ///
    /// A stream that ends without a clean Bye may have lost frames on the
    /// way, so the peer counts as lost even when another stream to it
    /// remains: the calls it holds run elsewhere, and it sees the same end,
    /// so it places again those it sent here.
    async fn serve<S>(
        self,
        peer: PeerId,
        id: u64,
        stream: S,
        outgoing: mpsc::Receiver<Vec<u8>>,
        bye: Queue,
        handler: Arc<dyn FrameHandler>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = stream.split();
        let shutdown = self.0.shutdown.clone();
        let life = StreamLife {
            last_frame_ms: AtomicU64::new(crate::clock::now_ms()),
            said_bye: AtomicBool::new(false),
            heard_bye: tokio::sync::Notify::new(),
        };
        let said_bye = || life.said_bye.load(Ordering::Relaxed);
        let result = {
            let reading = self.read_frames(reader, peer, id, handler.as_ref(), &life);
            let writing = write_frames(writer, outgoing, &life);
            tokio::pin!(reading, writing);
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = &mut reading => Half::Read(read),
                written = &mut writing => Half::Written(written),
                never = self.close_when_idle(peer, id, bye, &life) => match never {},
            };
            match first {
                Half::Read(Ok(())) if said_bye() => wind_down(writing, &shutdown).await,
                Half::Written(Ok(())) if said_bye() => wind_down(reading, &shutdown).await,
                Half::Read(result) | Half::Written(result) => result,
            }
        };
        if let Err(e) = &result {
            tracing::debug!(%peer, error = %e, "call stream ended");
        }
        self.detach(peer, id);
        let clean = said_bye() && result.is_ok();
        if !clean && !shutdown.is_cancelled() {
            handler.on_link_lost(peer);
        }
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

    /// Once the stream has carried no frame for the idle time: takes it
    /// out of the table and says Bye. Either way, once one side said Bye,
    /// lets go of the stream's queue so the writer closes its half; the
    /// reader reads until the other side has closed too. Never returns:
    /// the stream's other halves end it.
    async fn close_when_idle(
        &self,
        peer: PeerId,
        id: u64,
        bye: Queue,
        life: &StreamLife,
    ) -> Infallible {
        loop {
            let idle = life.idle_for();
            if idle >= self.0.idle {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.0.idle - idle) => {}
                () = life.heard_bye.notified() => {
                    drop(bye);
                    return std::future::pending().await;
                }
            }
        }
        life.said_bye.store(true, Ordering::Relaxed);
        self.detach(peer, id);
        let mut frame = Vec::new();
        if Frame::Bye.encode_into(&mut frame).is_ok() {
            let _ = bye.send(frame).await;
        }
        drop(bye);
        tracing::debug!(%peer, "idle call stream closed");
        std::future::pending().await
    }

    /// Reads frames until the stream ends: call frames to the handler,
    /// Raft frames to their inbox. After the other side's Bye, the stream
    /// leaves the table and its end is no loss.
    async fn read_frames(
        &self,
        reader: futures::io::ReadHalf<impl AsyncRead>,
        peer: PeerId,
        id: u64,
        handler: &dyn FrameHandler,
        life: &StreamLife,
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
            // An oversized or malformed frame is a protocol violation: the
            // stream is closed (and its calls re-dispatched) rather than skipped.
            let len = frame_len(prefix)?;
            read_body(&mut reader, &mut body, len).await?;
            let frame = Frame::decode(&body)?;
            if body.capacity() > MAX_KEPT_BODY_BYTES {
                body = Vec::new();
            }
            life.touch();
            match frame {
                Frame::Bye => {
                    life.said_bye.store(true, Ordering::Relaxed);
                    self.detach(peer, id);
                    life.heard_bye.notify_one();
                }
                Frame::RaftRequest { .. } | Frame::RaftResponse { .. } => {
                    if self.0.to_raft.send((peer, frame)).await.is_err() {
                        return Ok(()); // the node is stopping
                    }
                }
                frame => handler.on_frame(peer, frame),
            }
        }
    }
}

/// The half of a stream that finished first.
enum Half {
    Read(Result<(), LinkError>),
    Written(Result<(), LinkError>),
}

/// Lets the other half of a stream that said Bye finish, for at most
/// [`LINGER`] and not past the node's stop; a half that takes longer is
/// cut off as a failure.
async fn wind_down(
    half: impl Future<Output = Result<(), LinkError>>,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        done = tokio::time::timeout(LINGER, half) => match done {
            Ok(result) => result,
            Err(_) => Err(LinkError::Io(std::io::ErrorKind::TimedOut.into())),
        },
    }
}

/// Reads a frame body of `len` bytes into `body`, which grows only as bytes
/// arrive: the length prefix is the peer's promise, not a reason to allocate,
/// so a peer that promises the largest frame and sends a little costs a
/// little on each stream it holds open.
async fn read_body(
    reader: &mut futures::io::BufReader<futures::io::ReadHalf<impl AsyncRead>>,
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

async fn write_frames<W: AsyncWrite>(
    mut writer: futures::io::WriteHalf<W>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    life: &StreamLife,
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
        life.touch();
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

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
