//! A cluster with a secret: peers without it cannot connect, and say why.

use crate::common::{NodeProcess, WAIT, driver, wait_until};
use serde_json::json;
use shoal_node::Node;
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
    // A wrong key garbles the handshake, which may only fail at its timeout.
    for (who, peer) in [("a wrong secret", &outsider), ("no secret", &no_secret)] {
        let what = format!("the node to refuse the peer with {who}");
        wait_until(WAIT, &what, async || node_refused(&node, peer)).await;
    }
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
    for n in [outsider, no_secret, member] {
        n.shutdown().await;
    }
}

/// Whether `node`'s log says it refused a connection from `peer` for want
/// of the secret. A peer dials from the port it listens on, which names it.
fn node_refused(node: &NodeProcess, peer: &Node) -> bool {
    let addr = peer.listen_addrs()[0].to_string();
    let port = addr
        .split('/')
        .skip_while(|part| *part != "tcp")
        .nth(1)
        .expect("a TCP address");
    let from_peer = format!("/tcp/{port}");
    node.log_text().lines().any(|line| {
        line.contains("does not have this cluster's secret")
            && line
                .split(&from_peer)
                .skip(1)
                .any(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}
