//! `shoal db`, `shoal submit`, `shoal jobs` and `shoal status` against a
//! real node, as a user types them.

use crate::common::NodeProcess;
use std::process::{Command, Output};

fn shoal(node: &NodeProcess, args: &[&str]) -> Output {
    let (command, rest) = args.split_first().unwrap();
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg(command)
        .args(["--node", &node.http])
        .args(rest)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn documents_and_jobs_from_the_command_line() {
    let node = NodeProcess::start(&["--slots", "2"]);

    assert_eq!(
        stdout(&shoal(&node, &["db", "people", "create"])),
        "created people"
    );
    let inserted: serde_json::Value = serde_json::from_str(&stdout(&shoal(
        &node,
        &["db", "people", "insert", r#"{"name":"ada","role":"eng"}"#],
    )))
    .unwrap();
    let id = inserted["id"].as_str().unwrap().to_string();
    assert_eq!(inserted["version"], 1);
    let updated = stdout(&shoal(
        &node,
        &[
            "db",
            "people",
            "update",
            &id,
            r#"{"role":"lead"}"#,
            "--patch",
            "--expect",
            "1",
        ],
    ));
    assert!(updated.contains(r#""version":2"#), "{updated}");
    let stale = shoal(
        &node,
        &[
            "db",
            "people",
            "update",
            &id,
            r#"{"role":"x"}"#,
            "--expect",
            "1",
        ],
    );
    assert!(
        !stale.status.success(),
        "a write with an old version is refused"
    );
    assert!(String::from_utf8_lossy(&stale.stderr).contains("version 2, not 1"));
    let found = stdout(&shoal(
        &node,
        &["db", "people", "find", r#"{"role":"lead"}"#],
    ));
    assert!(
        found.contains(r#""name":"ada""#) && found.contains(&id),
        "{found}"
    );
    assert_eq!(stdout(&shoal(&node, &["db", "people", "count"])), "1");
    let missing = shoal(&node, &["db", "nobody", "get", "x"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("create it first"));

    let result = stdout(&shoal(
        &node,
        &["submit", "--watch", "steps", r#"{"count":3,"ms":100}"#],
    ));
    let mut lines = result.lines();
    let job_id = lines.next().unwrap().to_string();
    assert_eq!(lines.last(), Some("3"), "watch prints the result: {result}");
    let job: serde_json::Value =
        serde_json::from_str(&stdout(&shoal(&node, &["jobs", "get", &job_id]))).unwrap();
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["progress"], 1.0);
    let listed = stdout(&shoal(&node, &["jobs", "list", "--state", "succeeded"]));
    assert!(listed.contains("steps"), "{listed}");

    let status = stdout(&shoal(&node, &["status"]));
    assert!(
        status.contains("raft: leader") && status.contains("succeeded"),
        "{status}"
    );
}

#[test]
fn the_cli_says_when_a_node_is_unreachable_or_refuses() {
    let unreachable = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["call", "--node", "http://127.0.0.1:1", "noop"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("no Shoal node answered") && stderr.contains("127.0.0.1:1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--http"),
        "the message hints at the cause: {stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "open sesame\n").unwrap();
    let node = NodeProcess::start(&[
        "--slots",
        "1",
        "--api-token-file",
        token_file.to_str().unwrap(),
    ]);
    let call = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["call", "--node", &node.http])
            .args(extra)
            .args(["echo", "[1,2]"])
            .env_remove("SHOAL_API_TOKEN")
            .output()
            .unwrap()
    };
    let refused = call(&[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("unauthorized") && stderr.contains("--api-token"),
        "{stderr}"
    );
    let wrong = call(&["--api-token", "guess"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong API token"));
    let allowed = call(&["--api-token-file", token_file.to_str().unwrap()]);
    assert_eq!(stdout(&allowed), "[1,2]");
}

/// `shoal` with `input` on its standard input.
fn shoal_with_stdin(node: &NodeProcess, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let (command, rest) = args.split_first().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg(command)
        .args(["--node", &node.http])
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn arguments_too_long_for_the_command_line_come_from_a_file_or_stdin() {
    let node = NodeProcess::start(&["--slots", "2"]);
    // 600 KB: more than one command-line argument may hold (128 KiB).
    let words: Vec<String> = (0..60_000).map(|i| format!("w{i:06}")).collect();
    let big = serde_json::json!({ "words": words });
    let text = big.to_string();
    assert!(text.len() > 600_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.json");
    std::fs::write(&file, &text).unwrap();

    let at_file = format!("@{}", file.display());
    let echoed: serde_json::Value =
        serde_json::from_str(&stdout(&shoal(&node, &["call", "echo", &at_file]))).unwrap();
    assert_eq!(echoed, big, "echo returns the file's arguments whole");
    let echoed: serde_json::Value = serde_json::from_str(&stdout(&shoal_with_stdin(
        &node,
        &["call", "echo", "-"],
        text.as_bytes(),
    )))
    .unwrap();
    assert_eq!(echoed, big, "echo returns standard input's arguments whole");

    stdout(&shoal(&node, &["db", "big", "create"]));
    let inserted: serde_json::Value = serde_json::from_str(&stdout(&shoal_with_stdin(
        &node,
        &["db", "big", "insert", "-"],
        text.as_bytes(),
    )))
    .unwrap();
    let id = inserted["id"].as_str().unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(&stdout(&shoal(&node, &["db", "big", "get", id]))).unwrap();
    assert_eq!(stored["body"], big, "the document is stored whole");

    let missing = shoal(&node, &["call", "echo", "@/no/such/args.json"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("cannot read the arguments from /no/such/args.json"),
        "{stderr}"
    );
}
