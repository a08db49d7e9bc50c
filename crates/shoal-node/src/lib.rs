//! A running Shoal node.
//!
//! Module map:
//!
//! - [`node`]: the embedding API — build, start, call, queue, shut down.
//! - [`net`]: the only code that touches libp2p; one task owns the swarm,
//!   and [`net::links`] keeps a long-lived call stream per peer.
//! - [`cluster`]: the peer table — liveness from heartbeats and connections.
//! - [`sched`]: owner and executor of calls; placement and stealing are pure
//!   functions in [`sched::placement`].
//! - [`registry`]: functions by name and the context they run with.
//! - [`queue`]: the distributed queue of the p2pqueue seed.
//! - [`scripts`]: JavaScript functions, and scripts shipped with calls.
//! - [`raft`], [`jobs`], [`store`], [`data`]: durable jobs and documents
//!   replicated with openraft; [`data`] is their API on [`Node`].
//! - [`builtins`]: the functions every `shoal node` offers (pi, fib, noop).
//!
//! ```text
//!  Node ──► Sched ──► Links ══ libp2p stream ══ Links ──► Sched (peer)
//!   │         ▲                                              │
//!   │         └──────────── Frame::Result ◄──────────────────┘
//!   └──► cluster task ◄── NetEvent ── net event loop (Swarm)
//! ```

pub mod builtins;
pub mod cluster;
pub mod config;
pub mod data;
pub mod events;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod local;
pub mod metrics;
pub mod net;
pub mod node;
pub mod queue;
pub mod raft;
pub mod registry;
mod router;
pub mod sched;
pub mod scripts;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::NodeConfig;
pub use data::{DataError, Read};
pub use libp2p::{Multiaddr, PeerId};
pub use node::{Node, NodeBuilder, PeerStatus, StartError};
pub use registry::{CallContext, FnError, FnResult, Function};
pub use shoal_js::Script;
pub use shoal_proto::{CallError, ErrorCode};
