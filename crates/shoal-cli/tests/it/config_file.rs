//! `shoal node --config FILE` and `shoal config print`, as a user runs
//! them: a node takes its settings from the file, a flag or an environment
//! variable overrides it, a wrong key stops it, and what `config print`
//! writes starts a node again without showing a secret.

use crate::common::{NodeProcess, WAIT};
use shoal_client::{Client, ErrorCode};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// `shoal` with none of the environment variables that would change its
/// settings behind the test's back.
fn shoal() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    for variable in ["SHOAL_CONFIG", "SHOAL_SECRET", "SHOAL_API_TOKEN"] {
        command.env_remove(variable);
    }
    command
}

/// Runs a command that should exit at once; a hang (a node that started
/// after all) fails the test instead of blocking it.
fn finish(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shoal binary runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > WAIT {
            child.kill().unwrap();
            panic!("{command:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_with_the_settings_of_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shoal.toml");
    write(
        &file,
        &format!(
            r#"
            listen = ["/ip4/127.0.0.1/tcp/0"]
            http = "127.0.0.1:0"
            slots = 3
            label = {{ zone = "eu" }}
            heartbeat-ms = 200
            data-dir = {:?}
            "#,
            dir.path().join("data")
        ),
    );
    let data = dir.path().join("data");
    let mut command = shoal();
    command.arg("node").arg("--config").arg(&file);
    let node = NodeProcess::spawn(dir, command);

    let api = Client::new([&node.http]).unwrap();
    assert_eq!(api.status().await.unwrap().slots, 3);
    let cluster = api.cluster().await.unwrap();
    let me = cluster.members.iter().find(|m| m.is_self).unwrap();
    assert_eq!(me.labels.get("zone").map(String::as_str), Some("eu"));
    let kept = std::fs::read_dir(&data).map_or(0, Iterator::count);
    assert!(
        kept > 0,
        "the node keeps its identity in the file's data-dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_and_an_environment_variable_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shoal.toml");
    write(
        &file,
        "http = \"127.0.0.1:0\"\nslots = 3\napi-token = \"from the file\"\nlabel = { from = \"file\" }\n",
    );
    let mut command = shoal();
    command
        // The file's path from the environment, too.
        .env("SHOAL_CONFIG", &file)
        .env("SHOAL_API_TOKEN", "from the environment")
        .args(["node", "--slots", "2", "--data-dir"])
        .arg(dir.path().join("data"));
    let node = NodeProcess::spawn(dir, command);

    let with = |token: &str| Client::builder([&node.http]).token(token).build().unwrap();
    let status = with("from the environment").status().await.unwrap();
    assert_eq!(status.slots, 2, "--slots wins over the file");
    let cluster = with("from the environment").cluster().await.unwrap();
    let me = cluster.members.iter().find(|m| m.is_self).unwrap();
    assert_eq!(
        me.labels.get("from").map(String::as_str),
        Some("file"),
        "what neither a flag nor the environment sets comes from the file"
    );
    let refused = with("from the file").status().await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthorized),
        "SHOAL_API_TOKEN wins over the file: {refused}"
    );
}

#[test]
fn a_wrong_key_or_value_stops_the_node_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shoal.toml");
    for (text, expected) in [
        (
            "slot = 4\n",
            format!(
                "unknown key \"slot\" in {} (did you mean \"slots\"?)",
                file.display()
            ),
        ),
        (
            "http = \"everywhere\"\n",
            format!(
                "invalid value for \"http\" in {}: \"everywhere\"",
                file.display()
            ),
        ),
    ] {
        write(&file, text);
        let mut command = shoal();
        command.arg("node").arg("--config").arg(&file);
        let output = finish(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: {stderr}");
        assert!(stderr.contains(&expected), "{text}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_print_redacts_secrets_and_its_output_starts_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shoal.toml");
    write(
        &file,
        "http = \"127.0.0.1:0\"\nlabel = [\"gpu=a100\"]\napi-token = \"tok-from-file\"\n",
    );
    let mut command = shoal();
    command
        .env("SHOAL_SECRET", "secret-from-env")
        .args(["config", "print", "--slots", "5", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let output = finish(command);
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        !printed.contains("secret-from-env") && !printed.contains("tok-from-file"),
        "{printed}"
    );
    for line in [
        "# secret = \"<redacted>\"",
        "# api-token = \"<redacted>\"",
        "slots = 5",
        "label = [\"gpu=a100\"]",
        "heartbeat-ms = 1000",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in\n{printed}"
        );
    }

    let reprinted_file = dir.path().join("printed.toml");
    write(&reprinted_file, &printed);
    let mut command = shoal();
    command
        .args(["config", "print", "--config"])
        .arg(&reprinted_file);
    let reprinted = String::from_utf8(finish(command).stdout).unwrap();
    let without_secrets = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with("# secret") && !line.starts_with("# api-token"))
            .map(String::from)
            .collect()
    };
    assert_eq!(without_secrets(&reprinted), without_secrets(&printed));

    let mut command = shoal();
    command.arg("node").arg("--config").arg(&reprinted_file);
    let node = NodeProcess::spawn(dir, command);
    let api = Client::new([&node.http]).unwrap();
    assert_eq!(
        api.status().await.unwrap().slots,
        5,
        "the printed file works as --config, without the token it left out"
    );
}
