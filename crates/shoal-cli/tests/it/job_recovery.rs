//! A killed node's durable jobs run again soon, not when their lease runs
//! out: three real `shoal node` processes run `sleep` jobs with the
//! default 30 s lease, one that holds leases is SIGKILLed (the Raft leader
//! in one test, a follower in the other), and every job still succeeds
//! exactly once, those of the killed node long before 30 s have passed.
//!
//! Each test prints its figures (`cargo test … -- --nocapture`): from the
//! kill to the last re-run job leased again and finished.

use crate::common::{ProcessCluster, WAIT, all_jobs, wait_for_finished_jobs, wait_until};
use serde_json::json;
use shoal_client::{Client, Job, JobSpec, JobState};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Jobs in all, and how long each sleeps: long enough that the killed node
/// is caught holding running ones.
const JOBS: usize = 60;
const SLEEP_MS: u64 = 2_000;
/// Slots per node: the two survivors together run every job at once, so
/// the figure measures recovery, not a queue.
const SLOTS: &str = "40";
/// Generous on a loaded 2-core machine, and still far below the 30 s lease
/// a job of a dead node waited for before the leader released its leases.
const RERUN_WITHIN_MS: u64 = 20_000;

enum Victim {
    Leader,
    Follower,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Running jobs per lease holder.
async fn leases_by_node(client: &Client) -> Result<BTreeMap<String, Vec<u64>>, String> {
    let mut held: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for job in all_jobs(client).await? {
        if let (JobState::Running, Some(node)) = (job.state, job.leased_by) {
            held.entry(node).or_default().push(job.id);
        }
    }
    Ok(held)
}

/// When the attempt that finished `job` was leased: its lease was never
/// renewed (a renewal comes after a third of the lease, 10 s; the job
/// sleeps 2 s).
fn last_leased_ms(job: &Job) -> u64 {
    job.lease_expires_ms.saturating_sub(job.spec.lease_ms)
}

async fn kill_a_node_while_its_jobs_run(victim: Victim) {
    let mut cluster = ProcessCluster::start(3, &["--slots", SLOTS]).await;
    cluster.wait_for_voters(3).await;
    let client = Client::new(cluster.urls()).unwrap();
    let leader = client
        .cluster()
        .await
        .unwrap()
        .raft
        .leader
        .expect("a formed cluster has a leader");

    // In waves, so every node's runner (each looks every 50 ms) finds some.
    let mut ids = Vec::new();
    for wave in (0..JOBS).collect::<Vec<_>>().chunks(10) {
        let submissions = wave.iter().map(|n| {
            client.submit(JobSpec {
                idempotency_key: Some(format!("sleep-{n}")),
                ..JobSpec::new("sleep", json!(SLEEP_MS))
            })
        });
        ids.extend(futures::future::try_join_all(submissions).await.unwrap());
    }
    let (victim_id, held) = wait_until(WAIT, "the node to kill to hold running jobs", async || {
        let held = leases_by_node(&client).await?;
        let candidate = match victim {
            Victim::Leader => held.get_key_value(&leader),
            Victim::Follower => held
                .iter()
                .filter(|(node, _)| **node != leader)
                .max_by_key(|(_, jobs)| jobs.len()),
        };
        candidate
            .map(|(node, jobs)| (node.clone(), jobs.clone()))
            .ok_or_else(|| format!("leases: {held:?}"))
    })
    .await;
    let index = cluster.index_of(&victim_id);
    let killed_at_ms = now_ms();
    cluster.nodes[index].kill();
    cluster.nodes.remove(index);

    let survivors = Client::new(cluster.urls()).unwrap();
    let jobs = wait_for_finished_jobs(&survivors, JOBS, Duration::from_secs(90)).await;
    let mut ran = jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    ran.sort_unstable();
    ids.sort_unstable();
    assert_eq!(ran, ids, "exactly the submitted jobs exist");
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "job {job:?}");
        assert_eq!(job.result, Some(json!(SLEEP_MS)), "job {} result", job.id);
    }
    let by_id: BTreeMap<u64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    for id in &held {
        let job = by_id[id];
        let finished_ms = job.finished_ms.expect("a succeeded job has finished");
        assert!(
            finished_ms <= killed_at_ms || job.attempt >= 2,
            "job {id} was running on the killed node, yet its first attempt succeeded after the kill: {job:?}"
        );
    }
    let rerun: Vec<&Job> = jobs.iter().filter(|j| j.attempt >= 2).collect();
    assert!(!rerun.is_empty(), "some job of the killed node ran again");
    let since_kill = |at_ms: u64| at_ms.saturating_sub(killed_at_ms);
    let last_leased = rerun.iter().map(|j| last_leased_ms(j)).max().unwrap();
    let last_rerun_finished = rerun.iter().filter_map(|j| j.finished_ms).max().unwrap();
    let all_finished = jobs.iter().filter_map(|j| j.finished_ms).max().unwrap();
    let late: Vec<String> = rerun
        .iter()
        .filter(|j| {
            j.finished_ms
                .is_some_and(|at| since_kill(at) >= RERUN_WITHIN_MS)
        })
        .map(|j| {
            format!(
                "job {} attempt {} leased {} ms after the kill, finished {} ms after",
                j.id,
                j.attempt,
                since_kill(last_leased_ms(j)),
                since_kill(j.finished_ms.unwrap_or_default())
            )
        })
        .collect();
    assert!(
        since_kill(last_rerun_finished) < RERUN_WITHIN_MS,
        "the killed node's jobs finished {} ms after the kill; their lease is {} ms; late: {late:?}",
        since_kill(last_rerun_finished),
        JobSpec::default().lease_ms
    );
    let role = match victim {
        Victim::Leader => "leader",
        Victim::Follower => "follower",
    };
    eprintln!(
        "recovery ({role} killed holding {} running jobs; {} jobs ran again): \
         kill → last re-run leased {} ms, → last re-run finished {} ms \
         (each sleeps {SLEEP_MS} ms), → every job finished {} ms",
        held.len(),
        rerun.len(),
        since_kill(last_leased),
        since_kill(last_rerun_finished),
        since_kill(all_finished),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leaders_jobs_run_again_long_before_their_lease_runs_out() {
    kill_a_node_while_its_jobs_run(Victim::Leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_followers_jobs_run_again_long_before_their_lease_runs_out() {
    kill_a_node_while_its_jobs_run(Victim::Follower).await;
}
