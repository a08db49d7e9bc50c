//! The Rust client against three real nodes: one is SIGKILLed while the
//! client is using it, and the client carries on through the others.

use crate::common::ProcessCluster;
use futures::StreamExt;
use serde_json::json;
use shoal_client::{BatchCall, Client, JobSpec, JobState};
use std::time::Duration;
use tokio::sync::watch;

/// Batches sent before the kill; every later one waits for it, so it goes
/// through the client's failover.
const BATCHES_BEFORE_THE_KILL: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_when_its_node_is_killed() {
    let mut cluster = ProcessCluster::start(3, &["--slots", "1"]).await;
    // Every node a voter, so losing one leaves a majority.
    cluster.wait_for_voters(3).await;
    let urls = cluster.urls();
    let client = Client::new(&urls).unwrap();
    assert_eq!(
        client.current_node().as_str().trim_end_matches('/'),
        urls[0]
    );

    // Pi in batches of chunks, the way examples/pi.rs does it; the node the
    // client talks to dies once the first few batches are back, while one
    // may still be on its way, and before the others are sent.
    let chunks = 60u64;
    let per_chunk = 200_000u64;
    let batches: Vec<Vec<BatchCall>> = (0..chunks)
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|seeds| {
            seeds
                .iter()
                .map(|&seed| BatchCall {
                    function: "pi.sample".into(),
                    args: json!({ "samples": per_chunk, "seed": seed }),
                })
                .collect()
        })
        .collect();
    let jobs: Vec<u64> = {
        let mut ids = Vec::new();
        for n in 0..20 {
            let spec = JobSpec {
                lease_ms: 2_000,
                ..JobSpec::new("steps", json!({ "count": 2, "ms": 50 + n }))
            };
            ids.push(client.submit(spec).await.unwrap());
        }
        ids
    };

    let (kill_done, after_kill) = watch::channel(false);
    let mut results = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(index, calls)| {
            let client = client.clone();
            let mut after_kill = after_kill.clone();
            async move {
                if index >= BATCHES_BEFORE_THE_KILL {
                    after_kill
                        .wait_for(|killed| *killed)
                        .await
                        .expect("the test keeps the sender");
                }
                client.batch(calls, Some(Duration::from_secs(60))).await
            }
        })
        .buffer_unordered(BATCHES_BEFORE_THE_KILL);
    let mut inside = 0u64;
    let mut total = 0u64;
    let mut batches_done = 0;
    while let Some(batch) = results.next().await {
        for result in batch.expect("every batch resolves through some node") {
            let sample = result.expect("every chunk succeeds");
            inside += sample["inside"].as_u64().unwrap();
            total += sample["total"].as_u64().unwrap();
        }
        batches_done += 1;
        if batches_done == BATCHES_BEFORE_THE_KILL - 1 {
            cluster.nodes[0].kill();
            kill_done.send_replace(true);
        }
    }
    assert_eq!(total, chunks * per_chunk, "no chunk lost or counted twice");
    let expected: u64 = (0..chunks)
        .map(|seed| shoal_node::builtins::pi_inside(per_chunk, seed as u32))
        .sum();
    assert_eq!(inside, expected, "the exact count of the same seeds");
    assert_ne!(
        client.current_node().as_str().trim_end_matches('/'),
        urls[0],
        "the client moved off the dead node"
    );

    // Every job submitted before the kill completes, exactly once.
    for id in jobs {
        let job = client
            .wait(id)
            .await
            .expect("the job is followed to its end");
        assert_eq!(job.state, JobState::Succeeded, "job {id}: {job:?}");
        assert_eq!(job.result, Some(json!(2)));
    }
    let page = client.jobs(None, Some(1000), None).await.unwrap();
    assert_eq!(page.jobs.len(), 20, "no job submitted twice by a retry");
}
