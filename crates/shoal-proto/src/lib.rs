//! Shoal's shared vocabulary: identifiers, the frames nodes exchange, the
//! heartbeat every node gossips, and the stable error codes users see.
//!
//! This crate knows nothing about tokio, libp2p or HTTP, so the same types
//! serve the node, the client and the CLI.
//!
//! ```text
//!   owner node ── Frame::Call ──────────► executor node
//!        ▲                                     │
//!        └──────── Frame::Result ◄─────────────┘
//!                 (from whoever ran it; the first result wins)
//! ```

pub mod error;
pub mod heartbeat;
pub mod ids;
pub mod wire;

pub use error::{CallError, ErrorCode};
pub use heartbeat::{FunctionInfo, Heartbeat};
pub use ids::{CallId, CallKey, NodeId};
pub use wire::{CallRequest, Frame, FrameError, JobRef, Outcome, StolenCall};
