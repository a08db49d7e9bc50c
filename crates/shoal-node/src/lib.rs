//! A running Shoal node.
//!
//! Module map (each module's own comment says what it owns and how data
//! flows through it):
//!
//! - [`node`]: the embedding API — [`NodeBuilder`] assembles a node from
//!   its parts in one written-down order; [`Node`] calls, loads scripts,
//!   uses queues, jobs and documents, and shuts down.
//! - [`net`]: the only code that touches libp2p; one task owns the swarm,
//!   and [`net::links`] keeps long-lived call streams: call frames go
//!   straight to the calls, Raft frames to a bounded inbox.
//! - [`cluster`]: the peer table (written by the cluster task alone, read
//!   through a [`PeerView`](cluster::peers::PeerView)), heartbeats, and the
//!   cluster task.
//! - [`calls`]: owner and executor of calls, placement, stealing, memo,
//!   the function registry and JavaScript.
//! - [`raft`], [`jobs`], [`store`]: durable jobs and documents replicated
//!   with openraft; [`node::data`] is their API on [`Node`].
//! - [`queue`]: the distributed queue of the p2pqueue seed.
//! - [`topics`]: publish/subscribe on topics of the user's own.
//! - [`http`]: the HTTP API every node serves.
//! - [`telemetry`]: events, alerts and Prometheus metrics.
//! - [`builtins`]: the functions every `shoal node` offers (pi, fib, noop).
//! - [`config`], [`identity`], [`clock`]: settings, the node's key, time.
//! - [`local`]: a whole cluster in one process (demo, bench, tests).
//!
//! ```text
//!  Node ──► Calls ──► Links ══ libp2p stream ══ Links ──► Calls (peer)
//!   │         ▲                                                     │
//!   │         └────────────── Frame::Result ◄─────────────┘
//!   └──► cluster task ◄── NetEvent ── net event loop (Swarm)
//! ```

pub mod builtins;
pub mod calls;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod local;
pub mod net;
pub mod node;
pub mod queue;
pub mod raft;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timeline;
pub mod topics;

pub use calls::context::CallContext;
pub use calls::registry::{FnError, FnResult, Function};
pub use config::NodeConfig;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{DataError, Node, NodeBuilder, PeerStatus, Read, StartError};
pub use shoal_js::Script;
pub use shoal_proto::{CallError, ErrorCode};
