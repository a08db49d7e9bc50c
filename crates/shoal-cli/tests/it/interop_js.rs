//! Shoal speaks standard libp2p: a js-libp2p peer (`tests/interop/peer.mjs`)
//! connects to a `shoal node` without a cluster secret, identifies, pings,
//! and receives on gossipsub what `shoal pub` published to a topic.

use crate::common::{NodeProcess, npm_ci};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

#[test]
fn a_js_libp2p_peer_identifies_pings_and_hears_a_topic() {
    let dir = interop_dir();
    npm_ci(&dir, "libp2p");
    let node = NodeProcess::start(&["--slots", "3"]);
    let peer = Command::new("node")
        .arg(dir.join("peer.mjs"))
        .arg(node.addr.to_string())
        .arg("/shoal/shoal/topic/interop")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    // Gossip reaches the peer once it is in the topic's mesh: publish until
    // it has heard one (or gave up).
    let started = Instant::now();
    let mut peer = peer;
    while peer.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(40) {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["pub", "--node", &node.http, "interop", r#""interop-hello""#])
            .output()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = peer.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let seen: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON from the js peer ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "the js peer failed: {seen}");

    let protocols = seen["identified"]["protocols"].as_array().unwrap();
    for protocol in ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/meshsub/1.1.0"] {
        assert!(
            protocols.iter().any(|p| p == protocol),
            "identify lists {protocol}: {seen}"
        );
    }
    assert!(
        seen["identified"]["agent"]
            .as_str()
            .unwrap()
            .contains("libp2p"),
        "{seen}"
    );
    assert!(seen["rtt_ms"].as_f64().is_some(), "ping answered: {seen}");

    let message: serde_json::Value =
        serde_json::from_str(seen["message"].as_str().unwrap()).expect("a JSON envelope");
    assert_eq!(message["value"], "interop-hello", "{message}");

    // The foreign peer came and went; the node still serves calls.
    let call = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["call", "--node", &node.http, "echo", "[7]"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "[7]");
}
