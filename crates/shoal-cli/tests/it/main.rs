//! The `shoal` binary as its users run it, in one test binary (linking the
//! whole stack once, not once per file): real `shoal node` processes,
//! killed with SIGKILL, and the commands a user types.
//!
//! - [`chaos`]: the short chaos run — nothing lost or duplicated.
//! - [`chat_tmux`]: `shoal chat` in tmux, two nodes, history for latecomers.
//! - [`cli_data`]: `shoal db`, `submit`, `jobs`, `status`; clear refusals.
//! - [`cluster_processes`]: calls survive a killed process.
//! - [`cluster_twenty`]: twenty processes: calls spread, a kill is known
//!   everywhere, a labelled job runs where it may.
//! - [`config_file`]: `shoal node --config`, overridden by flags and the
//!   environment; `shoal config print` round trips and hides secrets.
//! - [`dashboard_browser`]: the web dashboard in headless Chromium.
//! - [`demo`]: `shoal demo`, the README's first command.
//! - [`durable_processes`]: jobs survive a killed Raft leader.
//! - [`http_failover`]: the Rust client moves off a killed node.
//! - [`job_placement`]: jobs run only on nodes that meet their labels and
//!   resources, under load.
//! - [`job_recovery`]: a killed node's jobs run again long before their
//!   lease runs out.
//! - [`interop_js`]: a js-libp2p peer talks to a node.
//! - [`javascript`]: JavaScript across processes, shipped with calls.
//! - [`mdns_netns`]: mDNS discovery between network namespaces.
//! - [`private_cluster`]: only nodes with the secret join.
//! - [`python_workers`]: functions in Python, served by worker processes
//!   (pytest, `clients/python`).
//! - [`queue_processes`]: the queue over HTTP: pushed once, popped once.
//! - [`rolling_upgrade`]: a process of the next release serves until
//!   killed; one two releases ahead is refused.
//! - [`topics_cli`]: `shoal pub` and `shoal sub` across two nodes.
//!
//! Tests run as threads of one process, each starting its own nodes on
//! port 0 with their own data directories. Tests that need root (network
//! namespaces) are ignored, saying so, unless the build ran as root
//! (`cfg(shoal_root)`, from `build.rs`); CI runs as root. Likewise the
//! tmux test without tmux (`cfg(shoal_tmux)`), the browser test without
//! Chromium (`cfg(shoal_browser)`; CI installs both), and the Python test
//! without python3 (`cfg(shoal_python)`).

mod chaos;
mod chat_tmux;
mod cli_data;
mod cluster_processes;
mod cluster_twenty;
mod common;
mod config_file;
mod dashboard_browser;
mod demo;
mod drain;
mod durable_processes;
mod http_failover;
mod interop_js;
mod javascript;
mod job_placement;
mod job_recovery;
mod mdns_netns;
mod private_cluster;
mod python_workers;
mod queue_processes;
mod rolling_upgrade;
mod topics_cli;
