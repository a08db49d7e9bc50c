//! `shoal bench …`: figures, never pass/fail. Each command prints a table
//! and, with `--json`, one JSON object of its figures as the last line.

mod http;

use crate::pi;
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_node::testkit::test_config;
use shoal_node::{Multiaddr, Node, builtins};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// No-op calls between two nodes: throughput, round trips, idle memory.
    Calls(CallsArgs),
    /// CPU-bound Monte Carlo Pi on 1, 2, 4… node processes: speedup and efficiency.
    Scale(ScaleArgs),
    /// JavaScript: Pi per core against bare QuickJS, call overhead, remote calls.
    Js(JsArgs),
    /// Durable jobs on 3 voters with fsync: submit → lease → complete.
    Jobs(DurableArgs),
    /// Documents: concurrent inserts, reads and versioned updates on 3 nodes.
    Db(DurableArgs),
    /// Calls through the HTTP API with many concurrent clients.
    Http(http::HttpArgs),
}

#[derive(Args)]
pub struct DurableArgs {
    /// Jobs to run, or documents to write.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct JsArgs {
    /// Monte Carlo samples for the per-core Pi figures.
    #[arg(long, default_value_t = 20_000_000)]
    samples: u64,
    /// Seconds per call measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CallsArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

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

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Calls(args) => calls(args).await,
        BenchCommand::Scale(args) => scale(args).await,
        BenchCommand::Js(args) => js(args).await,
        BenchCommand::Jobs(args) => jobs(args).await,
        BenchCommand::Db(args) => db(args).await,
        BenchCommand::Http(args) => http::http(args).await,
    }
}

/// Latency percentiles in microseconds.
fn percentile(sorted_us: &[u64], fraction: f64) -> u64 {
    if sorted_us.is_empty() {
        return 0;
    }
    let index = ((sorted_us.len() - 1) as f64 * fraction).round() as usize;
    sorted_us[index]
}

/// Sequential calls of `function` for `duration`: (calls per second,
/// sorted latencies in µs).
async fn sequential(
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
async fn concurrent(
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

async fn calls(args: CallsArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    // The caller registers nothing, so every call from it is remote.
    let caller = Node::builder().config(test_config(2)).start().await?;
    let server = builtins::register(Node::builder().config(test_config(2)))
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

/// A real `shoal node` process started by a benchmark; killed on drop.
struct NodeProcess {
    child: Child,
    addr: Multiaddr,
}

impl NodeProcess {
    fn spawn(extra: &[String]) -> anyhow::Result<NodeProcess> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("node")
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listen="))
            .and_then(|addrs| addrs.split(',').next())
            .ok_or_else(|| anyhow::anyhow!("node did not print its address: {line:?}"))?
            .parse()?;
        Ok(NodeProcess { child, addr })
    }

    fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc status"))?;
        Ok(kb / 1024.0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn idle_rss_mb() -> anyhow::Result<f64> {
    let node = NodeProcess::spawn(&[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.rss_mb()
}

async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
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
        .config(shoal_node::NodeConfig {
            raft: false,
            ..test_config(0)
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

/// A script with a no-op function, for call overheads.
const NOOP_JS: &str = "shoal.register('js.noop', () => null);";

async fn js(args: JsArgs) -> anyhow::Result<()> {
    use shoal_node::Script;
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    let samples = args.samples.max(1);

    // The same loop twice: in a bare QuickJS runtime, and through a node.
    let bare = shoal_js::time_bare(pi::PI_JS, &format!("sample({samples}, 1)"))
        .map_err(anyhow::Error::msg)?;
    let bare_ns = bare.as_nanos() as f64 / samples as f64;

    let caller = Node::builder().config(test_config(2)).start().await?;
    let server = builtins::register(Node::builder().config(test_config(2)))
        .script(Script::new("pi.js", pi::PI_JS))
        .script(Script::new("noop.js", NOOP_JS))
        .join(caller.listen_addrs()[0].clone())
        .start()
        .await?;
    anyhow::ensure!(
        caller.wait_for_peers(1, Duration::from_secs(10)).await == 1,
        "the two benchmark nodes did not find each other"
    );
    let chunk = serde_json::json!({ "samples": samples, "seed": 1 });
    server
        .call(
            pi::JAVASCRIPT,
            serde_json::json!({ "samples": 1000, "seed": 1 }),
        )
        .await?;
    let started = Instant::now();
    server.call(pi::JAVASCRIPT, chunk).await?;
    let pool_ns = started.elapsed().as_nanos() as f64 / samples as f64;

    for _ in 0..2_000 {
        caller.call("js.noop", serde_json::Value::Null).await?;
    }
    let (_, js_local) = sequential(&server, "js.noop", duration).await?;
    let (_, native_local) = sequential(&server, "noop", duration).await?;
    let js_remote_64 = concurrent(&caller, "js.noop", 64, duration).await?;
    let native_remote_64 = concurrent(&caller, "noop", 64, duration).await?;
    caller.shutdown().await;
    server.shutdown().await;

    let figures = json!({
        "js_pi_ns_per_sample": (pool_ns * 10.0).round() / 10.0,
        "bare_quickjs_pi_ns_per_sample": (bare_ns * 10.0).round() / 10.0,
        "js_pi_vs_bare_ratio": ((pool_ns / bare_ns) * 100.0).round() / 100.0,
        "js_local_call_p50_us": percentile(&js_local, 0.50),
        "js_local_call_p99_us": percentile(&js_local, 0.99),
        "native_local_call_p50_us": percentile(&native_local, 0.50),
        "js_remote_calls_per_s_64_in_flight": js_remote_64.round(),
        "native_remote_calls_per_s_64_in_flight": native_remote_64.round(),
        "js_vs_native_remote_ratio": ((js_remote_64 / native_remote_64) * 100.0).round() / 100.0,
    });
    println!(
        "JavaScript (QuickJS-NG), {samples} Pi samples, {:.1} s per call figure",
        duration.as_secs_f64()
    );
    println!(
        "  Pi per core, through a node    {:>8.1} ns/sample",
        pool_ns
    );
    println!(
        "  Pi per core, bare QuickJS      {:>8.1} ns/sample  (ratio {})",
        bare_ns, figures["js_pi_vs_bare_ratio"]
    );
    println!(
        "  local call, JS no-op           p50 {} µs, p99 {} µs (native p50 {} µs)",
        figures["js_local_call_p50_us"],
        figures["js_local_call_p99_us"],
        figures["native_local_call_p50_us"]
    );
    println!(
        "  remote calls, 64 in flight     JS {:.0}/s, native {:.0}/s (ratio {})",
        js_remote_64, native_remote_64, figures["js_vs_native_remote_ratio"]
    );
    if args.json {
        println!("{figures}");
    }
    Ok(())
}

/// Three in-process nodes keeping their Raft data (fsync on) in a temporary
/// directory, all voters.
async fn durable_cluster(dir: &std::path::Path) -> anyhow::Result<Vec<Node>> {
    let nodes = shoal_node::testkit::start_cluster(3, |i, builder| {
        builtins::register(builder.config(shoal_node::NodeConfig {
            data_dir: Some(dir.join(format!("node-{i}"))),
            ..test_config(2)
        }))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].raft_status().voters.len() < 3 {
        anyhow::ensure!(Instant::now() < deadline, "three voters did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(nodes)
}

/// Runs `count` operations with `clients` concurrent workers; returns the
/// latency of each, in µs, sorted.
async fn spread<F, Fut>(count: usize, clients: usize, operation: F) -> anyhow::Result<Vec<u64>>
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

async fn jobs(args: DurableArgs) -> anyhow::Result<()> {
    use shoal_node::jobs::JobSpec;
    let dir = tempfile::tempdir()?;
    let nodes = durable_cluster(dir.path()).await?;
    let started = Instant::now();
    let submitters = nodes.clone();
    let latencies = spread(args.count, args.clients, move |i| {
        let node = submitters[i % submitters.len()].clone();
        async move {
            let spec = JobSpec {
                function: "noop".to_string(),
                args: serde_json::Value::Null,
                script: None,
                labels: Default::default(),
                resources: Default::default(),
                priority: 0,
                max_attempts: 3,
                lease_ms: 10_000,
                idempotency_key: None,
            };
            node.submit_job(spec).await?;
            Ok(())
        }
    })
    .await?;
    let submitted_in = started.elapsed();
    loop {
        let counts = nodes[0].job_counts(shoal_node::Read::Stale).await?;
        if counts.get("succeeded").copied().unwrap_or(0) >= args.count {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "jobs did not finish: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    for node in &nodes {
        node.shutdown().await;
    }
    let figures = json!({
        "jobs": args.count,
        "jobs_per_s": (args.count as f64 / total.as_secs_f64()).round(),
        "submits_per_s": (args.count as f64 / submitted_in.as_secs_f64()).round(),
        "submit_ack_p50_us": percentile(&latencies, 0.50),
        "submit_ack_p99_us": percentile(&latencies, 0.99),
    });
    println!("durable jobs, 3 voters, fsync on, {} clients", args.clients);
    println!(
        "  submit → lease → complete   {:>8} jobs/s ({} jobs in {:.2} s)",
        figures["jobs_per_s"],
        args.count,
        total.as_secs_f64()
    );
    println!(
        "  submissions acknowledged     {:>8} /s",
        figures["submits_per_s"]
    );
    println!(
        "  submit to ack                p50 {} µs, p99 {} µs",
        figures["submit_ack_p50_us"], figures["submit_ack_p99_us"]
    );
    if args.json {
        println!("{figures}");
    }
    Ok(())
}

async fn db(args: DurableArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes = durable_cluster(dir.path()).await?;
    nodes[0].db_create("bench").await?;
    // Inserts from every node at once.
    let started = Instant::now();
    let writers = nodes.clone();
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.count)));
    let ids_out = Arc::clone(&ids);
    let insert_latencies = spread(args.count, args.clients, move |i| {
        let node = writers[i % writers.len()].clone();
        let ids = Arc::clone(&ids_out);
        async move {
            let (id, _) = node
                .db_insert("bench", json!({ "i": i, "hits": 0 }))
                .await?;
            ids.lock().expect("ids lock").push(id);
            Ok(())
        }
    })
    .await?;
    let insert_time = started.elapsed();
    let ids: Vec<String> = ids.lock().expect("ids lock").clone();
    // Versioned read-modify-write on a few hot documents from every node.
    let hot: Vec<String> = ids.iter().take(8).cloned().collect();
    let updates = args.count / 4;
    let started = Instant::now();
    let updaters = nodes.clone();
    let hot_docs = hot.clone();
    let conflicts = Arc::new(AtomicU64::new(0));
    let conflicts_out = Arc::clone(&conflicts);
    spread(updates, args.clients, move |i| {
        let node = updaters[i % updaters.len()].clone();
        let id = hot_docs[i % hot_docs.len()].clone();
        let conflicts = Arc::clone(&conflicts_out);
        async move {
            loop {
                let doc = node
                    .db_get("bench", &id, shoal_node::Read::Linearizable)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("document {id} vanished"))?;
                let hits = doc.body["hits"].as_u64().unwrap_or(0) + 1;
                let body = json!({ "i": doc.body["i"], "hits": hits });
                match node.db_replace("bench", &id, body, Some(doc.version)).await {
                    Ok(_) => return Ok(()),
                    Err(shoal_node::DataError::Refused(e))
                        if e.code == shoal_proto::ErrorCode::VersionConflict =>
                    {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    })
    .await?;
    let update_time = started.elapsed();
    // What survived: every insert, and every acknowledged increment.
    let stored = nodes[1]
        .db_count(
            "bench",
            serde_json::Map::new(),
            shoal_node::Read::Linearizable,
        )
        .await?;
    let mut hits = 0;
    for id in &hot {
        let doc = nodes[2]
            .db_get("bench", id, shoal_node::Read::Linearizable)
            .await?;
        hits += doc.map_or(0, |d| d.body["hits"].as_u64().unwrap_or(0));
    }
    for node in &nodes {
        node.shutdown().await;
    }
    let figures = json!({
        "inserts_per_s": (args.count as f64 / insert_time.as_secs_f64()).round(),
        "insert_p50_us": percentile(&insert_latencies, 0.50),
        "versioned_updates_per_s": (updates as f64 / update_time.as_secs_f64()).round(),
        "version_conflicts_retried": conflicts.load(Ordering::Relaxed),
        "documents_lost": args.count.saturating_sub(stored),
        "updates_lost": (updates as u64).saturating_sub(hits),
    });
    println!(
        "documents, 3 nodes (all voters, fsync on), {} clients",
        args.clients
    );
    println!(
        "  inserts                    {:>8} /s (p50 {} µs)",
        figures["inserts_per_s"], figures["insert_p50_us"]
    );
    println!(
        "  versioned updates          {:>8} /s on 8 hot documents ({} conflicts retried)",
        figures["versioned_updates_per_s"], figures["version_conflicts_retried"]
    );
    println!(
        "  documents lost             {:>8}",
        figures["documents_lost"]
    );
    println!(
        "  acknowledged updates lost  {:>8}",
        figures["updates_lost"]
    );
    if args.json {
        println!("{figures}");
    }
    Ok(())
}
