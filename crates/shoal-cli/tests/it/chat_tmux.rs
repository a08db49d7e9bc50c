//! `shoal chat` as people use it: real terminals (tmux sessions) on two
//! node processes, typing and reading the screen.

use crate::common::{ProcessCluster, Tmux, WAIT, wait_until};
use shoal_client::Client;

const ROOM: &str = "tmux-room";

fn start_chat(tmux: &Tmux, node: &str, nick: &str) {
    tmux.start(
        nick,
        env!("CARGO_BIN_EXE_shoal"),
        &["chat", "--node", node, "--topic", ROOM, "--nick", nick],
    );
}

/// Waits until `session`'s screen holds every one of `texts`; returns it.
async fn wait_for_screen(tmux: &Tmux, session: &str, texts: &[&str]) -> String {
    let what = format!("{session}'s chat to show {texts:?}");
    wait_until(WAIT, &what, async || {
        let screen = tmux.screen(session);
        match texts.iter().all(|text| screen.contains(text)) {
            true => Ok(screen),
            false => Err(format!("the screen:\n{screen}")),
        }
    })
    .await
}

/// The row holding `text` on `screen`.
fn row_of(screen: &str, text: &str) -> usize {
    screen
        .lines()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} on\n{screen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(shoal_tmux),
    ignore = "needs tmux (apt-get install tmux), found on PATH when the tests were built"
)]
async fn two_chats_on_two_nodes_talk_and_a_late_one_sees_the_history() {
    let cluster = ProcessCluster::start(2, &["--slots", "1"]).await;
    let urls = cluster.urls();
    let tmux = Tmux::new("chat");
    start_chat(&tmux, &urls[0], "ada");
    start_chat(&tmux, &urls[1], "bob");

    // Each lists the other once a presence beat crossed between the nodes.
    wait_for_screen(&tmux, "ada", &["members (2)", "bob"]).await;
    wait_for_screen(&tmux, "bob", &["members (2)", "ada"]).await;
    // Delivery across nodes starts once gossip's mesh for the room formed.
    for (here, there) in [(0, 1), (1, 0)] {
        let client = Client::new([&urls[here]]).unwrap();
        let other = cluster.nodes[there].peer_id();
        let what = format!("node {here} to see node {there} in the room");
        wait_until(WAIT, &what, async || {
            let info = client.topic_info(ROOM).await.map_err(|e| e.to_string())?;
            match info.peers.contains(&other) {
                true => Ok(()),
                false => Err(format!("{info:?}")),
            }
        })
        .await;
    }

    tmux.type_line("ada", "hello from ada");
    let ada_line = "ada  hello from ada";
    let bob_line = "bob  hi from bob";
    wait_for_screen(&tmux, "bob", &[ada_line]).await;
    tmux.type_line("bob", "hi from bob");
    for session in ["ada", "bob"] {
        let screen = wait_for_screen(&tmux, session, &[ada_line, bob_line]).await;
        assert!(
            row_of(&screen, ada_line) < row_of(&screen, bob_line),
            "newest at the bottom:\n{screen}"
        );
    }

    // A chat opened later sees the room's recent lines first.
    start_chat(&tmux, &urls[1], "cy");
    let screen = wait_for_screen(&tmux, "cy", &[ada_line, bob_line]).await;
    assert!(
        row_of(&screen, ada_line) < row_of(&screen, bob_line),
        "{screen}"
    );
    wait_for_screen(&tmux, "ada", &["members (3)", "cy"]).await;

    // Escape quits cleanly, the terminal is given back, and the others
    // stop listing the one who left.
    tmux.key("cy", "Escape");
    wait_for_screen(&tmux, "cy", &["exited with status 0"]).await;
    let screen = tmux.screen("cy");
    assert!(
        !screen.contains("members ("),
        "the chat's screen is gone:\n{screen}"
    );
    wait_for_screen(&tmux, "ada", &["members (2)"]).await;
}
