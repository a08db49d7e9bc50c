//! `shoal bench pubsub`: topics on three in-process nodes — one
//! subscriber and one publisher on each — for a few seconds: messages
//! published per second, how long a message takes to reach a subscriber,
//! and the fraction of (message, subscriber) pairs delivered.
//!
//! Every message carries the microsecond it was sent, on a clock all three
//! nodes share (they live in this process), so a subscriber measures
//! delivery exactly. Gossip delivery is best effort; measuring starts only
//! once every subscriber has heard every publisher (the mesh has formed).

use super::measure::percentile;
use super::nodes::node_config;
use clap::Args;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use shoal_node::Node;
use shoal_node::local::start_local_cluster;
use shoal_node::topics::{Subscription, TopicEvent};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TOPIC: &str = "bench.pubsub";
/// Nodes, each with one publisher and one subscriber.
const NODES: usize = 3;
/// Longest wait for gossip's mesh before measuring.
const MESH_WITHIN: Duration = Duration::from_secs(20);
/// After the last publish, how long without a new delivery before the
/// count is final; and the longest the count may take at all.
const QUIET: Duration = Duration::from_millis(500);
const DRAIN_WITHIN: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct PubsubArgs {
    /// Seconds of publishing.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Messages per second per publisher (the default is a load the three
    /// nodes keep up with on two cores); 0 publishes as fast as the nodes
    /// take them, which measures them overloaded.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Bytes of padding in each message.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// What one subscriber saw while measuring.
#[derive(Default)]
struct Seen {
    /// Delivery latencies of measured messages, in µs.
    latencies_us: Vec<u64>,
    /// The same, of messages published on another node.
    remote_latencies_us: Vec<u64>,
    /// Messages the node said it skipped for this subscriber.
    skipped: u64,
    /// When the last measured message came.
    last_at: Option<Instant>,
}

/// What the publishers did.
#[derive(Default)]
struct Published {
    accepted: u64,
    /// Refused by the node (its publish rate limit), not sent.
    refused: u64,
}

pub async fn run(args: PubsubArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds.max(0.1));
    let nodes = start_local_cluster(NODES, |_, builder| builder.config(node_config(2))).await?;
    let clock = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let mut subscribers = tokio::task::JoinSet::new();
    for node in &nodes {
        let subscription = node.subscribe(TOPIC).await?;
        let own = node.peer_id().to_string();
        subscribers.spawn(subscribe(subscription, own, clock, stopped.clone()));
    }
    wait_for_mesh(&nodes).await?;

    let padding = "x".repeat(args.payload);
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for node in &nodes {
        let node = node.clone();
        let padding = padding.clone();
        publishers
            .spawn(async move { publish_for(&node, duration, args.rate, clock, &padding).await });
    }
    let mut published = Published::default();
    while let Some(done) = publishers.join_next().await {
        let done = done??;
        published.accepted += done.accepted;
        published.refused += done.refused;
    }
    let publishing = started.elapsed();
    let _ = stop.send(true);
    let mut seen = Vec::new();
    while let Some(subscriber) = subscribers.join_next().await {
        seen.push(subscriber?);
    }
    for node in &nodes {
        node.shutdown().await;
    }

    let mut latencies: Vec<u64> = seen.iter().flat_map(|s| s.latencies_us.clone()).collect();
    latencies.sort_unstable();
    let mut remote: Vec<u64> = (seen.iter())
        .flat_map(|s| s.remote_latencies_us.clone())
        .collect();
    remote.sort_unstable();
    let expected = published.accepted * NODES as u64;
    let delivered_fraction = if expected == 0 {
        0.0
    } else {
        latencies.len() as f64 / expected as f64
    };
    let messages_per_s = published.accepted as f64 / publishing.as_secs_f64();
    let figures = json!({
        "nodes": NODES,
        "publishers": NODES,
        "subscribers": NODES,
        "seconds": (publishing.as_secs_f64() * 100.0).round() / 100.0,
        "rate_per_publisher": args.rate,
        "payload_bytes": args.payload,
        "messages": published.accepted,
        "refused": published.refused,
        "messages_per_s": messages_per_s.round(),
        "deliveries": latencies.len(),
        "delivered_fraction": (delivered_fraction * 10_000.0).round() / 10_000.0,
        "lagged_skipped": seen.iter().map(|s| s.skipped).sum::<u64>(),
        "delivery_p50_us": percentile(&latencies, 0.50),
        "delivery_p99_us": percentile(&latencies, 0.99),
        "delivery_max_us": latencies.last().copied().unwrap_or(0),
        "remote_delivery_p50_us": percentile(&remote, 0.50),
        "remote_delivery_p99_us": percentile(&remote, 0.99),
    });
    let pace = match args.rate {
        0 => "as fast as the nodes take them".to_string(),
        rate => format!("{rate} messages/s each"),
    };
    println!(
        "topics: {NODES} nodes, a publisher ({pace}) and a subscriber on each, {:.1} s",
        publishing.as_secs_f64()
    );
    println!(
        "  published            {:>10.0} messages/s ({} messages, {} refused)",
        messages_per_s, published.accepted, published.refused
    );
    println!(
        "  delivery             p50 {} µs, p99 {} µs, max {} µs",
        figures["delivery_p50_us"], figures["delivery_p99_us"], figures["delivery_max_us"]
    );
    println!(
        "    to other nodes     p50 {} µs, p99 {} µs",
        figures["remote_delivery_p50_us"], figures["remote_delivery_p99_us"]
    );
    println!(
        "  delivered            {:.2}% of {} (message, subscriber) pairs; {} skipped for slow subscribers",
        delivered_fraction * 100.0,
        expected,
        figures["lagged_skipped"]
    );
    if args.json {
        println!("{figures}");
    }
    Ok(())
}

/// Counts what a subscriber receives until told to stop, then until
/// deliveries have gone quiet.
async fn subscribe(
    subscription: Subscription,
    own_node: String,
    clock: Instant,
    mut stopped: watch::Receiver<bool>,
) -> Seen {
    let mut subscription = std::pin::pin!(subscription);
    let mut seen = Seen::default();
    // Measured messages from each publisher, by sequence number: a
    // duplicate would count twice otherwise.
    let mut counted: HashSet<(String, u64)> = HashSet::new();
    let mut drain_deadline = None;
    loop {
        // Once stopped: until deliveries go quiet, or the deadline.
        let quiet_for = drain_deadline.map_or(Duration::ZERO, |deadline: Instant| {
            let quiet_until = seen.last_at.map_or(deadline, |at| at + QUIET);
            quiet_until
                .min(deadline)
                .saturating_duration_since(Instant::now())
        });
        let event = tokio::select! {
            event = subscription.next() => event,
            _ = stopped.changed(), if drain_deadline.is_none() => {
                drain_deadline = Some(Instant::now() + DRAIN_WITHIN);
                seen.last_at = Some(Instant::now());
                continue;
            }
            _ = tokio::time::sleep(quiet_for), if drain_deadline.is_some() => return seen,
        };
        match event {
            Some(TopicEvent::Message(message)) => {
                let Some(sent_us) = message.value.get("sent_us").and_then(Value::as_u64) else {
                    continue; // a warm-up message
                };
                if !counted.insert((message.publisher.clone(), message.seq)) {
                    continue;
                }
                let latency_us = (clock.elapsed().as_micros() as u64).saturating_sub(sent_us);
                seen.latencies_us.push(latency_us);
                if message.publisher != own_node {
                    seen.remote_latencies_us.push(latency_us);
                }
                seen.last_at = Some(Instant::now());
            }
            Some(TopicEvent::Lagged { skipped }) => seen.skipped += skipped,
            None => return seen,
        }
    }
}

/// Publishes for `duration`, paced at `rate` per second (0: unpaced).
async fn publish_for(
    node: &Node,
    duration: Duration,
    rate: u64,
    clock: Instant,
    padding: &str,
) -> anyhow::Result<Published> {
    let started = Instant::now();
    let mut published = Published::default();
    let mut ticks = (rate > 0).then(|| {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticks
    });
    while started.elapsed() < duration {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let sent_us = clock.elapsed().as_micros() as u64;
        let value = json!({ "sent_us": sent_us, "padding": padding });
        match node.publish(TOPIC, value).await {
            Ok(_) => published.accepted += 1,
            Err(e) if e.code == shoal_proto::ErrorCode::Overloaded => {
                published.refused += 1;
                tokio::task::yield_now().await;
            }
            Err(e) => anyhow::bail!("publishing failed: {e}"),
        }
    }
    Ok(published)
}

/// Waits until every node sees the others subscribed, then until every
/// node's subscriber has heard every publisher: gossip may drop what is
/// published while its mesh forms, and that is not what is measured.
async fn wait_for_mesh(nodes: &[Node]) -> anyhow::Result<()> {
    let deadline = Instant::now() + MESH_WITHIN;
    for node in nodes {
        while node.topic_info(TOPIC).await.peers.len() < nodes.len() - 1 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the nodes did not see each other subscribed within {MESH_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut listeners = Vec::new();
    for node in nodes {
        listeners.push(Box::pin(node.subscribe(TOPIC).await?));
    }
    let mut heard: Vec<HashSet<String>> = vec![HashSet::new(); nodes.len()];
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while heard
        .iter()
        .any(|publishers| publishers.len() < nodes.len())
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every node heard every other within {MESH_WITHIN:?}"
        );
        ticks.tick().await;
        for node in nodes {
            node.publish(TOPIC, json!({ "warm_up": true })).await?;
        }
        for (listener, publishers) in listeners.iter_mut().zip(&mut heard) {
            while let Some(Some(event)) = listener.next().now_or_never() {
                if let TopicEvent::Message(message) = event {
                    publishers.insert(message.publisher.clone());
                }
            }
        }
    }
    Ok(())
}
