//! `shoal demo`: the embedded default. A local cluster in this process — no
//! configuration, no mDNS, loopback only — runs Monte Carlo Pi (or fib).

use crate::pi;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_node::local::start_local_cluster;
use shoal_node::{Node, NodeConfig, Script, builtins};
use std::time::{Duration, Instant};

/// Samples the Pi demo draws by default: about ten seconds on two cores
/// either way (JavaScript draws some 14 times fewer per second than Rust).
const NATIVE_SAMPLES: u64 = 1_000_000_000;
const JS_SAMPLES: u64 = 72_000_000;

#[derive(Args)]
pub struct DemoArgs {
    /// Nodes in the local cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Monte Carlo samples in all [default: 1,000,000,000 in Rust,
    /// 72,000,000 with --js: each about 10 s on two cores].
    #[arg(long)]
    samples: Option<u64>,
    /// Chunks the samples are split into.
    #[arg(long, default_value_t = 96)]
    chunks: u64,
    /// Run the Pi chunks in JavaScript (examples/pi.js) instead of Rust.
    #[arg(long)]
    js: bool,
    #[command(subcommand)]
    which: Option<Which>,
}

#[derive(Subcommand)]
enum Which {
    /// Memoized recursive fib across the cluster.
    Fib {
        /// Which Fibonacci number (at most 92).
        n: u64,
    },
}

/// Starts `count` in-process nodes, splitting this machine's cores between
/// them; each loads `pi.js` when `js` is set.
async fn local_cluster(count: usize, js: bool) -> anyhow::Result<Vec<Node>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = (cores / count.max(1)).max(1) as u32;
    let nodes = start_local_cluster(count, |_, builder| {
        let builder = builtins::register(builder.config(NodeConfig {
            slots,
            // Four times the default rate, so the cluster forms in a moment.
            heartbeat_interval: Duration::from_millis(250),
            ..NodeConfig::default()
        }));
        if js {
            builder.script(Script::new("pi.js", pi::PI_JS))
        } else {
            builder
        }
    })
    .await?;
    Ok(nodes)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let nodes = local_cluster(args.nodes, args.js).await?;
    println!("local cluster of {} nodes is up", nodes.len());
    let result = match args.which {
        Some(Which::Fib { n }) => fib(&nodes, n).await,
        None => {
            let (function, default_samples) = if args.js {
                (pi::JAVASCRIPT, JS_SAMPLES)
            } else {
                (pi::NATIVE, NATIVE_SAMPLES)
            };
            let samples = args.samples.unwrap_or(default_samples);
            pi_demo(&nodes, function, samples, args.chunks).await
        }
    };
    for node in &nodes {
        node.shutdown().await;
    }
    result
}

async fn pi_demo(
    nodes: &[Node],
    function: &'static str,
    samples: u64,
    chunks: u64,
) -> anyhow::Result<()> {
    let language = if function == pi::JAVASCRIPT {
        "JavaScript"
    } else {
        "Rust"
    };
    println!("Monte Carlo Pi: {samples} samples in {chunks} chunks ({language})");
    let bar = ProgressBar::new(chunks);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} chunks  {elapsed_precise}",
    )?);
    let run = pi::run(&nodes[0], function, samples, chunks, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let estimate = run.estimate();
    println!("pi ≈ {estimate:.10}");
    println!("error {:.3e}", (estimate - std::f64::consts::PI).abs());
    for (index, node) in nodes.iter().enumerate() {
        let ran = run
            .chunks_per_node
            .get(&node.peer_id().to_string())
            .copied()
            .unwrap_or(0);
        println!(
            "node {index} ({}…): {ran} chunks",
            &node.peer_id().to_string()[..12]
        );
    }
    println!(
        "wall time {:.2} s, {:.1} M samples/s",
        run.wall.as_secs_f64(),
        run.total as f64 / run.wall.as_secs_f64() / 1e6
    );
    Ok(())
}

async fn fib(nodes: &[Node], n: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let value = nodes[0].call("fib", json!(n)).await?;
    let wall = started.elapsed();
    println!("fib({n}) = {value}");
    for (index, node) in nodes.iter().enumerate() {
        let ran = node
            .stats()
            .executed
            .load(std::sync::atomic::Ordering::Relaxed);
        println!("node {index}: ran {ran} calls");
    }
    println!("wall time {:.1} ms", wall.as_secs_f64() * 1e3);
    Ok(())
}
