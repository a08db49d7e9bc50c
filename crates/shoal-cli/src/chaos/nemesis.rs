//! The nemesis: one fault at a time, each held for a while and then
//! healed, the Raft leader as likely a target as all the others together
//! (restarts go through the nodes in turn, as a rolling restart does).

use super::cluster::Cluster;
use super::workload::Shared;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use shoal_client::Client;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL, then a restart on the same data.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Links between two groups of nodes cut, then restored.
    Partition,
    /// SIGTERM (the node drains and exits), a restart on the same data,
    /// and a wait until it has rejoined: nodes in turn, as a rolling
    /// restart goes.
    Restart,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
        }
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "partition" => Ok(FaultKind::Partition),
            "restart" => Ok(FaultKind::Restart),
            other => Err(format!(
                "unknown fault {other:?}: expected kill, pause, partition or restart"
            )),
        }
    }
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// The nodes it hit (for a partition, the smaller side).
    pub nodes: Vec<usize>,
    pub leader: bool,
    /// Microseconds since the run began.
    pub at: u64,
    pub held: Duration,
}

impl Fault {
    /// "n1,n3".
    fn node_names(&self) -> String {
        let names: Vec<String> = self.nodes.iter().map(|n| format!("n{n}")).collect();
        names.join(",")
    }

    /// "kill of n2 (the leader) at 41.3 s".
    pub fn describe(&self) -> String {
        format!(
            "{} of {}{} at {:.1} s",
            self.kind.name(),
            self.node_names(),
            if self.leader { " (the leader)" } else { "" },
            self.at as f64 / 1e6
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.1} s  {:<9} {}{} for {:.1} s",
            self.at as f64 / 1e6,
            self.kind.name(),
            self.node_names(),
            if self.leader { " (leader)" } else { "" },
            self.held.as_secs_f64()
        )
    }
}

/// Faults by kind, and how many of them hit the leader.
pub fn tally(faults: &[Fault]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for fault in faults {
        *counts.entry(fault.kind.name()).or_default() += 1;
        if fault.leader {
            *counts.entry("leader").or_default() += 1;
        }
    }
    counts
}

pub struct Nemesis {
    pub kinds: Vec<FaultKind>,
    pub max_faults: usize,
    /// Quiet time between one fault's heal and the next fault.
    pub interval: Duration,
    pub seed: u64,
}

impl Nemesis {
    /// Injects faults until the run ends; every fault is healed on return.
    /// Also returns why it stopped early, if a fault went wrong (a node
    /// that did not stop or come back as it should).
    pub async fn run(
        &self,
        cluster: &mut Cluster,
        observer: &Client,
        shared: &Shared,
    ) -> (Vec<Fault>, Option<String>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut faults = Vec::new();
        while faults.len() < self.max_faults {
            let quiet = self.interval.mul_f64(rng.random_range(0.5..1.5));
            if Instant::now() + quiet >= shared.until {
                break;
            }
            tokio::time::sleep(quiet).await;
            let Some(&kind) = self.kinds.choose(&mut rng) else {
                break;
            };
            let held = Duration::from_millis(rng.random_range(1_000..5_000))
                .min(shared.until.saturating_duration_since(Instant::now()));
            let leader = leader(cluster, observer).await;
            let restarts = faults
                .iter()
                .filter(|f: &&Fault| f.kind == FaultKind::Restart);
            let target = match leader {
                // Every node in turn, as a rolling restart goes.
                _ if kind == FaultKind::Restart => restarts.count() % cluster.len(),
                Some(leader) if rng.random_bool(0.5) => leader,
                _ => rng.random_range(0..cluster.len()),
            };
            let nodes = match kind {
                // A minority of one or two, so a majority can go on.
                FaultKind::Partition if cluster.len() >= 5 && rng.random_bool(0.5) => {
                    vec![
                        target,
                        (target + 1 + rng.random_range(0..cluster.len() - 1)) % cluster.len(),
                    ]
                }
                _ => vec![target],
            };
            let mut fault = Fault {
                kind,
                leader: leader.is_some_and(|l| nodes.contains(&l)),
                nodes,
                at: shared.now(),
                held,
            };
            let began = Instant::now();
            let injected = inject(cluster, &fault, held).await;
            if kind == FaultKind::Restart {
                fault.held = began.elapsed(); // down and back, as it went
            }
            println!("fault {fault}");
            if let Err(e) = injected {
                let failure = format!("{}: {e:#}", fault.describe());
                eprintln!("the nemesis stopped: {failure}");
                return (faults, Some(failure));
            }
            faults.push(fault);
        }
        (faults, None)
    }
}

/// Applies the fault, holds it, and heals it.
async fn inject(cluster: &mut Cluster, fault: &Fault, held: Duration) -> anyhow::Result<()> {
    match fault.kind {
        FaultKind::Kill => {
            for &node in &fault.nodes {
                cluster.kill(node).await;
            }
            tokio::time::sleep(held).await;
            for &node in &fault.nodes {
                cluster.start(node).await?;
            }
        }
        FaultKind::Pause => {
            for &node in &fault.nodes {
                cluster.pause(node);
            }
            tokio::time::sleep(held).await;
            for &node in &fault.nodes {
                cluster.resume(node);
            }
        }
        FaultKind::Partition => {
            cluster.partition(&fault.nodes)?;
            tokio::time::sleep(held).await;
            cluster.heal()?;
        }
        // Down only as long as a stop and a start take.
        FaultKind::Restart => {
            for &node in &fault.nodes {
                cluster.terminate(node).await?;
                cluster.start(node).await?;
                cluster.wait_ready(node).await?;
            }
        }
    }
    Ok(())
}

/// The node that leads Raft now, as a node that answers sees it.
async fn leader(cluster: &Cluster, observer: &Client) -> Option<usize> {
    let view = tokio::time::timeout(Duration::from_secs(2), observer.cluster())
        .await
        .ok()?
        .ok()?;
    cluster.index_of(view.raft.leader.as_deref()?)
}
