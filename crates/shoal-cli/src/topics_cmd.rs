//! `shoal pub` and `shoal sub`: topics from the command line, through a
//! node's HTTP API. `sub` prints one JSON line per message (the
//! `TopicMessage`: topic, publisher peer id, name, at_ms, seq, value), so
//! its output pipes into `jq` or a script.

use crate::api::{ApiArgs, explain};
use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use shoal_client::{PublishOptions, SubscribeOptions, TopicEvent};
use std::io::Write;

#[derive(Args)]
pub struct PubArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The topic: letters, digits, '.', '_', '-' or ':'.
    topic: String,
    /// The message: any JSON value, at most 64 KiB.
    value: String,
    /// A name to publish under (a chat nick).
    #[arg(long)]
    name: Option<String>,
    /// Keep the topic's last K messages (at most 1000) for late subscribers.
    #[arg(long, value_name = "K")]
    retain: Option<u32>,
}

pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_str(&args.value)
        .with_context(|| format!("the message is not valid JSON: {}", args.value))?;
    let client = args.api.client()?;
    let options = PublishOptions {
        name: args.name,
        retain: args.retain,
    };
    let published = client
        .publish(&args.topic, &value, options)
        .await
        .map_err(explain)?;
    println!("{}", serde_json::to_string(&published)?);
    Ok(())
}

#[derive(Args)]
pub struct SubArgs {
    #[command(flatten)]
    api: ApiArgs,
    topic: String,
    /// Only new messages, not the ones the topic keeps.
    #[arg(long)]
    no_history: bool,
}

/// Prints messages until Ctrl-C (success) or until the node ends the
/// stream (an error: the subscription did not run as long as asked).
pub async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let options = SubscribeOptions {
        history: !args.no_history,
        last_event_id: None,
    };
    let events = client
        .subscribe(&args.topic, options)
        .await
        .map_err(explain)?;
    let mut events = std::pin::pin!(events);
    let node = client.current_node().to_string();
    let mut stdout = std::io::stdout();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match event {
            Some(Ok(TopicEvent::Message(message))) => {
                let line = serde_json::to_string(&message)?;
                // A closed pipe (`| head`) ends the subscription quietly.
                if writeln!(stdout, "{line}")
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Some(Ok(TopicEvent::Lagged { skipped })) => {
                eprintln!("fell behind: the node skipped {skipped} messages for this subscriber");
            }
            Some(Err(error)) => return Err(explain(error)),
            None => anyhow::bail!("{node} ended the subscription (the node stopped)"),
        }
    }
}
