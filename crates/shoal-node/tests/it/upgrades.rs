//! Rolling upgrades, with nodes that pretend to run another release
//! (`NodeConfig::protocol_version`): a node of the next release joins a
//! cluster, serves calls and jobs both ways and leaves; while a node of the
//! previous release is there, the log stays in its format; a node two
//! releases ahead is refused, says why, and breaks nothing.

use serde_json::{Value, json};
use shoal_node::cluster::peers::Liveness;
use shoal_node::jobs::{JobSpec, JobState};
use shoal_node::testkit::{start_cluster, test_config, wait_until};
use shoal_node::{ErrorCode, Node, NodeBuilder, NodeConfig, Read, builtins};
use shoal_proto::api::EventKind;
use shoal_proto::version::PROTOCOL_VERSION;
use std::collections::BTreeMap;
use std::time::Duration;

/// Long enough for a loaded test machine; anything longer is a hang.
const WAIT: Duration = Duration::from_secs(30);

/// A node of this release, offering `old.whoami`.
fn this_release(_: usize, builder: NodeBuilder) -> NodeBuilder {
    builtins::register(builder.config(test_config(1))).register("old.whoami", whoami)
}

async fn whoami(ctx: shoal_node::CallContext, _args: Value) -> shoal_node::FnResult {
    Ok(json!(ctx.node_id().0))
}

/// Starts a node that says it speaks `version`, joined to `via`, offering
/// `function` and labelled `release=<version>`.
async fn release(version: u32, via: &Node, function: &str) -> Node {
    let config = NodeConfig {
        protocol_version: version,
        join: via.listen_addrs(),
        labels: BTreeMap::from([("release".to_string(), version.to_string())]),
        ..test_config(1)
    };
    builtins::register(Node::builder().config(config))
        .register(function, whoami)
        .start()
        .await
        .expect("node starts")
}

fn job(function: &str, labels: &[(&str, String)]) -> JobSpec {
    JobSpec {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..JobSpec::new(function, Value::Null)
    }
}

/// Submits `spec` on `via` and waits for its result, read on `reader`.
async fn run_job(via: &Node, reader: &Node, spec: JobSpec) -> Value {
    let id = via.submit_job(spec).await.expect("job accepted");
    let job = wait_until(WAIT, &format!("job {id} to finish"), async || match reader
        .job(id, Read::Linearizable)
        .await
    {
        Ok(Some(job)) if job.state.is_finished() => Ok(job),
        seen => Err(format!("{seen:?}")),
    })
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    job.result.expect("a succeeded job has a result")
}

fn refusals(node: &Node) -> Vec<shoal_proto::api::Event> {
    node.events()
        .since(0)
        .into_iter()
        .filter(|event| event.kind == EventKind::NodeRefused)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_next_release_joins_serves_and_leaves() {
    let old = start_cluster(3, this_release).await;
    let next_version = PROTOCOL_VERSION + 1;
    let next = release(next_version, &old[0], "next.whoami").await;
    let next_id = next.peer_id().to_base58();

    for node in &old {
        wait_until(WAIT, "the old nodes to count the new one in", async || {
            let peers = node.peers();
            match peers.iter().find(|p| p.peer_id == next.peer_id()) {
                Some(p) if p.liveness == Liveness::Alive && p.load.version == next_version => {
                    Ok(())
                }
                seen => Err(format!("{seen:?}")),
            }
        })
        .await;
    }
    assert_eq!(
        next.wait_for_peers(3, WAIT).await,
        3,
        "it counts the old ones in"
    );
    let view = old[0].cluster_view().await;
    let listed = view.members.iter().find(|m| m.peer_id == next_id).unwrap();
    assert_eq!(
        (listed.liveness.as_str(), listed.protocol_version),
        ("alive", next_version)
    );

    // Calls both ways.
    let ran_on = old[1].call("next.whoami", Value::Null).await.unwrap();
    assert_eq!(ran_on, json!(next_id), "an old node's call runs on it");
    let ran_on = next.call("old.whoami", Value::Null).await.unwrap();
    assert!(
        old.iter().any(|n| json!(n.peer_id().to_base58()) == ran_on),
        "its call runs on an old node: {ran_on}"
    );

    // It takes a replica of the log, and durable jobs run both ways: one
    // submitted on an old node runs on it, one it submits runs on an old one.
    wait_until(WAIT, "the new node to hold a replica", async || {
        let raft = next.raft_status();
        raft.member.then_some(()).ok_or(format!("{raft:?}"))
    })
    .await;
    let pinned = [("release", next_version.to_string())];
    let result = run_job(&old[2], &next, job("next.whoami", &pinned)).await;
    assert_eq!(result, json!(next_id));
    let result = run_job(&next, &old[0], job("old.whoami", &[])).await;
    assert_ne!(result, json!(next_id));

    // It leaves; the old nodes carry on without it.
    next.shutdown().await;
    for node in &old {
        wait_until(WAIT, "the old nodes to see it gone", async || {
            !node.peers().live_peers_contain(&next_id)
        })
        .await;
    }
    let result = run_job(&old[1], &old[2], job("old.whoami", &[])).await;
    assert!(result.is_string());
    let gone = old[0].call("next.whoami", Value::Null).await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::Unavailable, "{gone}");
    for node in &old {
        assert!(refusals(node).is_empty(), "{:?}", refusals(node));
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_node_of_the_previous_release_is_there_each_write_keeps_an_entry_of_its_own() {
    // That release gave every command of an entry the entry's index as its
    // id: merged submissions would all get one id there.
    let nodes = start_cluster(3, this_release).await;
    let previous = release(PROTOCOL_VERSION - 1, &nodes[0], "previous.whoami").await;
    for node in &nodes {
        wait_until(WAIT, "every node to count the older one in", async || {
            node.peers().iter().any(|p| {
                p.peer_id == previous.peer_id()
                    && p.liveness == Liveness::Alive
                    && p.load.version == PROTOCOL_VERSION - 1
            })
        })
        .await;
    }
    const JOBS: usize = 40;
    // Jobs no node may run, so the log holds only their submissions.
    let nowhere = [("release", "none".to_string())];
    let committed = || nodes[0].raft_status().committed.unwrap_or(0);
    let before = committed();
    let submitted = futures::future::join_all((0..JOBS).map(|i| {
        let spec = JobSpec {
            args: json!(i),
            ..job("old.whoami", &nowhere)
        };
        nodes[i % 3].submit_job(spec)
    }))
    .await;
    let entries = committed() - before;
    assert!(
        entries >= JOBS as u64,
        "{JOBS} submissions took only {entries} entries"
    );
    for (i, id) in submitted.into_iter().enumerate() {
        let id = id.expect("job accepted");
        let job = previous.job(id, Read::Linearizable).await.unwrap().unwrap();
        assert_eq!(job.spec.args, json!(i), "job {id}");
    }
    previous.shutdown().await;
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_two_releases_ahead_is_refused_and_breaks_nothing() {
    let old = start_cluster(2, this_release).await;
    let far_version = PROTOCOL_VERSION + 2;
    let far = release(far_version, &old[0], "far.whoami").await;
    let far_id = far.peer_id().to_base58();

    // Every old node says why it refused the newcomer, naming both
    // versions and what to do; the newcomer says so of them too.
    for node in &old {
        let refusal = wait_until(WAIT, "a node_refused event", async || {
            let found = refusals(node)
                .into_iter()
                .find(|e| e.node.as_deref() == Some(far_id.as_str()));
            found.ok_or_else(|| format!("{:?}", node.events().since(0)))
        })
        .await;
        let message = &refusal.message;
        assert!(
            message.contains(&format!("protocol version {far_version}"))
                && message.contains(&format!("this node {PROTOCOL_VERSION}"))
                && message.contains("upgrade this node, one release at a time"),
            "{message}"
        );
    }
    wait_until(WAIT, "the newcomer to refuse the old nodes", async || {
        refusals(&far).len() == old.len()
    })
    .await;
    let advice = &refusals(&far)[0].message;
    assert!(advice.contains("upgrade that node"), "{advice}");

    // For a while (many membership periods), it is no member anywhere:
    // listed as incompatible, never alive, given no call and no replica.
    for _ in 0..10 {
        for node in &old {
            assert!(!node.peers().live_peers_contain(&far_id));
            let raft = node.raft_status();
            assert!(
                !raft.voters.contains(&far_id) && !raft.learners.contains(&far_id),
                "{raft:?}"
            );
        }
        assert!(far.peers().is_empty(), "it counts no old node in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = old[1].cluster_view().await;
    let listed = view.members.iter().find(|m| m.peer_id == far_id).unwrap();
    assert_eq!(
        (listed.liveness.as_str(), listed.protocol_version),
        ("incompatible", far_version)
    );
    let unknown = old[0].call("far.whoami", Value::Null).await.unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownFunction, "{unknown}");

    // The cluster works as before.
    let ran_on = old[0]
        .call_with_timeout("old.whoami", Value::Null, WAIT)
        .await
        .unwrap();
    assert!(ran_on.is_string());
    let result = run_job(&old[1], &old[0], job("old.whoami", &[])).await;
    assert!(result.is_string());
    for node in old.iter().chain([&far]) {
        node.shutdown().await;
    }
}

/// Whether a peer list holds `peer_id` as a live member.
trait LivePeers {
    fn live_peers_contain(&self, peer_id: &str) -> bool;
}

impl LivePeers for Vec<shoal_node::PeerStatus> {
    fn live_peers_contain(&self, peer_id: &str) -> bool {
        self.iter()
            .any(|p| p.peer_id.to_base58() == peer_id && p.liveness != Liveness::Dead)
    }
}
