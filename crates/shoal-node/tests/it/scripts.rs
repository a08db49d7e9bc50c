//! JavaScript functions in a cluster: loaded at start, or shipped with calls.

use serde_json::json;
use shoal_node::builtins::pi_inside;
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{ErrorCode, Node, NodeConfig, Script};
use std::time::Duration;

fn example(name: &str) -> Script {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    Script::new(name, std::fs::read_to_string(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_script_runs_on_nodes_that_never_loaded_it() {
    let nodes = start_cluster(4, |i, b| b.config(test_config(if i == 0 { 0 } else { 1 }))).await;
    let caller = &nodes[0];
    let result = caller
        .call_script(
            example("pi.js"),
            "pi",
            json!({"samples": 1_200_000, "chunks": 12}),
        )
        .await
        .unwrap();
    let expected: u64 = (0..12).map(|seed| pi_inside(100_000, seed)).sum();
    assert_eq!(
        result["inside"],
        json!(expected),
        "JS counts exactly what Rust counts"
    );
    assert_eq!(result["total"], json!(1_200_000));
    let ran_js = nodes[1..]
        .iter()
        .filter(|n| {
            n.stats()
                .executed
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        })
        .count();
    assert!(
        ran_js >= 2,
        "chunks spread over the nodes: {ran_js} of 3 ran some"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoized_js_fib_90_across_nodes_is_exact() {
    let nodes = start_cluster(3, |_, b| b.config(test_config(1)).script(example("fib.js"))).await;
    let result = nodes[2]
        .call_with_timeout("js.fib", json!(90), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(result, json!("2880067194370816120"));
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_scripts_fail_their_call_and_the_node_keeps_serving() {
    let node = Node::builder()
        .config(NodeConfig {
            js_time_limit: Duration::from_millis(300),
            js_memory_limit: 32 * 1024 * 1024,
            ..test_config(1)
        })
        .script(Script::new(
            "runaway.js",
            "shoal.register('spin', () => { while (true) {} });
             shoal.register('hog', () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); });
             shoal.register('ok', (a) => ({ doubled: a.n * 2 }));",
        ))
        .start()
        .await
        .unwrap();
    let spin = node.call("spin", json!(null)).await.unwrap_err();
    assert_eq!(spin.code, ErrorCode::FunctionFailed);
    assert!(
        spin.message.contains("spin") && spin.message.contains("interrupted"),
        "{spin}"
    );
    let hog = node.call("hog", json!(null)).await.unwrap_err();
    assert!(hog.message.contains("memory limit"), "{hog}");
    assert_eq!(
        node.call("ok", json!({"n": 21})).await.unwrap(),
        json!({"doubled": 42})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_does_not_parse_stops_the_start_with_its_name() {
    let error = Node::builder()
        .config(test_config(1))
        .script(Script::new(
            "typo.js",
            "shoal.register('f', () => { return 1 ;",
        ))
        .start()
        .await
        .err()
        .expect("a broken script refuses the start");
    let text = error.to_string();
    assert!(
        text.contains("typo.js") && text.contains("SyntaxError"),
        "{text}"
    );
}
