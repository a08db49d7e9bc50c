//! `shoal bench calls`: no-op calls between two in-process nodes —
//! throughput and round trips, remote and local — and the memory of an
//! idle node process.

use super::measure::{concurrent, percentile, sequential};
use super::nodes::{NodeProcess, node_config};
use clap::Args;
use serde_json::json;
use shoal_node::{Node, builtins};
use std::time::Duration;

#[derive(Args)]
pub struct CallsArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: CallsArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    // The caller registers nothing, so every call from it is remote.
    let caller = Node::builder().config(node_config(2)).start().await?;
    let server = builtins::register(Node::builder().config(node_config(2)))
        .join(caller.listen_addrs()[0].clone())
        .start()
        .await?;
    anyhow::ensure!(
        caller.wait_for_peers(1, Duration::from_secs(10)).await == 1,
        "the two benchmark nodes did not find each other"
    );
    // Warm up: open the stream, fill caches.
    for _ in 0..2_000 {
        caller.call("noop", serde_json::Value::Null).await?;
    }
    let (remote_1, remote_latencies) = sequential(&caller, "noop", duration).await?;
    let remote_64 = concurrent(&caller, "noop", 64, duration).await?;
    let (_, local_latencies) = sequential(&server, "noop", duration).await?;
    let local_64 = concurrent(&server, "noop", 64, duration).await?;
    caller.shutdown().await;
    server.shutdown().await;
    let idle_rss_mb = idle_rss_mb().await?;

    let figures = json!({
        "remote_calls_per_s_1_in_flight": remote_1.round(),
        "remote_calls_per_s_64_in_flight": remote_64.round(),
        "local_calls_per_s_64_in_flight": local_64.round(),
        "remote_rtt_p50_us": percentile(&remote_latencies, 0.50),
        "remote_rtt_p99_us": percentile(&remote_latencies, 0.99),
        "local_rtt_p50_us": percentile(&local_latencies, 0.50),
        "local_rtt_p99_us": percentile(&local_latencies, 0.99),
        "idle_rss_mb": (idle_rss_mb * 10.0).round() / 10.0,
    });
    println!(
        "no-op calls, 2 nodes on loopback, {:.1} s per figure",
        duration.as_secs_f64()
    );
    println!("  remote, 1 in flight     {:>10.0} calls/s", remote_1);
    println!("  remote, 64 in flight    {:>10.0} calls/s", remote_64);
    println!("  local, 64 in flight     {:>10.0} calls/s", local_64);
    println!(
        "  remote round trip       p50 {} µs, p99 {} µs",
        figures["remote_rtt_p50_us"], figures["remote_rtt_p99_us"]
    );
    println!(
        "  local round trip        p50 {} µs, p99 {} µs",
        figures["local_rtt_p50_us"], figures["local_rtt_p99_us"]
    );
    println!("  idle node RSS           {:>10.1} MB", idle_rss_mb);
    if args.json {
        println!("{figures}");
    }
    Ok(())
}

/// The resident memory of a `shoal node` process two seconds after it
/// started, with nothing to do.
async fn idle_rss_mb() -> anyhow::Result<f64> {
    let node = NodeProcess::spawn(&[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.rss_mb()
}
