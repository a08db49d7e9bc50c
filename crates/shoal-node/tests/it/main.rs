//! Shoal's node as its users see it, in one test binary (linking the whole
//! stack once, not once per file): in-process clusters on loopback with
//! port 0, each test starting the nodes it needs.
//!
//! - [`bad_input`]: every kind of bad input, a clear error, nothing lost.
//! - [`cluster`]: calls across nodes, the distributed queue, dying nodes.
//! - [`connections`]: an idle node holds (nearly) no connection.
//! - [`dns_names`]: nodes join by host name.
//! - [`doc_queries`]: the document store queried and written by filter.
//! - [`durable`]: jobs and documents replicated with Raft.
//! - [`http_api`]: every route of the HTTP API, through the router.
//! - [`lifecycle`]: a full node's calls go elsewhere; shutdown leaves nothing.
//! - [`raft_members`]: Raft on a few nodes; the others go through them.
//! - [`raft_snapshots`]: snapshots sent in chunks to a node that joins late.
//! - [`raft_storage`]: the Raft log and state machine on disk.
//! - [`scripts`]: JavaScript functions, loaded or shipped with calls.
//! - [`telemetry`]: events and metrics a user watches.
//! - [`topics`]: publish and subscribe across nodes, kept messages, scripts.
//! - [`upgrades`]: a node of the next release joins and serves; one two
//!   releases ahead is refused.
//!
//! Tests run as threads of one process: none may rely on process-wide
//! state. The one that measures the process ([`bad_input`]'s stream flood)
//! runs alone in a child process ([`own_process`]). Tests wait for what
//! they need with [`wait_until`](shoal_node::testkit::wait_until), never a bare sleep.

mod bad_input;
mod cluster;
mod connections;
mod dns_names;
mod doc_queries;
mod durable;
mod http_api;
mod lifecycle;
mod own_process;
mod raft_members;
mod raft_snapshots;
mod raft_storage;
mod scripts;
mod telemetry;
mod topics;
mod upgrades;
