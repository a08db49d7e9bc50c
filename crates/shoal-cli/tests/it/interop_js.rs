//! Shoal speaks standard libp2p: a js-libp2p peer (`tests/interop/peer.mjs`)
//! connects to a `shoal node` without a cluster secret, identifies, pings,
//! and receives a heartbeat on gossipsub that decodes as one.

use crate::common::NodeProcess;
use shoal_proto::Heartbeat;
use std::path::{Path, PathBuf};
use std::process::Command;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the pinned npm packages on first use (`npm ci`).
fn install_packages(dir: &Path) {
    if dir.join("node_modules/libp2p").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("npm runs (Node.js and npm are needed for the interop test)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

#[test]
fn a_js_libp2p_peer_identifies_pings_and_hears_heartbeats() {
    let dir = interop_dir();
    install_packages(&dir);
    let node = NodeProcess::start(&["--slots", "3"]);
    let output = Command::new("node")
        .arg(dir.join("peer.mjs"))
        .arg(node.addr.to_string())
        .arg("/shoal/shoal/heartbeat/1")
        .output()
        .expect("node runs");
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

    let hex = seen["heartbeat_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let heartbeat = Heartbeat::decode(&bytes).expect("the message is a Shoal heartbeat");
    assert_eq!(
        heartbeat.slots, 3,
        "the node's own heartbeat: {heartbeat:?}"
    );

    // The foreign peer came and went; the node still serves calls.
    let call = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["call", "--node", &node.http, "echo", "[7]"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), "[7]");
}
