//! `shoal bench cluster`: N real `shoal node` processes on this machine,
//! and what a cluster of that size costs and does: how long it takes to
//! form and to settle, each node's idle CPU and memory, how long a death
//! takes to be known everywhere, how well a fan-out of short calls
//! spreads, and durable jobs per second.
//!
//! Jobs are submitted by 256 clients at once (`--submitters`), so the
//! figure is what the Raft group can do: with 32, each commit took every
//! job waiting, and jobs/s was 32 over a commit's time, whatever the nodes
//! had left. Their CPU is split by role: the leader, the other replicas,
//! and the nodes holding none (whose share is mostly their idle cost, plus
//! any job calls placement sent them).
//!
//! Idle is measured once the cluster has settled, not the moment every
//! node sees every other: until then the leader is still adding learners
//! and promoting voters, and the connections the formation opened are
//! still open (an idle call stream closes after the idle timeout, its
//! connection after another). What settling costs is a figure of its own.

use super::nodes::NodeProcess;
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use shoal_client::{BatchCall, Client, JobSpec};
use std::time::{Duration, Instant};

/// Longest wait for a cluster to form or to see a death.
const PATIENCE: Duration = Duration::from_secs(180);
/// How often the nodes are asked how many peers they see.
const POLL: Duration = Duration::from_millis(250);
/// The nodes close connections idle this long (the default is 30 s), so
/// that the sockets counted after the idle period are those a node keeps.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The nodes' `--raft-standbys`: learners beside the voters.
const STANDBYS: usize = 2;
/// Fan-outs with connections open; the figure is their median.
const WARM_FANOUTS: usize = 3;

#[derive(Args)]
pub struct ClusterArgs {
    /// Cluster sizes to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    nodes: Vec<usize>,
    /// Seconds the formed cluster idles while its CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// `sleep` calls in the fan-out (each node has 2 slots).
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Milliseconds each of those calls sleeps.
    #[arg(long, default_value_t = 50)]
    sleep_ms: u64,
    /// `noop` jobs submitted for the jobs/s figure.
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    /// Job submissions in flight at once. Enough to keep the Raft group
    /// busy: with few, jobs/s is only how many fit in one commit's time.
    #[arg(long, default_value_t = 256)]
    submitters: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for &count in &args.nodes {
        anyhow::ensure!(count >= 2, "cluster sizes must be at least 2");
        eprintln!("starting {count} nodes…");
        let run = measure(count, &args).await?;
        println!(
            "{count:>5} nodes: formed in {:.1} s, its Raft group complete {:.1} s later ({:.2} % of a core per node until idle); \
             idle CPU {:.2} % of a core (busiest {:.2} %), {:.1} MB ({:.1} MB its own) and {} sockets per node; \
             a death known everywhere in {:.1} s; fan-out efficiency {:.2} ({:.2}, the median of 3, with connections open); \
             {:.0} jobs/s, costing {:.0} µs of CPU each (leader {:.0}, other replicas {:.0}, the rest {:.0}; \
             {:.0} % of their calls ran off the replicas)",
            run["converge_s"].as_f64().unwrap_or(0.0),
            run["raft_complete_s"].as_f64().unwrap_or(0.0),
            run["settling_cpu_pct_per_node"].as_f64().unwrap_or(0.0),
            run["idle_cpu_pct_per_node"].as_f64().unwrap_or(0.0),
            run["idle_cpu_pct_max"].as_f64().unwrap_or(0.0),
            run["rss_mb_per_node"].as_f64().unwrap_or(0.0),
            run["private_mb_per_node"].as_f64().unwrap_or(0.0),
            run["sockets_per_node"].as_f64().unwrap_or(0.0),
            run["detect_dead_s"].as_f64().unwrap_or(0.0),
            run["fanout_efficiency"].as_f64().unwrap_or(0.0),
            run["fanout_warm_efficiency"].as_f64().unwrap_or(0.0),
            run["jobs_per_s"].as_f64().unwrap_or(0.0),
            run["jobs_cpu_us_per_job"].as_f64().unwrap_or(0.0),
            run["jobs_cpu_us_per_job_leader"].as_f64().unwrap_or(0.0),
            run["jobs_cpu_us_per_job_replicas"].as_f64().unwrap_or(0.0),
            run["jobs_cpu_us_per_job_others"].as_f64().unwrap_or(0.0),
            run["jobs_calls_off_replicas"].as_f64().unwrap_or(0.0) * 100.0,
        );
        runs.push(run);
    }
    if args.json {
        println!("{}", json!({ "runs": runs }));
    }
    Ok(())
}

/// One cluster of `count` nodes, started, measured and stopped.
async fn measure(count: usize, args: &ClusterArgs) -> anyhow::Result<Value> {
    let idle_timeout_ms = IDLE_TIMEOUT.as_millis().to_string();
    let standbys = STANDBYS.to_string();
    let common = [
        "--slots",
        "2",
        "--idle-timeout-ms",
        &idle_timeout_ms,
        "--raft-standbys",
        &standbys,
    ]
    .map(String::from);
    let first = NodeProcess::spawn(&common)?;
    let join = ["--join".to_string(), first.addr.to_string()];
    let mut nodes = vec![first];
    for _ in 1..count {
        nodes.push(NodeProcess::spawn(&[&common[..], &join[..]].concat())?);
    }
    let last_started = Instant::now();
    let clients = nodes
        .iter()
        .map(|node| Client::new([&node.http]))
        .collect::<Result<Vec<_>, _>>()?;
    wait_until_all_see(&clients, count - 1).await?;
    let converge_s = last_started.elapsed().as_secs_f64();

    let mut meter = CpuMeter::new(&nodes);
    raft_complete(&clients[0], count).await?;
    let raft_complete_s = last_started.elapsed().as_secs_f64() - converge_s;
    // A call stream closes after the idle timeout, then its connection
    // after another.
    tokio::time::sleep(2 * IDLE_TIMEOUT).await;
    let mut settling_cpu = meter.percent_since_last();
    let settling_cpu = median(&mut settling_cpu);

    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let mut idle_cpu = meter.percent_since_last();
    let idle_cpu_max = idle_cpu.iter().copied().fold(0.0, f64::max);
    let idle_cpu = median(&mut idle_cpu);
    let mut rss_mb: Vec<f64> = nodes.iter().filter_map(|n| n.rss_mb().ok()).collect();
    let rss_mb = median(&mut rss_mb);
    let mut private_mb: Vec<f64> = nodes.iter().filter_map(|n| n.private_mb().ok()).collect();
    let private_mb = median(&mut private_mb);
    let mut sockets: Vec<f64> = nodes.iter().map(|n| open_sockets(n.pid()) as f64).collect();
    let sockets = median(&mut sockets);
    // The first fan-out dials every node (idle connections were closed);
    // the next ones, at once, find them open. One fan-out of 100 processes
    // on a few cores varies by about ±0.05, so the warm figure is a median.
    let fanout_efficiency = fanout(&clients[0], count, args).await?;
    let mut fanout_warm_runs = Vec::new();
    let (mut most_calls_on_a_node, mut stolen_in_warm_fanouts) = (0, 0);
    for _ in 0..WARM_FANOUTS {
        let before = call_counts(&clients).await;
        fanout_warm_runs.push(round(fanout(&clients[0], count, args).await?));
        let after = call_counts(&clients).await;
        for ((ran, stole), (ran_before, stole_before)) in after.iter().zip(&before) {
            most_calls_on_a_node = most_calls_on_a_node.max(ran.saturating_sub(*ran_before));
            stolen_in_warm_fanouts += stole.saturating_sub(*stole_before);
        }
    }
    let fanout_warm_efficiency = median(&mut fanout_warm_runs.clone());
    let jobs = jobs_phase(&nodes, &clients, args).await?;

    // SIGKILL 5 % of the nodes (at least one), spread over the start
    // order: never the one asked first, and not the first few, which hold
    // the Raft log (a majority of voters lost would stop durable writes,
    // not what this measures).
    let victims = count.div_ceil(20).min(count - 1);
    let doomed: Vec<usize> = (1..=victims).map(|k| k * count / (victims + 1)).collect();
    let mut doomed_ids = Vec::new();
    for &index in &doomed {
        doomed_ids.push(clients[index].status().await?.peer_id);
    }
    let killed_at = Instant::now();
    for &index in &doomed {
        nodes[index].kill();
    }
    let survivors: Vec<Client> = (0..count)
        .filter(|i| !doomed.contains(i))
        .map(|i| clients[i].clone())
        .collect();
    wait_until_all_know_dead(&survivors, &doomed_ids).await?;
    let detect_dead_s = killed_at.elapsed().as_secs_f64();

    Ok(json!({
        "nodes": count,
        "converge_s": round(converge_s),
        "raft_complete_s": round(raft_complete_s),
        "settling_cpu_pct_per_node": round(settling_cpu),
        "idle_cpu_pct_per_node": round(idle_cpu),
        "idle_cpu_pct_max": round(idle_cpu_max),
        "rss_mb_per_node": round(rss_mb),
        "private_mb_per_node": round(private_mb),
        "sockets_per_node": sockets,
        "detect_dead_s": round(detect_dead_s),
        "killed": victims,
        "fanout_efficiency": round(fanout_efficiency),
        "fanout_warm_efficiency": round(fanout_warm_efficiency),
        "fanout_warm_runs": fanout_warm_runs,
        "fanout_most_calls_on_a_node": most_calls_on_a_node,
        "fanout_warm_stolen_calls": stolen_in_warm_fanouts,
        "jobs_per_s": round(jobs.per_s),
        "jobs_submitted_per_s": round(jobs.submitted_per_s),
        "jobs_submitters": args.submitters,
        "raft_entries_per_job": round(jobs.raft_entries_per_job),
        "jobs_cpu_us_per_job": round(jobs.cpu_us.leader + jobs.cpu_us.replicas + jobs.cpu_us.others),
        "jobs_cpu_us_per_job_leader": round(jobs.cpu_us.leader),
        "jobs_cpu_us_per_job_replicas": round(jobs.cpu_us.replicas),
        "jobs_cpu_us_per_job_others": round(jobs.cpu_us.others),
        "jobs_calls_off_replicas": round(jobs.calls_off_replicas),
    }))
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Waits until every one of `clients`' nodes sees exactly `alive` live peers.
async fn wait_until_all_see(clients: &[Client], alive: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = futures::future::join_all(clients.iter().map(|c| c.status())).await;
        let counts: Vec<usize> = seen
            .iter()
            .map(|status| status.as_ref().map_or(usize::MAX, |s| s.peers_alive))
            .collect();
        if counts.iter().all(|&n| n == alive) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let missing = who_misses_whom(clients).await;
            anyhow::bail!(
                "after {PATIENCE:?} the nodes see {counts:?} live peers, not {alive}; {missing}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// For a cluster that did not form: which node (by start order) misses
/// which, and whether it holds the missing one dead or does not list it.
async fn who_misses_whom(clients: &[Client]) -> String {
    let views = futures::future::join_all(clients.iter().map(|c| c.cluster())).await;
    let ids: Vec<Option<String>> = views
        .iter()
        .map(|view| {
            let view = view.as_ref().ok()?;
            Some(view.members.iter().find(|m| m.is_self)?.peer_id.clone())
        })
        .collect();
    let mut lines = Vec::new();
    for (index, view) in views.iter().enumerate() {
        let Ok(view) = view else {
            lines.push(format!("node {index} did not answer"));
            continue;
        };
        for (other, id) in ids.iter().enumerate() {
            let Some(id) = id.as_ref().filter(|_| other != index) else {
                continue;
            };
            match view.members.iter().find(|m| &m.peer_id == id) {
                Some(m) if m.liveness == "alive" || m.liveness == "suspected" => {}
                Some(m) => lines.push(format!("node {index} holds node {other} {}", m.liveness)),
                None => lines.push(format!("node {index} does not list node {other}")),
            }
        }
    }
    lines.join("; ")
}

/// Waits until every one of `clients`' nodes holds each of `dead` for dead
/// (or has forgotten it).
async fn wait_until_all_know_dead(clients: &[Client], dead: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let views = futures::future::join_all(clients.iter().map(|c| c.cluster())).await;
        let unaware = views
            .iter()
            .filter(|view| {
                view.as_ref().map_or(true, |view| {
                    view.members
                        .iter()
                        .any(|m| dead.contains(&m.peer_id) && m.liveness != "dead")
                })
            })
            .count();
        if unaware == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after {PATIENCE:?} {unaware} nodes still hold a killed node for alive"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the Raft group has its voters (2 + ln N) and standby
/// learners.
async fn raft_complete(client: &Client, count: usize) -> anyhow::Result<()> {
    let voters = shoal_node::raft::membership::voter_count(count);
    let learners = STANDBYS.min(count - voters);
    let deadline = Instant::now() + PATIENCE;
    loop {
        // A node too busy to answer has not settled either.
        let seen = client.status().await.map(|status| status.raft);
        if let Ok(raft) = &seen
            && raft.voters.len() == voters
            && raft.learners.len() == learners
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after {PATIENCE:?} the Raft group is not {voters} voters and {learners} learners: {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The nodes' CPU between one look and the next, in percent of one core.
struct CpuMeter<'a> {
    nodes: &'a [NodeProcess],
    last: (Instant, Vec<Duration>),
}

impl<'a> CpuMeter<'a> {
    fn new(nodes: &'a [NodeProcess]) -> CpuMeter<'a> {
        CpuMeter {
            nodes,
            last: Self::look(nodes),
        }
    }

    fn look(nodes: &[NodeProcess]) -> (Instant, Vec<Duration>) {
        (
            Instant::now(),
            nodes.iter().map(NodeProcess::cpu_time).collect(),
        )
    }

    /// Each node's CPU since the previous look.
    fn percent_since_last(&mut self) -> Vec<f64> {
        let (at, used) = Self::look(self.nodes);
        let (then, before) = std::mem::replace(&mut self.last, (at, used.clone()));
        let span = at.duration_since(then).as_secs_f64().max(1e-3);
        before
            .iter()
            .zip(&used)
            .map(|(b, a)| a.saturating_sub(*b).as_secs_f64() / span * 100.0)
            .collect()
    }
}

/// Sockets a process holds open: its connections, and its few listeners
/// (libp2p's and the HTTP API's). 0 where `/proc` cannot tell.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `calls` sleeps through one node: the ideal time (waves of 2 slots per
/// node) over the time taken.
async fn fanout(client: &Client, count: usize, args: &ClusterArgs) -> anyhow::Result<f64> {
    let calls = (0..args.calls)
        .map(|_| BatchCall {
            function: "sleep".to_string(),
            args: json!(args.sleep_ms),
        })
        .collect();
    let started = Instant::now();
    let results = client.batch(calls, Some(PATIENCE)).await?;
    let took = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} of the fan-out's calls failed");
    let waves = args.calls.div_ceil(2 * count);
    Ok(waves as f64 * args.sleep_ms as f64 / 1000.0 / took)
}

/// How many calls each node has run and stolen (0 for a node that does
/// not answer).
async fn call_counts(clients: &[Client]) -> Vec<(u64, u64)> {
    let statuses = futures::future::join_all(clients.iter().map(|c| c.status())).await;
    statuses
        .iter()
        .map(|status| {
            status
                .as_ref()
                .map_or((0, 0), |s| (s.calls.executed, s.calls.stolen))
        })
        .collect()
}

/// The Raft log's committed index, as `client`'s node sees it.
async fn raft_entries(client: &Client) -> u64 {
    let cluster = client.cluster().await;
    cluster.ok().and_then(|c| c.raft.committed).unwrap_or(0)
}

/// What the jobs phase measured.
struct JobsFigures {
    per_s: f64,
    submitted_per_s: f64,
    raft_entries_per_job: f64,
    /// The nodes' CPU per job, in µs, by their part in the Raft group.
    cpu_us: CpuByRole,
    /// The share of the jobs' calls that ran on nodes holding no replica.
    calls_off_replicas: f64,
}

/// CPU summed over the nodes of each part in the Raft group.
#[derive(Default)]
struct CpuByRole {
    leader: f64,
    /// Voters and learners other than the leader.
    replicas: f64,
    /// Nodes holding no replica.
    others: f64,
}

/// A node's part in the Raft group.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Leader,
    /// A voter or learner other than the leader.
    Replica,
    Other,
}

/// Runs `args.jobs` no-op jobs through the first node and measures them,
/// and what they cost each kind of node: where durable jobs spend the
/// cluster's CPU.
async fn jobs_phase(
    nodes: &[NodeProcess],
    clients: &[Client],
    args: &ClusterArgs,
) -> anyhow::Result<JobsFigures> {
    let roles: Vec<Role> = futures::future::join_all(clients.iter().map(|c| c.status()))
        .await
        .into_iter()
        .map(|status| match status {
            Ok(s) if s.raft.state == "Leader" => Role::Leader,
            Ok(s) if s.raft.member => Role::Replica,
            _ => Role::Other,
        })
        .collect();
    let entries_before = raft_entries(&clients[0]).await;
    let calls_before = call_counts(clients).await;
    let cpu_before: Vec<Duration> = nodes.iter().map(NodeProcess::cpu_time).collect();
    let (per_s, submitted_per_s) = jobs_per_second(&clients[0], args.jobs, args.submitters).await?;
    let cpu_after: Vec<Duration> = nodes.iter().map(NodeProcess::cpu_time).collect();
    let calls_after = call_counts(clients).await;
    let entries = raft_entries(&clients[0])
        .await
        .saturating_sub(entries_before);

    let jobs = args.jobs.max(1) as f64;
    let mut cpu_us = CpuByRole::default();
    let (mut calls, mut calls_off_replicas) = (0u64, 0u64);
    for (i, role) in roles.iter().enumerate() {
        let used = cpu_after[i].saturating_sub(cpu_before[i]);
        *match role {
            Role::Leader => &mut cpu_us.leader,
            Role::Replica => &mut cpu_us.replicas,
            Role::Other => &mut cpu_us.others,
        } += used.as_secs_f64() * 1e6 / jobs;
        let ran = calls_after[i].0.saturating_sub(calls_before[i].0);
        calls += ran;
        if *role == Role::Other {
            calls_off_replicas += ran;
        }
    }
    Ok(JobsFigures {
        per_s,
        submitted_per_s,
        raft_entries_per_job: entries as f64 / jobs,
        cpu_us,
        calls_off_replicas: calls_off_replicas as f64 / calls.max(1) as f64,
    })
}

/// `jobs` no-op jobs submitted through one node, until all succeeded:
/// jobs per second done, and accepted.
async fn jobs_per_second(
    client: &Client,
    jobs: usize,
    submitters: usize,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let submitted: Vec<_> = futures::stream::iter(0..jobs)
        .map(|_| client.submit(JobSpec::new("noop", Value::Null)))
        .buffer_unordered(submitters.max(1))
        .collect()
        .await;
    let submitted_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    let failed = submitted.iter().filter(|s| s.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} job submissions failed");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = client.status().await?.jobs.get("succeeded").copied();
        if done.unwrap_or(0) >= jobs {
            let done_per_s = jobs as f64 / started.elapsed().as_secs_f64();
            return Ok((done_per_s, submitted_per_s));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs did not finish in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
