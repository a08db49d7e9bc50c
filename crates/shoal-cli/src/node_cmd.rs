//! `shoal node`: one node of a cluster, serving the built-in functions.

use crate::api::read_token;
use crate::args::{parse_duration, parse_label, parse_resource, read_script};
use crate::config_file::ConfigFileArg;
use crate::python_workers::{self, PythonWorkers};
use anyhow::Context;
use clap::{ArgAction, Args};
use shoal_node::config::secret_from_passphrase;
use shoal_node::telemetry::logs::LogRing;
use shoal_node::{Multiaddr, Node, NodeConfig, builtins};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a node reaches its cluster.
#[derive(Args)]
pub struct ClusterArgs {
    /// A node to join (its multiaddr, with /p2p/<peer id> if known); repeatable.
    #[arg(long)]
    pub join: Vec<Multiaddr>,
    /// File with the cluster secret; nodes without it cannot connect.
    #[arg(long, conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
    /// The cluster secret itself (prefer --secret-file: the environment is
    /// visible to other processes of the same user).
    #[arg(long, env = "SHOAL_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

impl ClusterArgs {
    /// The 32-byte pre-shared key, if a secret was given.
    pub fn secret(&self) -> anyhow::Result<Option<[u8; 32]>> {
        Ok(match (&self.secret_file, &self.secret) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the secret file {}", path.display()))?;
                anyhow::ensure!(
                    !text.trim().is_empty(),
                    "the secret file {} is empty",
                    path.display()
                );
                Some(secret_from_passphrase(&text))
            }
            (None, Some(text)) if !text.trim().is_empty() => Some(secret_from_passphrase(text)),
            _ => None,
        })
    }
}

/// Every flag is also a key of the `--config` file (see `config_file`).
#[derive(Args)]
pub struct NodeArgs {
    // Read by `config_file` before the rest is parsed; here for `--help`.
    #[command(flatten)]
    _config_file: ConfigFileArg,
    /// Address to listen on (a libp2p multiaddr).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Vec<Multiaddr>,
    #[command(flatten)]
    cluster_args: ClusterArgs,
    /// A JavaScript file whose `shoal.register` calls add functions; repeatable.
    #[arg(long)]
    script: Vec<PathBuf>,
    /// Calls run at once (default: one per core).
    #[arg(long)]
    slots: Option<u32>,
    /// Where the node keeps its identity.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A label jobs may require (key=value); repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A resource jobs may require (key=amount); repeatable.
    #[arg(long = "resource", value_parser = parse_resource)]
    resources: Vec<(String, u64)>,
    /// Name of the cluster (heartbeat topic and DHT key).
    #[arg(long, default_value = "shoal")]
    cluster: String,
    /// Find peers with mDNS on the local network (multicast leaves this
    /// machine); `--mdns=false` turns off a config file's `mdns = true`.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value_t = false,
        action = ArgAction::Set
    )]
    mdns: bool,
    /// The membership period in milliseconds: two probes and a load report each.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Periods a suspected peer has to answer before it is declared dead.
    #[arg(long, default_value_t = 2)]
    heartbeat_misses: u32,
    /// Where to serve the HTTP API (host:port; port 0 picks one), or `off`.
    #[arg(long, default_value = "127.0.0.1:7070", value_parser = parse_http)]
    http: HttpListen,
    /// Require this token on every HTTP request (prefer --api-token-file).
    #[arg(long, env = "SHOAL_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// A file holding the API token.
    #[arg(long, conflicts_with = "api_token")]
    api_token_file: Option<PathBuf>,
    /// Raise an `overloaded` alert when a node's running and queued calls
    /// per slot reach this.
    #[arg(long, default_value_t = 4.0)]
    alert_load: f64,
    /// Learners the Raft leader keeps beside the voters (2 + ln N of them),
    /// ready to take a dead voter's place; other nodes hold no replica.
    #[arg(long, default_value_t = 2)]
    raft_standbys: usize,
    /// Milliseconds after which an idle call stream, and a connection with
    /// no stream, is closed.
    #[arg(long, default_value_t = 30_000)]
    idle_timeout_ms: u64,
    /// On SIGTERM or SIGINT (or `shoal drain`) the node drains before it
    /// stops: running calls and jobs get this long to finish (e.g. 30s,
    /// 500ms), then their work is handed to other nodes. A second signal
    /// stops it at once.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Python worker processes to start beside the node and keep running;
    /// they serve the functions of --python-module (needs the package:
    /// pip install ./clients/python).
    // Not clap's `requires`: it would ignore a module from the config file.
    #[arg(long, default_value_t = 0)]
    python: usize,
    /// A Python module whose @shoal.function functions the workers serve
    /// (repeatable; imported from the node's working directory or
    /// PYTHONPATH).
    #[arg(long)]
    python_module: Vec<String>,
    /// The Python interpreter for the workers.
    #[arg(long, default_value = "python3")]
    python_bin: String,
    /// Each Python worker's memory limit in MB (its address space): a call
    /// that allocates past it fails with MemoryError.
    #[arg(long)]
    python_memory_mb: Option<u64>,
    /// Pretend to speak this protocol version, to test upgrades without
    /// building the next release (see `shoal_proto::version`).
    #[arg(long, hide = true, env = "SHOAL_SIMULATE_PROTOCOL_VERSION")]
    simulate_protocol_version: Option<u32>,
}

/// `--http`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
pub struct HttpListen(Option<SocketAddr>);

fn parse_http(text: &str) -> Result<HttpListen, String> {
    if text == "off" {
        return Ok(HttpListen(None));
    }
    text.parse()
        .map(|addr| HttpListen(Some(addr)))
        .map_err(|_| format!("expected host:port (like 127.0.0.1:7070) or off, got {text:?}"))
}

impl NodeArgs {
    fn config(&self) -> anyhow::Result<NodeConfig> {
        anyhow::ensure!(
            self.python == 0 || !self.python_module.is_empty(),
            "--python {} needs --python-module: the module whose functions the workers serve",
            self.python
        );
        let defaults = NodeConfig::default();
        Ok(NodeConfig {
            listen: self.listen.clone(),
            join: self.cluster_args.join.clone(),
            slots: self.slots.unwrap_or(defaults.slots),
            data_dir: self.data_dir.clone(),
            secret: self.cluster_args.secret()?,
            cluster_name: self.cluster.clone(),
            mdns: self.mdns,
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms.max(10)),
            heartbeat_misses: self.heartbeat_misses,
            labels: self.labels.iter().cloned().collect(),
            resources: self.resources.iter().cloned().collect(),
            http: self.http.0,
            api_token: read_token(self.api_token.as_deref(), self.api_token_file.as_deref())?,
            alert_load: self.alert_load,
            raft_standbys: self.raft_standbys,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(100)),
            drain_timeout: self.drain_timeout,
            protocol_version: self
                .simulate_protocol_version
                .unwrap_or(defaults.protocol_version),
            ..defaults
        })
    }
}

pub async fn run(args: NodeArgs, logs: Arc<LogRing>) -> anyhow::Result<()> {
    let config = args.config()?;
    let private = config.secret.is_some();
    let mut builder = builtins::register(Node::builder().config(config).logs(logs));
    for path in &args.script {
        builder = builder.script(read_script(path)?);
    }
    let node = builder.start().await.context("cannot start the node")?;
    let addrs: Vec<String> = node
        .listen_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let http = node
        .api_addr()
        .map_or_else(|| "off".to_string(), |addr| format!("http://{addr}"));
    // One line on stdout that scripts and tests read.
    println!(
        "shoal node ready peer_id={} listen={} http={http} private={private}",
        node.peer_id(),
        addrs.join(",")
    );
    let workers = TaskTracker::new();
    let stop_workers = CancellationToken::new();
    if args.python > 0 {
        let api = node
            .api_addr()
            .context("--python needs the HTTP API (--http)")?;
        let config = node.config();
        python_workers::supervise(
            PythonWorkers {
                count: args.python,
                python: args.python_bin.clone(),
                modules: args.python_module.clone(),
                node: format!("http://{api}"),
                token: config.api_token.clone(),
                memory_mb: args.python_memory_mb,
            },
            &workers,
            stop_workers.clone(),
        );
    }
    tokio::select! {
        () = wait_for_stop_signal() => {
            tracing::info!("stop signal: draining first (a second signal stops at once)");
            tokio::select! {
                _ = node.drain(args.drain_timeout) => {}
                () = wait_for_stop_signal() => {
                    tracing::warn!("second stop signal: stopping without finishing the drain");
                }
            }
        }
        // `shoal drain` (POST /v1/drain) asked for it.
        () = node.drained() => {}
    }
    tracing::info!("stopping");
    // Workers first: they finish what they still run while the node serves.
    stop_workers.cancel();
    workers.close();
    workers.wait().await;
    node.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
