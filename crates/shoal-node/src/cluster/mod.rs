//! Who is in the cluster, how loaded each member is, and what this node
//! tells the others about itself.
//!
//! [`peers`] is the membership table (plain state, tested without a
//! network) and the read-only [`PeerView`](peers::PeerView) the rest of the
//! node places calls with; [`heartbeat`] describes this node; [`task`] is
//! the one task that writes the table.
//!
//! ```text
//!  net events (heartbeats, disconnections) ─┐
//!  calls (a call stream broke) ─────────────┼─► cluster task ─► PeerTable ─► PeerView (readers)
//!  clock (every heartbeat interval) ────────┘        │
//!                                                     ├─► publish own heartbeat
//!                                                     ├─► a peer died: its calls run elsewhere
//!                                                     └─► events and alerts
//! ```

pub mod heartbeat;
pub mod peers;
pub mod sim;
pub mod swim;
pub mod task;
