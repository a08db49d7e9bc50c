//! `shoal chaos`: real nodes, a mixed workload, and a nemesis that kills,
//! pauses, partitions and gracefully restarts them; then a check of everything the clients saw
//! against what the cluster promises.
//!
//! Every fault is healed before the check: the cluster must then hold every
//! acknowledged job and write, exactly once, and the recorded reads must be
//! linearizable. The run stops by itself, after `--duration` or
//! `--max-faults`.
//!
//! ```text
//!   cluster.rs   node processes (own data dir, own namespace for partitions)
//!       ▲ kill, pause, partition, heal
//!   nemesis.rs ──────────────┐
//!   workload.rs  clients ────┴─► history.rs ─► checker.rs (+ linearizability.rs)
//!                                                  │
//!                                                  ▼
//!                                              report.rs ─► printed here
//! ```

mod checker;
mod cluster;
mod history;
mod linearizability;
mod nemesis;
mod report;
mod workload;

use anyhow::Context;
use clap::Args;
use cluster::Cluster;
use history::{FinalState, History};
use nemesis::{Fault, FaultKind, Nemesis};
use report::Report;
use serde_json::json;
use shoal_client::{Client, JobState};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use workload::Shared;

#[derive(Args)]
pub struct ChaosArgs {
    /// Nodes to start.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Faults to inject, comma separated: kill, pause, partition
    /// (partition needs root: each node gets its own network namespace),
    /// restart (SIGTERM: the node drains and exits, then starts again and
    /// rejoins; nodes in turn, as a rolling restart goes).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause,partition")]
    faults: Vec<FaultKind>,
    /// Stop injecting after this many faults.
    #[arg(long, default_value_t = 1_000)]
    max_faults: usize,
    /// Average quiet time between faults, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    interval_ms: u64,
    /// Seed of the workload and the nemesis (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Documents the clients race to update.
    #[arg(long, default_value_t = 4)]
    docs: usize,
    /// Keep the nodes' data and logs, and the recorded history
    /// (history.json), in this directory.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// With `--max-faults` reached, how long the workload runs on after the
/// last fault healed.
const AFTER_LAST_FAULT: Duration = Duration::from_secs(2);

/// How long the healed cluster gets to finish every queued job.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    // Interrupted, the run is dropped: its nodes are killed and its
    // namespaces removed, rather than left behind.
    tokio::select! {
        result = run_until_done(args) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the nodes were stopped"),
    }
}

async fn run_until_done(args: ChaosArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "chaos needs at least 3 nodes");
    anyhow::ensure!(
        args.clients >= 1 && args.docs >= 1,
        "need a client and a document"
    );
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut kinds = args.faults.clone();
    kinds.sort();
    kinds.dedup();
    let root = nix::unistd::geteuid().is_root();
    if kinds.contains(&FaultKind::Partition) && !root {
        println!("partitions need root (a network namespace per node): skipping them");
        kinds.retain(|k| *k != FaultKind::Partition);
    }
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;

    let mut cluster = Cluster::new(&dir, args.nodes, kinds.contains(&FaultKind::Partition))?;
    for node in 0..args.nodes {
        cluster.start(node).await?;
    }
    let urls = cluster.urls();
    let observer = Client::builder(&urls)
        .request_timeout(Duration::from_secs(2))
        .retry_for(Duration::from_secs(2))
        .build()?;
    wait_for_cluster(&observer, args.nodes).await?;
    let setup = Client::builder(&urls).build()?;
    let docs = workload::create_docs(&setup, args.docs).await?;
    let kind_names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    println!(
        "shoal chaos: {} nodes, {} clients, {} s, faults {}, seed {seed}",
        args.nodes,
        args.clients,
        args.duration,
        if kind_names.is_empty() {
            "none".into()
        } else {
            kind_names.join(",")
        },
    );

    let started = Instant::now();
    let shared = Arc::new(Shared {
        started,
        until: started + Duration::from_secs(args.duration),
        faults_done: std::sync::atomic::AtomicBool::new(false),
        next_value: AtomicU64::new(1),
        run: format!("chaos-{seed}"),
        docs: docs.clone(),
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|id| {
            // Each client starts at a different node and fails over in turn.
            let mut order = urls.clone();
            order.rotate_left(id % urls.len());
            let client = Client::builder(order)
                .request_timeout(Duration::from_secs(10))
                .retry_for(Duration::from_secs(30))
                .build()?;
            Ok(tokio::spawn(workload::client(
                id,
                client,
                shared.clone(),
                seed,
            )))
        })
        .collect::<anyhow::Result<_>>()?;
    let nemesis = Nemesis {
        kinds,
        max_faults: args.max_faults,
        interval: Duration::from_millis(args.interval_ms),
        seed,
    };
    let (faults, fault_failure) = nemesis.run(&mut cluster, &observer, &shared).await;
    cluster.heal()?;
    if faults.len() >= args.max_faults {
        // The workload goes on a moment after the last heal, then stops.
        tokio::time::sleep(
            AFTER_LAST_FAULT.min(shared.until.saturating_duration_since(Instant::now())),
        )
        .await;
        shared
            .faults_done
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    let mut history = History::default();
    for client in clients {
        history.absorb(client.await.context("a client panicked")?);
    }
    history.faults = faults.iter().map(|f| f.at).collect();
    let workload_s = started.elapsed().as_secs_f64();

    let drained = drain(&setup).await;
    let last = FinalState {
        jobs: workload::all_jobs(&setup).await?,
        docs: workload::final_docs(&setup, &docs).await?,
    };
    let mut report = checker::check(&history, &last);
    if !faults.is_empty() && faults.iter().all(|f| f.kind == FaultKind::Restart) {
        checker::check_no_lease_waits(&last, &mut report);
    }
    if let Some(failure) = fault_failure {
        report.fault_failures += 1;
        report.problem(failure);
    }
    if let Some(dir) = &args.dir {
        // Everything the checker saw, to study a failed run.
        let recorded = json!({ "seed": seed, "history": history, "final": last });
        std::fs::write(dir.join("history.json"), recorded.to_string())?;
    }
    print_report(&report, &faults, workload_s, drained, args.json, seed);
    drop(cluster);
    if !report.passed() {
        anyhow::bail!(
            "guarantees broken: {} lost, {} duplicated, {} linearizability violations, \
             {} jobs waited for a lease, {} faults went wrong (seed {seed}; \
             rerun with --dir to keep the logs)",
            report.lost(),
            report.duplicates(),
            report.linearizability_violations,
            report.jobs_waited_for_lease,
            report.fault_failures
        );
    }
    Ok(())
}

/// Waits until every node is up and Raft has a leader and three voters.
async fn wait_for_cluster(observer: &Client, nodes: usize) -> anyhow::Result<()> {
    let formed = cluster::formed(observer, nodes, 3, Duration::from_secs(60)).await;
    anyhow::ensure!(formed, "the cluster did not form within a minute");
    Ok(())
}

/// Waits until no job is queued or running; returns how long it took.
async fn drain(client: &Client) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < DRAIN_TIMEOUT {
        if let Ok(status) = client.status().await {
            let pending: usize = [JobState::Queued, JobState::Running]
                .iter()
                .map(|s| status.jobs.get(s.as_str()).copied().unwrap_or(0))
                .sum();
            if pending == 0 {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn print_report(
    report: &Report,
    faults: &[Fault],
    workload_s: f64,
    drained: Option<Duration>,
    json: bool,
    seed: u64,
) {
    let tally = nemesis::tally(faults);
    let faults_text: Vec<String> = tally.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let failed: Vec<String> = report
        .calls_failed
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    println!();
    println!("operations  {} in {workload_s:.1} s", report.operations());
    println!(
        "faults      {} ({})",
        faults.len(),
        if faults_text.is_empty() {
            "none".into()
        } else {
            faults_text.join(", ")
        }
    );
    println!(
        "calls       {} ok, {} wrong, {} unresolved, {} clear errors{}",
        report.calls_ok,
        report.calls_wrong,
        report.calls_unresolved,
        report.calls_failed.values().sum::<usize>(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    println!(
        "jobs        {} submitted, {} acknowledged, {} completed exactly once ({} after a retry, \
         {} handed back by a drain), {} lost, {} duplicated",
        report.jobs_submitted,
        report.jobs_acknowledged,
        report.jobs_completed_once,
        report.jobs_retried,
        report.jobs_handed_back,
        report.jobs_lost,
        report.jobs_duplicated
    );
    println!(
        "documents   {} writes ({} acknowledged, {} conflicts), {} lost; {} reads ({} answered), \
         {} linearizability violations",
        report.doc_writes,
        report.doc_writes_acknowledged,
        report.doc_write_conflicts,
        report.doc_writes_lost,
        report.doc_reads,
        report.doc_reads_ok,
        report.linearizability_violations
    );
    let slowest = report
        .slowest_fault
        .and_then(|i| faults.get(i))
        .map_or(String::new(), |f| format!(" (after {})", f.describe()));
    println!(
        "recovery    from a fault to the next acknowledged write: median {:.2} s, max {:.2} s{slowest}",
        report.median_recovery_ms / 1000.0,
        report.max_recovery_ms / 1000.0,
    );
    println!(
        "drain       {}",
        drained.map_or("the queue did not drain within 2 min".into(), |d| format!(
            "queue empty {:.1} s after the last fault healed",
            d.as_secs_f64()
        ))
    );
    let restarts: Vec<&Fault> = faults
        .iter()
        .filter(|f| f.kind == FaultKind::Restart)
        .collect();
    if let Some(longest) = restarts.iter().map(|f| f.held).max() {
        println!(
            "restarts    {} drained, restarted and rejoined (longest {:.1} s); {} jobs waited for a lease",
            restarts.len(),
            longest.as_secs_f64(),
            report.jobs_waited_for_lease
        );
    }
    for problem in &report.problems {
        println!("PROBLEM     {problem}");
    }
    println!(
        "verdict     {}: lost {}, duplicates {}",
        if report.passed() { "PASS" } else { "FAIL" },
        report.lost(),
        report.duplicates()
    );
    if json {
        let mut figures = serde_json::to_value(report).expect("a report serializes");
        let extra = json!({
            "seed": seed,
            "operations": report.operations(),
            "workload_s": workload_s,
            "faults": faults.len(),
            "faults_by_kind": tally,
            "lost": report.lost(),
            "duplicates": report.duplicates(),
            "drain_s": drained.map(|d| d.as_secs_f64()),
            "passed": report.passed(),
        });
        if let (Some(figures), Some(extra)) = (figures.as_object_mut(), extra.as_object()) {
            figures.extend(extra.clone());
        }
        println!("{figures}");
    }
}
