//! What the tests share: real `shoal node` processes, one at a time
//! ([`NodeProcess`]) or as a cluster ([`ProcessCluster`]); an in-process
//! node that calls into them ([`driver`]); waiting for a condition
//! instead of sleeping ([`wait_until`]); a cluster's durable jobs
//! ([`all_jobs`], [`wait_for_finished_jobs`]); a child's output line by
//! line ([`Lines`]); and full-screen commands in a private tmux ([`Tmux`]).

mod jobs;
mod lines;
mod node_process;
mod process_cluster;
mod tmux;

pub use jobs::{all_jobs, wait_for_finished_jobs};
pub use lines::Lines;
pub use node_process::NodeProcess;
pub use process_cluster::ProcessCluster;
pub use shoal_node::testkit::wait_until;
pub use tmux::Tmux;

use shoal_node::testkit::test_config;
use shoal_node::{Multiaddr, Node, NodeConfig};
use std::time::Duration;

/// Long enough for processes to start and find each other on a loaded
/// machine; anything longer is a hang.
pub const WAIT: Duration = Duration::from_secs(20);

/// An in-process node that only calls (no slots, no replica), joined to `addr`.
pub async fn driver(addr: &Multiaddr, secret: Option<[u8; 32]>) -> Node {
    Node::builder()
        .config(NodeConfig {
            secret,
            raft: false,
            ..test_config(0)
        })
        .join(addr.clone())
        .start()
        .await
        .unwrap()
}

/// Installs the npm packages pinned in `dir`'s lockfile on first use (`npm
/// ci`); `marker` is a package whose presence means it has run.
pub fn npm_ci(dir: &std::path::Path, marker: &str) {
    if dir.join("node_modules").join(marker).exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("npm runs (Node.js and npm are needed for this test)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}
