//! In-process clusters on loopback: what a user of the embedding API sees.

use serde_json::{Value, json};
use shoal_node::builtins::{self, pi_inside};
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{ErrorCode, Node};
use std::collections::HashMap;
use std::time::Duration;

use shoal_node::testkit::wait_until;

/// Long enough for a loaded test machine; anything longer is a hang.
const WAIT: Duration = Duration::from_secs(20);

fn with_builtins(slots: u32) -> impl Fn(usize, shoal_node::NodeBuilder) -> shoal_node::NodeBuilder {
    move |_, builder| builtins::register(builder.config(test_config(slots)))
}

async fn run_pi(caller: &Node, chunks: u64, samples: u64) -> (u64, HashMap<String, usize>) {
    use futures::StreamExt;
    let calls = (0..chunks).map(|seed| {
        (
            "pi.sample".to_string(),
            json!({"samples": samples, "seed": seed}),
        )
    });
    let mut results = caller.call_many(calls, 64);
    let mut inside = 0;
    let mut per_node = HashMap::new();
    let mut seen = 0;
    while let Some((_, result)) = results.next().await {
        let result = result.expect("every chunk succeeds");
        inside += result["inside"].as_u64().unwrap();
        *per_node
            .entry(result["node"].as_str().unwrap().to_string())
            .or_default() += 1;
        seen += 1;
    }
    assert_eq!(seen, chunks, "every chunk resolved");
    (inside, per_node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_compute_pi_exactly_and_share_the_work() {
    let nodes = start_cluster(3, with_builtins(1)).await;
    let (chunks, samples) = (48, 200_000);
    let (inside, per_node) = run_pi(&nodes[0], chunks, samples).await;
    let expected: u64 = (0..chunks)
        .map(|seed| pi_inside(samples, seed as u32))
        .sum();
    assert_eq!(
        inside, expected,
        "the cluster counts exactly what one thread counts"
    );
    assert_eq!(per_node.len(), 3, "every node ran chunks: {per_node:?}");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoized_recursive_fib_across_nodes_does_not_deadlock() {
    // One slot per node: without slot release during nested calls this
    // recursion would block every node on itself.
    let nodes = start_cluster(3, with_builtins(1)).await;
    let result = nodes[1]
        .call_with_timeout("fib", json!(90), Duration::from_secs(60))
        .await;
    assert_eq!(result.unwrap(), json!(2_880_067_194_370_816_120u64));
    let executed: u64 = nodes
        .iter()
        .map(|n| {
            n.stats()
                .executed
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(
        executed < 2_000,
        "memoization keeps fib(90) linear, ran {executed} calls"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_get_clear_errors_and_the_node_keeps_serving() {
    let nodes = start_cluster(2, |i, b| {
        let b = builtins::register(b.config(test_config(2)));
        if i == 1 {
            b.register("explode", |_ctx, _args| async move {
                if true {
                    panic!("kaboom");
                }
                Ok(Value::Null)
            })
            .register(
                "refuse",
                |_ctx, _args| async move { Err("not today".into()) },
            )
        } else {
            b
        }
    })
    .await;
    let caller = &nodes[0];

    let unknown = caller.call("no.such.function", json!(1)).await.unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownFunction);
    assert!(unknown.message.contains("no.such.function"), "{unknown}");

    let panicked = caller.call("explode", json!(null)).await.unwrap_err();
    assert_eq!(panicked.code, ErrorCode::FunctionPanicked);
    assert!(
        panicked.message.contains("explode") && panicked.message.contains("kaboom"),
        "{panicked}"
    );

    let failed = caller.call("refuse", json!(null)).await.unwrap_err();
    assert_eq!(failed.code, ErrorCode::FunctionFailed);
    assert!(failed.message.contains("not today"), "{failed}");

    let wrong_type = caller
        .call("pi.sample", json!({"samples": "lots"}))
        .await
        .unwrap_err();
    assert_eq!(wrong_type.code, ErrorCode::FunctionFailed);
    assert!(wrong_type.message.contains("samples"), "{wrong_type}");

    let late = caller
        .call_with_timeout("sleep", json!(5_000), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(late.code, ErrorCode::DeadlineExceeded);
    assert!(late.message.contains("sleep"), "{late}");

    let huge = caller
        .call(
            "echo",
            json!("x".repeat(shoal_proto::wire::MAX_PAYLOAD_BYTES + 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(huge.code, ErrorCode::PayloadTooLarge);

    // The panicking node still serves.
    assert_eq!(
        nodes[1].call("echo", json!({"still": "up"})).await.unwrap(),
        json!({"still": "up"})
    );
    assert_eq!(
        caller.call("echo", json!([1, 2])).await.unwrap(),
        json!([1, 2])
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_items_pushed_on_one_node_are_popped_on_others() {
    let nodes = start_cluster(3, with_builtins(1)).await;
    let producer = nodes[0].queue("work");
    producer.push((0..30).map(|i| json!(i))).await.unwrap();
    // Node 2 counts what every live peer holds.
    wait_until(
        WAIT,
        "node 2 to see 30 queued items",
        async || match nodes[2].queue("work").size().await {
            Ok(30) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;

    let mut popped = Vec::new();
    for consumer in [&nodes[1], &nodes[2]] {
        for _ in 0..15 {
            popped.push(
                consumer
                    .queue("work")
                    .pop(Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
        }
    }
    let mut values: Vec<u64> = popped.iter().map(|v| v.as_u64().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..30).collect::<Vec<_>>(),
        "every item popped exactly once"
    );

    let empty = nodes[1]
        .queue("work")
        .pop(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(empty.code, ErrorCode::Timeout);
    nodes[2].queue("work").close().await.unwrap();
    let closed = nodes[0].queue("work").push([json!(1)]).await.unwrap_err();
    assert_eq!(closed.code, ErrorCode::Closed);
    let drained = nodes[1]
        .queue("work")
        .pop(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(drained.code, ErrorCode::Closed);
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_node_that_dies_run_elsewhere() {
    calls_survive_a_death(|caller, calls| async move {
        use futures::StreamExt;
        caller.call_many(calls, 40).collect::<Vec<_>>().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_batch_on_a_node_that_dies_run_elsewhere() {
    calls_survive_a_death(|caller, calls| async move {
        let results = caller.call_all(calls, None).await;
        results.into_iter().enumerate().collect()
    })
    .await;
}

type Indexed = Vec<(usize, Result<Value, shoal_node::CallError>)>;

/// 40 `sleep` calls made by `make` from node 0 of three; node 2 stops
/// while it holds some, and every call still answers what it was asked.
async fn calls_survive_a_death<F, Fut>(make: F)
where
    F: FnOnce(Node, Vec<(String, Value)>) -> Fut,
    Fut: std::future::Future<Output = Indexed> + Send + 'static,
{
    let nodes = start_cluster(3, with_builtins(2)).await;
    let calls = (0..40)
        .map(|i| ("sleep".to_string(), json!(100 + i)))
        .collect();
    let run = tokio::spawn(make(nodes[0].clone(), calls));
    // The node dies while it holds calls.
    wait_until(WAIT, "node 2 to run some of the calls", async || {
        nodes[2].status().running > 0
    })
    .await;
    nodes[2].shutdown().await;
    let results = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results.len(), 40);
    for (index, result) in results {
        assert_eq!(result.unwrap(), json!(100 + index as u64), "call {index}");
    }
    for node in &nodes[..2] {
        node.shutdown().await;
    }
}

/// Adds `slow.whoami`: sleeps `ms`, then names the node that ran it.
fn whoami(ms: u64) -> impl Fn(shoal_node::NodeBuilder) -> shoal_node::NodeBuilder {
    move |b| {
        b.register("slow.whoami", move |ctx, _args| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!(ctx.node_id().0))
        })
    }
}

/// A batch is placed as calls made one at a time would be: an equal share
/// on every node, here two waves of a node's two slots; the results come
/// back in the calls' order, each call's error its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_puts_an_equal_share_on_every_node() {
    let nodes = start_cluster(4, |_, b| whoami(300)(with_builtins(2)(0, b))).await;
    wait_until(WAIT, "node 0 to know every peer's function", async || {
        let peers = nodes[0].peers();
        let offering = peers
            .iter()
            .filter(|p| {
                p.load.slots == 2 && p.load.functions.iter().any(|f| f.name == "slow.whoami")
            })
            .count();
        offering == 3
    })
    .await;
    let calls = (0..16).map(|_| ("slow.whoami".to_string(), Value::Null));
    let results = nodes[0].call_all(calls.collect(), None).await;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for result in results {
        let node = result.expect("every call succeeds");
        *per_node
            .entry(node.as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: HashMap<String, usize> =
        nodes.iter().map(|n| (n.node_id().0.clone(), 4)).collect();
    assert_eq!(per_node, expected);

    // Any mix: unknown functions fail alone, memoized ones (fib) are made
    // one at a time and still answer.
    let mixed = vec![
        ("slow.whoami".to_string(), Value::Null),
        ("no.such.fn".to_string(), json!(1)),
        ("fib".to_string(), json!(30)),
        ("echo".to_string(), json!("last")),
    ];
    let results = nodes[1].call_all(mixed, Some(WAIT)).await;
    assert!(results[0].is_ok(), "{results:?}");
    let unknown = results[1].as_ref().unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownFunction);
    assert!(unknown.message.contains("no.such.fn"), "{unknown}");
    assert_eq!(results[2].as_ref().unwrap(), &json!(832_040));
    assert_eq!(results[3].as_ref().unwrap(), &json!("last"));
    for node in &nodes {
        node.shutdown().await;
    }
}

/// A node that drains gives the calls waiting on it back to their owner,
/// which runs them elsewhere; its running call finishes, and no call
/// starts there after the drain began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_its_waiting_calls_back_and_starts_no_more() {
    use futures::StreamExt;
    let nodes = start_cluster(3, |_, b| whoami(200)(b.config(test_config(1)))).await;
    let draining = nodes[2].clone();
    // 30 calls of 200 ms on 3 single-slot nodes: each queues several.
    let calls = (0..30).map(|_| ("slow.whoami".to_string(), Value::Null));
    let run = tokio::spawn(nodes[0].call_many(calls, 30).collect::<Vec<_>>());
    wait_until(WAIT, "calls to wait on the node that drains", async || {
        let status = draining.status();
        if status.queued >= 2 {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;

    assert!(draining.start_drain(Duration::from_secs(10)));
    // From here on the node starts nothing: it finishes at most the one
    // call its one slot runs now.
    let at_drain = draining.status();

    let results = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert_eq!(results.len(), 30);
    let ran_on_drained = results
        .iter()
        .filter(|(index, result)| {
            let ran_on = result
                .as_ref()
                .unwrap_or_else(|e| panic!("call {index}: {e}"));
            ran_on == &json!(draining.node_id().0)
        })
        .count() as u64;
    let status = tokio::time::timeout(WAIT, draining.drain(Duration::from_secs(10)))
        .await
        .expect("the drain ends");
    assert!(status.calls_handed_back > 0, "{status:?}");
    let executed = draining.status().calls.executed;
    assert_eq!(ran_on_drained, executed, "every call it ran came back");
    assert!(
        executed <= at_drain.calls.executed + 1,
        "the drained node ran {executed} calls, {} of them after its drain began",
        executed - at_drain.calls.executed
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_late_steals_queued_calls() {
    use futures::StreamExt;
    let whoami = whoami(50);
    let busy = whoami(Node::builder().config(test_config(1)))
        .start()
        .await
        .unwrap();
    // 40 calls of 50 ms queue up on the only node: 2 s of work.
    let calls = (0..40).map(|_| ("slow.whoami".to_string(), Value::Null));
    let run = tokio::spawn(busy.call_many(calls, 40).collect::<Vec<_>>());
    // The newcomer arrives once every call has reached the busy node.
    wait_until(WAIT, "the 40 calls to reach the busy node", async || {
        let status = busy.status();
        let arrived = u64::from(status.queued + status.running) + status.calls.executed;
        if arrived >= 40 {
            Ok(())
        } else {
            Err(format!("{arrived} arrived: {status:?}"))
        }
    })
    .await;

    let mut late = whoami(Node::builder().config(test_config(1)));
    late.config_mut().join = busy.listen_addrs();
    let late = late.start().await.unwrap();
    let results = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    let ran_on_late = results
        .iter()
        .filter(|(_, r)| r.as_ref().unwrap() == &json!(late.node_id().0))
        .count();
    assert_eq!(results.len(), 40);
    assert!(
        ran_on_late >= 5,
        "the idle newcomer stole work: ran {ran_on_late} of 40"
    );
    assert!(
        late.stats()
            .stolen
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    late.shutdown().await;
    busy.shutdown().await;
}

/// A node of `cluster` that knows only `via`, built by `build`.
async fn node_of(
    cluster: &str,
    via: &Node,
    build: impl FnOnce(shoal_node::NodeBuilder) -> shoal_node::NodeBuilder,
) -> Node {
    let config = shoal_node::NodeConfig {
        cluster_name: cluster.to_string(),
        join: via.listen_addrs(),
        ..test_config(1)
    };
    build(Node::builder().config(config))
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_know_only_a_stranger_find_their_cluster_by_name() {
    // A node of another cluster is all the two members know.
    let stranger = Node::builder()
        .config(shoal_node::NodeConfig {
            cluster_name: "lobby".to_string(),
            ..test_config(1)
        })
        .start()
        .await
        .expect("node starts");
    let first = node_of("team", &stranger, |b| b).await;
    let second = node_of("team", &stranger, |b| {
        b.register(
            "whoami",
            |ctx, _args| async move { Ok(json!(ctx.node_id().0)) },
        )
    })
    .await;

    for (node, other) in [(&first, &second), (&second, &first)] {
        wait_until(WAIT, "the members to see each other", async || {
            let live: Vec<_> = node
                .peers()
                .into_iter()
                .filter(|p| p.liveness == shoal_node::cluster::peers::Liveness::Alive)
                .map(|p| p.peer_id)
                .collect();
            if live == [other.peer_id()] {
                Ok(())
            } else {
                Err(format!("alive: {live:?}"))
            }
        })
        .await;
    }
    assert!(
        stranger.peers().is_empty(),
        "the stranger counts no member of another cluster as its own"
    );
    // They form one cluster: a function only the second has runs there
    // when the first calls it.
    let ran_on = first
        .call("whoami", Value::Null)
        .await
        .expect("the call reaches the other member");
    assert_eq!(ran_on, json!(second.peer_id().to_base58()));
    for node in [first, second, stranger] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_call_stream_closes_without_anyone_taking_it_for_a_death() {
    use shoal_node::NodeConfig;
    use shoal_proto::api::EventKind;
    // No Raft traffic between the two (one voter, no standby), so the call
    // stream is idle whenever no call frame travels. The caller closes it:
    // the worker waits far longer, so it learns of the close by the Bye.
    let nodes = start_cluster(2, |i, builder| {
        let idle = [Duration::from_millis(300), Duration::from_secs(60)][i];
        builtins::register(builder.config(NodeConfig {
            idle_timeout: idle,
            raft_standbys: 0,
            ..test_config(if i == 0 { 0 } else { 1 })
        }))
    })
    .await;
    let caller = &nodes[0];
    // The stream idles while the call runs and is closed; the result comes
    // back on a new one.
    let slept = caller.call("sleep", json!(1_500)).await;
    assert!(slept.is_ok(), "{slept:?}");
    let again = caller.call("echo", json!({"again": true})).await.unwrap();
    assert_eq!(again, json!({"again": true}));
    for node in &nodes {
        let deaths: Vec<_> = node
            .events()
            .since(0)
            .into_iter()
            .filter(|event| event.kind == EventKind::NodeLeft)
            .collect();
        assert!(
            deaths.is_empty(),
            "a clean close taken for a death: {deaths:?}"
        );
        assert_eq!(node.peers().len(), 1);
    }
    for node in &nodes {
        node.shutdown().await;
    }
}
