//! `shoal bench python`: Python against a node on this machine. The Python
//! client's no-op calls (one client, then an asyncio pool) and round trip,
//! beside the Rust client's in the same run; and the calls/s and round trip
//! of a Python worker, called on its node. Needs the package: `pip install
//! ./clients/python`.

use super::measure::{self, percentile};
use super::nodes::http_node;
use clap::Args;
use serde_json::{Value, json};
use shoal_client::Client;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Measures the Python client; prints one JSON object.
const CLIENT_SCRIPT: &str = r#"
import asyncio, json, sys, time
import shoal

url, seconds, pool = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
client = shoal.Client(url)
for _ in range(300):
    client.call("noop")
took = []
start = time.perf_counter()
while time.perf_counter() - start < seconds:
    began = time.perf_counter()
    client.call("noop")
    took.append(time.perf_counter() - began)
one = len(took) / (time.perf_counter() - start)
took.sort()

async def pooled():
    async with shoal.AsyncClient(url) as c:
        done = 0
        end = time.perf_counter() + seconds
        async def caller():
            nonlocal done
            while time.perf_counter() < end:
                await c.call("noop")
                done += 1
        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(pool)))
        return done / (time.perf_counter() - began)

print(json.dumps({
    "one": one,
    "p50_us": took[len(took) // 2] * 1e6,
    "p99_us": took[len(took) * 99 // 100] * 1e6,
    "pool": asyncio.run(pooled()),
}))
"#;

/// The functions the benchmark's worker serves.
const WORKER_MODULE: &str = r#"
import shoal

@shoal.function(name="py.noop", concurrency=64)
async def noop(args):
    return None
"#;

#[derive(Args)]
pub struct PythonArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent calls in the pooled figures.
    #[arg(long, default_value_t = 64)]
    pool: usize,
    /// The Python interpreter (with `pip install ./clients/python` done).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PythonArgs) -> anyhow::Result<()> {
    let seconds = args.seconds.max(0.1);
    let installed = Command::new(&args.python)
        .args(["-c", "import shoal"])
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", args.python))?;
    anyhow::ensure!(
        installed.success(),
        "the Python package is not installed for {}: pip install ./clients/python",
        args.python
    );
    let (node, url) = http_node(2).await?;
    let client = Client::new([&url])?;

    eprintln!("the Python client…");
    let output = Command::new(&args.python)
        .args([
            "-c",
            CLIENT_SCRIPT,
            &url,
            &seconds.to_string(),
            &args.pool.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "the Python client's run failed");
    let python: Value = serde_json::from_slice(&output.stdout)?;

    eprintln!("the Rust client, for comparison…");
    let duration = Duration::from_secs_f64(seconds);
    let rust_one = client_rate(&client, duration).await?;

    eprintln!("a Python worker…");
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench_functions.py"), WORKER_MODULE)?;
    let mut worker = Command::new(&args.python)
        .args(["-m", "shoal.worker", "bench_functions", "--node", &url])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let worker_figures = async {
        wait_for_function(&client, "py.noop").await?;
        let (worker_one, took) = measure::sequential(&node, "py.noop", duration).await?;
        let worker_pool = measure::concurrent(&node, "py.noop", args.pool, duration).await?;
        anyhow::Ok((worker_one, percentile(&took, 0.5), worker_pool))
    }
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    let (worker_one, worker_p50_us, worker_pool) = worker_figures?;
    node.shutdown().await;

    let number = |key: &str| python[key].as_f64().unwrap_or(0.0);
    println!(
        "Python client, no-op calls: {:.0}/s one at a time (p50 {:.0} µs, p99 {:.0} µs; the Rust client: {rust_one:.0}/s, {:.2}×), \
         {:.0}/s with {} in flight (asyncio)",
        number("one"),
        number("p50_us"),
        number("p99_us"),
        number("one") / rust_one.max(1.0),
        number("pool"),
        args.pool,
    );
    println!(
        "Python worker, no-op calls made on its node: {worker_one:.0}/s one at a time (p50 {worker_p50_us} µs), \
         {worker_pool:.0}/s with {} in flight",
        args.pool,
    );
    if args.json {
        println!(
            "{}",
            json!({
                "python_client_calls_per_s": number("one"),
                "python_client_rtt_p50_us": number("p50_us"),
                "python_client_rtt_p99_us": number("p99_us"),
                "python_client_pool_calls_per_s": number("pool"),
                "rust_client_calls_per_s": rust_one,
                "python_worker_calls_per_s": worker_one,
                "python_worker_rtt_p50_us": worker_p50_us,
                "python_worker_pool_calls_per_s": worker_pool,
                "pool": args.pool,
            })
        );
    }
    Ok(())
}

/// The Rust HTTP client's no-op calls per second, one at a time.
async fn client_rate(client: &Client, duration: Duration) -> anyhow::Result<f64> {
    for _ in 0..300 {
        client.call("noop", Value::Null).await?;
    }
    let mut calls = 0;
    let started = Instant::now();
    while started.elapsed() < duration {
        client.call("noop", Value::Null).await?;
        calls += 1;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// Waits until the worker has registered `function`.
async fn wait_for_function(client: &Client, function: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.call(function, Value::Null).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                anyhow::bail!("the Python worker did not serve '{function}' within 20 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
