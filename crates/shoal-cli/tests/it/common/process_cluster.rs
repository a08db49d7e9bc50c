//! A cluster of real `shoal node` processes on loopback: started together,
//! waited for until they see each other, and killed or restarted one at a
//! time the way a machine dies and comes back.

use super::{NodeProcess, WAIT, wait_until};
use shoal_client::Client;
use std::time::Duration;

/// Each status request during formation is short: a node that does not
/// answer now is asked again at the next check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Nodes that joined the first one; each is killed when dropped.
pub struct ProcessCluster {
    pub nodes: Vec<NodeProcess>,
    /// Every node starts with these, restarts included.
    args: Vec<String>,
}

impl ProcessCluster {
    /// Starts `count` nodes with `args`, each joining the first, and waits
    /// until every node sees all of them alive and knows a Raft leader.
    pub async fn start(count: usize, args: &[&str]) -> ProcessCluster {
        Self::start_each(args, &vec![&[][..]; count]).await
    }

    /// Starts one node per entry of `own`, node `i` with `common` and then
    /// `own[i]` (labels, resources, slots of its own); a restarted node
    /// gets `common` only.
    pub async fn start_each(common: &[&str], own: &[&[&str]]) -> ProcessCluster {
        let args: Vec<String> = common.iter().map(|a| a.to_string()).collect();
        let args_of = |index: usize| {
            let mut all = as_strs(&args);
            all.extend_from_slice(own[index]);
            all
        };
        let first = NodeProcess::start(&args_of(0));
        let join = first.addr.to_string();
        let mut nodes = vec![first];
        for index in 1..own.len() {
            let mut node_args = args_of(index);
            node_args.extend(["--join", join.as_str()]);
            nodes.push(NodeProcess::start(&node_args));
        }
        let cluster = ProcessCluster { nodes, args };
        cluster.wait_formed().await;
        cluster
    }

    /// Every node's HTTP API, in the order of `nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.http.clone()).collect()
    }

    /// Which of `nodes` has the peer id `peer_id`.
    pub fn index_of(&self, peer_id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.peer_id() == peer_id)
            .unwrap_or_else(|| panic!("{peer_id} is none of this cluster's nodes"))
    }

    /// SIGKILLs node `index` and takes it out of `nodes`, keeping its data
    /// directory for [`ProcessCluster::restart`].
    pub fn kill_keeping_data(&mut self, index: usize) -> tempfile::TempDir {
        self.nodes.remove(index).kill_keeping_data()
    }

    /// Starts a killed node again on its data directory, joined to the
    /// first of the others; it is the last of `nodes` then.
    pub fn restart(&mut self, data: tempfile::TempDir) -> &NodeProcess {
        let join = self.nodes[0].addr.to_string();
        let node = NodeProcess::start_in(data, &with_join(&self.args, &join));
        self.nodes.push(node);
        self.nodes.last().expect("just pushed")
    }

    /// Waits until Raft has `count` voters as every node sees it: with
    /// three, losing any one node leaves a majority.
    pub async fn wait_for_voters(&self, count: usize) {
        for node in &self.nodes {
            let client = status_client(node);
            wait_until(
                WAIT,
                &format!("{count} voters at {}", node.http),
                async || {
                    let raft = client.cluster().await.map_err(|e| e.to_string())?.raft;
                    if raft.voters.len() >= count && raft.leader.is_some() {
                        Ok(())
                    } else {
                        Err(format!("{raft:?}"))
                    }
                },
            )
            .await;
        }
    }

    async fn wait_formed(&self) {
        let count = self.nodes.len();
        for node in &self.nodes {
            let client = status_client(node);
            let what = format!("{} to see {count} nodes alive and a leader", node.http);
            wait_until(WAIT, &what, async || {
                let view = client.cluster().await.map_err(|e| e.to_string())?;
                let alive = view
                    .members
                    .iter()
                    .filter(|m| m.liveness == "alive")
                    .count();
                if alive == count && view.raft.leader.is_some() {
                    Ok(())
                } else {
                    Err(format!("{alive} alive, {:?}", view.raft))
                }
            })
            .await;
        }
    }
}

/// A client of `node` alone, that fails fast instead of retrying.
fn status_client(node: &NodeProcess) -> Client {
    Client::builder([&node.http])
        .request_timeout(REQUEST_TIMEOUT)
        .retry_for(Duration::ZERO)
        .build()
        .expect("a valid node URL")
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn with_join<'a>(args: &'a [String], join: &'a str) -> Vec<&'a str> {
    let mut all = as_strs(args);
    all.extend(["--join", join]);
    all
}
