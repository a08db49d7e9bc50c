//! A cluster with a secret: peers without it cannot connect, and say why.

use crate::common::{NodeProcess, WAIT, driver, wait_until};
use serde_json::json;
use shoal_node::config::secret_from_passphrase;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_secret_can_join() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "correct horse battery staple\n").unwrap();
    let node = NodeProcess::start(&["--secret-file", secret_file.to_str().unwrap()]);

    // One stranger at a time, so each refusal in the log is its doing.
    for (who, secret) in [
        (
            "a wrong secret",
            Some(secret_from_passphrase("wrong guess")),
        ),
        ("no secret", None),
    ] {
        let before = refusals(&node);
        let stranger = driver(&node.addr, secret).await;
        // A wrong key garbles the handshake, which may only fail at its timeout.
        let what = format!("the node to refuse the peer with {who}");
        wait_until(WAIT, &what, async || refusals(&node) > before).await;
        assert_eq!(
            stranger.wait_for_peers(1, Duration::from_millis(10)).await,
            0,
            "the peer with {who} sees no member"
        );
        let refused = stranger.call("echo", json!(1)).await.unwrap_err();
        assert_eq!(
            refused.code,
            shoal_node::ErrorCode::UnknownFunction,
            "{refused}"
        );
        stranger.shutdown().await;
    }
    let log = node.log_text();
    assert!(
        log.contains("secret"),
        "the node's log says why it refused: {log}"
    );
    // The same warnings are readable through the node's API.
    let api = shoal_client::Client::new([&node.http]).unwrap();
    let warnings = api.logs(shoal_client::LogLevel::Warn).await.unwrap();
    assert!(
        warnings
            .iter()
            .any(|line| line.level == shoal_client::LogLevel::Warn
                && line.message.contains("does not have this cluster's secret")),
        "GET /v1/logs?level=warn names the refusal: {warnings:?}"
    );
    let errors = api.logs(shoal_client::LogLevel::Error).await.unwrap();
    assert!(
        errors
            .iter()
            .all(|line| line.level == shoal_client::LogLevel::Error),
        "{errors:?}"
    );

    let member = driver(
        &node.addr,
        Some(secret_from_passphrase("correct horse battery staple")),
    )
    .await;
    assert_eq!(
        member.wait_for_peers(1, WAIT).await,
        1,
        "the right secret joins"
    );
    assert_eq!(
        member.call("echo", json!({"hello": 1})).await.unwrap(),
        json!({"hello": 1})
    );
    member.shutdown().await;
}

/// How many connections `node`'s log says it refused for want of the
/// secret.
fn refusals(node: &NodeProcess) -> usize {
    node.log_text()
        .lines()
        .filter(|line| line.contains("does not have this cluster's secret"))
        .count()
}
