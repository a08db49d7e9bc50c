//! `shoal bench http`: calls through the HTTP API, the way a client in
//! any language makes them.

use super::measure::percentile;
use super::nodes::http_node;
use clap::Args;
use serde_json::{Value, json};
use shoal_client::{BatchCall, Client};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct HttpArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent clients (each a connection of the pooled client).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Calls per batch request in the batch figure.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: HttpArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    let (node, url) = http_node(2).await?;
    let client = Client::new([&url])?;
    // Warm up: open connections, fill caches.
    for _ in 0..1_000 {
        client.call("noop", Value::Null).await?;
    }

    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let call_started = Instant::now();
        client.call("noop", Value::Null).await?;
        latencies.push(call_started.elapsed().as_micros() as u64);
    }
    let sequential = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();

    let concurrent = concurrently(
        args.clients,
        duration,
        |client| async move { client.call("noop", Value::Null).await.map(|_| 1) },
        &client,
    )
    .await?;
    let batch = args.batch.max(1);
    let batched = concurrently(
        args.clients.div_ceil(8),
        duration,
        move |client| async move {
            let calls = (0..batch)
                .map(|_| BatchCall {
                    function: "noop".into(),
                    args: Value::Null,
                })
                .collect();
            let results = client.batch(calls, None).await?;
            Ok(results.iter().filter(|r| r.is_ok()).count() as u64)
        },
        &client,
    )
    .await?;
    node.shutdown().await;

    let figures = json!({
        "http_calls_per_s": concurrent.round(),
        "http_clients": args.clients,
        "http_calls_per_s_1_client": sequential.round(),
        "http_rtt_p50_us": percentile(&latencies, 0.50),
        "http_rtt_p99_us": percentile(&latencies, 0.99),
        "http_batched_calls_per_s": batched.round(),
        "batch_size": batch,
    });
    println!(
        "no-op calls through the HTTP API of one node, {:.1} s per figure",
        duration.as_secs_f64()
    );
    println!(
        "  {:>3} clients              {concurrent:>10.0} calls/s",
        args.clients
    );
    println!("    1 client               {sequential:>10.0} calls/s");
    println!(
        "  round trip               p50 {} µs, p99 {} µs",
        figures["http_rtt_p50_us"], figures["http_rtt_p99_us"]
    );
    println!("  batches of {batch:<4}         {batched:>10.0} calls/s");
    if args.json {
        println!("{figures}");
    }
    Ok(())
}

/// `clients` tasks repeating `request` for `duration`; calls per second.
async fn concurrently<F, Fut>(
    clients: usize,
    duration: Duration,
    request: F,
    client: &Client,
) -> anyhow::Result<f64>
where
    F: Fn(Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, shoal_client::ClientError>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (client, done, request) = (client.clone(), Arc::clone(&done), request.clone());
        tasks.spawn(async move {
            while started.elapsed() < duration {
                done.fetch_add(request(client.clone()).await?, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
