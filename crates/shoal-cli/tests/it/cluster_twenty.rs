//! Twenty real `shoal node` processes on this machine, the short version of
//! `shoal bench cluster`: the cluster forms through one join address with
//! connections closing after a second idle, and no node takes another for
//! dead meanwhile (the start-up storm of 2026-12-01 declared thousands);
//! calls sent to one node run across many, the calls of a node SIGKILLed
//! in the middle of a batch run elsewhere, every survivor knows it dead,
//! and a job that needs a label runs on the one node that has it.

use crate::common::{ProcessCluster, WAIT, wait_for_finished_jobs, wait_until};
use futures::StreamExt;
use serde_json::json;
use shoal_client::{BatchCall, Client, JobSpec, JobState};
use shoal_proto::api::{Event, EventKind};
use std::collections::BTreeMap;
use std::time::Duration;

const NODES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_processes_spread_calls_survive_a_kill_and_place_a_job() {
    let mut own: Vec<&[&str]> = vec![&["--slots", "2"]; NODES];
    own[NODES - 1] = &["--slots", "2", "--label", "place=far"];
    // Connections idle for a second close, so calls open them on demand,
    // as they do at scale.
    let mut cluster = ProcessCluster::start_each(&["--idle-timeout-ms", "1000"], &own).await;
    let far = cluster.nodes[NODES - 1].peer_id();

    // Calls through one node's API: it has two slots, so most run elsewhere.
    let entry = Client::new([&cluster.nodes[0].http]).unwrap();
    let calls: Vec<BatchCall> = (0..60)
        .map(|_| BatchCall {
            function: "sleep".to_string(),
            args: json!(200),
        })
        .collect();
    for outcome in entry.batch(calls, None).await.unwrap() {
        assert_eq!(outcome.unwrap(), json!(200), "sleep answers its argument");
    }
    let mut ran_somewhere = 0;
    for node in &cluster.nodes[1..] {
        let status = Client::new([&node.http]).unwrap().status().await.unwrap();
        if status.calls.executed > 0 {
            ran_somewhere += 1;
        }
    }
    assert!(
        ran_somewhere >= 5,
        "60 calls through one node ran on only {ran_somewhere} of the other 19"
    );

    // Nobody was taken for dead, while the cluster formed or since.
    for node in &cluster.nodes {
        let deaths = deaths_seen(&Client::new([&node.http]).unwrap()).await;
        assert!(
            deaths.is_empty(),
            "{} saw live nodes die: {deaths:?}",
            node.http
        );
    }

    // SIGKILL one node while a batch runs on every node: its calls run
    // elsewhere, and every survivor learns it is gone.
    let long_calls: Vec<BatchCall> = (0..2 * NODES)
        .map(|i| BatchCall {
            function: "sleep".to_string(),
            args: json!(1500 + i),
        })
        .collect();
    let batch = tokio::spawn({
        let entry = entry.clone();
        async move { entry.batch(long_calls, None).await }
    });
    let victim_api = Client::new([&cluster.nodes[7].http]).unwrap();
    wait_until(WAIT, "node 7 to run calls of the batch", async || {
        let status = victim_api.status().await.map_err(|e| e.to_string())?;
        if status.running > 0 {
            Ok(())
        } else {
            Err(format!("running {}", status.running))
        }
    })
    .await;
    let victim = cluster.nodes[7].peer_id();
    cluster.nodes.remove(7).kill();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), batch)
        .await
        .expect("the batch resolves within a minute")
        .unwrap()
        .expect("the batch is answered");
    for (i, outcome) in outcomes.into_iter().enumerate() {
        assert_eq!(outcome.unwrap(), json!(1500 + i), "call {i}");
    }
    for node in &cluster.nodes {
        let client = Client::new([&node.http]).unwrap();
        let what = format!("{} to see {victim} dead", node.http);
        wait_until(WAIT, &what, async || {
            let view = client.cluster().await.map_err(|e| e.to_string())?;
            let alive = view
                .members
                .iter()
                .filter(|m| m.liveness == "alive")
                .count();
            let victim_alive = view
                .members
                .iter()
                .any(|m| m.peer_id == victim && m.liveness != "dead");
            if alive == NODES - 1 && !victim_alive {
                Ok(())
            } else {
                Err(format!(
                    "{alive} alive, the killed node alive: {victim_alive}"
                ))
            }
        })
        .await;
    }

    let deaths = deaths_seen(&entry).await;
    assert!(
        deaths
            .iter()
            .all(|death| death.node.as_deref() == Some(victim.as_str())),
        "{deaths:?}"
    );
    assert!(!deaths.is_empty(), "the node that was killed left");

    // A job that needs the label runs where it is, submitted anywhere.
    let anywhere = Client::new(cluster.urls()).unwrap();
    let spec = JobSpec {
        labels: BTreeMap::from([("place".to_string(), "far".to_string())]),
        idempotency_key: Some("far-job".to_string()),
        ..JobSpec::new("pi.sample", json!({"samples": 1000, "seed": 1}))
    };
    let id = anywhere.submit(spec).await.unwrap();
    let jobs = wait_for_finished_jobs(&anywhere, 1, Duration::from_secs(60)).await;
    let job = jobs.iter().find(|job| job.id == id).expect("the job");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let result = job.result.clone().expect("a result");
    assert_eq!(
        result["node"], far,
        "ran on a node without the label: {result}"
    );
}

/// The `node_left` events a node has reported so far.
async fn deaths_seen(client: &Client) -> Vec<Event> {
    let events = client.events(0).await.expect("the events stream");
    // The stream goes on with live events: the past ones come at once.
    let past = events.take_until(tokio::time::sleep(Duration::from_millis(500)));
    past.filter_map(async |event| event.ok().filter(|e| e.kind == EventKind::NodeLeft))
        .collect()
        .await
}
