//! Streams on in-memory pipes: frames sent together arrive whole and in
//! order, after a Bye what was queued still goes out, and a stream that
//! breaks counts as a lost link.

use super::*;
use shoal_proto::CallId;
use std::sync::atomic::AtomicUsize;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// How often the links told the node a link was lost.
#[derive(Default)]
struct Heard {
    lost: AtomicUsize,
}

impl FrameHandler for Heard {
    fn on_frame(&self, _peer: PeerId, _frame: Frame) {}

    fn on_link_lost(&self, _peer: PeerId) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }
}

impl Heard {
    fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Links with no swarm behind them: streams come from the test, and
/// opening a new one fails.
fn links() -> Links {
    let (open_requests, _) = mpsc::channel(1);
    let (to_raft, _) = mpsc::channel(1);
    Links(Arc::new(Shared {
        streams: Mutex::default(),
        open_requests,
        next_stream_id: AtomicU64::new(0),
        to_raft,
        idle: Duration::from_secs(60),
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
    }))
}

/// Both ends of an in-memory stream: the node's and the far one.
fn pipe() -> (
    Compat<tokio::io::DuplexStream>,
    Compat<tokio::io::DuplexStream>,
) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    (near.compat(), far.compat())
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame
        .encode_into(&mut bytes)
        .expect("a small frame encodes");
    bytes
}

fn cancels(ids: std::ops::Range<u64>) -> Vec<Frame> {
    ids.map(|id| Frame::Cancel { id: CallId(id) }).collect()
}

/// Reads frames from the far end until it ends.
async fn read_frames(far: &mut (impl AsyncRead + Unpin)) -> Vec<Frame> {
    read_up_to(far, usize::MAX).await
}

/// Reads up to `count` frames from the far end, fewer if it ends.
async fn read_up_to(far: &mut (impl AsyncRead + Unpin), count: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    while frames.len() < count {
        let mut prefix = [0u8; 4];
        match far.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the far end: {e}"),
        }
        let mut body = vec![0u8; frame_len(prefix).expect("a valid length")];
        far.read_exact(&mut body).await.expect("a whole frame");
        frames.push(Frame::decode(&body).expect("a valid frame"));
    }
    frames
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over 10 s"))
}

#[tokio::test]
async fn frames_sent_together_arrive_whole_and_in_order() {
    // 40 calls of 10 KB: several groups, each one write.
    let links = links();
    let peer = PeerId::random();
    let (near, mut far) = pipe();
    let _queue = links.attach(peer, near, Arc::new(Heard::default()));
    let calls: Vec<Frame> = (0..40)
        .map(|id| {
            Frame::Call(shoal_proto::CallRequest {
                id: CallId(id),
                function: "echo".to_string(),
                args: vec![b'7'; 10_000].into(),
                budget_ms: 1_000,
                script: None,
                job: None,
                pinned: false,
            })
        })
        .collect();
    let sending = links.send_all(peer, &calls);
    let (sent, read) = within("sending and reading", async {
        tokio::join!(sending, read_up_to(&mut far, calls.len()))
    })
    .await;
    sent.expect("the stream takes them");
    assert_eq!(read, calls);
}

#[tokio::test]
async fn frames_queued_when_the_peer_says_bye_are_still_written() {
    // The stream's halves race: before, whenever its reader ran first it
    // met the Bye and the end, and the stream ended with the frames unsent.
    for round in 0..20 {
        let links = links();
        let heard = Arc::new(Heard::default());
        let (near, mut far) = pipe();
        let queue = links.attach(PeerId::random(), near, heard.clone());
        for frame in cancels(0..3) {
            queue.try_send(encoded(&frame)).expect("room in the queue");
        }
        drop(queue);
        far.write_all(&encoded(&Frame::Bye)).await.unwrap();
        far.close().await.unwrap();

        let written = within("reading the far end", read_frames(&mut far)).await;
        assert_eq!(written, cancels(0..3), "round {round}");
        links.0.tasks.close();
        within("the stream's end", links.0.tasks.wait()).await;
        assert_eq!(heard.lost(), 0, "a clean close is no loss (round {round})");
    }
}

#[tokio::test]
async fn a_stream_that_breaks_is_a_lost_link_even_beside_another() {
    // Frames on the broken stream may be lost: the calls the peer holds
    // must run elsewhere, though another stream to it remains.
    let links = links();
    let heard = Arc::new(Heard::default());
    let peer = PeerId::random();
    let (broken, broken_far) = pipe();
    let (kept, _kept_far) = pipe();
    let _broken_queue = links.attach(peer, broken, heard.clone());
    let _kept_queue = links.attach(peer, kept, heard.clone());
    // The far end vanishes without a Bye.
    drop(broken_far);

    within("the lost link", async {
        while heard.lost() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(links.queue_for(&peer).is_some(), "the other stream stays");
}
