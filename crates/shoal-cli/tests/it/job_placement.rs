//! Durable jobs with requirements across real `shoal node` processes: a
//! job's function runs only on a node whose labels and resources meet its
//! spec, also while that node is busy with other work, and a node's
//! resources are held while its jobs run (a `gpu=1` node runs one `gpu=1`
//! job at a time).

use crate::common::{ProcessCluster, wait_for_finished_jobs};
use serde_json::{Value, json};
use shoal_client::{BatchCall, Client, Job, JobSpec, JobState, ScriptSource};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Enough for every job of these tests on a loaded 2-core machine; they
/// take a few seconds when it is idle.
const JOBS_WITHIN: Duration = Duration::from_secs(90);

/// A client of every node, so submissions arrive anywhere.
fn client_of(cluster: &ProcessCluster) -> Client {
    Client::new(cluster.urls()).unwrap()
}

fn job(function: &str, args: Value, key: String) -> JobSpec {
    JobSpec {
        idempotency_key: Some(key),
        ..JobSpec::new(function, args)
    }
}

async fn submit_all(client: &Client, specs: Vec<JobSpec>) -> Vec<u64> {
    let submissions = specs.into_iter().map(|spec| client.submit(spec));
    futures::future::try_join_all(submissions).await.unwrap()
}

/// The succeeded job `id`, or a failure saying how it ended.
fn succeeded(jobs: &HashMap<u64, &Job>, id: u64) -> Value {
    let job = jobs[&id];
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "job {id} ({}) ended {:?}: {:?}",
        job.spec.function,
        job.state,
        job.error
    );
    job.result.clone().expect("a succeeded job has a result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_jobs_run_only_on_the_labelled_node_while_the_cluster_is_busy() {
    let labelled_args: &[&str] = &["--slots", "1", "--label", "printer=color"];
    let cluster =
        ProcessCluster::start_each(&[], &[&["--slots", "2"], labelled_args, &["--slots", "2"]])
            .await;
    let printer = cluster.nodes[1].peer_id();
    let client = client_of(&cluster);

    // Busy work: plain calls sent to the labelled node (it runs them while
    // its one slot is free, so its labelled jobs wait for the slot) and
    // label-free jobs, which may run anywhere.
    let plain_calls = (0..300)
        .map(|seed| BatchCall {
            function: "pi.sample".to_string(),
            args: json!({ "samples": 2_000_000, "seed": seed }),
        })
        .collect();
    let printer_api = Client::new([&cluster.nodes[1].http]).unwrap();
    let busy = tokio::spawn(async move { printer_api.batch(plain_calls, None).await });
    let free_jobs: Vec<JobSpec> = (0..60)
        .map(|seed| {
            let args = json!({ "samples": 2_000_000, "seed": 1000 + seed });
            job("pi.sample", args, format!("free-{seed}"))
        })
        .collect();
    let colour_jobs: Vec<JobSpec> = (0..30)
        .map(|seed| JobSpec {
            labels: BTreeMap::from([("printer".to_string(), "color".to_string())]),
            ..job(
                "pi.sample",
                json!({ "samples": 2_000_000, "seed": seed }),
                format!("colour-{seed}"),
            )
        })
        .collect();
    let (free_ids, colour_ids) = tokio::join!(
        submit_all(&client, free_jobs),
        submit_all(&client, colour_jobs)
    );

    let finished = wait_for_finished_jobs(&client, 90, JOBS_WITHIN).await;
    let jobs: HashMap<u64, &Job> = finished.iter().map(|j| (j.id, j)).collect();
    for &id in &colour_ids {
        let result = succeeded(&jobs, id);
        assert_eq!(
            result["node"], printer,
            "colour job {id} ran on a node without printer=color: {result}"
        );
    }
    let mut free_per_node: BTreeMap<String, usize> = BTreeMap::new();
    for &id in &free_ids {
        let result = succeeded(&jobs, id);
        *free_per_node
            .entry(result["node"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let calls = busy.await.unwrap().expect("the plain calls were answered");
    assert!(calls.iter().all(Result::is_ok), "every plain call succeeds");
    eprintln!("label-free jobs per node: {free_per_node:?} (the printer is {printer})");
}

/// A job that holds its node's GPU while it waits 300 ms, and says when
/// it started and finished by that node's clock.
const RENDER_JS: &str = r#"
shoal.register('render', async (args) => {
    const started = Date.now();
    await shoal.call('sleep', args.ms);
    return { started, finished: Date.now(), node: shoal.node };
});
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_node_runs_one_gpu_job_at_a_time() {
    let gpu_args: &[&str] = &["--slots", "4", "--resource", "gpu=1"];
    let cluster =
        ProcessCluster::start_each(&[], &[&["--slots", "2"], gpu_args, &["--slots", "2"]]).await;
    let gpu_node = cluster.nodes[1].peer_id();
    let client = client_of(&cluster);

    let render = ScriptSource {
        name: "render.js".to_string(),
        source: RENDER_JS.to_string(),
    };
    let gpu_jobs: Vec<JobSpec> = (0..8)
        .map(|n| JobSpec {
            script: Some(render.clone()),
            resources: BTreeMap::from([("gpu".to_string(), 1)]),
            ..job("render", json!({ "ms": 300 }), format!("gpu-{n}"))
        })
        .collect();
    // Label-free work beside them, which the GPU node's free slots may take.
    let other_jobs: Vec<JobSpec> = (0..24)
        .map(|n| job("sleep", json!(300), format!("other-{n}")))
        .collect();
    let (gpu_ids, other_ids) = tokio::join!(
        submit_all(&client, gpu_jobs),
        submit_all(&client, other_jobs)
    );

    let finished = wait_for_finished_jobs(&client, 32, JOBS_WITHIN).await;
    let jobs: HashMap<u64, &Job> = finished.iter().map(|j| (j.id, j)).collect();
    for &id in &other_ids {
        succeeded(&jobs, id);
    }
    let mut intervals: Vec<(u64, u64, u64)> = gpu_ids
        .iter()
        .map(|&id| {
            let result = succeeded(&jobs, id);
            assert_eq!(
                result["node"], gpu_node,
                "GPU job {id} ran on a node without a GPU"
            );
            let at = |field: &str| result[field].as_u64().expect("a time in ms");
            (at("started"), at("finished"), id)
        })
        .collect();
    intervals.sort();
    for pair in intervals.windows(2) {
        let ((_, first_finished, first), (second_started, _, second)) = (pair[0], pair[1]);
        assert!(
            second_started >= first_finished,
            "GPU jobs {first} and {second} ran at once on the one GPU: {intervals:?}"
        );
    }
}
