//! The nodes the benchmarks measure: the settings of in-process nodes, and
//! real `shoal node` processes for figures that need a process of their
//! own (its memory, or one process per node).

use shoal_node::{Multiaddr, NodeConfig};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Heartbeats five times the default rate: clusters form, and measuring
/// starts, within a second instead of several.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// The settings of an in-process benchmark node with `slots` slots.
pub fn node_config(slots: u32) -> NodeConfig {
    NodeConfig {
        slots,
        heartbeat_interval: HEARTBEAT,
        ..NodeConfig::default()
    }
}

/// An in-process node with the built-in functions, serving HTTP on a free
/// port: the node and its API's URL.
pub async fn http_node(slots: u32) -> anyhow::Result<(shoal_node::Node, String)> {
    let node = shoal_node::builtins::register(shoal_node::Node::builder().config(NodeConfig {
        http: Some("127.0.0.1:0".parse()?),
        ..node_config(slots)
    }))
    .start()
    .await?;
    let url = format!("http://{}", node.api_addr().expect("the node serves HTTP"));
    Ok((node, url))
}

/// Names a folder for the logs of the node processes a benchmark starts.
const LOGS_VAR: &str = "SHOAL_BENCH_LOGS";

/// Numbers the log files in start order.
fn next_log_number() -> usize {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A real `shoal node` process started by a benchmark; killed on drop.
pub struct NodeProcess {
    child: Child,
    /// Its first listen address, for others to join.
    pub addr: Multiaddr,
    /// Its HTTP API, `http://127.0.0.1:<port>`.
    pub http: String,
}

impl NodeProcess {
    /// Starts `shoal node` with an HTTP API on a free port and `extra`
    /// arguments; returns once it printed its address. Its log is thrown
    /// away, or kept in `$SHOAL_BENCH_LOGS/node-<n>.log` (n in start
    /// order) if that names a folder; `RUST_LOG` says how much.
    pub fn spawn(extra: &[String]) -> anyhow::Result<NodeProcess> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .arg("node")
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped());
        let logs = std::env::var_os(LOGS_VAR).map(std::path::PathBuf::from);
        let log_file = match &logs {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("node-{}.log", next_log_number()));
                Stdio::from(std::fs::File::create(path)?)
            }
            None => Stdio::null(),
        };
        let mut child = command.stderr(log_file).spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(name))
                .ok_or_else(|| anyhow::anyhow!("node did not print its {name} {line:?}"))
        };
        let addr = field("listen=")?
            .split(',')
            .next()
            .unwrap_or_default()
            .parse()?;
        let http = field("http=")?.to_string();
        Ok(NodeProcess { child, addr, http })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs it and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time it has used so far, all its threads together, those that
    /// have ended included (zero where it cannot be read). The process's
    /// CPU clock counts to the nanosecond: the tick-based counters in
    /// `/proc` only see an idle node's short wakeups in 10 ms steps.
    pub fn cpu_time(&self) -> Duration {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::time::clock_getcpuclockid(pid)
            .and_then(nix::time::clock_gettime)
            .map_or(Duration::ZERO, Duration::from)
    }

    /// Its resident memory now, in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("VmRSS")
    }

    /// The part of its resident memory that is its own (heap, stacks): the
    /// rest is the binary's code and data, mapped from one file and the
    /// same pages for every node on a machine.
    pub fn private_mb(&self) -> anyhow::Result<f64> {
        self.status_mb("RssAnon")
    }

    /// A memory figure of `/proc/<pid>/status`, in MB.
    fn status_mb(&self, field: &str) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {field} in /proc status"))?;
        Ok(kb / 1024.0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
