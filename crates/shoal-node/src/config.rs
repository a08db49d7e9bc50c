//! How a node is set up. Everything comes in as values — listeners, peers to
//! join, the secret — so tests can use port 0 and temporary directories.

use libp2p::Multiaddr;
use shoal_proto::version::PROTOCOL_VERSION;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one node. [`NodeConfig::default`] is a loopback node with an
/// ephemeral identity and one slot per core.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Addresses to listen on; port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and again while the node has no peers.
    pub join: Vec<Multiaddr>,
    /// Calls run at once; 0 makes a node that only calls others.
    pub slots: u32,
    /// Where the identity key lives; `None` means a fresh identity each run.
    pub data_dir: Option<PathBuf>,
    /// The cluster secret (32 bytes); nodes without it cannot connect.
    pub secret: Option<[u8; 32]>,
    /// Name of the cluster: its membership protocol and DHT rendezvous key.
    pub cluster_name: String,
    /// Discover peers with mDNS. Off by default: multicast leaves the machine.
    pub mdns: bool,
    /// The membership period: in it each member probes two others (SWIM) and sends a load report.
    pub heartbeat_interval: Duration,
    /// Periods a suspected member has to answer before it is declared dead.
    pub heartbeat_misses: u32,
    /// Deadline of a call when the caller gives none. Generous, because a
    /// call that legitimately runs long must not be cut short; every call
    /// still resolves within it.
    pub default_deadline: Duration,
    /// Memoized results kept per node (least recently used are dropped).
    pub memo_capacity: usize,
    /// Calls that may wait for a slot on this node; past it, a node answers
    /// `overloaded` and the call's owner places it elsewhere.
    pub max_queued_calls: usize,
    /// Calls this node may wait for at once as their caller; past it, new
    /// calls fail at once with `overloaded`.
    pub max_pending_calls: usize,
    /// Heap limit of each JavaScript engine. A script that allocates
    /// without end fails its call, not the node.
    pub js_memory_limit: usize,
    /// How long JavaScript may run without yielding before it is stopped.
    pub js_time_limit: Duration,
    /// Whether this node keeps a replica of jobs and documents and may vote.
    /// Off for nodes that only call into a cluster (like `shoal call`).
    pub raft: bool,
    /// When Raft snapshots are taken and how they travel to followers.
    pub raft_snapshots: RaftSnapshotConfig,
    /// Learners the Raft leader keeps beside the voters, ready to take a
    /// dead voter's place; the other nodes hold no replica.
    pub raft_standbys: usize,
    /// A call stream with no traffic for this long is closed cleanly, and a
    /// connection with no stream for this long too: a node holds
    /// connections to the peers it works with now, not to every peer it
    /// ever reached (SWIM reaches every member in turn).
    pub idle_timeout: Duration,
    /// Labels jobs may require (`--label printer=color`).
    pub labels: BTreeMap<String, String>,
    /// Resources jobs may require (`--resource gpu=1`).
    pub resources: BTreeMap<String, u64>,
    /// Where to serve the HTTP API; `None` serves none. Port 0 picks one.
    pub http: Option<SocketAddr>,
    /// When set, every HTTP request must carry `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// A node whose running and queued calls per slot reach this raises
    /// an `overloaded` alert.
    pub alert_load: f64,
    /// How long a draining node lets running calls and jobs finish before
    /// it hands their work back (`POST /v1/drain` may name another).
    pub drain_timeout: Duration,
    /// The protocol version this node says it speaks: this release's
    /// [`PROTOCOL_VERSION`]. Any other value only pretends to be another
    /// release, so tests can upgrade a cluster without building one (its
    /// formats stay this release's); the `shoal` binary takes it from
    /// `SHOAL_SIMULATE_PROTOCOL_VERSION`.
    #[doc(hidden)]
    pub protocol_version: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            join: Vec::new(),
            slots: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            data_dir: None,
            secret: None,
            cluster_name: "shoal".to_string(),
            mdns: false,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_misses: 2,
            default_deadline: Duration::from_secs(300),
            memo_capacity: 10_000,
            // Far above any backlog that still makes sense to queue (minutes
            // of work at typical call rates), far below what exhausts memory.
            max_queued_calls: 65_536,
            max_pending_calls: 262_144,
            js_memory_limit: 256 * 1024 * 1024,
            js_time_limit: Duration::from_secs(60),
            raft: true,
            raft_snapshots: RaftSnapshotConfig::default(),
            raft_standbys: 2,
            idle_timeout: Duration::from_secs(30),
            // What systemd and Kubernetes give a stopping process by default
            // (90 s and 30 s): long enough for most calls to finish.
            drain_timeout: Duration::from_secs(30),
            labels: BTreeMap::new(),
            resources: BTreeMap::new(),
            http: None,
            api_token: None,
            alert_load: 4.0,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// When Raft snapshots are taken and how they travel. The defaults suit
/// real clusters; tests shrink them to exercise snapshots with little data.
#[derive(Clone, Debug)]
pub struct RaftSnapshotConfig {
    /// Log entries applied between two snapshots. Each snapshot writes the
    /// whole state, so not too often; it lets the log before it be purged.
    pub every_entries: u64,
    /// Entries kept in the log behind the snapshot, so that a follower
    /// lagging by fewer catches up from the log, not a whole snapshot.
    pub keep_entries: u64,
    /// Bytes of snapshot per message to a follower. Each chunk is one frame
    /// on the call stream, with Raft's other messages flowing in between;
    /// kept between 4 KiB and 4 MiB, far below the frame limit.
    pub chunk_bytes: usize,
    /// The largest snapshot this node accepts from a leader: a larger one
    /// is refused, with an error naming this setting, before it fills the
    /// disk. A snapshot is about the size of the state as JSON.
    pub max_bytes: u64,
}

impl Default for RaftSnapshotConfig {
    fn default() -> Self {
        RaftSnapshotConfig {
            every_entries: 20_000,
            keep_entries: 1_000,
            // Large enough that the round trip per chunk costs little, small
            // enough that a chunk delays a heartbeat behind it by
            // milliseconds.
            chunk_bytes: 1024 * 1024,
            max_bytes: 64 * 1024 * 1024 * 1024,
        }
    }
}

/// Turns a passphrase (the content of a secret file, or `SHOAL_SECRET`) into
/// the 32-byte pre-shared key libp2p `pnet` needs.
pub fn secret_from_passphrase(passphrase: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(passphrase.trim().as_bytes()).into()
}
