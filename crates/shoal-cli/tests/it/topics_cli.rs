//! `shoal pub` and `shoal sub` across two node processes, as a user types
//! them: what one node publishes, a subscriber on the other prints, one
//! JSON line per message; kept messages come first to late subscribers.

use crate::common::{Lines, ProcessCluster, WAIT, wait_until};
use serde_json::{Value, json};
use shoal_client::Client;
use std::process::{Child, Command, Output, Stdio};

const TOPIC: &str = "news.cli";

fn shoal(node: &str, args: &[&str]) -> Output {
    let (command, rest) = args.split_first().unwrap();
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg(command)
        .args(["--node", node])
        .args(rest)
        .output()
        .unwrap()
}

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A running `shoal sub`; killed when dropped.
struct Sub {
    child: Child,
    lines: Lines,
}

impl Sub {
    fn start(node: &str, extra: &[&str]) -> Sub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["sub", "--node", node, TOPIC])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Lines::new(child.stdout.take().unwrap());
        Sub { child, lines }
    }

    fn next(&self, what: &str) -> Value {
        let line = self.lines.next(WAIT, what);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `node` counts `count` subscribers of the topic and, with
/// `peer`, sees that peer subscribed too (gossip's mesh formed).
async fn wait_for_subscribers(node: &str, count: usize, peer: Option<&str>) {
    let client = Client::new([node]).unwrap();
    let what = format!("{node} to count {count} subscribers and see {peer:?}");
    wait_until(WAIT, &what, async || {
        let info = client.topic_info(TOPIC).await.map_err(|e| e.to_string())?;
        let peer_seen = peer.is_none_or(|peer| info.peers.iter().any(|p| p == peer));
        match info.subscribers >= count && peer_seen {
            true => Ok(()),
            false => Err(format!("{info:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_prints_what_pub_publishes_on_another_node() {
    let cluster = ProcessCluster::start(2, &["--slots", "1"]).await;
    let urls = cluster.urls();
    let publisher = cluster.nodes[0].peer_id();

    let live = Sub::start(&urls[1], &["--no-history"]);
    wait_for_subscribers(&urls[1], 1, None).await;
    wait_for_subscribers(&urls[0], 0, Some(&cluster.nodes[1].peer_id())).await;

    let kept = json_out(&shoal(
        &urls[0],
        &[
            "pub",
            TOPIC,
            r#"{"n":1}"#,
            "--name",
            "ada",
            "--retain",
            "10",
        ],
    ));
    assert_eq!(kept["topic"], TOPIC);
    let first = live.next("the first message");
    assert_eq!(first["topic"], TOPIC);
    assert_eq!(first["publisher"], publisher.as_str(), "{first}");
    assert_eq!(first["name"], "ada");
    assert_eq!(first["seq"], kept["seq"]);
    assert_eq!(first["at_ms"], kept["at_ms"]);
    assert_eq!(first["value"], json!({"n": 1}));

    let unnamed = json_out(&shoal(&urls[0], &["pub", TOPIC, "[2, \"two\"]"]));
    let second = live.next("the second message");
    assert_eq!(second["seq"], unnamed["seq"]);
    assert_eq!(
        unnamed["seq"].as_u64(),
        kept["seq"].as_u64().map(|seq| seq + 1),
        "a publisher's messages are numbered one after another"
    );
    assert!(second.get("name").is_none(), "no name, no field: {second}");
    assert_eq!(second["value"], json!([2, "two"]));

    // A late subscriber gets the kept message first (the second was not
    // kept); one with --no-history only what comes next.
    let late = Sub::start(&urls[1], &[]);
    let history = late.next("the kept message");
    assert_eq!(
        (&history["value"], &history["name"]),
        (&json!({"n": 1}), &json!("ada"))
    );
    let fresh = Sub::start(&urls[1], &["--no-history"]);
    wait_for_subscribers(&urls[1], 3, None).await;
    json_out(&shoal(
        &urls[1],
        &["pub", TOPIC, r#""three""#, "--name", "bob"],
    ));
    for (sub, who) in [(&live, "live"), (&late, "late"), (&fresh, "fresh")] {
        let message = sub.next(&format!("the third message at the {who} subscriber"));
        assert_eq!(message["value"], "three", "{who}: {message}");
        assert_eq!(message["publisher"], cluster.nodes[1].peer_id().as_str());
    }
}

#[test]
fn pub_refuses_bad_topics_and_bad_json_with_a_reason() {
    let node = crate::common::NodeProcess::start(&["--slots", "1"]);
    let bad_topic = shoal(&node.http, &["pub", "no/slashes", "{}"]);
    assert!(!bad_topic.status.success());
    let stderr = String::from_utf8_lossy(&bad_topic.stderr);
    assert!(
        stderr.contains("'/'"),
        "the error names the character: {stderr}"
    );

    let bad_json = shoal(&node.http, &["pub", "fine", "{oops"]);
    let stderr = String::from_utf8_lossy(&bad_json.stderr);
    assert!(stderr.contains("not valid JSON"), "{stderr}");

    let too_big = format!("\"{}\"", "x".repeat(70_000));
    let refused = shoal(&node.http, &["pub", "fine", &too_big]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("payload_too_large"), "{stderr}");
}
