//! Join addresses given by host name (`/dns4`, `/dns`), as a Kubernetes
//! pod or a compose service gives them: here `localhost`, which the system
//! resolver answers from `/etc/hosts`, so the test needs no DNS server.

use serde_json::{Value, json};
use shoal_node::testkit::{test_config, wait_until};
use shoal_node::{Multiaddr, Node, NodeBuilder};
use std::time::Duration;

/// Long enough for a loaded test machine; anything longer is a hang.
const WAIT: Duration = Duration::from_secs(20);

/// A node whose function `name` answers with `name`, so a call's answer
/// says which node ran it.
fn node_serving(name: &'static str) -> NodeBuilder {
    Node::builder()
        .config(test_config(1))
        .register(
            name,
            move |_ctx, _args| async move { Ok(Value::from(name)) },
        )
}

/// `/dns4/localhost/tcp/<port>` for the TCP port `node` listens on, under
/// `protocol` (`dns4`, `dns`).
fn by_name(protocol: &str, node: &Node) -> Multiaddr {
    let port = node.listen_addrs()[0]
        .iter()
        .find_map(|part| match part {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP listener");
    format!("/{protocol}/localhost/tcp/{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_join_by_host_name_form_a_cluster_and_call_each_other() {
    let first = node_serving("first").start().await.unwrap();
    let second = node_serving("second")
        .join(by_name("dns4", &first))
        .start()
        .await
        .unwrap();
    let third = node_serving("third")
        .join(by_name("dns", &first))
        .start()
        .await
        .unwrap();
    for node in [&first, &second, &third] {
        assert_eq!(
            node.wait_for_peers(2, WAIT).await,
            2,
            "every node sees the others"
        );
    }
    // Each call runs on the one node that serves the function.
    for (caller, function) in [(&third, "second"), (&second, "third"), (&first, "third")] {
        let answer = wait_until(
            WAIT,
            &format!("a call of {function} to succeed"),
            async || caller.call(function, json!(null)).await,
        )
        .await;
        assert_eq!(answer, json!(function));
    }
    for node in [first, second, third] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_to_listen_on_is_refused_clearly() {
    let mut builder = node_serving("named");
    builder.config_mut().listen = vec!["/dns4/localhost/tcp/0".parse().unwrap()];
    let error = builder
        .start()
        .await
        .err()
        .expect("the node does not start");
    let message = error.to_string();
    assert!(
        message.contains("/dns4/localhost/tcp/0") && message.contains("IP address"),
        "{message}"
    );
}
