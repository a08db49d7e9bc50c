//! One real `shoal node` process, started as a user would start it.

use shoal_node::Multiaddr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Numbers log files, so a restarted node keeps the first run's log.
static LOGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A `shoal node` process; killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub addr: Multiaddr,
    /// Its HTTP API, `http://127.0.0.1:<port>`.
    pub http: String,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts `shoal node` with `args` and waits for its ready line.
    pub fn start(args: &[&str]) -> NodeProcess {
        Self::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Starts `shoal node` keeping its data in `dir` (to restart it later).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> NodeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .arg("node")
            .args([
                "--heartbeat-ms",
                "200",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .args(args);
        Self::spawn(dir, command)
    }

    /// Starts `command`, a `shoal node` command line the test wrote in
    /// full, and waits for its ready line; `dir` lives as long as the node.
    pub fn spawn(dir: tempfile::TempDir, mut command: Command) -> NodeProcess {
        let log = dir.path().join(format!(
            "node-{}.log",
            std::process::id() as u64 * 1000
                + LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("shoal binary runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|a| a.split(',').next())
                .unwrap_or_else(|| panic!("no ready line from shoal node, got {line:?}"))
                .to_string()
        };
        let addr = field("listen=").parse().unwrap();
        let http = field("http=");
        NodeProcess {
            child,
            addr,
            http,
            log,
            dir,
        }
    }

    /// SIGKILL: no goodbye, no cleanup — as when a machine dies.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: what systemd, Kubernetes or an autoscaler send; the node
    /// drains, then exits.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGSTOP: the process stops answering anything, as a machine that
    /// hangs or a VM that is paused, until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT, after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal sent");
    }

    /// Waits up to `within` for the process to exit; its status, or `None`
    /// if it still runs.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// The peer id, from the address it printed.
    pub fn peer_id(&self) -> String {
        self.addr
            .to_string()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// SIGKILL, keeping the data directory for a restart.
    pub fn kill_keeping_data(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("SHOAL_TEST_LOGS").is_some() {
            eprintln!("---- log of {} ----\n{}", self.http, self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
