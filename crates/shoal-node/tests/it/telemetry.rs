//! Telemetry a user watches: events for joins, departures, leader changes,
//! overload alerts and dead letters, and the metrics behind them.

use serde_json::json;
use shoal_node::builtins;
use shoal_node::jobs::JobSpec;
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{Node, NodeConfig};
use shoal_proto::api::{Event, EventKind};
use std::time::Duration;

use shoal_node::testkit::wait_until;

/// Waits until `node` has reported an event matching `wanted`.
async fn wait_for_event(node: &Node, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
    wait_until(
        Duration::from_secs(20),
        &format!("a {what} event"),
        async || {
            let events = node.events().since(0);
            match events.iter().find(|event| wanted(event)) {
                Some(event) => Ok(event.clone()),
                None => Err(format!("{events:#?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_joins_overload_dead_letters_and_departures() {
    let nodes = start_cluster(2, |_, b| {
        builtins::register(b.config(NodeConfig {
            alert_load: 2.0,
            ..test_config(1)
        }))
    })
    .await;
    let (watcher, worker) = (&nodes[0], &nodes[1]);
    let worker_id = worker.peer_id().to_base58();

    let joined = wait_for_event(watcher, "node_joined", |e| e.kind == EventKind::NodeJoined).await;
    assert_eq!(joined.node.as_deref(), Some(worker_id.as_str()));
    wait_for_event(watcher, "leader_changed", |e| {
        e.kind == EventKind::LeaderChanged
    })
    .await;

    // Eight slow calls queue up on the worker's single slot: 8 per slot.
    let load: Vec<_> = (0..8)
        .map(|_| {
            let worker = worker.clone();
            tokio::spawn(async move { worker.call("sleep", json!(400)).await })
        })
        .collect();
    let alert = wait_for_event(watcher, "overloaded", |e| {
        e.kind == EventKind::Overloaded && e.node.as_deref() == Some(worker_id.as_str())
    })
    .await;
    assert!(alert.message.contains("overloaded"), "{}", alert.message);
    for call in load {
        call.await
            .unwrap()
            .expect("the queued calls still complete");
    }
    wait_for_event(watcher, "load_normal", |e| e.kind == EventKind::LoadNormal).await;

    let doomed = JobSpec {
        max_attempts: 1,
        ..JobSpec::new("no.such.function", json!(null))
    };
    let id = watcher.submit_job(doomed).await.unwrap();
    let dead = wait_for_event(watcher, "job_dead_lettered", |e| {
        e.kind == EventKind::JobDeadLettered
    })
    .await;
    assert!(
        dead.message.contains(&format!("job {id}")),
        "{}",
        dead.message
    );

    worker.shutdown().await;
    let left = wait_for_event(watcher, "node_left", |e| e.kind == EventKind::NodeLeft).await;
    assert_eq!(left.node.as_deref(), Some(worker_id.as_str()));
    let seqs: Vec<u64> = watcher.events().since(0).iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events are numbered in order"
    );

    let metrics = watcher.metrics_text();
    assert!(
        metrics.contains("shoal_jobs{state=\"dead_letter\"} 1"),
        "{metrics}"
    );
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_reports_its_cpu_and_memory() {
    let nodes = start_cluster(2, |_, builder| {
        builtins::register(builder.config(test_config(1)))
    })
    .await;
    // Keep a core busy until the figures show it. Both nodes live in this
    // process, so both report its CPU.
    let caller = nodes[0].clone();
    let busy = tokio::spawn(async move {
        for seed in 0.. {
            let args = json!({"samples": 20_000_000, "seed": seed});
            caller.call("pi.sample", args).await.expect("the call runs");
        }
    });
    wait_until(
        Duration::from_secs(20),
        "both nodes to report a busy core and their memory",
        async || {
            let view = nodes[1].cluster_view().await;
            let reported = view
                .members
                .iter()
                .all(|m| m.memory_bytes > 1_000_000 && m.cpu_percent > 30.0);
            let status = nodes[1].status();
            if view.members.len() == 2 && reported && status.memory_bytes > 1_000_000 {
                Ok(())
            } else {
                let figures: Vec<_> = view
                    .members
                    .iter()
                    .map(|m| (m.cpu_percent, m.memory_bytes))
                    .collect();
                Err(format!("cpu %, memory: {figures:?}"))
            }
        },
    )
    .await;
    busy.abort();
    let metrics = nodes[0].metrics_text();
    for name in [
        "shoal_process_cpu_cores ",
        "shoal_process_resident_memory_bytes ",
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(name)),
            "{name} in\n{metrics}"
        );
    }
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_running_its_first_call_reports_how_long_it_has_run() {
    let nodes = start_cluster(2, |_, builder| {
        builtins::register(builder.config(test_config(1)))
    })
    .await;
    // Its first call: no run has finished, so no mean yet. A report of a
    // busy node with no time said nothing of when it would be free, and
    // the others took its backlog as lasting until its next report.
    let runner = nodes[1].clone();
    let first = tokio::spawn(async move { runner.call("sleep", json!(3_000)).await });
    let runner_id = nodes[1].peer_id().to_string();
    wait_until(
        Duration::from_millis(2_500),
        "the other node to hear it has run its call for at least 200 ms",
        async || {
            let view = nodes[0].cluster_view().await;
            let member = view.members.iter().find(|m| m.peer_id == runner_id);
            match member {
                Some(m) if m.running == 1 && m.mean_task_us >= 200_000 => Ok(()),
                Some(m) => Err(format!(
                    "running {}, mean_task_us {}",
                    m.running, m.mean_task_us
                )),
                None => Err("not in the view".to_string()),
            }
        },
    )
    .await;
    first.await.unwrap().expect("the sleep call returns");
    for node in &nodes {
        node.shutdown().await;
    }
}
