//! Raft snapshots sent in chunks: a node that joins after the leader
//! purged its log gets the whole store from a snapshot of many chunks, and
//! what it ends up with equals the leader's.
//!
//! Snapshot sizes here are shrunk through [`RaftSnapshotConfig`] (64 KiB
//! chunks, a snapshot every few dozen writes, no log kept behind it), so a
//! store of a few MB exercises what a store over the 16 MiB frame limit
//! needs. The ignored benchmark moves ~200 MB with the default chunk size.

use serde_json::{Value, json};
use shoal_node::config::RaftSnapshotConfig;
use shoal_node::raft::snapshot_store::{SNAPSHOT_FILE, is_partial};
use shoal_node::testkit::{test_config, wait_until};
use shoal_node::{Node, NodeConfig, Read};
use std::path::Path;
use std::time::{Duration, Instant};

const COLLECTION: &str = "pages";

/// A node with its data in `dir` (so its snapshot can be inspected) that
/// joins `via` if given.
async fn start_node(dir: &Path, snapshots: RaftSnapshotConfig, via: Option<&Node>) -> Node {
    let config = NodeConfig {
        data_dir: Some(dir.to_path_buf()),
        join: via.map(Node::listen_addrs).unwrap_or_default(),
        raft_snapshots: snapshots,
        ..test_config(1)
    };
    Node::builder()
        .config(config)
        .start()
        .await
        .expect("node starts")
}

/// A document of about `bytes` bytes that differs from every other.
fn page(n: usize, bytes: usize) -> Value {
    let text: String = (0..bytes)
        .map(|i| char::from(b'a' + ((i * 31 + n * 7) % 26) as u8))
        .collect();
    json!({"n": n, "text": text})
}

/// Inserts `count` pages; returns them by id.
async fn write_pages(node: &Node, count: usize, bytes: usize) -> Vec<(String, Value)> {
    node.db_create(COLLECTION)
        .await
        .expect("create the collection");
    let mut pages = Vec::with_capacity(count);
    for n in 0..count {
        let body = page(n, bytes);
        let (id, _) = node
            .db_insert(COLLECTION, body.clone())
            .await
            .expect("insert a page");
        pages.push((id, body));
    }
    pages
}

fn raft_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("raft")
}

/// Waits until the node in `data_dir` has a snapshot of at least `bytes`.
async fn wait_for_snapshot(data_dir: &Path, bytes: u64) -> u64 {
    let file = raft_dir(data_dir).join(SNAPSHOT_FILE);
    wait_until(
        Duration::from_secs(60),
        "the leader's snapshot",
        async || match std::fs::metadata(&file) {
            Ok(meta) if meta.len() >= bytes => Ok(meta.len()),
            Ok(meta) => Err(format!("{} bytes so far", meta.len())),
            Err(e) => Err(e.to_string()),
        },
    )
    .await
}

/// Waits until `node`'s own replica holds `count` pages.
/// Waits until `node` holds a replica with `count` pages in it (a node
/// without a replica would answer from a member's).
async fn wait_for_pages(node: &Node, count: usize, within: Duration) {
    wait_until(within, "every page on the new node", async || {
        if !node.raft_status().member {
            return Err("not a Raft member yet".to_string());
        }
        let stored = node
            .db_count(COLLECTION, Default::default(), Read::Stale)
            .await
            .unwrap_or(0);
        if stored == count {
            Ok(())
        } else {
            Err(format!("{stored} of {count} pages"))
        }
    })
    .await;
}

fn partial_files(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(raft_dir(data_dir))
        .expect("list the Raft directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| is_partial(path))
        .map(|path| path.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_the_log_was_purged_gets_every_document_by_snapshot() {
    let snapshots = RaftSnapshotConfig {
        every_entries: 25,
        keep_entries: 0,
        chunk_bytes: 64 * 1024,
        ..RaftSnapshotConfig::default()
    };
    let leader_dir = tempfile::tempdir().expect("temporary directory");
    let joiner_dir = tempfile::tempdir().expect("temporary directory");
    let leader = start_node(leader_dir.path(), snapshots.clone(), None).await;
    // ~4 MB: some 60 chunks; with no log kept behind the snapshots, only
    // a snapshot can bring the first pages to a new node.
    let pages = write_pages(&leader, 120, 32 * 1024).await;
    // Snapshots come every 25 entries: the last covers at least 95 pages.
    let snapshot_bytes = wait_for_snapshot(leader_dir.path(), 95 * 32 * 1024).await;

    let started = Instant::now();
    let joiner = start_node(joiner_dir.path(), snapshots, Some(&leader)).await;
    wait_for_pages(&joiner, pages.len(), Duration::from_secs(60)).await;
    println!(
        "{snapshot_bytes} bytes of snapshot reached the new node in {:?}",
        started.elapsed()
    );

    for (id, body) in &pages {
        let copy = joiner
            .db_get(COLLECTION, id, Read::Stale)
            .await
            .expect("read the new node's replica")
            .unwrap_or_else(|| panic!("page {id} is missing on the new node"));
        assert_eq!(&copy.body, body, "page {id} differs on the new node");
    }
    assert!(
        raft_dir(joiner_dir.path()).join(SNAPSHOT_FILE).exists(),
        "the new node keeps the snapshot it installed"
    );
    assert_eq!(partial_files(joiner_dir.path()), Vec::<String>::new());

    // The new node is a full member: a write after the snapshot reaches it.
    let (id, _) = leader
        .db_insert(COLLECTION, json!({"after": "snapshot"}))
        .await
        .expect("write after the snapshot");
    wait_for_pages(&joiner, pages.len() + 1, Duration::from_secs(20)).await;
    assert!(
        joiner
            .db_get(COLLECTION, &id, Read::Stale)
            .await
            .expect("read")
            .is_some()
    );
    joiner.shutdown().await;
    leader.shutdown().await;
}

/// The resident memory of this process.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Samples this process's resident memory until dropped; the highest seen.
struct PeakMemory {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakMemory {
    fn start() -> PeakMemory {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_bytes()));
        let sampling = std::sync::Arc::clone(&peak);
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                sampling.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
            }
        });
        PeakMemory { peak, sampler }
    }

    fn stop(self) -> u64 {
        self.sampler.abort();
        let peak = self.peak.load(std::sync::atomic::Ordering::Relaxed);
        peak.max(rss_bytes())
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Set in the benchmark's child process: the leader's address to join.
const BENCH_JOIN: &str = "SHOAL_SNAPSHOT_BENCH_JOIN";
/// Set in the benchmark's child process: the pages to wait for.
const BENCH_PAGES: &str = "SHOAL_SNAPSHOT_BENCH_PAGES";

/// ~200 MB of documents reach a new node by snapshot, in default-sized
/// chunks. The new node runs in a child process (this test again), so that
/// each side's memory is its own; both print the rate and their memory:
/// `cargo test --release -p shoal-node --test it -- --ignored --exact --nocapture raft_snapshots::snapshot_benchmark`
/// (`SHOAL_SNAPSHOT_BENCH_MB=1024` for a 1 GB store).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: minutes and a few GB of memory"]
async fn snapshot_benchmark() {
    if let Ok(leader) = std::env::var(BENCH_JOIN) {
        let pages = std::env::var(BENCH_PAGES).expect("pages to wait for");
        return join_and_measure(&leader, pages.parse().expect("a count")).await;
    }
    let megabytes: usize = std::env::var("SHOAL_SNAPSHOT_BENCH_MB")
        .ok()
        .and_then(|mb| mb.parse().ok())
        .unwrap_or(200);
    let leader_dir = tempfile::tempdir().expect("temporary directory");
    // One snapshot, taken once every page is written; no log behind it.
    let snapshots = RaftSnapshotConfig {
        every_entries: megabytes as u64,
        keep_entries: 0,
        ..RaftSnapshotConfig::default()
    };
    let leader = start_node(leader_dir.path(), snapshots, None).await;
    write_pages(&leader, megabytes, 1024 * 1024).await;
    let least = (megabytes as u64).saturating_sub(5) << 20;
    let snapshot_bytes = wait_for_snapshot(leader_dir.path(), least).await;
    println!("leader: snapshot of {:.0} MiB", mib(snapshot_bytes));

    let before = rss_bytes();
    let peak = PeakMemory::start();
    let joiner = tokio::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["raft_snapshots::snapshot_benchmark", "--exact", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(BENCH_JOIN, leader.listen_addrs()[0].to_string())
        .env(BENCH_PAGES, megabytes.to_string())
        .output()
        .await
        .expect("the new node's process runs");
    let peak = peak.stop();
    let stdout = String::from_utf8_lossy(&joiner.stdout);
    // libtest writes the test's name on the line its first output starts.
    for line in stdout
        .lines()
        .filter_map(|line| line.find("new node:").map(|at| &line[at..]))
    {
        println!("{line}");
    }
    assert!(joiner.status.success(), "the new node failed: {stdout}");
    println!(
        "leader: {:.0} MiB before the transfer, peak {:.0} MiB during it (+{:.0} MiB)",
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before))
    );
    leader.shutdown().await;
}

/// The benchmark's new node: joins, waits for every page, reports.
async fn join_and_measure(leader: &str, pages: usize) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let idle = rss_bytes();
    let peak = PeakMemory::start();
    let started = Instant::now();
    let config = NodeConfig {
        data_dir: Some(dir.path().to_path_buf()),
        join: vec![leader.parse().expect("the leader's address")],
        ..test_config(1)
    };
    let node = Node::builder()
        .config(config)
        .start()
        .await
        .expect("node starts");
    wait_for_pages(&node, pages, Duration::from_secs(1800)).await;
    let elapsed = started.elapsed();
    let peak = peak.stop();
    let after = rss_bytes();
    let snapshot = std::fs::metadata(raft_dir(dir.path()).join(SNAPSHOT_FILE))
        .expect("the installed snapshot")
        .len();
    println!(
        "new node: joined, received and installed {:.0} MiB in {elapsed:.1?} = {:.1} MiB/s",
        mib(snapshot),
        mib(snapshot) / elapsed.as_secs_f64()
    );
    println!(
        "new node: {:.0} MiB before, {:.0} MiB with the state, peak {:.0} MiB: {:.0} MiB \
         above the state it keeps",
        mib(idle),
        mib(after),
        mib(peak),
        mib(peak.saturating_sub(after))
    );
    node.shutdown().await;
}
