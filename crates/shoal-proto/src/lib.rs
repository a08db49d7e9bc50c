//! Shoal's shared vocabulary: identifiers, the frames nodes exchange, the
//! heartbeat every node gossips, the stable error codes users see, and the
//! protocol version with the rules that let adjacent releases work together.
//!
//! This crate knows nothing about tokio, libp2p or HTTP servers, so the same
//! types serve the node, the client and the CLI. `api` holds the HTTP API's
//! bodies (with their OpenAPI schemas).
//!
//! ```text
//!   owner node ── Frame::Call ──────────► executor node
//!        ▲                                     │
//!        └──────── Frame::Result ◄─────────────┘
//!                 (from whoever ran it; the first result wins)
//! ```

pub mod api;
pub mod error;
pub mod heartbeat;
pub mod ids;
pub mod version;
pub mod wire;

pub use error::{CallError, ErrorCode};
pub use heartbeat::{FunctionInfo, Heartbeat, RaftRole};
pub use ids::{CallId, CallKey, NodeId};
pub use wire::{CallRequest, Frame, FrameError, JobRef, Outcome, StolenCall};
