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

/// `shoal` that must fail; returns its standard error.
fn failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn documents_are_queried_sorted_paged_and_written_by_filter() {
    let node = NodeProcess::start(&["--slots", "1"]);
    let db = |args: &[&str]| shoal(&node, &[&["db"], args].concat());
    stdout(&db(&["people", "create"]));
    stdout(&db(&["empty", "create"]));
    let people = [
        r#"{"name": "ada", "age": 36, "address": {"city": "paris"}}"#,
        r#"{"name": "bob", "age": 25, "address": {"city": "rome"}}"#,
        r#"{"name": "cy", "age": 36, "address": {"city": "paris"}}"#,
        r#"{"name": "dee", "age": 52, "address": {"city": "paris"}}"#,
        r#"{"name": "eve", "address": {"city": "paris"}}"#,
        r#"{"name": "fay", "age": 19, "address": {"city": "rome"}}"#,
    ];
    for person in people {
        stdout(&db(&["people", "insert", person]));
    }

    let listed = stdout(&db(&["list"]));
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["empty", "0"], ["people", "6"]], "{listed}");

    // Page through a sorted find, two at a time, following the cursor.
    let filter = r#"{"address.city": "paris", "age": {"$gte": 20}}"#;
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec![
            "people",
            "find",
            filter,
            "--sort",
            "-age,name",
            "--limit",
            "2",
        ];
        if let Some(after) = &after {
            args.extend(["--after", after]);
        }
        let page = db(&args);
        for line in stdout(&page).lines() {
            let document: serde_json::Value = serde_json::from_str(line).unwrap();
            names.push(document["body"]["name"].as_str().unwrap().to_string());
        }
        let stderr = String::from_utf8_lossy(&page.stderr).to_string();
        match stderr.trim().strip_prefix("more: --after ") {
            Some(cursor) => after = Some(cursor.to_string()),
            None => break,
        }
    }
    assert_eq!(names, ["dee", "ada", "cy"]);

    let ageless = r#"{"age": {"$exists": false}}"#;
    assert_eq!(stdout(&db(&["people", "count", ageless])), "1");
    assert_eq!(
        stdout(&db(&[
            "people",
            "update-where",
            r#"{"address.city": "rome"}"#,
            r#"{"visited": true}"#
        ])),
        "updated 2"
    );
    assert_eq!(
        stdout(&db(&["people", "count", r#"{"visited": true}"#])),
        "2"
    );
    assert_eq!(
        stdout(&db(&["people", "delete-where", r#"{"age": {"$lt": 30}}"#])),
        "deleted 2"
    );
    assert_eq!(stdout(&db(&["people", "count"])), "4");

    // A bad filter is refused with what was wrong, and nothing changes.
    let refused = failure(&db(&[
        "people",
        "delete-where",
        r#"{"age": {"$older": 30}}"#,
    ]));
    assert!(
        refused.contains("unknown operator $older") && refused.contains("$exists"),
        "{refused}"
    );
    let refused = failure(&db(&["people", "update-where", "{}", "[1]"]));
    assert!(
        refused.contains("merge patch must be a JSON object"),
        "{refused}"
    );
    assert_eq!(stdout(&db(&["people", "count"])), "4");
    let refused = failure(&db(&["people", "find", "--sort", "age..x"]));
    assert!(refused.contains("not a field path"), "{refused}");
    let refused = failure(&db(&["find", "{}"]));
    assert!(refused.contains("name the collection first"), "{refused}");

    // Documents keep their key order.
    let written = stdout(&db(&["people", "insert", r#"{"b": 1, "a": 2}"#]));
    let written: serde_json::Value = serde_json::from_str(&written).unwrap();
    let read = stdout(&db(&["people", "get", written["id"].as_str().unwrap()]));
    assert!(read.contains(r#""body":{"b":1,"a":2}"#), "{read}");
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
