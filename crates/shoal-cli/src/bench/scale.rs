//! `shoal bench scale`: the same CPU-bound Monte Carlo Pi on 1, 2, 4…
//! node processes of one slot each, driven by an in-process node that only
//! calls; speedup and efficiency against one node.

use super::nodes::{NodeProcess, node_config};
use crate::pi;
use clap::Args;
use serde_json::json;
use shoal_node::{Node, NodeConfig};
use std::time::Duration;

#[derive(Args)]
pub struct ScaleArgs {
    /// Cluster sizes to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    nodes: Vec<usize>,
    /// Monte Carlo samples per run (the same work for every size).
    #[arg(long, default_value_t = 1_000_000_000)]
    samples: u64,
    /// Chunks per node: more chunks, finer balance.
    #[arg(long, default_value_t = 32)]
    chunks_per_node: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let mut baseline: Option<f64> = None;
    println!(
        "Monte Carlo Pi, {} samples, node processes with 1 slot each",
        args.samples
    );
    println!(
        "{:>6} {:>10} {:>9} {:>11}",
        "nodes", "wall s", "speedup", "efficiency"
    );
    for &count in &args.nodes {
        anyhow::ensure!(count >= 1, "cluster sizes must be at least 1");
        let wall = time_pi(count, args.samples, args.chunks_per_node * count as u64).await?;
        // Speedup is against one node; if the list does not start at 1, the
        // first size is assumed to scale perfectly.
        let base = *baseline.get_or_insert(wall * count as f64);
        let speedup = base / wall;
        let efficiency = speedup / count as f64;
        println!("{count:>6} {wall:>10.3} {speedup:>9.2} {efficiency:>11.2}");
        runs.push(
            json!({ "nodes": count, "wall_s": wall, "speedup": speedup, "efficiency": efficiency }),
        );
    }
    if args.json {
        let min_efficiency = runs
            .iter()
            .filter_map(|r| r["efficiency"].as_f64())
            .fold(f64::INFINITY, f64::min);
        println!(
            "{}",
            json!({ "samples": args.samples, "runs": runs, "min_efficiency": min_efficiency })
        );
    }
    Ok(())
}

/// Wall seconds for one Pi run on `count` fresh node processes.
async fn time_pi(count: usize, samples: u64, chunks: u64) -> anyhow::Result<f64> {
    let common = [
        "--slots".to_string(),
        "1".to_string(),
        "--heartbeat-ms".to_string(),
        "250".to_string(),
    ];
    let first = NodeProcess::spawn(&common)?;
    let mut processes = vec![];
    for _ in 1..count {
        let mut extra = common.to_vec();
        extra.extend(["--join".to_string(), first.addr.to_string()]);
        processes.push(NodeProcess::spawn(&extra)?);
    }
    processes.push(first);
    // The driver only calls: no slots and no replica, so all work runs in
    // the node processes.
    let driver = Node::builder()
        .config(NodeConfig {
            raft: false,
            ..node_config(0)
        })
        .join(processes.last().expect("first node").addr.clone())
        .start()
        .await?;
    let seen = driver.wait_for_peers(count, Duration::from_secs(20)).await;
    anyhow::ensure!(seen == count, "driver sees {seen} of {count} nodes");
    driver
        .wait_for_connections(count, Duration::from_secs(20))
        .await;
    // Warm-up so every node has been reached once.
    pi::run(
        &driver,
        pi::NATIVE,
        1_000_000 * count as u64,
        4 * count as u64,
        || {},
    )
    .await?;
    let run = pi::run(&driver, pi::NATIVE, samples, chunks, || {}).await?;
    driver.shutdown().await;
    drop(processes);
    Ok(run.wall.as_secs_f64())
}
