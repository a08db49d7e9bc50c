//! The task that owns the stream control: it accepts streams, and opens
//! them for senders, one opening per peer however many ask.

use super::{FrameHandler, Links, OpenReply, protocol};
use futures::StreamExt;
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Opening a stream includes dialing if needed; past this the peer counts
/// as unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an opening that outlived [`OPEN_TIMEOUT`] goes on (libp2p's
/// own dial and negotiation timeouts end most sooner).
const LATE_OPEN: Duration = Duration::from_secs(60);
/// Requests to open a stream waiting for the driver; each is handled in
/// microseconds (the opening itself runs in its own task).
pub(super) const OPEN_REQUESTS: usize = 256;

/// The task that owns the stream control: it accepts streams, opens them
/// for senders (one opener per peer however many ask), and hands every
/// stream's reader the frame handler.
pub struct LinkDriver {
    links: Links,
    control: libp2p_stream::Control,
    incoming: libp2p_stream::IncomingStreams,
    requests: mpsc::Receiver<(PeerId, OpenReply)>,
}

impl LinkDriver {
    pub(super) fn new(
        links: Links,
        control: libp2p_stream::Control,
        incoming: libp2p_stream::IncomingStreams,
        requests: mpsc::Receiver<(PeerId, OpenReply)>,
    ) -> LinkDriver {
        LinkDriver {
            links,
            control,
            incoming,
            requests,
        }
    }

    /// Runs until the node stops; `handler` gets every call frame.
    pub async fn run(mut self, handler: Arc<dyn FrameHandler>) {
        let shared = Arc::clone(&self.links.0);
        // Openings under way, and who waits for each.
        let mut waiting: HashMap<PeerId, Vec<OpenReply>> = HashMap::new();
        let (opened_tx, mut opened) = mpsc::channel(OPEN_REQUESTS);
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                next = self.incoming.next() => match next {
                    Some((peer, stream)) => {
                        self.links.attach(peer, stream, Arc::clone(&handler));
                    }
                    None => break,
                },
                Some((peer, reply)) = self.requests.recv() => {
                    if let Some(queue) = self.links.queue_for(&peer) {
                        let _ = reply.send(Ok(queue));
                        continue;
                    }
                    let waiters = waiting.entry(peer).or_default();
                    waiters.push(reply);
                    if waiters.len() == 1 {
                        shared.tasks.spawn(open_stream(
                            self.control.clone(),
                            peer,
                            opened_tx.clone(),
                            shared.shutdown.clone(),
                        ));
                    }
                }
                Some((peer, result)) = opened.recv() => {
                    let result = result.map(|stream| {
                        self.links.attach(peer, stream, Arc::clone(&handler))
                    });
                    for reply in waiting.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(result.clone());
                    }
                }
            }
        }
    }
}

/// Opens one stream to `peer` (dialing it if needed) and reports back.
///
/// Past [`OPEN_TIMEOUT`] it reports a failure, so that senders wait no
/// longer, but goes on opening for up to [`LATE_OPEN`]. Given up half-way,
/// the stream reached the peer later (a peer paused or swamped answers
/// late) as one that ended without a Bye: a loss, for which the peer
/// suspected this node and placed again every call it had sent here. A
/// stream that opens late is reported too and joins the table as any
/// other, to close when idle.
async fn open_stream(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    report: mpsc::Sender<(PeerId, Result<libp2p::Stream, String>)>,
    shutdown: CancellationToken,
) {
    let opening = control.open_stream(peer, protocol());
    tokio::pin!(opening);
    let opened = tokio::select! {
        _ = shutdown.cancelled() => return,
        opened = tokio::time::timeout(OPEN_TIMEOUT, &mut opening) => opened,
    };
    let result = match opened {
        Ok(opened) => opened.map_err(|e| e.to_string()),
        Err(_) => {
            let late = Err(format!("no answer within {OPEN_TIMEOUT:?}"));
            if report.send((peer, late)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = tokio::time::timeout(LATE_OPEN, &mut opening) => match opened {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(_)) | Err(_) => return,
                },
            }
        }
    };
    let _ = report.send((peer, result)).await;
}
