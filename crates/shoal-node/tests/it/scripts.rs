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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_madrpc_script_runs_unchanged_and_objects_keep_their_key_order() {
    // A map/reduce word count in MaDRPC's style: its ties are sorted by the
    // order the words first appeared, which only holds if every object
    // keeps its key order across calls, as in JavaScript.
    let script = Script::new(
        "wordcount_madrpc.js",
        r#"
        'use strict';
        madrpc.register('count', (args) => {
            const counts = {};
            for (const word of args.text.split(/\s+/)) {
                counts[word] = (counts[word] || 0) + 1;
            }
            return counts;
        });
        madrpc.register('wordcount', async (args) => {
            const parts = await Promise.all(args.texts.map((text) => madrpc.call('count', { text })));
            const total = {};
            for (const part of parts) {
                for (const [word, n] of Object.entries(part)) {
                    total[word] = (total[word] || 0) + n;
                }
            }
            return Object.entries(total)
                .sort((a, b) => b[1] - a[1])
                .map(([word, n]) => `${word}:${n}`);
        });
        "#,
    );
    let nodes = start_cluster(2, |_, b| b.config(test_config(1))).await;
    let ranked = nodes[0]
        .call_script(
            script,
            "wordcount",
            json!({ "texts": ["pear apple fig", "zebra pear", "mango apple"] }),
        )
        .await
        .unwrap();
    assert_eq!(
        ranked,
        json!(["pear:2", "apple:2", "fig:1", "zebra:1", "mango:1"]),
        "what V8 or QuickJS alone would answer"
    );
    let echoed = nodes[1]
        .call_script(
            Script::new("echo.js", "madrpc.register('echo', (args) => args);"),
            "echo",
            json!({ "zulu": 1, "alpha": { "yankee": 2, "bravo": 3 } }),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_string(&echoed).unwrap(),
        r#"{"zulu":1,"alpha":{"yankee":2,"bravo":3}}"#
    );
    for node in &nodes {
        node.shutdown().await;
    }
}
