//! The distributed queue through the HTTP API of three node processes:
//! items pushed through one node are popped through the others, each
//! exactly once, none lost; then the queue is closed.

use crate::common::ProcessCluster;
use serde_json::{Value, json};
use shoal_client::{Client, ErrorCode};
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

const QUEUE: &str = "work";
const ITEMS: u64 = 400;
/// Items pushed with `shoal queue push`; the rest through the client.
const PUSHED_BY_THE_CLI: u64 = 40;
/// Concurrent poppers on each of the two other nodes.
const POPPERS_PER_NODE: usize = 3;
/// A popper stops when the queue stayed empty this long: items exist
/// only on the first node, which every pop sweeps twice a second.
const EMPTY_FOR: Duration = Duration::from_secs(2);

fn queue_cli(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["queue", "--node", node, QUEUE])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Pops until the queue stays empty for [`EMPTY_FOR`]; returns the items.
async fn pop_until_empty(client: Client) -> Vec<Value> {
    let queue = client.queue(QUEUE);
    let mut items = Vec::new();
    loop {
        match queue.pop(EMPTY_FOR).await {
            Ok(Some(item)) => items.push(item),
            Err(e) if e.code() == Some(ErrorCode::Timeout) => return items,
            other => panic!("a pop failed: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_pushed_through_one_node_are_popped_once_through_the_others() {
    let cluster = ProcessCluster::start(3, &["--slots", "2"]).await;
    let urls = cluster.urls();

    let cli_items: Vec<String> = (0..PUSHED_BY_THE_CLI)
        .map(|id| json!({ "id": id }).to_string())
        .collect();
    let mut push = vec!["push"];
    push.extend(cli_items.iter().map(String::as_str));
    let pushed: Value = serde_json::from_str(&stdout(&queue_cli(&urls[0], &push))).unwrap();
    assert_eq!(pushed, json!({"queue": QUEUE, "pushed": PUSHED_BY_THE_CLI}));
    let first = Client::new([&urls[0]]).unwrap().queue(QUEUE);
    for batch in (PUSHED_BY_THE_CLI..ITEMS).collect::<Vec<_>>().chunks(90) {
        let items = batch.iter().map(|&id| json!({ "id": id }));
        assert_eq!(first.push(items).await.unwrap(), batch.len());
    }
    assert_eq!(
        stdout(&queue_cli(&urls[1], &["size"])),
        ITEMS.to_string(),
        "the size counts the items held on every node"
    );

    // One pop through the CLI, the rest through clients of nodes 2 and 3
    // at the same time.
    let popped_by_cli: Value =
        serde_json::from_str(&stdout(&queue_cli(&urls[2], &["pop", "--timeout", "10"]))).unwrap();
    let mut poppers = tokio::task::JoinSet::new();
    for url in &urls[1..] {
        for _ in 0..POPPERS_PER_NODE {
            poppers.spawn(pop_until_empty(Client::new([url]).unwrap()));
        }
    }
    let mut popped = vec![popped_by_cli];
    while let Some(items) = poppers.join_next().await {
        popped.extend(items.unwrap());
    }
    let ids: Vec<u64> = popped
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "an item was popped twice");
    assert_eq!(
        distinct,
        (0..ITEMS).collect::<BTreeSet<_>>(),
        "every item was popped"
    );
    assert_eq!(stdout(&queue_cli(&urls[0], &["size"])), "0");

    // Closed: pops anywhere say so, pushes are refused.
    assert_eq!(
        stdout(&queue_cli(&urls[2], &["close"])),
        format!("closed {QUEUE}")
    );
    let after_close = queue_cli(&urls[1], &["pop", "--timeout", "1"]);
    assert!(!after_close.status.success());
    let stderr = String::from_utf8_lossy(&after_close.stderr);
    assert!(stderr.contains("closed"), "{stderr}");
    assert_eq!(
        Client::new([&urls[1]])
            .unwrap()
            .queue(QUEUE)
            .pop(Duration::ZERO)
            .await
            .unwrap(),
        None,
        "the client's pop ends, as a channel does"
    );
    let refused = queue_cli(&urls[0], &["push", "1"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("closed"),
        "{stderr}"
    );
}

#[test]
fn pop_waits_no_longer_than_asked_and_says_the_queue_stayed_empty() {
    let node = crate::common::NodeProcess::start(&["--slots", "1"]);
    let started = std::time::Instant::now();
    let empty = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "queue",
            "--node",
            &node.http,
            "nothing",
            "pop",
            "--timeout",
            "0.5",
        ])
        .output()
        .unwrap();
    assert!(!empty.status.success());
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(stderr.contains("timeout"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let bad = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["queue", "--node", &node.http, "q", "push", "{nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"));
}
