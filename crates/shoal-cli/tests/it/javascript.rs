//! JavaScript across real `shoal node` processes.

use crate::common::{NodeProcess, ProcessCluster, WAIT, driver};
use serde_json::json;
use shoal_node::builtins::pi_inside;
use std::process::Command;

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_js_across_three_processes_counts_exactly() {
    let pi_js = example("pi.js");
    let cluster = ProcessCluster::start(3, &["--slots", "1", "--script", &pi_js]).await;
    let caller = driver(&cluster.nodes[0].addr, None).await;
    assert_eq!(caller.wait_for_peers(3, WAIT).await, 3);
    let result = caller
        .call("pi", json!({"samples": 3_000_000, "chunks": 30}))
        .await
        .unwrap();
    let expected: u64 = (0..30).map(|seed| pi_inside(100_000, seed)).sum();
    assert_eq!(
        result["inside"],
        json!(expected),
        "same count as one Rust thread"
    );
    caller.shutdown().await;
}

#[test]
fn shoal_call_ships_a_script_to_a_cluster_that_never_saw_it() {
    let node = NodeProcess::start(&["--slots", "1"]);
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "call",
            "--node",
            &node.http,
            "--script",
            &example("wordcount.js"),
        ])
        .args([
            "wordcount",
            r#"{"texts": ["to be or not to be", "that is the question"], "top": 2}"#,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["words"], json!(10));
    assert_eq!(result["top"], json!([["be", 2], ["to", 2]]));
    let log = node.log_text();
    assert!(
        log.contains("script loaded"),
        "the node loaded the shipped script"
    );
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log that is not a terminal: {log}"
    );
}

#[test]
fn shoal_call_reports_an_unknown_function_clearly() {
    let node = NodeProcess::start(&["--slots", "1"]);
    let output = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["call", "--node", &node.http, "no.such.fn", "{}"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown_function") && stderr.contains("no.such.fn"),
        "{stderr}"
    );
}
