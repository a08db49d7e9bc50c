//! `shoal node --python N --python-module M`: the node starts N Python
//! worker processes (`python -m shoal.worker M … --node <its API>`) and
//! keeps them running: one that exits is started again after a pause that
//! doubles up to 30 s (and starts over once it has run a minute). On stop,
//! each gets SIGTERM — it finishes its calls and exits — and SIGKILL if it
//! has not within the drain time.

use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// A worker that ran this long before exiting is restarted at once.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stopping worker has to finish its calls.
const DRAIN: Duration = Duration::from_secs(30);

/// How to start the workers.
#[derive(Clone, Debug)]
pub struct PythonWorkers {
    pub count: usize,
    pub python: String,
    pub modules: Vec<String>,
    /// The node's API, for the workers to connect to.
    pub node: String,
    /// The node's API token, if it has one (handed over in the
    /// environment, not on the command line).
    pub token: Option<String>,
    /// The address-space limit of each worker.
    pub memory_mb: Option<u64>,
}

/// Starts the workers; they stop when `stop` is cancelled, and `tasks`
/// waits for them.
pub fn supervise(workers: PythonWorkers, tasks: &TaskTracker, stop: CancellationToken) {
    for index in 0..workers.count {
        tasks.spawn(keep_running(workers.clone(), index, stop.clone()));
    }
}

async fn keep_running(workers: PythonWorkers, index: usize, stop: CancellationToken) {
    let mut pause = FIRST_PAUSE;
    while !stop.is_cancelled() {
        let started = Instant::now();
        let mut child = match start(&workers) {
            Ok(child) => child,
            Err(error) => {
                tracing::warn!(worker = index, %error, python = %workers.python, "cannot start a Python worker");
                if sleep_or_stop(pause, &stop).await {
                    return;
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
                continue;
            }
        };
        tracing::info!(worker = index, pid = child.id(), "Python worker started");
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(worker = index, ?status, "Python worker exited; starting it again");
            }
            () = stop.cancelled() => {
                drain(&mut child).await;
                return;
            }
        }
        pause = if started.elapsed() >= HEALTHY_RUN {
            FIRST_PAUSE
        } else {
            (pause * 2).min(LONGEST_PAUSE)
        };
        if sleep_or_stop(pause, &stop).await {
            return;
        }
    }
}

fn start(workers: &PythonWorkers) -> std::io::Result<Child> {
    let mut command = Command::new(&workers.python);
    command
        .args(["-m", "shoal.worker"])
        .args(&workers.modules)
        .args(["--node", &workers.node])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(megabytes) = workers.memory_mb {
        command.arg("--memory-mb").arg(megabytes.to_string());
    }
    if let Some(token) = &workers.token {
        command.env("SHOAL_API_TOKEN", token);
    }
    command.spawn()
}

/// SIGTERM, then SIGKILL after the drain time.
async fn drain(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(DRAIN, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Sleeps for `pause`; true if told to stop meanwhile.
async fn sleep_or_stop(pause: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        () = stop.cancelled() => true,
    }
}
