//! The p2pqueue seed's distributed queue — `push`, `pop(timeout)`, `size`,
//! `close` — built on the call machinery.
//!
//! Items stay on the node that pushed them until someone pops them. A pop
//! takes a local item if there is one, and otherwise pulls one from a peer
//! that holds some (heartbeats say who holds how many), so items flow to
//! wherever consumers are: balancing by pulling, like work stealing. Order
//! is not guaranteed, as in the seed. An item handed to a popper is gone
//! from its holder; items live and die with the node that holds them (use
//! durable jobs for work that must survive a node).
//!
//! [`store`] is this node's share (and the internal functions peers reach
//! it with); [`dist`] is a queue as a user sees it, reaching the other
//! shares through the node's calls, or through a running call's context;
//! [`functions`] are what `shoal.queue(name)` in JavaScript calls.
//!
//! ```text
//!  push ─► this node's share          pop ─► this node's share, else
//!                                            the peers whose heartbeats say they hold some
//!                                            (shoal.queue.share.take), every so often all of them
//! ```

pub mod dist;
pub mod functions;
pub mod store;

pub use dist::{DistQueue, ShareCaller};
pub use store::{MAX_QUEUE_ITEMS, QueueStore};
