//! Bounded connections: membership travels in sealed UDP datagrams, so an
//! idle node keeps no connection to members it does not call or replicate
//! to, and opens one again when it has something to say.

use serde_json::json;
use shoal_node::testkit::{start_cluster, test_config, wait_until};
use shoal_node::{Node, NodeConfig};
use std::time::Duration;

/// Six nodes that close connections idle for 500 ms, with Raft on three
/// of them; only node 0 runs `where`, which names the node that ran it.
async fn six_quiet_nodes() -> Vec<Node> {
    start_cluster(6, |i, b| {
        let b = b.config(NodeConfig {
            raft_standbys: 0,
            idle_timeout: Duration::from_millis(500),
            ..test_config(2)
        });
        if i == 0 {
            b.register("where", |_ctx, _args| async move { Ok(json!("node 0")) })
        } else {
            b
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_outside_raft_holds_at_most_one_connection_and_still_calls_anywhere() {
    let nodes = six_quiet_nodes().await;
    let outsider = wait_until(Duration::from_secs(30), "a node outside Raft", async || {
        (1..nodes.len())
            .find(|&i| !nodes[i].raft_status().member && nodes[0].raft_status().member)
            .ok_or("every node holds a replica")
    })
    .await;
    let node = &nodes[outsider];

    // Once the joins are over, membership goes by datagram and nothing
    // keeps connections open: the node holds at most one (it held one to
    // every peer before), in several looks in a row, not one lucky moment.
    wait_until(
        Duration::from_secs(30),
        "at most one connection",
        async || {
            for _ in 0..6 {
                let connected = node.connected_peers().await;
                if connected.len() > 1 {
                    return Err(format!("connected to {connected:?}"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(())
        },
    )
    .await;
    assert_eq!(
        node.wait_for_peers(nodes.len() - 1, Duration::ZERO).await,
        nodes.len() - 1,
        "membership holds without connections"
    );

    // A call to a function only node 0 has dials it on demand.
    let ran_on = node
        .call("where", json!(null))
        .await
        .expect("the call runs");
    assert_eq!(ran_on, json!("node 0"));
}
