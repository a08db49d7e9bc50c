//! The nodes under test: real `shoal node` processes, on loopback or each
//! in its own network namespace, that can be killed, paused, restarted and
//! cut off from each other.

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Starts of a node on loopback whose ports were taken.
const START_ATTEMPTS: u32 = 3;
/// How long a node may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The nodes' `--drain-timeout`: shorter than the workload's slow jobs,
/// so a node stopped under one hands it back rather than waiting for it.
const NODE_DRAIN_TIMEOUT: &str = "250ms";
/// How long a node may take to drain and exit after SIGTERM: its drain
/// timeout and a Raft seat handed over, with room.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted node may take to rejoin: it sees every node alive
/// and a leader, as a rolling restart waits before the next node.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node under test: where it listens, where its files go, and its
/// process when it runs. (Not a `--slots` slot: those are call capacity.)
struct NodeUnderTest {
    ip: Ipv4Addr,
    p2p_port: u16,
    http_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    peer_id: Option<String>,
    process: Option<(Child, ChildStdout)>,
}

impl NodeUnderTest {
    fn listen(&self) -> String {
        format!("/ip4/{}/tcp/{}", self.ip, self.p2p_port)
    }

    fn pid(&self) -> Option<Pid> {
        let (child, _) = self.process.as_ref()?;
        Some(Pid::from_raw(child.id()? as i32))
    }
}

/// The cluster under test. Dropping it kills every node and removes the
/// namespaces it made.
pub struct Cluster {
    binary: PathBuf,
    secret_file: PathBuf,
    nodes: Vec<NodeUnderTest>,
    net: Option<Namespaces>,
}

impl Cluster {
    /// Lays out `count` nodes under `dir`; `namespaces` puts each in its
    /// own network namespace (needs root), so links can be cut.
    pub fn new(dir: &Path, count: usize, namespaces: bool) -> anyhow::Result<Cluster> {
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, format!("chaos-{}", std::process::id()))?;
        let net = namespaces.then(|| Namespaces::create(count)).transpose()?;
        let nodes = (0..count)
            .map(|i| {
                let (ip, p2p_port, http_port) = match &net {
                    Some(net) => (net.node_ip(i), 7000, 7070),
                    None => (Ipv4Addr::LOCALHOST, free_port()?, free_port()?),
                };
                Ok(NodeUnderTest {
                    ip,
                    p2p_port,
                    http_port,
                    data_dir: dir.join(format!("node-{i}")),
                    log: dir.join(format!("node-{i}.log")),
                    peer_id: None,
                    process: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Cluster {
            binary: std::env::current_exe().context("cannot find the shoal binary")?,
            secret_file,
            nodes,
            net,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's HTTP API, for clients.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}:{}", n.ip, n.http_port))
            .collect()
    }

    /// The node with this peer id.
    pub fn index_of(&self, peer_id: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.peer_id.as_deref() == Some(peer_id))
    }

    /// Starts (or restarts, with its data) node `node`, joining the others.
    /// A first start on loopback whose ports another process took in the
    /// meantime (they were free when picked) tries again on new ones.
    pub async fn start(&mut self, node: usize) -> anyhow::Result<()> {
        let mut attempts = 1;
        loop {
            match self.spawn(node).await {
                Err(e) if attempts < START_ATTEMPTS && self.may_move(node) => {
                    eprintln!("{e:#}; trying other ports");
                    self.nodes[node].p2p_port = free_port()?;
                    self.nodes[node].http_port = free_port()?;
                    attempts += 1;
                }
                result => return result,
            }
        }
    }

    /// Whether node `node` may still change its ports: it never ran, and
    /// it is on loopback, where ports are shared with other processes.
    fn may_move(&self, node: usize) -> bool {
        self.net.is_none() && self.nodes[node].peer_id.is_none()
    }

    async fn spawn(&mut self, node: usize) -> anyhow::Result<()> {
        // The first node's first start founds the Raft group; every other
        // start joins the rest.
        let founding = node == 0 && self.nodes[node].peer_id.is_none();
        let joins: Vec<String> = (0..self.nodes.len())
            .filter(|&other| other != node && !founding)
            .map(|other| self.nodes[other].listen())
            .collect();
        let under_test = &self.nodes[node];
        let mut command = match &self.net {
            Some(net) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &net.namespace(node)])
                    .arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("node")
            .args(["--listen", &under_test.listen()])
            .args([
                "--http",
                &format!("{}:{}", under_test.ip, under_test.http_port),
            ])
            .arg("--data-dir")
            .arg(&under_test.data_dir)
            .arg("--secret-file")
            .arg(&self.secret_file)
            .args(["--heartbeat-ms", "200", "--slots", "2"])
            .args(["--drain-timeout", NODE_DRAIN_TIMEOUT]);
        for join in &joins {
            command.args(["--join", join]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&under_test.log)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start shoal node")?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, lines.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            let _ = child.start_kill();
            bail!(
                "node {node} did not start; its log is {}",
                under_test.log.display()
            );
        }
        let peer_id = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("peer_id="))
            .map(str::to_string);
        let under_test = &mut self.nodes[node];
        under_test.peer_id = peer_id;
        under_test.process = Some((child, lines.into_inner()));
        Ok(())
    }

    /// SIGKILL: the node vanishes mid-sentence, as when a machine dies.
    pub async fn kill(&mut self, node: usize) {
        if let Some((mut child, _)) = self.nodes[node].process.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, as systemd or Kubernetes stop a node: it drains (hands its
    /// work to the others) and exits. Fails if it does not exit 0 in time.
    pub async fn terminate(&mut self, node: usize) -> anyhow::Result<()> {
        let Some(pid) = self.nodes[node].pid() else {
            return Ok(());
        };
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM")?;
        let (mut child, _) = self.nodes[node].process.take().expect("it has a pid");
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!("node {node} exited with {status} after SIGTERM"),
            Ok(Err(e)) => bail!("cannot wait for node {node}: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                bail!("node {node} did not stop within {STOP_TIMEOUT:?} of SIGTERM")
            }
        }
    }

    /// Waits until node `node` sees every node alive and a Raft leader.
    pub async fn wait_ready(&self, node: usize) -> anyhow::Result<()> {
        let under_test = &self.nodes[node];
        let client = shoal_client::Client::builder([format!(
            "http://{}:{}",
            under_test.ip, under_test.http_port
        )])
        .request_timeout(Duration::from_secs(2))
        .retry_for(Duration::ZERO)
        .build()?;
        if !formed(&client, self.nodes.len(), 0, READY_TIMEOUT).await {
            bail!("node {node} did not rejoin within {READY_TIMEOUT:?}");
        }
        Ok(())
    }

    /// SIGSTOP: the node stops answering but keeps its connections, the
    /// classic false failure.
    pub fn pause(&mut self, node: usize) {
        if let Some(pid) = self.nodes[node].pid() {
            let _ = kill(pid, Signal::SIGSTOP);
        }
    }

    pub fn resume(&mut self, node: usize) {
        if let Some(pid) = self.nodes[node].pid() {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }

    /// Cuts every link between a node of `side` and a node outside it.
    pub fn partition(&mut self, side: &[usize]) -> anyhow::Result<()> {
        let net = self.net.as_mut().context("partitions need namespaces")?;
        for a in side {
            for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                net.cut(*a, b)?;
                net.cut(b, *a)?;
            }
        }
        Ok(())
    }

    pub fn heal(&mut self) -> anyhow::Result<()> {
        match self.net.as_mut() {
            Some(net) => net.heal(),
            None => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.resume(node);
            if let Some((child, _)) = self.nodes[node].process.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One network namespace per node, joined by a bridge in the caller's
/// namespace, which is where the clients run. A cut link is a blackhole
/// route inside a node's namespace.
struct Namespaces {
    tag: String,
    subnet: [u8; 3],
    count: usize,
    cuts: Vec<(usize, usize)>,
}

impl Namespaces {
    fn create(count: usize) -> anyhow::Result<Namespaces> {
        let id = std::process::id();
        let net = Namespaces {
            tag: format!("sc{}", id % 1_000_000),
            subnet: [10, 213, (id % 250) as u8],
            count,
            cuts: Vec::new(),
        };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])
            .context("network namespaces need root (run without --partitions, or as root)")?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_ip()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for node in 0..count {
            let ns = net.namespace(node);
            let (host_end, node_end) =
                (format!("{}h{node}", net.tag), format!("{}n{node}", net.tag));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ])?;
            ip(&["link", "set", &node_end, "netns", &ns])?;
            ip(&["link", "set", &host_end, "master", &bridge, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", ns.as_str()];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&[
                "addr",
                "add",
                &format!("{}/24", net.node_ip(node)),
                "dev",
                &node_end,
            ])?;
            inside(&["link", "set", &node_end, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn namespace(&self, node: usize) -> String {
        format!("{}-{node}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn node_ip(&self, node: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, node as u8 + 1)
    }

    fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// Drops what node `from` sends to node `to`.
    fn cut(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        if self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let target = format!("{}/32", self.node_ip(to));
        ip(&[
            "-n",
            &self.namespace(from),
            "route",
            "add",
            "blackhole",
            &target,
        ])?;
        self.cuts.push((from, to));
        Ok(())
    }

    fn heal(&mut self) -> anyhow::Result<()> {
        for (from, to) in std::mem::take(&mut self.cuts) {
            let target = format!("{}/32", self.node_ip(to));
            ip(&[
                "-n",
                &self.namespace(from),
                "route",
                "del",
                "blackhole",
                &target,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for node in 0..self.count {
            let _ = ip(&["netns", "del", &self.namespace(node)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Runs `ip` with `args`, failing with its error output.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Waits up to `within` until `client`'s node sees `nodes` nodes alive, a
/// Raft leader and at least `voters` voters; whether it did.
pub async fn formed(
    client: &shoal_client::Client,
    nodes: usize,
    voters: usize,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(view) = client.cluster().await {
            let alive = view
                .members
                .iter()
                .filter(|m| m.liveness == "alive")
                .count();
            if alive >= nodes && view.raft.leader.is_some() && view.raft.voters.len() >= voters {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
