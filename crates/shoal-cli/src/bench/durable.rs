//! `shoal bench jobs` and `shoal bench db`: the durable stores on three
//! in-process voters that fsync their Raft log — jobs through submit →
//! lease → complete, documents through inserts and versioned updates —
//! and a count of what was lost.

use super::measure::{percentile, spread};
use super::nodes::node_config;
use clap::Args;
use serde_json::json;
use shoal_node::local::start_local_cluster;
use shoal_node::{Node, NodeConfig, builtins};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
pub struct JobsArgs {
    #[command(flatten)]
    durable: DurableArgs,
    /// The jobs need a label that only the first node has: they run there
    /// alone, one per slot (it has 2).
    #[arg(long)]
    needing_label: bool,
}

/// The label of `--needing-label`.
const BENCH_LABEL: (&str, &str) = ("bench", "here");

/// Three in-process nodes keeping their Raft data (fsync on) in a temporary
/// directory, all voters; the first one labelled `labels`.
async fn durable_cluster(
    dir: &std::path::Path,
    labels: BTreeMap<String, String>,
) -> anyhow::Result<Vec<Node>> {
    let nodes = start_local_cluster(3, |i, builder| {
        builtins::register(builder.config(NodeConfig {
            data_dir: Some(dir.join(format!("node-{i}"))),
            labels: if i == 0 {
                labels.clone()
            } else {
                BTreeMap::new()
            },
            ..node_config(2)
        }))
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].raft_status().voters.len() < 3 {
        anyhow::ensure!(Instant::now() < deadline, "three voters did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(nodes)
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    use shoal_node::jobs::JobSpec;
    let JobsArgs {
        durable: args,
        needing_label,
    } = args;
    let needs: BTreeMap<String, String> = needing_label
        .then(|| (BENCH_LABEL.0.to_string(), BENCH_LABEL.1.to_string()))
        .into_iter()
        .collect();
    let dir = tempfile::tempdir()?;
    let nodes = durable_cluster(dir.path(), needs.clone()).await?;
    let started = Instant::now();
    let submitters = nodes.clone();
    let latencies = spread(args.count, args.clients, move |i| {
        let node = submitters[i % submitters.len()].clone();
        let labels = needs.clone();
        async move {
            let spec = JobSpec {
                function: "noop".to_string(),
                args: serde_json::Value::Null,
                script: None,
                labels,
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
        "needing_label": needing_label,
        "jobs_per_s": (args.count as f64 / total.as_secs_f64()).round(),
        "submits_per_s": (args.count as f64 / submitted_in.as_secs_f64()).round(),
        "submit_ack_p50_us": percentile(&latencies, 0.50),
        "submit_ack_p99_us": percentile(&latencies, 0.99),
    });
    let needing = if needing_label {
        ", each needing a label only one node (2 slots) has"
    } else {
        ""
    };
    println!(
        "durable jobs, 3 voters, fsync on, {} clients{needing}",
        args.clients
    );
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

pub async fn db(args: DurableArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nodes = durable_cluster(dir.path(), BTreeMap::new()).await?;
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
