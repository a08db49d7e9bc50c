//! The consumer half of a work queue over the cluster's distributed
//! queue, through the HTTP API (`queue_producer.rs` says how to run both).
//! Start as many as you like, against any nodes.
//!
//! ```text
//! cargo run --release -p shoal-client --example queue_consumer -- --node http://127.0.0.1:7071
//! ```
//!
//! It pops items, works on each (the sum of the squares up to its `n`),
//! and prints a line per item: `item 17: 1785`. Once the producer has
//! closed the queue and it is empty everywhere, it prints `'work' is closed
//! and empty: 512 items here in 1.31 s` and exits; if nothing comes for
//! `--wait` seconds first, it says so and exits with an error.

use clap::Parser;
use shoal_client::Client;
use std::time::{Duration, Instant};

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
    /// Seconds one pop waits for an item (at most 300).
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = Client::builder(&args.nodes);
    if let Some(token) = &args.token {
        builder = builder.token(token);
    }
    let queue = builder.build()?.queue(&args.queue);

    let started = Instant::now();
    let mut done = 0u64;
    // `None`: closed and empty everywhere, the end of the work.
    while let Some(item) = queue.pop(Duration::from_secs(args.wait)).await? {
        let n = item["n"].as_u64().unwrap_or(0);
        let sum_of_squares: u64 = (1..=n).map(|i| i * i).sum();
        println!("item {}: {sum_of_squares}", item["id"]);
        done += 1;
    }
    println!(
        "'{}' is closed and empty: {done} items here in {:.2} s",
        args.queue,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
