//! `shoal queue NAME push|pop|size|close`: the distributed queue through a
//! node's HTTP API. Items pushed stay on that node until a pop anywhere
//! takes them; order is not guaranteed.

use crate::api::{ApiArgs, explain};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Args)]
pub struct QueueArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The queue's name.
    queue: String,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Add items, each a JSON value; prints {"queue", "pushed"}.
    Push {
        #[arg(required = true, value_name = "JSON")]
        items: Vec<String>,
    },
    /// Take one item from anywhere in the cluster and print it.
    Pop {
        /// Seconds to wait for an item when the queue is empty (at most 300).
        #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Items held across the cluster.
    Size,
    /// Close the queue everywhere: pushes fail, pops drain what is left.
    Close,
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let queue = client.queue(&args.queue);
    let name = &args.queue;
    match args.command {
        QueueCommand::Push { items } => {
            let items = items
                .iter()
                .map(|text| {
                    serde_json::from_str::<Value>(text)
                        .with_context(|| format!("the item is not valid JSON: {text}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pushed = queue.push(items).await.map_err(explain)?;
            println!("{}", json!({"queue": name, "pushed": pushed}));
        }
        QueueCommand::Pop { timeout } => {
            anyhow::ensure!(
                timeout.is_finite() && (0.0..=300.0).contains(&timeout),
                "--timeout is in seconds, from 0 to 300, not {timeout}"
            );
            let wait = Duration::from_secs_f64(timeout);
            match queue.pop(wait).await.map_err(explain)? {
                Some(item) => println!("{item}"),
                None => anyhow::bail!("queue '{name}' is closed and empty"),
            }
        }
        QueueCommand::Size => println!("{}", queue.size().await.map_err(explain)?),
        QueueCommand::Close => {
            queue.close().await.map_err(explain)?;
            println!("closed {name}");
        }
    }
    Ok(())
}
