//! Durable jobs across real `shoal node` processes, with the Raft leader
//! killed by SIGKILL while jobs are submitted and running.

mod common;

use common::{NodeProcess, WAIT, driver};
use serde_json::json;
use shoal_node::jobs::{JobSpec, JobState};
use shoal_node::{Node, Read};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

fn echo_job(n: usize) -> JobSpec {
    JobSpec {
        function: "echo".to_string(),
        args: json!({ "n": n }),
        script: None,
        labels: BTreeMap::new(),
        resources: BTreeMap::new(),
        priority: 0,
        max_attempts: 5,
        lease_ms: 3_000,
        idempotency_key: Some(format!("job-{n}")),
    }
}

/// Submits until acknowledged: the idempotency key makes a retry of a write
/// that did commit return the same job.
async fn submit(client: &Node, n: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.submit_job(echo_job(n)).await {
            Ok(id) => return id,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(n, error = %e, "retrying a submission");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("job {n} never acknowledged: {e}"),
        }
    }
}

async fn voters(client: &Node) -> usize {
    client
        .raft_status_of_cluster()
        .await
        .map_or(0, |s| s.voters.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_job_and_it_catches_up_after_restart() {
    let first = NodeProcess::start(&["--slots", "2"]);
    let join = first.addr.to_string();
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(NodeProcess::start(&["--slots", "2", "--join", &join]));
    }
    let client = driver(&nodes[1].addr, None).await;
    assert_eq!(client.wait_for_peers(3, WAIT).await, 3);
    let deadline = Instant::now() + WAIT;
    while voters(&client).await < 3 {
        assert!(Instant::now() < deadline, "three voters never formed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let total = 1000;
    let mut acknowledged: HashMap<u64, usize> = HashMap::new();
    let mut killed = None;
    for batch in (0..total).collect::<Vec<_>>().chunks(50) {
        let submissions = batch.iter().map(|&n| {
            let client = client.clone();
            async move { (n, submit(&client, n).await) }
        });
        for (n, id) in futures::future::join_all(submissions).await {
            assert!(
                acknowledged.insert(id, n).is_none(),
                "two submissions got job {id}"
            );
        }
        if killed.is_none() && acknowledged.len() >= total / 3 {
            let leader = client
                .raft_status_of_cluster()
                .await
                .and_then(|s| s.leader)
                .expect("a leader");
            let index = nodes
                .iter()
                .position(|n| n.peer_id() == leader)
                .expect("the leader is one of ours");
            let victim = nodes.remove(index);
            let data = victim.kill_keeping_data();
            killed = Some((data, leader));
        }
    }
    assert_eq!(acknowledged.len(), total);

    // Every acknowledged job completes, once, with its own result.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = client
            .job_counts(Read::Linearizable)
            .await
            .unwrap_or_default();
        if counts.get("succeeded").copied().unwrap_or(0) == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all jobs finished: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = client
            .jobs(None, 500, after, Read::Linearizable)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for job in &page {
            let n = acknowledged[&job.id];
            assert_eq!(job.state, JobState::Succeeded);
            assert_eq!(
                job.result,
                Some(json!({ "n": n })),
                "job {} has its own result",
                job.id
            );
            seen += 1;
        }
    }
    assert_eq!(seen, total, "exactly the acknowledged jobs exist");

    // The killed node comes back with its data and catches up.
    let (data, old_leader) = killed.expect("the leader was killed");
    let survivor = nodes[0].addr.to_string();
    let restarted = NodeProcess::start_in(data, &["--slots", "2", "--join", &survivor]);
    assert_eq!(
        restarted.peer_id(),
        old_leader,
        "the identity survives a restart"
    );
    // Asked of a survivor: the restarted node itself may not know yet.
    let survivor_peer = nodes[0].peer_id().parse().unwrap();
    let target = client
        .raft_status_at(survivor_peer)
        .await
        .ok()
        .and_then(|s| s.committed)
        .expect("a survivor knows the commit index");
    let peer = restarted.peer_id().parse().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(status) = client.raft_status_at(peer).await
            && status.last_applied.unwrap_or(0) >= target
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up to {target}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.shutdown().await;
}
