//! Joining a cluster from the command line: a node with no slots and no
//! replica, which only sends calls, writes and reads to the members.

use crate::node_cmd::ClusterArgs;
use shoal_node::testkit::test_config;
use shoal_node::{Node, NodeConfig};
use std::time::Duration;

/// How long a command waits to hear from the cluster.
const FIND_CLUSTER: Duration = Duration::from_secs(10);

/// Joins the cluster named by `--join` and waits until a member is live.
pub async fn connect(cluster: &ClusterArgs) -> anyhow::Result<Node> {
    anyhow::ensure!(
        !cluster.join.is_empty(),
        "give a node of the cluster with --join ADDR"
    );
    let node = Node::builder()
        .config(NodeConfig {
            join: cluster.join.clone(),
            secret: cluster.secret()?,
            raft: false,
            ..test_config(0)
        })
        .start()
        .await?;
    let found = node.wait_for_peers(1, FIND_CLUSTER).await;
    anyhow::ensure!(
        found > 0,
        "no node answered at {} within {FIND_CLUSTER:?} (is it running, and does it use the same secret?)",
        cluster
            .join
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(node)
}
