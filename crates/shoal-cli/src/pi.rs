//! Monte Carlo Pi over a cluster: split the samples into chunks, run them
//! through `pi.sample` wherever placement puts them, add up the counts.

use futures::StreamExt;
use serde_json::json;
use shoal_node::Node;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Chunks in flight at once; more than the cluster's slots, so every node
/// has its next chunk queued when it finishes one.
const IN_FLIGHT: usize = 256;

pub struct PiRun {
    pub inside: u64,
    pub total: u64,
    /// Chunks run by each node (by peer id).
    pub chunks_per_node: BTreeMap<String, usize>,
    pub wall: Duration,
}

impl PiRun {
    pub fn estimate(&self) -> f64 {
        4.0 * self.inside as f64 / self.total as f64
    }
}

/// The native chunk function every `shoal node` offers.
pub const NATIVE: &str = "pi.sample";
/// The chunk function of `examples/pi.js`.
pub const JAVASCRIPT: &str = "monte_carlo_sample";
/// `examples/pi.js`, built in so `shoal demo --js` needs no files.
pub const PI_JS: &str = include_str!("../../../examples/pi.js");

/// Runs `samples` samples in `chunks` chunks (seeds 0..chunks) of
/// `function`; calls `on_chunk` after each chunk so callers can show progress.
pub async fn run(
    node: &Node,
    function: &'static str,
    samples: u64,
    chunks: u64,
    mut on_chunk: impl FnMut(),
) -> anyhow::Result<PiRun> {
    anyhow::ensure!(chunks > 0, "--chunks must be at least 1");
    let per_chunk = samples / chunks;
    let extra = samples % chunks;
    let calls = (0..chunks).map(move |seed| {
        let samples = per_chunk + u64::from(seed < extra);
        (
            function.to_string(),
            json!({ "samples": samples, "seed": seed }),
        )
    });
    let started = Instant::now();
    let mut results = node.call_many(calls, IN_FLIGHT);
    let mut run = PiRun {
        inside: 0,
        total: 0,
        chunks_per_node: BTreeMap::new(),
        wall: Duration::ZERO,
    };
    while let Some((index, result)) = results.next().await {
        let chunk = result.map_err(|e| anyhow::anyhow!("chunk {index} failed: {e}"))?;
        run.inside += chunk["inside"].as_u64().unwrap_or(0);
        run.total += chunk["total"].as_u64().unwrap_or(0);
        let node = chunk["node"].as_str().unwrap_or("?").to_string();
        *run.chunks_per_node.entry(node).or_default() += 1;
        on_chunk();
    }
    run.wall = started.elapsed();
    Ok(run)
}
