//! A whole cluster inside one process, on loopback with port 0: what
//! `shoal demo` and `shoal bench` run on, and what tests build on.

use crate::node::builder::{NodeBuilder, StartError};
use crate::node::handle::Node;
use std::time::Duration;

/// How long the members of a local cluster get to find each other.
const FORM_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a local cluster did not form.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("node {index} did not start: {source}")]
    Start {
        index: usize,
        #[source]
        source: StartError,
    },
    #[error(
        "node {peer} sees {seen} of its {expected} peers and is connected to {connected} after {FORM_TIMEOUT:?}"
    )]
    NotFormed {
        peer: libp2p::PeerId,
        seen: usize,
        connected: usize,
        expected: usize,
    },
}

/// Starts `count` nodes that join the first one, each built by `build`
/// (given its index), and returns once every node sees and is connected to
/// all the others (only sees them, where nodes close idle connections within
/// the time they get to form).
pub async fn start_local_cluster(
    count: usize,
    build: impl Fn(usize, NodeBuilder) -> NodeBuilder,
) -> Result<Vec<Node>, LocalClusterError> {
    let mut nodes: Vec<Node> = Vec::with_capacity(count);
    for index in 0..count {
        let mut builder = build(index, Node::builder());
        if let Some(first) = nodes.first() {
            builder.config_mut().join = first.listen_addrs();
        }
        let node = builder
            .start()
            .await
            .map_err(|source| LocalClusterError::Start { index, source })?;
        nodes.push(node);
    }
    let expected = count.saturating_sub(1);
    // Nodes that close idle connections sooner than they get to form hold
    // none of them for long: for them, knowing every member is formed.
    let keep_connections = nodes
        .iter()
        .all(|node| node.config().idle_timeout >= FORM_TIMEOUT);
    for node in &nodes {
        let seen = node.wait_for_peers(expected, FORM_TIMEOUT).await;
        let connected = if keep_connections {
            connect_the_rest(node, &nodes).await;
            node.wait_for_connections(expected, FORM_TIMEOUT).await
        } else {
            expected
        };
        if seen < expected || connected < expected {
            return Err(LocalClusterError::NotFormed {
                peer: node.peer_id(),
                seen,
                connected,
                expected,
            });
        }
    }
    Ok(nodes)
}

/// Dials the nodes of `nodes` that `node` holds no connection to. Nodes
/// connect on demand (a node holds a bounded set of connections), and
/// nothing a small cluster does while it forms has to connect every pair;
/// a local cluster starts with every pair connected, as if each had
/// called the others.
async fn connect_the_rest(node: &Node, nodes: &[Node]) {
    let connected = node.connected_peers().await;
    for other in nodes {
        if other.peer_id() != node.peer_id() && !connected.contains(&other.peer_id()) {
            for addr in other.listen_addrs() {
                node.dial(addr).await;
            }
        }
    }
}
