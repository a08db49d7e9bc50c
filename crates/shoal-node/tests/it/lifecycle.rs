//! A node's limits and its end: a full executor queue sends calls
//! elsewhere, and shutting down with calls in flight leaves nothing behind.

use futures::StreamExt;
use serde_json::json;
use shoal_node::builtins;
use shoal_node::testkit::wait_until;
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{ErrorCode, Node};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_overloaded_and_its_calls_run_elsewhere() {
    // A caller without slots, a node with one slot and room for one queued
    // call, and a roomy node.
    let nodes = start_cluster(3, |index, builder| {
        let mut config = test_config([0, 1, 4][index]);
        if index == 1 {
            config.max_queued_calls = 1;
        }
        builtins::register(builder.config(config))
    })
    .await;
    let (caller, small, roomy) = (&nodes[0], &nodes[1], &nodes[2]);
    let calls = (0..40).map(|_| ("sleep".to_string(), json!(100)));
    let results: Vec<_> = caller.call_many(calls, 40).collect().await;
    assert_eq!(results.len(), 40);
    for (index, result) in &results {
        assert!(result.is_ok(), "call {index} failed: {result:?}");
    }
    let refused = small.stats().refused_overloaded.load(Ordering::Relaxed);
    let ran = |node: &Node| node.stats().executed.load(Ordering::Relaxed);
    assert!(
        refused > 0,
        "the small node was never full: it ran {}, the roomy one {}",
        ran(small),
        ran(roomy)
    );
    assert_eq!(ran(small) + ran(roomy), 40, "each call ran once");
    assert_eq!(
        caller.stats().duplicates_dropped.load(Ordering::Relaxed),
        0,
        "no call ran twice"
    );
    assert!(
        caller.stats().redispatched.load(Ordering::Relaxed) >= refused,
        "every refused call was placed again"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_every_node_refuses_fails_with_overloaded() {
    let nodes = start_cluster(2, |index, builder| {
        let mut config = test_config(index as u32); // the caller has no slots
        config.max_queued_calls = 0;
        builtins::register(builder.config(config))
    })
    .await;
    let busy = {
        let caller = nodes[0].clone();
        tokio::spawn(async move { caller.call("sleep", json!(2_000)).await })
    };
    let worker = nodes[1].clone();
    wait_until(
        Duration::from_secs(10),
        "the only slot is busy",
        async || worker.status().running == 1,
    )
    .await;
    let refused = nodes[0].call("sleep", json!(1)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Overloaded, "{refused}");
    assert!(refused.message.contains("full queue"), "{refused}");
    busy.await
        .unwrap()
        .expect("the running call is not disturbed");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_calls_in_flight_ends_every_task_within_two_seconds() {
    let runtime = tokio::runtime::Handle::current().metrics();
    let before = runtime.num_alive_tasks();
    let nodes: Vec<Node> = start_cluster(2, |_, builder| {
        builtins::register(builder.config(test_config(2)))
    })
    .await;
    // Running and queued calls on both nodes, made from the first.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let caller = nodes[0].clone();
            tokio::spawn(async move { caller.call("sleep", json!(60_000)).await })
        })
        .collect();
    let (first, second) = (nodes[0].clone(), nodes[1].clone());
    wait_until(
        Duration::from_secs(10),
        "both nodes run calls",
        async || first.status().running > 0 && second.status().running > 0,
    )
    .await;

    for node in &nodes {
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), node.shutdown())
            .await
            .expect("shutdown finishes within 2 s");
        assert_eq!(node.running_tasks(), 0, "no task of the node is left");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.code, ErrorCode::ShuttingDown, "{error}");
    }
    drop(nodes);
    // Nothing the nodes started escaped their trackers: the runtime is back
    // to the tasks it had before they started.
    wait_until(
        Duration::from_secs(5),
        "the runtime's tasks are back to before",
        async || {
            let alive = runtime.num_alive_tasks();
            if alive <= before {
                Ok(())
            } else {
                Err(format!("{alive} tasks alive, {before} before"))
            }
        },
    )
    .await;
}

/// A call dropped by its caller right after it was started, before its
/// task first ran, gives its slot back: on a node with one slot the next
/// call runs. (Its slot used to be taken for good: the state that frees
/// it was made inside the task, which never ran.)
#[tokio::test(flavor = "current_thread")]
async fn a_call_dropped_before_its_task_first_runs_gives_its_slot_back() {
    let nodes = start_cluster(1, |_, builder| {
        builtins::register(builder.config(test_config(1)))
    })
    .await;
    let node = &nodes[0];
    {
        let call = node.call("sleep", json!(60_000));
        tokio::pin!(call);
        // One poll places and starts it; on this one-thread runtime its
        // task cannot run before the caller lets go.
        assert!(futures::poll!(call.as_mut()).is_pending());
        assert_eq!(node.status().running, 1, "the call holds the slot");
    }
    let next = tokio::time::timeout(Duration::from_secs(10), node.call("echo", json!("next")))
        .await
        .expect("the next call gets the slot");
    assert_eq!(next.expect("the next call succeeds"), json!("next"));
    assert!(
        !node.drain_status().calls_running,
        "nothing counts as running"
    );
    node.shutdown().await;
}

/// A call whose nested calls both answer at once, from the memo, while its
/// slot is taken: each branch used to queue for the slot on its own, so
/// with one slot the call got it back through one branch and then waited
/// for the other branch's turn, which only its own end could give. Every
/// such call, and every call queued behind it, then waited out its
/// deadline (`shoal demo fib 80` hung about once in a hundred runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_nested_calls_all_answer_at_once_gets_its_slot_back() {
    let nodes = start_cluster(1, |_, builder| {
        builder
            .config(test_config(1))
            .register("one", |_ctx, _args| async { Ok(json!(1)) })
            .memoize("one")
            .register("two", |ctx, _args| async move {
                let (a, b) =
                    tokio::try_join!(ctx.call("one", json!(null)), ctx.call("one", json!(null)))?;
                Ok(json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0)))
            })
    })
    .await;
    let node = &nodes[0];
    node.call("one", json!(null))
        .await
        .expect("the memo is warm");
    let calls = (0..20).map(|_| ("two".to_string(), json!(null)));
    let results = tokio::time::timeout(
        Duration::from_secs(20),
        node.call_many(calls, 20).collect::<Vec<_>>(),
    )
    .await
    .expect("every call ends: none waits for a slot its own call holds");
    for (index, result) in results {
        assert_eq!(result.expect("call succeeds"), json!(2), "call {index}");
    }
    node.shutdown().await;
}

/// A caller that dies takes its calls with it: the node running them stops
/// them, queued and running, once it has held the caller dead for 30
/// membership periods (6 s here, 30 s by default), and its slot is free
/// for others then, not when those calls' deadline comes (10 minutes here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_callers_calls_stop_where_they_ran() {
    let nodes = start_cluster(2, |index, builder| {
        builtins::register(builder.config(test_config([0, 1][index])))
    })
    .await;
    let mut nodes = nodes.into_iter();
    let (caller, worker) = (nodes.next().unwrap(), nodes.next().unwrap());
    for _ in 0..3 {
        let caller = caller.clone();
        tokio::spawn(async move { caller.call("sleep", json!(600_000)).await });
    }
    let holds = async |running: u32, queued: u32, within: u64, what: &str| {
        wait_until(Duration::from_secs(within), what, async || {
            let status = worker.status();
            if (status.running, status.queued) == (running, queued) {
                Ok(())
            } else {
                Err(format!(
                    "running {}, queued {}",
                    status.running, status.queued
                ))
            }
        })
        .await
    };
    holds(1, 2, 20, "the worker to take every call").await;
    caller.shutdown().await;
    drop(caller);
    holds(0, 0, 30, "the dead caller's calls to stop").await;
    let started = Instant::now();
    let answer = worker.call("sleep", json!(10)).await;
    assert_eq!(answer.unwrap(), json!(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the worker's one slot was free: {:?}",
        started.elapsed()
    );
    worker.shutdown().await;
}
