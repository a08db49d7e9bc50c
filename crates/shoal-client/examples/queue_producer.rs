//! The producer half of a work queue over the cluster's distributed
//! queue, through the HTTP API (`queue_consumer.rs` is the other half).
//!
//! ```text
//! shoal node --http 127.0.0.1:7070 --listen /ip4/127.0.0.1/tcp/7001 &
//! shoal node --http 127.0.0.1:7071 --join /ip4/127.0.0.1/tcp/7001 &
//! cargo run --release -p shoal-client --example queue_consumer -- --node http://127.0.0.1:7071 &
//! cargo run --release -p shoal-client --example queue_producer -- --node http://127.0.0.1:7070 --items 1000
//! ```
//!
//! It prints `pushed 1000 items to 'work' through http://127.0.0.1:7070/
//! in 0.01 s`, then `closed 'work': consumers stop once it is empty`.
//! The items stay on the node that took the push until consumers anywhere
//! pop them; order is not guaranteed, and items live and die with their
//! node (durable jobs are for work that must survive one). A closed queue
//! stays closed while its nodes run: use another `--queue` name to start
//! over.

use clap::Parser;
use serde_json::json;
use shoal_client::Client;
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
    #[arg(long, default_value = "work")]
    queue: String,
    /// Items to push: `{"id": i, "n": i}`.
    #[arg(long, default_value_t = 1000)]
    items: u64,
    /// Items per push request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Leave the queue open when done (consumers then wait for more).
    #[arg(long)]
    keep_open: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let mut builder = Client::builder(&args.nodes);
    if let Some(token) = &args.token {
        builder = builder.token(token);
    }
    let client = builder.build()?;
    let queue = client.queue(&args.queue);

    let started = Instant::now();
    let mut pushed = 0;
    for first in (0..args.items).step_by(args.batch as usize) {
        let ids = first..(first + args.batch).min(args.items);
        pushed += queue
            .push(ids.map(|id| json!({ "id": id, "n": id })))
            .await?;
    }
    println!(
        "pushed {pushed} items to '{}' through {} in {:.2} s",
        args.queue,
        client.current_node(),
        started.elapsed().as_secs_f64()
    );
    if !args.keep_open {
        queue.close().await?;
        println!("closed '{}': consumers stop once it is empty", args.queue);
    }
    Ok(())
}
