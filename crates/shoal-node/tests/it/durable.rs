//! Durable jobs and documents on in-process clusters.

use serde_json::{Map, json};
use shoal_node::builtins;
use shoal_node::jobs::{Job, JobSpec, JobState, ScriptSource};
use shoal_node::testkit::{start_cluster, test_config};
use shoal_node::{DataError, ErrorCode, Node, NodeConfig, Read};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal_node::testkit::wait_until;

fn spec(function: &str, args: serde_json::Value) -> JobSpec {
    JobSpec {
        function: function.to_string(),
        args,
        script: None,
        labels: BTreeMap::new(),
        resources: BTreeMap::new(),
        priority: 0,
        max_attempts: 3,
        lease_ms: 5_000,
        idempotency_key: None,
    }
}

async fn wait_finished(node: &Node, id: u64, within: Duration) -> Job {
    wait_until(within, &format!("job {id} to finish"), async || {
        let job = node
            .job(id, Read::Linearizable)
            .await
            .unwrap()
            .expect("job exists");
        if job.state.is_finished() {
            Ok(job)
        } else {
            Err(format!("{:?}", job.state))
        }
    })
    .await
}

async fn wait_for_voters(node: &Node, voters: usize) {
    wait_until(
        Duration::from_secs(20),
        &format!("{voters} voters"),
        async || {
            let status = node.raft_status();
            if status.voters.len() >= voters {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_at_once_share_log_entries_and_each_keeps_its_own_id_and_result() {
    let nodes = start_cluster(3, |_, b| builtins::register(b.config(test_config(2)))).await;
    wait_for_voters(&nodes[0], 3).await;
    const JOBS: usize = 300;
    let committed = |node: &Node| node.raft_status().committed.unwrap_or(0);
    let before = committed(&nodes[0]);
    let submitted = futures::future::join_all((0..JOBS).map(|i| {
        let submitter = &nodes[i % 3];
        async move { submitter.submit_job(spec("echo", json!({"n": i}))).await }
    }))
    .await;
    let entries = committed(&nodes[0]) - before;
    let ids: Vec<u64> = submitted.into_iter().map(Result::unwrap).collect();
    let distinct: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        JOBS,
        "every job has an id of its own: {ids:?}"
    );
    assert!(
        entries < JOBS as u64 / 2,
        "{JOBS} jobs submitted at once took {entries} log entries"
    );
    for (i, id) in ids.into_iter().enumerate() {
        let job = wait_finished(&nodes[2], id, Duration::from_secs(30)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.result, Some(json!({"n": i})), "job {id}");
        assert_eq!(job.attempt, 1, "ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_anywhere_complete_once_with_their_result() {
    let nodes = start_cluster(3, |_, b| builtins::register(b.config(test_config(2)))).await;
    wait_for_voters(&nodes[0], 3).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let submitter = &nodes[i % 3];
        ids.push((
            i,
            submitter
                .submit_job(spec("echo", json!({"n": i})))
                .await
                .unwrap(),
        ));
    }
    for (i, id) in ids {
        let job = wait_finished(&nodes[1], id, Duration::from_secs(30)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.result, Some(json!({"n": i})));
        assert_eq!(job.attempt, 1, "ran once");
    }
    let again = nodes[2]
        .submit_job(JobSpec {
            idempotency_key: Some("once".into()),
            ..spec("echo", json!(1))
        })
        .await
        .unwrap();
    let same = nodes[0]
        .submit_job(JobSpec {
            idempotency_key: Some("once".into()),
            ..spec("echo", json!(2))
        })
        .await
        .unwrap();
    assert_eq!(again, same, "an idempotency key names one job");
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_retry_then_dead_letter_and_cancel_stops_a_running_one() {
    let nodes = start_cluster(1, |_, b| builtins::register(b.config(test_config(2)))).await;
    let node = &nodes[0];
    let id = node
        .submit_job(JobSpec {
            max_attempts: 2,
            ..spec("no.such.function", json!(null))
        })
        .await
        .unwrap();
    let job = wait_finished(node, id, Duration::from_secs(20)).await;
    assert_eq!(job.state, JobState::DeadLetter);
    assert_eq!(job.attempt, 2);
    assert!(job.error.unwrap().contains("no.such.function"));

    let long = node.submit_job(spec("sleep", json!(60_000))).await.unwrap();
    wait_until(Duration::from_secs(10), "the job to start", async || {
        let job = node.job(long, Read::Linearizable).await.unwrap().unwrap();
        job.state == JobState::Running
    })
    .await;
    node.cancel_job(long).await.unwrap();
    let job = wait_finished(node, long, Duration::from_secs(5)).await;
    assert_eq!(job.state, JobState::Cancelled);
    let refused = node.cancel_job(long).await.unwrap_err();
    assert!(refused.to_string().contains("already"), "{refused}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_needing_a_label_waits_for_a_node_that_has_it() {
    let nodes = start_cluster(2, |_, b| builtins::register(b.config(test_config(1)))).await;
    let needs_gpu = JobSpec {
        labels: BTreeMap::from([("gpu".to_string(), "yes".to_string())]),
        ..spec("echo", json!("on the gpu node"))
    };
    let id = nodes[0].submit_job(needs_gpu).await.unwrap();
    // A runner leases the oldest jobs that fit it first: once a later job
    // without the label has run, the runners have passed the labelled one
    // over, not just not reached it yet.
    let later = nodes[0]
        .submit_job(spec("echo", json!("anywhere")))
        .await
        .unwrap();
    let later = wait_finished(&nodes[0], later, Duration::from_secs(30)).await;
    assert_eq!(later.state, JobState::Succeeded, "{later:?}");
    let job = nodes[0].job(id, Read::Linearizable).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "no node has the label yet");

    let gpu = builtins::register(Node::builder().config(NodeConfig {
        labels: BTreeMap::from([("gpu".to_string(), "yes".to_string())]),
        join: nodes[0].listen_addrs(),
        ..test_config(1)
    }))
    .start()
    .await
    .unwrap();
    let job = wait_finished(&nodes[1], id, Duration::from_secs(30)).await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.leased_by, None);
    gpu.shutdown().await;
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_from_every_node_lose_nothing() {
    let nodes = start_cluster(3, |_, b| b.config(test_config(1))).await;
    wait_for_voters(&nodes[0], 3).await;
    nodes[0].db_create("counters").await.unwrap();
    let (id, _) = nodes[1]
        .db_insert("counters", json!({"value": 0}))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for node in &nodes {
        let node = node.clone();
        let id = id.clone();
        writers.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..15 {
                loop {
                    let doc = node
                        .db_get("counters", &id, Read::Linearizable)
                        .await
                        .unwrap()
                        .unwrap();
                    let next = json!({"value": doc.body["value"].as_u64().unwrap() + 1});
                    match node
                        .db_replace("counters", &id, next, Some(doc.version))
                        .await
                    {
                        Ok(_) => break,
                        Err(DataError::Refused(e)) if e.code == ErrorCode::VersionConflict => {
                            conflicts += 1
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let doc = nodes[2]
        .db_get("counters", &id, Read::Linearizable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        doc.body,
        json!({"value": 45}),
        "every acknowledged increment is there"
    );
    assert_eq!(doc.version, 46);

    for i in 0..25 {
        nodes[i % 3]
            .db_insert(
                "counters",
                json!({"kind": if i % 2 == 0 { "even" } else { "odd" }, "i": i}),
            )
            .await
            .unwrap();
    }
    let filter: Map<_, _> = [("kind".to_string(), json!("even"))].into_iter().collect();
    assert_eq!(
        nodes[0]
            .db_count("counters", filter.clone(), Read::Linearizable)
            .await
            .unwrap(),
        13
    );
    let (page, next) = nodes[1]
        .db_find(
            "counters",
            filter.clone(),
            Vec::new(),
            10,
            None,
            Read::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    let (rest, end) = nodes[1]
        .db_find("counters", filter, Vec::new(), 10, next, Read::Linearizable)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(end.is_none());
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_says_so() {
    let nodes = start_cluster(3, |_, b| b.config(test_config(1))).await;
    wait_for_voters(&nodes[0], 3).await;
    nodes[0].db_create("things").await.unwrap();
    nodes[1].shutdown().await;
    nodes[2].shutdown().await;
    let started = Instant::now();
    let error = nodes[0]
        .db_insert("things", json!({"lost": false}))
        .await
        .unwrap_err();
    assert!(matches!(error, DataError::Consensus(_)), "{error}");
    assert!(error.to_string().contains("majority"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
    nodes[0].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_report_progress_from_rust_and_javascript() {
    let nodes = start_cluster(1, |_, b| builtins::register(b.config(test_config(2)))).await;
    let node = &nodes[0];
    let script = ScriptSource {
        name: "progress.js".to_string(),
        source: "shoal.register('js.steps', async (n) => {
            for (let i = 1; i <= n; i++) {
                await shoal.call('sleep', 150);
                shoal.progress(i / n, 'js step ' + i);
            }
            return 'done';
        });"
        .to_string(),
    };
    let native = node
        .submit_job(spec("steps", json!({"count": 5, "ms": 250})))
        .await
        .unwrap();
    let js = node
        .submit_job(JobSpec {
            script: Some(script),
            ..spec("js.steps", json!(5))
        })
        .await
        .unwrap();
    // The progress seen while the jobs run, read as a user would poll it.
    let mut seen: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    wait_until(Duration::from_secs(20), "both jobs to finish", async || {
        let mut done = true;
        for id in [native, js] {
            let job = node.job(id, Read::Linearizable).await.unwrap().unwrap();
            if job.state == JobState::Running && job.progress > 0.0 {
                seen.entry(id).or_default().push(job.message.clone());
            }
            done &= job.state.is_finished();
        }
        done
    })
    .await;
    assert!(
        seen[&native].iter().any(|m| m.starts_with("step ")),
        "{seen:?}"
    );
    assert!(
        seen[&js].iter().any(|m| m.starts_with("js step ")),
        "{seen:?}"
    );
    let js_job = node.job(js, Read::Linearizable).await.unwrap().unwrap();
    assert_eq!(js_job.result, Some(json!("done")));
    node.shutdown().await;
}

/// A node stopped while it runs a job, and started again on the same data
/// before anyone released its leases, runs that job again at once: the
/// lease still names it, so nobody else would until the lease ran out.
/// (The same look finds a lease whose answer was lost, when its leader
/// died holding the write and the next leader committed it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_its_data_runs_the_jobs_it_held_at_once() {
    const LEASE_MS: u64 = 120_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let start = async || {
        let config = NodeConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..test_config(2)
        };
        builtins::register(Node::builder().config(config))
            .start()
            .await
            .expect("node starts")
    };
    let node = start().await;
    let id = node
        .submit_job(JobSpec {
            lease_ms: LEASE_MS,
            ..spec("sleep", json!(1_500))
        })
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the job to run",
        async || match node.job(id, Read::Linearizable).await {
            Ok(Some(job)) if job.state == JobState::Running => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    node.shutdown().await;
    drop(node);

    let restarted = start().await;
    let started = Instant::now();
    let job = wait_finished(&restarted, id, Duration::from_secs(60)).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(
        job.attempt, 1,
        "the attempt it held ran again, not a new one after its lease ran out: {job:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(LEASE_MS / 4),
        "the job finished {:?} after the restart; its lease is {LEASE_MS} ms",
        started.elapsed()
    );
    restarted.shutdown().await;
}
