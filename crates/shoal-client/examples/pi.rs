//! Monte Carlo Pi on a running cluster, through the HTTP API.
//!
//! ```text
//! shoal node --http 127.0.0.1:7070 &
//! cargo run --release -p shoal-client --example pi -- --node http://127.0.0.1:7070 --samples 1000000000
//! ```
//!
//! The samples are split into chunks of `pi.sample` (a function every node
//! offers); the chunks go out in concurrent batches, the cluster spreads
//! them over its nodes, and the client adds up the counts. Give several
//! `--node`s and the client carries on if one of them dies.

use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use shoal_client::{BatchCall, Client};
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Node URLs; the client moves on to the next when one stops answering.
    #[arg(
        long = "node",
        env = "SHOAL_NODE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070"
    )]
    nodes: Vec<String>,
    #[arg(long, env = "SHOAL_API_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value_t = 100_000_000)]
    samples: u64,
    #[arg(long, default_value_t = 200)]
    chunks: u64,
    /// Chunks per batch request.
    #[arg(long, default_value_t = 10)]
    batch: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.chunks > 0 && args.batch > 0,
        "--chunks and --batch must be at least 1"
    );
    let mut builder = Client::builder(&args.nodes);
    if let Some(token) = &args.token {
        builder = builder.token(token);
    }
    let client = builder.build()?;
    let (per_chunk, extra) = (args.samples / args.chunks, args.samples % args.chunks);
    let chunk = |seed: u64| BatchCall {
        function: "pi.sample".into(),
        args: json!({ "samples": per_chunk + u64::from(seed < extra), "seed": seed }),
    };
    let batches: Vec<Vec<BatchCall>> = (0..args.chunks)
        .collect::<Vec<_>>()
        .chunks(args.batch as usize)
        .map(|seeds| seeds.iter().map(|&seed| chunk(seed)).collect())
        .collect();

    let started = Instant::now();
    let (mut inside, mut total) = (0u64, 0u64);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = futures::stream::iter(batches)
        .map(|calls| {
            let client = client.clone();
            async move { client.batch(calls, None).await }
        })
        .buffer_unordered(16);
    while let Some(batch) = results.next().await {
        for result in batch? {
            let sample = result.map_err(|e| anyhow::anyhow!("a chunk failed: {e}"))?;
            inside += sample["inside"].as_u64().unwrap_or(0);
            total += sample["total"].as_u64().unwrap_or(0);
            let node = sample["node"].as_str().unwrap_or("?").to_string();
            *per_node.entry(node).or_default() += 1;
        }
    }
    let wall = started.elapsed();
    println!(
        "pi ≈ {:.6} from {total} samples in {:.2} s ({:.0} samples/s)",
        4.0 * inside as f64 / total as f64,
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64()
    );
    for (node, chunks) in per_node {
        println!("  {node}: {chunks} chunks");
    }
    Ok(())
}
