//! Helpers for tests that start whole clusters in one process, on loopback
//! with port 0, so tests need no setup and never collide; and [`wait`], how
//! every test waits for a condition instead of sleeping.

pub mod wait;

pub use wait::wait_until;

use crate::config::NodeConfig;
use crate::node::builder::NodeBuilder;
use crate::node::handle::Node;
use std::time::Duration;

/// Heartbeats in tests come faster so clusters form and notice deaths quickly.
pub const TEST_HEARTBEAT: Duration = Duration::from_millis(200);

/// A config for a loopback test node with `slots` slots.
pub fn test_config(slots: u32) -> NodeConfig {
    NodeConfig {
        slots,
        heartbeat_interval: TEST_HEARTBEAT,
        ..NodeConfig::default()
    }
}

/// Starts `count` nodes that join the first one, each built by `build`
/// (given its index), and waits until every node sees all the others.
pub async fn start_cluster(
    count: usize,
    build: impl Fn(usize, NodeBuilder) -> NodeBuilder,
) -> Vec<Node> {
    crate::local::start_local_cluster(count, build)
        .await
        .expect("test cluster forms")
}
