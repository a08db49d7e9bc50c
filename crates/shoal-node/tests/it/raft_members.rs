//! Raft on a few nodes: the leader keeps `2 + ln N` voters (odd) and a
//! given number of learners; every other node holds no replica and reads,
//! writes and leases jobs through the members.

use serde_json::json;
use shoal_node::builtins;
use shoal_node::jobs::{JobSpec, JobState};
use shoal_node::testkit::{start_cluster, test_config, wait_until};
use shoal_node::{Node, NodeConfig, Read};
use std::collections::BTreeMap;
use std::time::Duration;

/// Five nodes, each labelled with its index, keeping no standby learner:
/// three voters and two nodes without a replica.
async fn five_nodes_three_voters() -> Vec<Node> {
    let nodes = start_cluster(5, |i, b| {
        builtins::register(b.config(NodeConfig {
            raft_standbys: 0,
            labels: BTreeMap::from([("index".to_string(), i.to_string())]),
            ..test_config(2)
        }))
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "3 voters, no learner",
        async || {
            let status = nodes[0].raft_status_of_cluster().await;
            match status {
                Some(s) if s.voters.len() == 3 && s.learners.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    nodes
}

/// The nodes that hold no replica, as they see themselves.
async fn outsiders(nodes: &[Node]) -> Vec<usize> {
    wait_until(
        Duration::from_secs(20),
        "two nodes outside Raft",
        async || {
            let outside: Vec<usize> = (0..nodes.len())
                .filter(|&i| !nodes[i].raft_status().member)
                .collect();
            if outside.len() == 2 {
                Ok(outside)
            } else {
                Err(format!("outside: {outside:?}"))
            }
        },
    )
    .await
}

fn labelled(index: usize, args: serde_json::Value) -> JobSpec {
    JobSpec {
        labels: BTreeMap::from([("index".to_string(), index.to_string())]),
        lease_ms: 5_000,
        ..JobSpec::new("echo", args)
    }
}

async fn wait_succeeded(node: &Node, id: u64) -> serde_json::Value {
    wait_until(Duration::from_secs(30), &format!("job {id}"), async || {
        let job = node
            .job(id, Read::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        match job {
            Some(job) if job.state == JobState::Succeeded => Ok(job.result.unwrap()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_replica_read_write_and_run_jobs_through_the_members() {
    let nodes = five_nodes_three_voters().await;
    let outside = outsiders(&nodes).await;
    let (a, b) = (&nodes[outside[0]], &nodes[outside[1]]);

    // Documents written through one outsider are read, linearizably and
    // not, through the other.
    a.db_create("places").await.unwrap();
    let (id, version) = a
        .db_insert("places", json!({"city": "Oslo"}))
        .await
        .unwrap();
    let version = b
        .db_replace("places", &id, json!({"city": "Bergen"}), Some(version))
        .await
        .unwrap();
    let read = a
        .db_get("places", &id, Read::Linearizable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.body, read.version),
        (json!({"city": "Bergen"}), version)
    );
    let stale = wait_until(Duration::from_secs(5), "a stale read", async || {
        match b.db_get("places", &id, Read::Stale).await {
            Ok(Some(doc)) if doc.version == version => Ok(doc.body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stale, json!({"city": "Bergen"}));

    // A job only an outsider may run is leased by it through the members.
    for &i in &outside {
        let id = nodes[0]
            .submit_job(labelled(i, json!({"on": i})))
            .await
            .unwrap();
        assert_eq!(wait_succeeded(&nodes[0], id).await, json!({"on": i}));
    }
    let counts = a.job_counts(Read::Linearizable).await.unwrap();
    assert_eq!(counts.get("succeeded"), Some(&2), "{counts:?}");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_replica_takes_a_dead_voters_place() {
    let nodes = five_nodes_three_voters().await;
    let outside = outsiders(&nodes).await;
    let status = nodes[0].raft_status_of_cluster().await.unwrap();
    let leader = status.leader.clone().unwrap();
    let victim = (0..nodes.len())
        .find(|&i| {
            let peer = nodes[i].peer_id().to_base58();
            status.voters.contains(&peer) && peer != leader
        })
        .unwrap();
    nodes[victim].shutdown().await;
    let alive: Vec<&Node> = (0..nodes.len())
        .filter(|&i| i != victim)
        .map(|i| &nodes[i])
        .collect();
    let outsider = &nodes[outside[0]];
    wait_until(Duration::from_secs(30), "a new third voter", async || {
        let status = outsider.raft_status_of_cluster().await;
        match status {
            Some(s)
                if s.voters.len() == 3
                    && !s.voters.contains(&nodes[victim].peer_id().to_base58()) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let members = alive.iter().filter(|n| n.raft_status().member).count();
    assert!(members >= 3, "{members} of the live nodes hold a replica");

    // Every live node still writes, and a job for each runs where it must.
    outsider.db_create("after").await.unwrap();
    for node in &alive {
        node.db_insert("after", json!({"from": node.node_id().0}))
            .await
            .unwrap();
    }
    let count = outsider
        .db_count("after", Default::default(), Read::Linearizable)
        .await;
    assert_eq!(count.unwrap(), alive.len());
    for i in (0..nodes.len()).filter(|&i| i != victim) {
        let id = outsider.submit_job(labelled(i, json!(i))).await.unwrap();
        assert_eq!(wait_succeeded(outsider, id).await, json!(i));
    }
    for node in alive {
        node.shutdown().await;
    }
}
