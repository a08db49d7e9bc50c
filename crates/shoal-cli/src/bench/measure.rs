//! How the benchmarks take their figures: latency percentiles, calls in
//! a loop for a fixed time (one at a time, or many in flight), and a fixed
//! number of operations spread over concurrent workers.

use shoal_node::Node;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Latency percentiles in microseconds.
pub fn percentile(sorted_us: &[u64], fraction: f64) -> u64 {
    if sorted_us.is_empty() {
        return 0;
    }
    let index = ((sorted_us.len() - 1) as f64 * fraction).round() as usize;
    sorted_us[index]
}

/// Sequential calls of `function` for `duration`: (calls per second,
/// sorted latencies in µs).
pub async fn sequential(
    node: &Node,
    function: &str,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<u64>)> {
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let call_started = Instant::now();
        node.call(function, serde_json::Value::Null).await?;
        latencies.push(call_started.elapsed().as_micros() as u64);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok((rate, latencies))
}

/// `in_flight` concurrent callers of `function` for `duration`: calls per second.
pub async fn concurrent(
    node: &Node,
    function: &'static str,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let node = node.clone();
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            while started.elapsed() < duration {
                node.call(function, serde_json::Value::Null).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Runs `count` operations with `clients` concurrent workers; returns the
/// latency of each, in µs, sorted.
pub async fn spread<F, Fut>(count: usize, clients: usize, operation: F) -> anyhow::Result<Vec<u64>>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let next = Arc::clone(&next);
        let operation = operation.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                if index >= count {
                    return anyhow::Ok(latencies);
                }
                let started = Instant::now();
                operation(index).await?;
                latencies.push(started.elapsed().as_micros() as u64);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(result) = tasks.join_next().await {
        all.extend(result??);
    }
    all.sort_unstable();
    Ok(all)
}
