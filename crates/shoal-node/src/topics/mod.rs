//! Topics: publish and subscribe on gossipsub topics of the user's own.
//!
//! ```text
//!  publish(topic, value) ─► TopicHub: check, number, keep if retained ─► gossip ─► peers' hubs
//!                              │                                                    │
//!                              └─► local subscribers ◄── in order per publisher ◄───┘
//! ```
//!
//! Semantics, as in Redis pub/sub or NATS core: best effort (a node that is
//! down, partitioned or too slow misses messages; a subscriber learns of a
//! gap from the publisher's sequence numbers, or from a `Lagged` event when
//! it fell behind locally); order kept per publisher (a message that
//! arrives early waits up to 500 ms for the ones before it, see [`order`]);
//! a message
//! carries its publisher's peer id from the gossip signature. A topic may
//! keep its last K messages (`retain`): a new subscriber gets them first,
//! fetched from the other nodes when its own node has not been following
//! the topic. A subscriber that reconnects (`Last-Event-ID`) gets the kept
//! messages after the last one it saw; messages that were not kept and came
//! while it was away are gone.
//!
//! [`hub`] holds the state (plain, behind one lock) and the gossip side;
//! [`functions`] are what peers and scripts call; `node/topics.rs` adds what
//! needs the calls: history from other nodes and subscriptions of scripts.

pub mod functions;
pub mod hub;
pub mod order;

pub use hub::{PublishOptions, Subscription, TopicEvent, TopicHub};
