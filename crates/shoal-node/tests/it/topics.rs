//! Topics across in-process nodes: every subscriber gets every message in
//! order per publisher, a late subscriber gets what the topic keeps, and
//! scripts subscribe, publish and use the queue.

use futures::StreamExt;
use serde_json::{Value, json};
use shoal_node::testkit::{start_cluster, test_config, wait_until};
use shoal_node::topics::{PublishOptions, Subscription, TopicEvent};
use shoal_node::{Node, Script, builtins};
use std::collections::HashMap;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

async fn cluster(count: usize) -> Vec<Node> {
    start_cluster(count, |_, builder| {
        builtins::register(builder.config(test_config(2)))
    })
    .await
}

/// Waits until every node sees every other node following `topic`, so
/// gossip reaches them all.
async fn wait_for_mesh(nodes: &[Node], topic: &str) {
    for node in nodes {
        wait_until(WITHIN, "every node follows the topic", async || {
            let peers = node.topic_info(topic).await.peers;
            if peers.len() == nodes.len() - 1 {
                Ok(())
            } else {
                Err(format!("{} follows it with {peers:?}", node.peer_id()))
            }
        })
        .await;
    }
}

/// Waits until `publisher` sees `subscriber` following `topic`, so what it
/// publishes reaches it.
async fn wait_until_follows(publisher: &Node, topic: &str, subscriber: &Node) {
    let expected = subscriber.peer_id().to_base58();
    wait_until(
        WITHIN,
        "the subscriber's node follows the topic",
        async || {
            let peers = publisher.topic_info(topic).await.peers;
            if peers.contains(&expected) {
                Ok(())
            } else {
                Err(format!("followers seen: {peers:?}"))
            }
        },
    )
    .await;
}

/// The next message, or a failure naming what was missing.
async fn next_message(subscription: &mut Subscription, what: &str) -> Value {
    match tokio::time::timeout(WITHIN, subscription.next()).await {
        Ok(Some(TopicEvent::Message(message))) => serde_json::to_value(&*message).unwrap(),
        other => panic!("expected {what}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_message_in_order_per_publisher() {
    let nodes = cluster(3).await;
    let mut subscriptions = Vec::new();
    for node in &nodes {
        subscriptions.push(node.subscribe("news").await.unwrap());
    }
    wait_for_mesh(&nodes, "news").await;
    let per_publisher = 40;
    for i in 0..per_publisher {
        for publisher in &nodes[..2] {
            let published = publisher.publish("news", json!({ "i": i })).await.unwrap();
            assert_eq!(published.seq, i + 1);
        }
    }
    for (index, subscription) in subscriptions.iter_mut().enumerate() {
        let mut last: HashMap<String, u64> = HashMap::new();
        for _ in 0..per_publisher * 2 {
            let message = next_message(subscription, "a published message").await;
            let publisher = message["publisher"].as_str().unwrap().to_string();
            let seq = message["seq"].as_u64().unwrap();
            assert_eq!(message["value"]["i"], seq - 1);
            let previous = last.insert(publisher.clone(), seq).unwrap_or(0);
            assert_eq!(
                seq,
                previous + 1,
                "subscriber {index}: {publisher} out of order"
            );
        }
        let publishers: Vec<String> = nodes[..2].iter().map(|n| n.peer_id().to_base58()).collect();
        for publisher in &publishers {
            assert_eq!(
                last.get(publisher),
                Some(&per_publisher),
                "subscriber {index}"
            );
        }
    }
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_the_kept_messages_first() {
    let nodes = cluster(3).await;
    let keep = PublishOptions {
        name: Some("ann".into()),
        retain: Some(5),
    };
    for i in 1..=8 {
        nodes[0]
            .publish_with("log", json!(i), keep.clone())
            .await
            .unwrap();
    }
    // Node 2 never followed the topic: it fetches what node 0 keeps.
    let mut late = nodes[2].subscribe("log").await.unwrap();
    for expected in 4..=8 {
        let message = next_message(&mut late, "a kept message").await;
        assert_eq!(message["value"], expected);
        assert_eq!(message["name"], "ann");
        assert_eq!(message["retain"], 5);
    }
    wait_until_follows(&nodes[0], "log", &nodes[2]).await;
    nodes[0].publish("log", json!(9)).await.unwrap();
    assert_eq!(next_message(&mut late, "a live message").await["value"], 9);
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publishes_get_clear_errors() {
    let nodes = cluster(1).await;
    let node = &nodes[0];
    let bad_name = node.publish("a b", json!(1)).await.unwrap_err();
    assert_eq!(bad_name.code, shoal_node::ErrorCode::InvalidRequest);
    assert!(bad_name.message.contains("' '"), "{bad_name}");
    let big = node
        .publish("t", json!("x".repeat(70_000)))
        .await
        .unwrap_err();
    assert_eq!(big.code, shoal_node::ErrorCode::PayloadTooLarge, "{big}");
    let long_name = PublishOptions {
        name: Some("n".repeat(65)),
        retain: None,
    };
    let named = node
        .publish_with("t", json!(1), long_name)
        .await
        .unwrap_err();
    assert!(named.message.contains("64"), "{named}");
    // 30,000 at once, more than a second's worth: each is counted when it
    // starts, so the limit shows however slow this machine is.
    let flood = (0..30_000).map(|i| node.publish("flood", json!(i)));
    let outcomes = futures::future::join_all(flood).await;
    let refused: Vec<_> = outcomes.into_iter().filter_map(Result::err).collect();
    assert!(!refused.is_empty(), "no publish rate limit");
    for error in &refused {
        assert_eq!(error.code, shoal_node::ErrorCode::Overloaded, "{error}");
        assert!(error.message.contains("per second"), "{error}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_subscribe_publish_and_use_the_queue() {
    let nodes = cluster(2).await;
    let bot = Script::new(
        "bot.js",
        r#"
        shoal.subscribe('pings', async (message) => {
            if (message.value.text === 'ping') {
                await shoal.publish('pongs', { text: 'pong', to: message.seq }, { name: 'bot' });
            }
        });
        shoal.register('queue.roundtrip', async (items) => {
            const queue = shoal.queue('js');
            await queue.push(...items);
            const size = await queue.size();
            const first = await queue.pop(1000);
            return { size, first };
        });
        "#,
    );
    nodes[0].load_script(bot).await.unwrap();
    let mut pongs = nodes[1].subscribe("pongs").await.unwrap();
    wait_until_follows(&nodes[0], "pongs", &nodes[1]).await;
    wait_until_follows(&nodes[1], "pings", &nodes[0]).await;
    // Topics are best effort: on a loaded machine a message may be lost,
    // so ping again until the bot answers one.
    let mut pinged = Vec::new();
    let pong = wait_until(WITHIN, "the bot's answer", async || {
        let ping = nodes[1].publish("pings", json!({ "text": "ping" })).await;
        pinged.push(ping.map_err(|e| e.to_string())?.seq);
        match tokio::time::timeout(Duration::from_secs(3), pongs.next()).await {
            Ok(Some(TopicEvent::Message(message))) => Ok(serde_json::to_value(&*message).unwrap()),
            other => Err(format!("pinged {pinged:?}, got {other:?}")),
        }
    })
    .await;
    assert_eq!(pong["value"]["text"], "pong");
    assert!(
        pinged.contains(&pong["value"]["to"].as_u64().unwrap()),
        "the answer names a ping: {pong} for {pinged:?}"
    );
    assert_eq!(pong["name"], "bot");
    assert_eq!(pong["publisher"], nodes[0].peer_id().to_base58());

    let roundtrip = nodes[0]
        .call("queue.roundtrip", json!([7, 8, 9]))
        .await
        .unwrap();
    assert_eq!(roundtrip["size"], 3);
    assert!(
        [7, 8, 9].contains(&roundtrip["first"].as_i64().unwrap()),
        "{roundtrip}"
    );
    assert_eq!(
        nodes[0].queue("js").size().await.unwrap(),
        2,
        "two left, held by the script's node"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}
