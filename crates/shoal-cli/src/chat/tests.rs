//! The chat's state and screen without a terminal or a network: messages
//! in, lines and members out, keys editing the input line.

use super::state::{Action, ChatState, MAX_INPUT_CHARS, MAX_MESSAGES, MEMBER_TIMEOUT};
use super::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};
use shoal_client::TopicMessage;
use std::time::{Duration, Instant};

fn message(name: Option<&str>, seq: u64, value: Value) -> TopicMessage {
    TopicMessage {
        topic: "lobby".into(),
        publisher: "12D3KooWPublisherA1b2c3".into(),
        name: name.map(str::to_string),
        at_ms: 1_700_000_000_000 + seq,
        seq,
        epoch: 1,
        value,
        retain: 50,
    }
}

fn said(nick: &str, seq: u64, text: &str) -> TopicMessage {
    message(Some(nick), seq, json!({ "text": text }))
}

fn press(state: &mut ChatState, code: KeyCode) -> Action {
    state.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn control(state: &mut ChatState, c: char) -> Action {
    state.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_text(state: &mut ChatState, text: &str) {
    for c in text.chars() {
        press(state, KeyCode::Char(c));
    }
}

/// The screen as text, one line per row.
fn screen(state: &ChatState, now: Instant, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| ui::render(frame, state, now))
        .unwrap();
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect()
        })
        .collect()
}

#[test]
fn messages_show_once_with_nick_and_text_newest_last() {
    let mut state = ChatState::new("lobby", "bob", "http://127.0.0.1:7070");
    assert!(state.on_message(&said("ada", 1, "hello")));
    assert!(state.on_message(&said("bob", 2, "hi ada")));
    assert!(
        !state.on_message(&said("bob", 2, "hi ada")),
        "a message seen again after a reconnect shows once"
    );
    let mut restarted = said("bob", 2, "back again");
    restarted.at_ms += 60_000;
    assert!(
        state.on_message(&restarted),
        "a restarted node numbers from 1 again: its messages are new"
    );
    let anonymous = message(None, 3, json!({"x": 1}));
    state.on_message(&anonymous);
    let lines: Vec<(&str, &str)> = (state.messages().iter())
        .map(|l| (l.nick.as_str(), l.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("ada", "hello"),
            ("bob", "hi ada"),
            ("bob", "back again"),
            ("node…A1b2c3", r#"{"x":1}"#)
        ],
        "a message without a nick names its node; one without text shows its JSON"
    );

    let rows = screen(&state, Instant::now(), 80, 12);
    let hello = rows.iter().position(|r| r.contains("ada  hello")).unwrap();
    let reply = rows.iter().position(|r| r.contains("bob  hi ada")).unwrap();
    assert!(hello < reply, "newest at the bottom:\n{}", rows.join("\n"));
    assert!(rows[0].contains("#lobby"), "{}", rows[0]);
}

#[test]
fn the_pane_keeps_the_newest_messages_in_view_and_memory_bounded() {
    let mut state = ChatState::new("lobby", "bob", "node");
    for seq in 1..=(MAX_MESSAGES as u64 + 10) {
        state.on_message(&said("ada", seq, &format!("line {seq}")));
    }
    assert_eq!(state.messages().len(), MAX_MESSAGES);
    assert_eq!(state.messages()[0].text, "line 11");
    let rows = screen(&state, Instant::now(), 60, 10).join("\n");
    assert!(rows.contains("line 1010"), "{rows}");
    assert!(!rows.contains("line 11 "), "{rows}");
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let mut state = ChatState::new("lobby", "bob", "node");
    state.on_message(&said("ev\u{1b}[2Jil", 1, "bye\rhello\u{7}"));
    let line = &state.messages()[0];
    assert_eq!(
        (line.nick.as_str(), line.text.as_str()),
        ("ev [2Jil", "bye hello ")
    );
}

#[test]
fn members_are_who_beat_recently_and_leave_when_they_say_so() {
    let start = Instant::now();
    let mut state = ChatState::new("lobby", "bob", "node");
    assert_eq!(
        state.members(start),
        ["bob"],
        "this chat is a member at once"
    );
    let here = |nick| message(Some(nick), 1, json!({"here": true}));
    state.on_presence(&here("ada"), start);
    state.on_presence(&here("cy"), start);
    state.on_presence(&message(None, 1, json!({"here": true})), start);
    assert_eq!(state.members(start), ["ada", "bob", "cy"]);

    let later = start + MEMBER_TIMEOUT - Duration::from_secs(1);
    state.on_presence(&here("cy"), later);
    state.on_presence(&message(Some("ada"), 2, json!({"here": false})), later);
    assert_eq!(state.members(later), ["bob", "cy"], "ada said goodbye");
    let silent = later + MEMBER_TIMEOUT + Duration::from_secs(1);
    assert_eq!(state.members(silent), ["bob"], "cy went silent");

    state.on_presence(&here("ada"), silent);
    let rows = screen(&state, silent, 80, 10).join("\n");
    assert!(
        rows.contains("members (2)") && rows.contains("bob (you)"),
        "{rows}"
    );
}

#[test]
fn the_input_line_edits_and_enter_sends_it() {
    let mut state = ChatState::new("lobby", "bob", "node");
    assert_eq!(press(&mut state, KeyCode::Enter), Action::Continue);
    type_text(&mut state, "helo world");
    for _ in 0.."lo world".len() {
        press(&mut state, KeyCode::Left);
    }
    press(&mut state, KeyCode::Char('l'));
    assert_eq!(state.input(), "hello world");
    assert_eq!(state.cursor(), 3);
    press(&mut state, KeyCode::End);
    press(&mut state, KeyCode::Backspace);
    control(&mut state, 'a');
    press(&mut state, KeyCode::Delete);
    assert_eq!(state.input(), "ello worl");
    control(&mut state, 'e');
    control(&mut state, 'w');
    assert_eq!(state.input(), "ello ");
    type_text(&mut state, "there  ");
    assert_eq!(
        press(&mut state, KeyCode::Enter),
        Action::Send("ello there".into()),
        "Enter sends the line without its outer spaces"
    );
    assert_eq!((state.input().as_str(), state.cursor()), ("", 0));

    type_text(&mut state, &"x".repeat(MAX_INPUT_CHARS + 5));
    assert_eq!(state.input().len(), MAX_INPUT_CHARS, "the input is bounded");
    control(&mut state, 'u');
    assert_eq!(state.input(), "");
}

#[test]
fn escape_control_c_and_control_d_on_an_empty_line_quit() {
    let mut state = ChatState::new("lobby", "bob", "node");
    assert_eq!(press(&mut state, KeyCode::Esc), Action::Quit);
    assert_eq!(control(&mut state, 'c'), Action::Quit);
    type_text(&mut state, "x");
    assert_eq!(control(&mut state, 'd'), Action::Continue);
    control(&mut state, 'u');
    assert_eq!(control(&mut state, 'd'), Action::Quit);
}

#[test]
fn a_long_input_scrolls_to_keep_the_cursor_in_view() {
    let mut state = ChatState::new("lobby", "bob", "node");
    type_text(&mut state, &format!("{}END", "a".repeat(100)));
    let rows = screen(&state, Instant::now(), 40, 10);
    let input_row = &rows[rows.len() - 3];
    assert!(input_row.contains("END"), "{input_row}");
}

#[test]
fn errors_replace_the_keys_on_the_status_line() {
    let mut state = ChatState::new("lobby", "bob", "http://n1:7070");
    let rows = screen(&state, Instant::now(), 80, 8);
    assert!(rows[7].contains("http://n1:7070") && rows[7].contains("esc quit"));
    state.failed("not sent: overloaded".into());
    let rows = screen(&state, Instant::now(), 80, 8);
    assert!(rows[7].contains("not sent: overloaded"), "{}", rows[7]);
}
