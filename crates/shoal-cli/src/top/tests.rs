//! The dashboard against a real two-node cluster, drawn into a test buffer.

use super::poll;
use super::state::{Snapshot, TopState};
use super::ui::{self, short};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};
use shoal_client::{Client, JobSpec};
use shoal_node::testkit::{start_cluster, test_config};
use std::time::Duration;

/// The screen as text, one line per row.
fn screen(state: &TopState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
    terminal.draw(|frame| ui::render(frame, state)).unwrap();
    let buffer = terminal.backend().buffer();
    let row = |y| {
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect::<String>()
    };
    (0..buffer.area.height)
        .map(row)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first word after `label` on the screen.
fn after<'a>(screen: &'a str, label: &str) -> &'a str {
    let (_, rest) = screen
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label:?} in\n{screen}"));
    rest.split_whitespace().next().unwrap().trim_matches('│')
}

/// Calls run over the whole cluster, as the snapshot reports them.
fn executed(snapshot: &Snapshot) -> u64 {
    snapshot.cluster.members.iter().map(|m| m.executed).sum()
}

fn press(state: &mut TopState, code: KeyCode) {
    state.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_cluster() {
    let nodes = start_cluster(2, |_, builder| {
        let mut config = test_config(2);
        config.http = Some("127.0.0.1:0".parse().unwrap());
        shoal_node::builtins::register(builder.config(config))
    })
    .await;
    let url = format!("http://{}", nodes[0].api_addr().unwrap());
    let client = Client::new([&url]).unwrap();
    let job = client
        .submit(JobSpec::new("steps", json!({"count": 1, "ms": 1})))
        .await
        .unwrap();
    client.wait(job).await.unwrap();

    let mut state = TopState::new(&url);
    let first = poll(&client).await.unwrap();
    let executed_before = executed(&first);
    state.apply(first);
    for _ in 0..40 {
        client.call("noop", Value::Null).await.unwrap();
    }
    // The other node's count arrives with its next heartbeat: poll until
    // the cluster's count includes the 40 calls.
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            let snapshot = poll(&client).await.unwrap();
            if executed(&snapshot) >= executed_before + 40 {
                return snapshot;
            }
        }
    })
    .await
    .expect("the 40 calls are counted within 10 s");
    state.apply(counted);
    let mut events = Box::pin(client.events(0).await.unwrap());
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the node reports its events")
        .unwrap()
        .unwrap();
    state.on_event(event.clone());

    let shown = screen(&state);
    let snapshot = state.last.as_ref().unwrap();
    for member in &snapshot.cluster.members {
        assert!(shown.contains(&short(&member.peer_id)), "{shown}");
        // Each node reports its process's memory with its heartbeats.
        assert!(member.memory_bytes > 1_000_000, "{member:?}");
        let mb = format!("{} MB", member.memory_bytes.div_ceil(1_000_000));
        assert!(shown.contains(&mb), "{mb} in {shown}");
    }
    let leader = snapshot.cluster.raft.leader.as_deref().expect("a leader");
    assert_eq!(after(&shown, "│ leader "), short(leader), "{shown}");
    assert_eq!(after(&shown, "succeeded"), "1", "{shown}");
    let calls_per_sec: f64 = after(&shown, "calls/s ").parse().unwrap();
    assert!(calls_per_sec > 0.0, "{shown}");
    assert!(shown.contains(event.kind.as_str()), "{shown}");
    assert!(shown.contains("sorted by id"), "{shown}");

    press(&mut state, KeyCode::Char('s'));
    press(&mut state, KeyCode::Down);
    press(&mut state, KeyCode::Enter);
    let shown = screen(&state);
    assert!(shown.contains("sorted by load"), "{shown}");
    let selected = state.selected().unwrap();
    assert_eq!(state.rows()[1].peer_id, selected.peer_id);
    assert!(
        shown.contains(&format!("details · {}", short(&selected.peer_id))),
        "{shown}"
    );
    let addr = selected.addrs[0].split("/p2p/").next().unwrap();
    assert!(
        shown.contains(addr) && shown.contains(&selected.peer_id),
        "{shown}"
    );
    assert!(
        shown.contains("mean task") && shown.contains("silent"),
        "{shown}"
    );

    // Closed first, so the nodes need not wait out an open stream at shutdown.
    drop(events);
    for node in &nodes {
        node.shutdown().await;
    }
}
