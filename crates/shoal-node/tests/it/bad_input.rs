//! The bad-input catalogue: every kind of bad input a node meets — on the
//! wire from a peer, from a script, from a caller — and what a user sees:
//! a clear error, a node that keeps serving, nothing accepted lost, and
//! memory that stays bounded.
//!
//! One test per kind of input, each on a fresh cluster that accepted
//! durable work before the abuse, so "nothing accepted is lost" is checked
//! after every kind, and one failing case does not hide the others:
//!
//! ```text
//!   caller (no slots) ══ /shoal/call/1 ══► victim (runs the functions)
//!                                            ▲
//!   raw peer: the node's own transport ──────┘ says only what a case makes it say
//! ```
//!
//! Malformed HTTP bodies are catalogued in `http_api.rs`, and a secret-less
//! `shoal` process in `shoal-cli/tests/it/private_cluster.rs`; the cases
//! here stay in process.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::swarm::{ConnectionId, SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use libp2p_stream::OpenStreamError;
use serde_json::{Value, json};
use shoal_node::config::secret_from_passphrase;
use shoal_node::jobs::{JobSpec, JobState};
use shoal_node::net::sealed::Sealer;
use shoal_node::net::transport::build_swarm;
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{ErrorCode, FnResult, Node, NodeConfig, Read, Script};
use shoal_proto::wire::{
    CALL_PROTOCOL, CallRequest, MAX_FRAME_BYTES, MAX_PAYLOAD_BYTES, frame_len,
};
use shoal_proto::{CallId, Frame};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::own_process::run_alone;
use shoal_node::testkit::wait_until;

/// Not a timing assertion: anything that takes this long is a hang.
const HANG_GUARD: Duration = Duration::from_secs(30);
/// The stream flood: thousands of streams from one peer…
const FLOOD_STREAMS: usize = 5_000;
/// …spread over enough connections that no connection reaches yamux's
/// 512-stream limit (5,000 / 12 ≈ 417 each), so the node, not the
/// multiplexer, is what has to cope.
const FLOOD_CONNECTIONS: usize = 12;
/// Streams the flooding peer negotiates at once.
const FLOOD_OPENERS: usize = 16;
/// Memory is checked after every this many flood streams.
const FLOOD_BATCH: usize = 100;
/// Generous: the nodes, the flooding peer and the test share this process.
const RSS_GROWTH_BOUND: u64 = 256 * 1024 * 1024;

fn secret() -> [u8; 32] {
    secret_from_passphrase("bad input catalogue")
}

fn call_protocol() -> StreamProtocol {
    StreamProtocol::new(CALL_PROTOCOL)
}

/// Awaits `work`, or fails the test naming `what` if it hangs.
async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG_GUARD:?}"))
}

/// The resident memory of this process, which holds every node.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

fn double(args: &Value) -> FnResult {
    let n = args["n"].as_i64().ok_or("expected {\"n\": <integer>}")?;
    Ok(json!(n * 2))
}

/// The victim runs every function; the caller runs none, so each of its
/// calls crosses a real call stream. Each case gets a fresh one.
struct Cluster {
    victim: Node,
    caller: Node,
    /// Distinct arguments for each liveness check.
    checks: std::sync::atomic::AtomicI64,
    /// Durable work accepted before the abuse starts.
    accepted: Accepted,
}

impl Cluster {
    /// Starts the two nodes, waits for a Raft leader, and has them accept
    /// jobs and documents that must survive whatever the case does.
    async fn start() -> Cluster {
        let mut nodes = start_cluster(2, |index, builder| {
            let config = NodeConfig {
                secret: Some(secret()),
                // Runaway scripts are stopped quickly, and may hog little.
                js_time_limit: Duration::from_millis(300),
                js_memory_limit: 32 * 1024 * 1024,
                ..test_config(if index == 0 { 2 } else { 0 })
            };
            let builder = builder.config(config);
            if index > 0 {
                return builder;
            }
            builder
                .register("double", |_ctx, args| async move { double(&args) })
                .register("slow.double", |_ctx, args| async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    double(&args)
                })
        })
        .await;
        let caller = nodes.pop().expect("two nodes");
        let victim = nodes.pop().expect("two nodes");
        // Two nodes make one voter and a learner; writes need only the leader.
        wait_until(HANG_GUARD, "a Raft leader", async || {
            match (caller.status().raft.leader, victim.status().raft.leader) {
                (Some(_), Some(_)) => Ok(()),
                _ => Err(format!("{:?}", caller.raft_status())),
            }
        })
        .await;
        let accepted = Accepted::submit(&caller).await;
        Cluster {
            victim,
            caller,
            checks: Default::default(),
            accepted,
        }
    }

    fn victim_addr(&self) -> Multiaddr {
        self.victim.listen_addrs()[0].clone()
    }

    /// A real call from the caller to the victim returns the right result.
    async fn assert_serves(&self, after: &str) {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = within(after, self.caller.call("double", json!({ "n": n }))).await;
        assert_eq!(
            result.unwrap_or_else(|e| panic!("after {after}, a real call failed: {e}")),
            json!(n * 2),
            "after {after}"
        );
    }

    /// Nothing accepted is lost: every job accepted before the abuse
    /// finished with its result, and every document reads back unchanged,
    /// on both nodes. Then stops them.
    async fn assert_nothing_lost(self) {
        self.accepted.assert_kept(&self.caller).await;
        self.accepted.assert_kept(&self.victim).await;
        self.caller.shutdown().await;
        self.victim.shutdown().await;
    }
}

/// Durable work accepted before the abuse starts.
struct Accepted {
    jobs: Vec<(u64, i64)>,
    documents: Vec<(String, Value)>,
}

impl Accepted {
    const COLLECTION: &str = "ledger";

    async fn submit(node: &Node) -> Accepted {
        let mut jobs = Vec::new();
        for n in 0..6 {
            let spec = JobSpec {
                function: "slow.double".to_string(),
                args: json!({ "n": n }),
                lease_ms: 5_000,
                ..JobSpec::default()
            };
            jobs.push((within("submit", node.submit_job(spec)).await.unwrap(), n));
        }
        within("create", node.db_create(Self::COLLECTION))
            .await
            .unwrap();
        let mut documents = Vec::new();
        for entry in 0..10 {
            let body = json!({ "entry": entry, "memo": format!("payment {entry}") });
            let (id, _) = within("insert", node.db_insert(Self::COLLECTION, body.clone()))
                .await
                .unwrap();
            documents.push((id, body));
        }
        Accepted { jobs, documents }
    }

    /// Every job finished with its result, every document reads back as written.
    async fn assert_kept(&self, node: &Node) {
        for (id, n) in &self.jobs {
            let job = wait_until(HANG_GUARD, &format!("job {id} to finish"), async || {
                let job = within("job", node.job(*id, Read::Linearizable))
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("job {id} was lost"));
                if job.state.is_finished() {
                    Ok(job)
                } else {
                    Err(format!("{job:?}"))
                }
            })
            .await;
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            assert_eq!(job.result, Some(json!(n * 2)), "{job:?}");
        }
        for (id, body) in &self.documents {
            let document = within("get", node.db_get(Self::COLLECTION, id, Read::Linearizable))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("document {id} was lost"));
            assert_eq!(&document.body, body);
            assert_eq!(document.version, 1, "nothing rewrote document {id}");
        }
        let count = within(
            "count",
            node.db_count(Self::COLLECTION, Default::default(), Read::Linearizable),
        )
        .await
        .unwrap();
        assert_eq!(count, self.documents.len());
    }
}

/// A libp2p peer built from the node's own transport (`build_swarm`), so it
/// gets as far as the secret it holds lets it, and then says only what a
/// case makes it say on the streams it opens.
struct RawPeer {
    control: libp2p_stream::Control,
    dials: mpsc::Sender<(Multiaddr, oneshot::Sender<Result<PeerId, String>>)>,
}

impl RawPeer {
    /// Starts the peer's swarm; it stops when the peer is dropped.
    fn start(secret: Option<[u8; 32]>) -> RawPeer {
        let config = NodeConfig {
            secret,
            ..test_config(0)
        };
        let mut swarm = build_swarm(Keypair::generate_ed25519(), &config).expect("raw swarm");
        let control = swarm.behaviour().stream.new_control();
        let (dials, mut requests) =
            mpsc::channel::<(Multiaddr, oneshot::Sender<Result<PeerId, String>>)>(16);
        tokio::spawn(async move {
            let mut pending: HashMap<ConnectionId, oneshot::Sender<_>> = HashMap::new();
            loop {
                tokio::select! {
                    request = requests.recv() => {
                        let Some((addr, reply)) = request else { break };
                        let opts = DialOpts::unknown_peer_id().address(addr).build();
                        let id = opts.connection_id();
                        match swarm.dial(opts) {
                            Ok(()) => { pending.insert(id, reply); }
                            Err(e) => { let _ = reply.send(Err(e.to_string())); }
                        }
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                            if let Some(reply) = pending.remove(&connection_id) {
                                let _ = reply.send(Ok(peer_id));
                            }
                        }
                        SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                            if let Some(reply) = pending.remove(&connection_id) {
                                let _ = reply.send(Err(error.to_string()));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        RawPeer { control, dials }
    }

    /// Opens one more connection to `addr`; returns the node's peer id, or
    /// why the connection failed.
    async fn connect(&self, addr: &Multiaddr) -> Result<PeerId, String> {
        let (reply, answer) = oneshot::channel();
        self.dials
            .send((addr.clone(), reply))
            .await
            .expect("raw swarm runs");
        within("dial", answer).await.expect("raw swarm answers")
    }

    async fn open(
        &self,
        node: PeerId,
        protocol: StreamProtocol,
    ) -> Result<libp2p::Stream, OpenStreamError> {
        within(
            "open a stream",
            self.control.clone().open_stream(node, protocol),
        )
        .await
    }

    async fn open_call_stream(&self, node: PeerId) -> libp2p::Stream {
        self.open(node, call_protocol())
            .await
            .expect("the node accepts /shoal/call/1")
    }
}

fn prefix(len: usize) -> Vec<u8> {
    u32::try_from(len)
        .expect("a u32 length")
        .to_be_bytes()
        .to_vec()
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame.encode_into(&mut bytes).expect("frame encodes");
    bytes
}

fn call_frame(id: u64, function: &str, args: &[u8]) -> Frame {
    Frame::Call(CallRequest {
        id: CallId(id),
        function: function.to_string(),
        args: bytes::Bytes::copy_from_slice(args),
        budget_ms: 10_000,
        script: None,
        job: None,
        pinned: false,
    })
}

async fn send(stream: &mut libp2p::Stream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write to the node");
    stream.flush().await.expect("flush to the node");
}

/// Waits until the node closes `stream` from its side; returns what it sent
/// before closing.
async fn closed_by_node(stream: &mut libp2p::Stream, case: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    within(
        &format!("{case}: the node should close the stream"),
        async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        },
    )
    .await;
    received
}

/// Reads frames until the result of call `id` arrives.
async fn result_of(stream: &mut libp2p::Stream, id: u64) -> shoal_proto::wire::Outcome {
    within("a result frame", async {
        loop {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await.expect("a frame");
            let mut body = vec![0; frame_len(len).expect("a frame within the limit")];
            stream.read_exact(&mut body).await.expect("a whole frame");
            if let Frame::Result { id: got, outcome } = Frame::decode(&body).expect("a frame")
                && got == CallId(id)
            {
                return outcome;
            }
        }
    })
    .await
}

/// 1. Truncated frames and bytes that are not frames, on a real call
///    stream: the node drops that stream, answers nothing from it, and
///    keeps serving real calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_garbage_frames_close_the_stream_unanswered() {
    let cluster = Cluster::start().await;
    let peer = RawPeer::start(Some(secret()));
    let node = peer.connect(&cluster.victim_addr()).await.unwrap();
    let whole_call = encoded(&call_frame(1, "double", b"{\"n\": 21}"));
    let not_postcard = b"\xff\xff\xff\xff not postcard at all";
    let cases: [(&str, Vec<u8>, bool); 4] = [
        // A call frame cut three bytes short, then the end of the stream.
        (
            "a truncated call frame",
            whole_call[..whole_call.len() - 3].to_vec(),
            true,
        ),
        // A length prefix promising 100 bytes, 10 of them, then the end.
        (
            "a truncated body",
            [prefix(100), vec![7; 10]].concat(),
            true,
        ),
        // A well-framed body that is not postcard.
        (
            "a body that is not postcard",
            [prefix(not_postcard.len()), not_postcard.to_vec()].concat(),
            false,
        ),
        // Another protocol's bytes: "GET " read as a length is far too large.
        (
            "HTTP on the call stream",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            false,
        ),
    ];
    for (case, bytes, then_end) in cases {
        let mut stream = peer.open_call_stream(node).await;
        send(&mut stream, &bytes).await;
        if then_end {
            let _ = stream.close().await;
        }
        let answer = closed_by_node(&mut stream, case).await;
        assert!(answer.is_empty(), "{case}: the node answered {answer:?}");
        cluster.assert_serves(case).await;
    }
    // The same stream kind with the whole frame is answered: the cases above
    // failed for their bytes, not for who sent them.
    let mut stream = peer.open_call_stream(node).await;
    send(&mut stream, &whole_call).await;
    assert_eq!(
        result_of(&mut stream, 1).await,
        Ok(bytes::Bytes::from("42"))
    );
    cluster.assert_nothing_lost().await;
}

/// 2. A protocol the node does not speak (a future `/shoal/call/2`, or
///    nothing Shoal knows): negotiation fails as "unsupported protocol".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocols_are_refused_as_unsupported() {
    let cluster = Cluster::start().await;
    let peer = RawPeer::start(Some(secret()));
    let node = peer.connect(&cluster.victim_addr()).await.unwrap();
    for protocol in ["/shoal/call/2", "/not/shoal/1"] {
        let refused = peer
            .open(node, StreamProtocol::new(protocol))
            .await
            .expect_err("the node refuses a protocol it does not speak");
        match &refused {
            OpenStreamError::UnsupportedProtocol(named) => assert_eq!(named.as_ref(), protocol),
            other => panic!("{protocol}: expected unsupported protocol, got {other}"),
        }
        assert!(
            refused.to_string().contains("does not support"),
            "{refused}"
        );
        cluster.assert_serves(protocol).await;
    }
    cluster.assert_nothing_lost().await;
}

/// 3. Oversized: a length prefix over `MAX_FRAME_BYTES` closes the stream
///    before any body arrives (so none is allocated); a call payload over
///    `MAX_PAYLOAD_BYTES` fails at once with `payload_too_large`, while one
///    just under it still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_the_stream_and_oversized_payloads_are_refused() {
    let cluster = Cluster::start().await;
    let peer = RawPeer::start(Some(secret()));
    let node = peer.connect(&cluster.victim_addr()).await.unwrap();
    for len in [MAX_FRAME_BYTES + 1, u32::MAX as usize] {
        let case = format!("a length prefix of {len} bytes");
        let mut stream = peer.open_call_stream(node).await;
        send(&mut stream, &prefix(len)).await;
        let answer = closed_by_node(&mut stream, &case).await;
        assert!(answer.is_empty(), "{case}: the node answered {answer:?}");
    }

    let huge = json!({ "n": 1, "padding": "x".repeat(MAX_PAYLOAD_BYTES) });
    let refused = within("an oversized call", cluster.caller.call("double", huge))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::PayloadTooLarge, "{refused}");
    assert!(
        refused.message.contains(&MAX_PAYLOAD_BYTES.to_string()),
        "the error names the limit: {refused}"
    );
    // Just under the limit is not bad input: it crosses the wire whole.
    let largest = json!({ "n": 5, "padding": "x".repeat(MAX_PAYLOAD_BYTES - 64) });
    let doubled = within("the largest call", cluster.caller.call("double", largest)).await;
    assert_eq!(doubled.unwrap(), json!(10));
    cluster.assert_serves("oversized input").await;
    cluster.assert_nothing_lost().await;
}

/// 4. One peer floods the node with thousands of call streams, each holding
///    a frame that promises the largest allowed body and never delivers it:
///    the node keeps serving, its memory stays bounded, and once the peer
///    goes the memory is not lost for good.
#[test]
fn a_flood_of_streams_keeps_memory_bounded_and_is_let_go() {
    // The figures are the memory of the whole process, which holds the
    // nodes: other tests would count too, so it runs alone in one.
    run_alone(
        "bad_input::a_flood_of_streams_keeps_memory_bounded_and_is_let_go",
        || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let cluster = Cluster::start().await;
                flood(&cluster).await;
                cluster.assert_nothing_lost().await;
            });
        },
    );
}

async fn flood(cluster: &Cluster) {
    // Each stream a node holds is a task on this runtime, so live tasks show
    // whether the streams are really let go once the peer leaves.
    let runtime = tokio::runtime::Handle::current().metrics();
    let tasks_before = runtime.num_alive_tasks();
    let before = rss_bytes();
    let peer = RawPeer::start(Some(secret()));
    let addr = cluster.victim_addr();
    let mut node = None;
    for _ in 0..FLOOD_CONNECTIONS {
        node = Some(
            peer.connect(&addr)
                .await
                .expect("the flooding peer connects"),
        );
    }
    let node = node.expect("at least one connection");
    let mut promise = prefix(MAX_FRAME_BYTES);
    promise.extend_from_slice(&[0; 1024]);
    let promise = &promise;
    let open_one = |_| {
        let mut control = peer.control.clone();
        async move {
            let mut stream = control.open_stream(node, call_protocol()).await?;
            // Fails where the node has already let the stream go; the
            // stream is held all the same.
            let _ = stream.write_all(promise).await;
            let _ = stream.flush().await;
            Ok::<_, OpenStreamError>(stream)
        }
    };
    let mut streams = Vec::with_capacity(FLOOD_STREAMS);
    let mut open_errors = 0;
    let mut peak = before;
    // In batches, with memory checked after each, so a node that did
    // allocate what the frames promise fails here instead of exhausting
    // the machine.
    for batch in (0..FLOOD_STREAMS).collect::<Vec<_>>().chunks(FLOOD_BATCH) {
        let opened: Vec<_> = within(
            "a batch of flood streams",
            futures::stream::iter(batch.iter().copied())
                .map(open_one)
                .buffer_unordered(FLOOD_OPENERS)
                .collect(),
        )
        .await;
        for result in opened {
            match result {
                Ok(stream) => streams.push(stream),
                Err(_) => open_errors += 1,
            }
        }
        peak = peak.max(rss_bytes());
        assert!(
            peak.saturating_sub(before) < RSS_GROWTH_BOUND,
            "{} flood streams held open grew memory from {} MiB to {} MiB",
            streams.len(),
            mib(before),
            mib(peak)
        );
    }
    // The final figure comes after a real call has crossed to the node
    // while it holds every stream. A node that allocated what the frames
    // promise has failed a batch check long before the last batch.
    cluster
        .assert_serves("a flood of streams (held open)")
        .await;
    peak = peak.max(rss_bytes());
    eprintln!(
        "stream flood: {} of {FLOOD_STREAMS} streams opened ({open_errors} refused at open); \
         {} live tasks before, {} while held; RSS {} MiB before, {} MiB peak (+{} MiB)",
        streams.len(),
        tasks_before,
        runtime.num_alive_tasks(),
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
    );
    assert!(
        peak.saturating_sub(before) < RSS_GROWTH_BOUND,
        "a flood of {FLOOD_STREAMS} streams grew memory from {} MiB to {} MiB",
        mib(before),
        mib(peak)
    );

    drop(streams);
    drop(peer);
    // A few tasks of the nodes' own (timers, greetings) may come and go.
    let settled = tasks_before + 50;
    wait_until(HANG_GUARD, "the flood's streams to be let go", async || {
        let alive = runtime.num_alive_tasks();
        if alive <= settled {
            Ok(())
        } else {
            Err(format!(
                "{alive} live tasks, {tasks_before} before the flood"
            ))
        }
    })
    .await;
    cluster.assert_serves("a flood of streams (closed)").await;
    let after = rss_bytes();
    eprintln!(
        "stream flood: {} live tasks and RSS {} MiB after the peer left",
        runtime.num_alive_tasks(),
        mib(after)
    );
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_BOUND,
        "after the flood memory stayed at {} MiB (from {} MiB)",
        mib(after),
        mib(before)
    );
}

/// 5. A peer with another secret, or none: it cannot connect (its dial
///    fails), and the node is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_the_secret_cannot_connect() {
    let cluster = Cluster::start().await;
    let addr = cluster.victim_addr();
    for (case, secret) in [
        (
            "another secret",
            Some(secret_from_passphrase("a wrong guess")),
        ),
        ("no secret", None),
    ] {
        let outsider = RawPeer::start(secret);
        let refused = outsider.connect(&addr).await;
        assert!(refused.is_err(), "{case}: connected as {refused:?}");
        cluster.assert_serves(case).await;
    }
    cluster.assert_nothing_lost().await;
}

/// 6. Scripts that spin forever, allocate without end, throw, or do not
///    parse: each call fails with its code and a message that says why, and
///    the same worker runs the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_scripts_fail_their_call_and_the_worker_runs_the_next() {
    let cluster = Cluster::start().await;
    let script = Script::new(
        "broken.js",
        "shoal.register('spin', () => { while (true) {} });
         shoal.register('hog', () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); });
         shoal.register('throws', () => { throw new Error('ledger is closed'); });
         shoal.register('ok', (a) => ({ doubled: a.n * 2 }));",
    );
    let cases = [
        // Runs past the time limit: stopped, named, and said so.
        ("spin", ErrorCode::FunctionFailed, "interrupted"),
        // Allocates past the heap limit.
        ("hog", ErrorCode::FunctionFailed, "memory limit"),
        // Throws: the caller reads the exception's message.
        ("throws", ErrorCode::FunctionFailed, "ledger is closed"),
    ];
    for (function, code, says) in cases {
        let failed = within(
            function,
            cluster
                .caller
                .call_script(script.clone(), function, json!(null)),
        )
        .await
        .unwrap_err();
        assert_eq!(failed.code, code, "{function}: {failed}");
        assert!(failed.message.contains(says), "{function}: {failed}");
        let ok = within(
            "ok",
            cluster
                .caller
                .call_script(script.clone(), "ok", json!({"n": 21})),
        )
        .await;
        assert_eq!(ok.unwrap(), json!({"doubled": 42}), "after {function}");
    }
    // A script that does not parse fails the call that ships it, naming it.
    let typo = Script::new("typo.js", "shoal.register('f', () => { return 1 ;");
    let refused = within("typo", cluster.caller.call_script(typo, "f", json!(null)))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::FunctionFailed, "{refused}");
    assert!(
        refused.message.contains("typo.js") && refused.message.contains("SyntaxError"),
        "{refused}"
    );
    cluster.assert_serves("broken scripts").await;
    cluster.assert_nothing_lost().await;
}

/// 7. Unknown functions and arguments that are not JSON, from the API and
///    straight on the wire: `unknown_function` naming the function, and
///    `invalid_arguments` saying the arguments are not valid JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_functions_and_malformed_arguments_are_named() {
    let cluster = Cluster::start().await;
    let unknown = within("unknown", cluster.caller.call("no.such.function", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownFunction, "{unknown}");
    assert!(unknown.message.contains("no.such.function"), "{unknown}");

    let peer = RawPeer::start(Some(secret()));
    let node = peer.connect(&cluster.victim_addr()).await.unwrap();
    let mut stream = peer.open_call_stream(node).await;
    send(
        &mut stream,
        &encoded(&call_frame(7, "double", b"{\"n\": 2")),
    )
    .await;
    let malformed = result_of(&mut stream, 7).await.unwrap_err();
    assert_eq!(malformed.code, ErrorCode::InvalidArguments, "{malformed}");
    assert!(malformed.message.contains("not valid JSON"), "{malformed}");

    send(
        &mut stream,
        &encoded(&call_frame(8, "no.such.function", b"1")),
    )
    .await;
    let unknown = result_of(&mut stream, 8).await.unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownFunction, "{unknown}");
    assert!(unknown.message.contains("no.such.function"), "{unknown}");
    cluster
        .assert_serves("unknown functions and malformed arguments")
        .await;
    cluster.assert_nothing_lost().await;
}

/// 8. Membership datagrams that are not a member's: noise, an empty or
///    cut-short packet, one sealed with another secret, a member's packet
///    with a byte changed, and one sealed right but holding no SWIM packet.
///    The node drops them all and goes on hearing its members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_membership_datagrams_are_dropped() {
    let cluster = Cluster::start().await;
    // The membership socket takes the port of the node's TCP listener.
    let port = cluster
        .victim_addr()
        .iter()
        .find_map(|part| match part {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP listener");
    let cluster_name = cluster.victim.config().cluster_name.clone();
    let ours = Sealer::new(&cluster_name, Some(&secret()));
    let theirs = Sealer::new(&cluster_name, Some(&[9; 32]));
    let member = cluster.caller.peer_id();
    let mut damaged = ours.seal(&member, 1, &[0; 64]);
    damaged[40] ^= 1;
    let cases: [Vec<u8>; 6] = [
        (0..1400).map(|i| (i * 7 % 251) as u8).collect(),
        Vec::new(),
        vec![1],
        theirs.seal(&member, 1, b"a SWIM packet under another secret"),
        damaged,
        ours.seal(&member, 1, b"not a SWIM packet"),
    ];
    let heard = || {
        cluster
            .victim
            .peers()
            .into_iter()
            .find(|p| p.peer_id == member)
            .map_or(0, |p| p.load.seq)
    };
    let before = heard();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    for _ in 0..100 {
        for case in &cases {
            socket
                .send_to(case, ("127.0.0.1", port))
                .expect("sent on loopback");
        }
    }
    // Load reports keep arriving by datagram after the flood.
    wait_until(HANG_GUARD, "new load reports from the member", async || {
        let now = heard();
        if now >= before + 3 {
            Ok(())
        } else {
            Err(format!("seq {before} then {now}"))
        }
    })
    .await;
    cluster.assert_serves("foreign datagrams").await;
    cluster.assert_nothing_lost().await;
}
