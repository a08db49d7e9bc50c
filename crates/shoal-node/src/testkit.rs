//! Helpers for tests that start whole clusters in one process, on loopback
//! with port 0, so tests need no setup and never collide.

use crate::{Node, NodeBuilder, NodeConfig};
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
    let mut nodes: Vec<Node> = Vec::with_capacity(count);
    for index in 0..count {
        let mut builder = build(index, Node::builder());
        if let Some(first) = nodes.first() {
            builder.config_mut().join = first.listen_addrs();
        }
        nodes.push(builder.start().await.expect("test node starts"));
    }
    for node in &nodes {
        let seen = node
            .wait_for_peers(count - 1, Duration::from_secs(20))
            .await;
        assert_eq!(
            seen,
            count - 1,
            "node {} sees {seen} of {} peers",
            node.peer_id(),
            count - 1
        );
        let connected = node
            .wait_for_connections(count - 1, Duration::from_secs(20))
            .await;
        assert_eq!(
            connected,
            count - 1,
            "node {} is connected to {connected} of {} peers",
            node.peer_id(),
            count - 1
        );
    }
    nodes
}
