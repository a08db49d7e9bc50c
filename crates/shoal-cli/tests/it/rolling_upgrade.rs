//! A rolling upgrade across real `shoal node` processes, one pretending to
//! run the next release (the hidden `--simulate-protocol-version`): it
//! joins, runs a job and is SIGKILLed while the cluster keeps serving; a
//! node two releases ahead is refused, and the log says why.

use crate::common::{NodeProcess, ProcessCluster, WAIT, wait_until};
use serde_json::{Value, json};
use shoal_client::{Client, JobSpec, JobState, LogLevel, Member};
use shoal_proto::version::PROTOCOL_VERSION;
use std::collections::BTreeMap;

fn pi_job(labels: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..JobSpec::new("pi.sample", json!({"samples": 1000, "seed": 1}))
    }
}

/// Runs `spec` to its end; returns the node that ran it.
async fn run(client: &Client, spec: JobSpec) -> Value {
    let id = client.submit(spec).await.expect("job accepted");
    let job = client.wait(id).await.expect("job followed");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    job.result.expect("a result")["node"].clone()
}

async fn member(client: &Client, peer_id: &str) -> Option<Member> {
    let view = client.cluster().await.ok()?;
    view.members.into_iter().find(|m| m.peer_id == peer_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_release_serves_until_killed_and_one_further_ahead_is_refused() {
    let next = (PROTOCOL_VERSION + 1).to_string();
    let next_args: &[&str] = &[
        "--simulate-protocol-version",
        &next,
        "--label",
        "release=next",
    ];
    let mut cluster = ProcessCluster::start_each(&["--slots", "1"], &[&[], &[], next_args]).await;
    let next_id = cluster.nodes[2].peer_id();
    let old = Client::new([cluster.nodes[0].http.as_str()]).unwrap();
    let status = Client::new([cluster.nodes[2].http.as_str()])
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.protocol_version, PROTOCOL_VERSION + 1);
    let listed = member(&old, &next_id).await.expect("listed");
    assert_eq!(
        (listed.liveness.as_str(), listed.protocol_version),
        ("alive", PROTOCOL_VERSION + 1)
    );

    // A job only it may run, submitted to an old node, runs there.
    let ran_on = run(&old, pi_job(&[("release", "next")])).await;
    assert_eq!(ran_on, json!(next_id));

    // Killed; the old nodes carry on.
    cluster.nodes[2].kill();
    wait_until(
        WAIT,
        "the old nodes to see it dead",
        async || match member(&old, &next_id).await {
            Some(m) if m.liveness == "dead" => Ok(()),
            seen => Err(format!("{seen:?}")),
        },
    )
    .await;
    let ran_on = run(&old, pi_job(&[])).await;
    assert_ne!(ran_on, json!(next_id));

    // Two releases ahead: refused, and the warning says why.
    let far = (PROTOCOL_VERSION + 2).to_string();
    let join = cluster.nodes[0].addr.to_string();
    let far_node = NodeProcess::start(&["--simulate-protocol-version", &far, "--join", &join]);
    let far_id = far_node.peer_id();
    let warning = wait_until(WAIT, "a warning about the refused node", async || {
        let logs = old.logs(LogLevel::Warn).await.map_err(|e| e.to_string())?;
        let found = logs
            .into_iter()
            .find(|line| line.message.contains(&far_id) && line.message.contains("refused"));
        found.ok_or_else(|| "not yet".to_string())
    })
    .await;
    let message = &warning.message;
    assert!(
        message.contains(&format!("protocol version {far}"))
            && message.contains("one release at a time")
            && message.contains("node_refused"),
        "{message}"
    );
    let listed = member(&old, &far_id).await.expect("listed");
    assert_eq!(
        (listed.liveness.as_str(), listed.protocol_version),
        ("incompatible", PROTOCOL_VERSION + 2)
    );
    let ran_on = run(&old, pi_job(&[])).await;
    assert_ne!(ran_on, json!(far_id));
}
