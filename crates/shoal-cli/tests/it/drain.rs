//! A node that stops gracefully hands its work to the others: three real
//! `shoal node` processes run one-attempt `sleep` jobs with a long lease,
//! one that holds some is stopped with SIGTERM (or `shoal drain`), and
//! its jobs finish elsewhere at once — no lease runs out, no attempt is
//! spent — its queue items are popped from the others, it exits 0, and
//! the cluster keeps a leader.
//!
//! Figures go to stderr (`cargo test … drain -- --nocapture`).

use crate::common::{ProcessCluster, WAIT, all_jobs, wait_for_finished_jobs, wait_until};
use serde_json::json;
use shoal_client::{Client, JobSpec, JobState};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const JOBS: usize = 6;
const SLEEP_MS: u64 = 4_000;
/// A lease far longer than the test may take: a job that waited for it
/// to run out could not finish in time.
const LEASE_MS: u64 = 120_000;
/// The grace running work gets before it is handed back: shorter than a
/// job, so the drain hands jobs back rather than waiting for them.
const GRACE: &str = "1s";
const QUEUE_ITEMS: usize = 50;

async fn submit_sleepers(client: &Client) -> Vec<u64> {
    let submissions = (0..JOBS).map(|n| {
        client.submit(JobSpec {
            idempotency_key: Some(format!("sleeper-{n}")),
            max_attempts: 1,
            lease_ms: LEASE_MS,
            ..JobSpec::new("sleep", json!(SLEEP_MS))
        })
    });
    futures::future::try_join_all(submissions).await.unwrap()
}

/// A node holding running jobs (the leader if `leader`), and those jobs.
async fn holder_of_running_jobs(client: &Client, leader: Option<&str>) -> (String, Vec<u64>) {
    wait_until(WAIT, "a node to hold running jobs", async || {
        let jobs = all_jobs(client).await?;
        let mut holders = BTreeSet::new();
        for job in &jobs {
            if let (JobState::Running, Some(node)) = (job.state, &job.leased_by) {
                holders.insert(node.clone());
            }
        }
        let holder = match leader {
            Some(leader) => holders.get(leader).cloned(),
            None => holders.into_iter().next(),
        }
        .ok_or_else(|| format!("{} jobs, none running where wanted", jobs.len()))?;
        let held = jobs
            .iter()
            .filter(|j| j.state == JobState::Running && j.leased_by.as_ref() == Some(&holder))
            .map(|j| j.id)
            .collect();
        Ok::<_, String>((holder, held))
    })
    .await
}

/// Every job succeeded on its one attempt budget; those `held` by the
/// drained node were handed back once and ran again elsewhere. Returns
/// when the last of them finished (ms since the epoch).
async fn check_jobs(survivors: &Client, held: &[u64]) -> u64 {
    let jobs = wait_for_finished_jobs(survivors, JOBS, Duration::from_secs(60)).await;
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "job {job:?}");
    }
    let handed: Vec<_> = jobs.iter().filter(|j| held.contains(&j.id)).collect();
    assert!(!handed.is_empty());
    for job in &handed {
        assert_eq!(job.handed_back, 1, "job {job:?}");
        assert_eq!(job.attempt, 2, "job {job:?}");
    }
    handed.iter().filter_map(|j| j.finished_ms).max().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_nodes_jobs_and_queue_items_to_the_others_at_once() {
    let mut cluster = ProcessCluster::start(3, &["--slots", "4", "--drain-timeout", GRACE]).await;
    cluster.wait_for_voters(3).await;
    let client = Client::new(cluster.urls()).unwrap();
    submit_sleepers(&client).await;
    let (victim_id, held) = holder_of_running_jobs(&client, None).await;
    let index = cluster.index_of(&victim_id);
    let victim_api = Client::new([cluster.nodes[index].http.clone()]).unwrap();
    let items = (0..QUEUE_ITEMS).map(|n| json!(n));
    victim_api.queue("drained").push(items).await.unwrap();

    let mut victim = cluster.nodes.remove(index);
    let (terminated, terminated_ms) = (Instant::now(), now_ms());
    victim.terminate();
    let status = victim
        .wait_exit(Duration::from_secs(30))
        .expect("a drained node exits");
    let exited_after = terminated.elapsed();
    assert!(status.success(), "exit status {status:?}");
    let log = victim.log_text();
    assert!(log.contains("drained"), "{log}");

    let survivors = Client::new(cluster.urls()).unwrap();
    let last_finished_ms = check_jobs(&survivors, &held).await;
    let queue = survivors.queue("drained");
    let mut popped = BTreeSet::new();
    for _ in 0..QUEUE_ITEMS {
        let item = queue.pop(Duration::from_secs(5)).await.unwrap();
        popped.insert(item.and_then(|item| item.as_u64()).unwrap());
    }
    assert_eq!(
        popped,
        (0..QUEUE_ITEMS as u64).collect(),
        "every item, once"
    );
    assert_eq!(queue.size().await.unwrap(), 0, "and nothing more");

    let after = survivors
        .submit(JobSpec::new("sleep", json!(1)))
        .await
        .expect("the cluster still takes writes");
    let job = wait_until(WAIT, "a job after the drain", async || {
        let job = survivors.job(after).await.map_err(|e| e.to_string())?;
        job.state
            .is_finished()
            .then_some(job)
            .ok_or("not yet".to_string())
    })
    .await;
    assert_eq!(job.state, JobState::Succeeded);
    eprintln!(
        "drain on SIGTERM ({} running jobs, {QUEUE_ITEMS} queue items): exited after {} ms, \
         its jobs finished elsewhere {} ms after the SIGTERM (each sleeps {SLEEP_MS} ms; \
         the lease is {LEASE_MS} ms)",
        held.len(),
        exited_after.as_millis(),
        last_finished_ms.saturating_sub(terminated_ms),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_drain_moves_the_leaders_seat_and_work_and_stops_it() {
    let mut cluster = ProcessCluster::start(3, &["--slots", "4"]).await;
    cluster.wait_for_voters(3).await;
    let client = Client::new(cluster.urls()).unwrap();
    let leader = client.cluster().await.unwrap().raft.leader.unwrap();
    submit_sleepers(&client).await;
    let (_, held) = holder_of_running_jobs(&client, Some(&leader)).await;
    let index = cluster.index_of(&leader);
    let mut victim = cluster.nodes.remove(index);

    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["drain", "--node", &victim.http, "--grace", GRACE])
        .output()
        .expect("shoal drain runs");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("drained in"), "{stdout}\n{stderr}");
    assert!(stdout.contains("Raft seat given up"), "{stdout}\n{stderr}");
    let status = victim
        .wait_exit(Duration::from_secs(15))
        .expect("the drained node stops");
    assert!(status.success(), "exit status {status:?}");

    let survivors = Client::new(cluster.urls()).unwrap();
    let new_leader = wait_until(WAIT, "a new leader", async || {
        let raft = survivors.cluster().await.map_err(|e| e.to_string())?.raft;
        match &raft.leader {
            Some(now) if *now != leader => Ok(now.clone()),
            _ => Err(format!("{raft:?}")),
        }
    })
    .await;
    check_jobs(&survivors, &held).await;
    eprintln!(
        "shoal drain of the leader: {} ms until it stopped; {new_leader} leads",
        took.as_millis()
    );
}
