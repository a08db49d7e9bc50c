//! A cluster with a secret: peers without it cannot connect, and say why.

mod common;

use common::{NodeProcess, WAIT, driver};
use serde_json::json;
use shoal_node::config::secret_from_passphrase;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_secret_can_join() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "correct horse battery staple\n").unwrap();
    let node = NodeProcess::start(&["--secret-file", secret_file.to_str().unwrap()]);

    let outsider = driver(&node.addr, Some(secret_from_passphrase("wrong guess"))).await;
    let no_secret = driver(&node.addr, None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        outsider.wait_for_peers(1, Duration::from_millis(10)).await,
        0
    );
    assert_eq!(
        no_secret.wait_for_peers(1, Duration::from_millis(10)).await,
        0
    );
    let refused = outsider.call("echo", json!(1)).await.unwrap_err();
    assert_eq!(
        refused.code,
        shoal_node::ErrorCode::UnknownFunction,
        "{refused}"
    );
    // A wrong key garbles the handshake, which may only fail at its timeout.
    let deadline = std::time::Instant::now() + WAIT;
    while !node.log_text().contains("secret") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = node.log_text();
    assert!(
        log.contains("secret"),
        "the node's log says why it refused: {log}"
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
    for n in [outsider, no_secret, member] {
        n.shutdown().await;
    }
}
