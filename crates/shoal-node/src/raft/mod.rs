//! Consensus: openraft with a redb log store and an in-memory state machine
//! snapshotted into redb, networked over a libp2p protocol of the node.
//!
//! ```text
//!   Node::submit_job / db ops ──► leader? ──no──► forward to the leader
//!                                   │yes
//!                                   ▼
//!                         Raft::client_write(Command)
//!                                   │ replicated to a majority of voters
//!                                   ▼
//!                 StateMachine::apply ──► ShoalState (jobs + documents)
//! ```

pub mod consensus;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod query;
pub mod state_machine;
pub mod types;
