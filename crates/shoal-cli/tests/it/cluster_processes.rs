//! Clusters of real `shoal node` processes, with one killed by SIGKILL.

use crate::common::{NodeProcess, ProcessCluster, WAIT, driver, wait_until};
use futures::StreamExt;
use serde_json::json;
use shoal_client::Client;
use shoal_node::builtins::pi_inside;
use shoal_node::testkit::test_config;
use shoal_node::{Node, NodeConfig};
use shoal_proto::api::CallBody;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_mid_run_loses_no_call() {
    let mut cluster = ProcessCluster::start(3, &["--slots", "1"]).await;
    let caller = driver(&cluster.nodes[0].addr, None).await;
    assert_eq!(
        caller.wait_for_peers(3, WAIT).await,
        3,
        "caller sees the three nodes"
    );
    assert_eq!(caller.wait_for_connections(3, WAIT).await, 3);

    let (chunks, samples) = (90u64, 4_000_000u64);
    let calls = (0..chunks).map(|seed| {
        (
            "pi.sample".to_string(),
            json!({"samples": samples, "seed": seed}),
        )
    });
    let mut results = caller.call_many(calls, 90);
    let mut inside = 0;
    let mut per_node: HashMap<String, u64> = HashMap::new();
    let mut done = 0;
    let victim_id = {
        // The victim is whichever process the first result came from, so
        // it surely held calls when it dies.
        let (_, first) = results.next().await.unwrap();
        let first = first.unwrap();
        inside += first["inside"].as_u64().unwrap();
        done += 1;
        first["node"].as_str().unwrap().to_string()
    };
    let mut killed_at = None;
    while let Some((index, result)) = results.next().await {
        let result = result.unwrap_or_else(|e| panic!("chunk {index} was lost: {e}"));
        inside += result["inside"].as_u64().unwrap();
        *per_node
            .entry(result["node"].as_str().unwrap().to_string())
            .or_default() += 1;
        done += 1;
        if done == 10 {
            // The first result came from one of the processes.
            let victim = cluster.index_of(&victim_id);
            cluster.nodes[victim].kill();
            killed_at = Some(Instant::now());
        }
    }
    let recovered_in = killed_at.expect("the victim was killed").elapsed();
    assert_eq!(done, chunks, "every call resolved");
    let expected: u64 = (0..chunks)
        .map(|seed| pi_inside(samples, seed as u32))
        .sum();
    assert_eq!(inside, expected, "no chunk lost or counted twice");
    assert!(
        caller
            .stats()
            .redispatched
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the killed node's calls ran again elsewhere"
    );
    assert!(
        recovered_in < Duration::from_secs(30),
        "finished {recovered_in:?} after the kill"
    );
    let survivors = per_node.keys().filter(|id| **id != victim_id).count();
    assert_eq!(survivors, 2, "both survivors ran chunks: {per_node:?}");
    caller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memoized_fib_across_three_processes() {
    let cluster = ProcessCluster::start(3, &["--slots", "1"]).await;
    let caller = driver(&cluster.nodes[0].addr, None).await;
    assert_eq!(caller.wait_for_peers(3, WAIT).await, 3);
    let value = caller
        .call_with_timeout("fib", json!(90), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(value, json!(2_880_067_194_370_816_120u64));
    caller.shutdown().await;
}

/// A call that runs longer than the idle time: the owner's stream to the
/// node running it closes cleanly meanwhile, so nothing tells the owner
/// the call is lost when the result, once ready, cannot reach it (here the
/// owner is paused past the time opening a stream may take). The result
/// must arrive once the owner answers again, not leave the caller waiting
/// until the deadline. The runner holds no replica, so no Raft traffic
/// between the two reopens a stream meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_ready_while_its_owner_is_paused_arrives_when_it_resumes() {
    let idle = Duration::from_millis(300);
    let cluster = ProcessCluster::start(1, &["--slots", "0", "--idle-timeout-ms", "300"]).await;
    let owner = &cluster.nodes[0];
    let runner = Node::builder()
        .config(NodeConfig {
            raft: false,
            idle_timeout: idle,
            ..test_config(1)
        })
        .register("slow", |_ctx, args| async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok(args)
        })
        .join(owner.addr.clone())
        .start()
        .await
        .unwrap();
    let client = Client::new([&owner.http]).unwrap();
    wait_until(WAIT, "the owner sees the runner's slot", async || {
        let view = client.cluster().await.map_err(|e| e.to_string())?;
        let seen = view.members.iter().any(|m| !m.is_self && m.slots == 1);
        seen.then_some(()).ok_or_else(|| "not yet".to_string())
    })
    .await;

    let call = tokio::spawn(async move {
        let body = CallBody {
            args: json!("its own result"),
            timeout_ms: Some(40_000),
            ..CallBody::default()
        };
        client.call_with("slow", body).await
    });
    // By now the idle stream is closed, and the connection with it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    owner.pause();
    // The result is ready 1 s later; opening a stream to a paused node
    // gives up after 5 s.
    tokio::time::sleep(Duration::from_secs(8)).await;
    owner.resume();
    let answer = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call answers soon after its owner resumes, not at its deadline")
        .unwrap();
    assert_eq!(answer.expect("the call's result"), json!("its own result"));
    assert_eq!(
        runner.stats().executed.load(Ordering::Relaxed),
        1,
        "the call ran once: its result was delivered late, not the call placed again"
    );
    runner.shutdown().await;
}

/// A node SIGKILLed and started again on its data keeps its peer id, so a
/// result meant for a call of its first life can still reach it. That
/// result must answer no call of the second life, whatever number the
/// new call got: the restarted node's first call (to the same function
/// on the same runner) answers with its own result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_takes_no_result_meant_for_its_first_life() {
    let owner = NodeProcess::start(&["--slots", "0"]);
    let started = Arc::new(AtomicUsize::new(0));
    let runner = Node::builder()
        .config(NodeConfig {
            raft: false,
            ..test_config(2)
        })
        .register("slow", {
            let started = Arc::clone(&started);
            move |_ctx, args: serde_json::Value| {
                started.fetch_add(1, Ordering::Relaxed);
                async move {
                    let ms = args["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(args)
                }
            }
        })
        .join(owner.addr.clone())
        .start()
        .await
        .unwrap();
    see_runner(&owner.http).await;
    let first_life = tokio::spawn(slow(owner.http.clone(), "first", 3_000));
    wait_until(WAIT, "the first life's call to start", async || {
        (started.load(Ordering::Relaxed) == 1)
            .then_some(())
            .ok_or("not yet")
    })
    .await;
    let peer_id = owner.peer_id();
    let data = owner.kill_keeping_data();
    let runner_addr = runner.listen_addrs()[0].to_string();
    let restarted = NodeProcess::start_in(data, &["--slots", "0", "--join", &runner_addr]);
    assert_eq!(restarted.peer_id(), peer_id, "the same node, restarted");

    // It outlasts what is left of the first life's call, whose result
    // comes meanwhile.
    see_runner(&restarted.http).await;
    let second = slow(restarted.http.clone(), "second", 6_000).await;
    assert_eq!(
        second.expect("the second life's call answers"),
        json!({"life": "second", "ms": 6_000}),
        "the call got the result of the first life's call"
    );
    // Its caller lost its node; the client would try it for a while.
    first_life.abort();
    assert_eq!(
        runner.stats().executed.load(Ordering::Relaxed),
        2,
        "the first life's call ran to its end"
    );
    runner.shutdown().await;
}

/// Waits until the node at `http` sees the runner's two slots.
async fn see_runner(http: &str) {
    let client = Client::new([http]).unwrap();
    wait_until(WAIT, "the owner to see the runner's slots", async || {
        let view = client.cluster().await.map_err(|e| e.to_string())?;
        let seen = view.members.iter().any(|m| !m.is_self && m.slots == 2);
        seen.then_some(()).ok_or_else(|| "not yet".to_string())
    })
    .await;
}

/// Calls `slow` for `ms` through the node at `http`; the result names the
/// `life` of the node that called.
async fn slow(
    http: String,
    life: &'static str,
    ms: u64,
) -> Result<serde_json::Value, shoal_client::ClientError> {
    let client = Client::new([&http]).unwrap();
    client.call("slow", json!({"life": life, "ms": ms})).await
}
