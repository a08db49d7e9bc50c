//! Consensus: openraft with a redb log store and an in-memory state machine
//! snapshotted into a file, networked over the nodes' call streams.
//!
//! [`consensus`] is the module the rest of the node talks to (writes and
//! reads), whose writes the leader's [`proposer`] commits, several to an
//! entry; [`upkeep`] is the leader's care of who holds the log and who
//! votes, by the rules in [`membership`]; [`network`] carries Raft messages as frames and
//! [`server`] answers them; [`log_store`] keeps the log in redb,
//! [`state_machine`] the state in memory and its snapshot in a file
//! ([`snapshot_store`]), which [`snapshot_transfer`] sends to followers in
//! chunks; [`types`] and [`query`] are what is replicated and what can be
//! asked of it.
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
mod log_tail;
pub mod membership;
pub mod network;
mod proposer;
pub mod query;
pub mod server;
pub mod snapshot_store;
pub mod snapshot_transfer;
pub mod state_machine;
pub mod types;
pub mod upkeep;
