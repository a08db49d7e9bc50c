//! What `shoal chat` shows and edits, with no terminal and no network:
//! room messages, presence beats and keys go in; lines, members and an
//! [`Action`] come out.
//!
//! Everything kept is bounded: the newest [`MAX_MESSAGES`] lines, the
//! members heard from recently, an input line of [`MAX_INPUT_CHARS`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;
use shoal_client::TopicMessage;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Lines kept for the message pane: far more than a screen shows, and the
/// room keeps only its last 50 for newcomers anyway.
pub const MAX_MESSAGES: usize = 1000;
/// Longest line one may type: a screenful, well under a message's 64 KiB.
pub const MAX_INPUT_CHARS: usize = 2000;
/// A member is listed while heard from this recently: three presence
/// beats, so one lost beat does not make anyone flicker away.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(15);
/// Members tracked at most; beyond it, the longest silent is forgotten.
const MAX_MEMBERS: usize = 1000;

/// One line of the message pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    /// When it was published (the publisher's clock), ms since the epoch.
    pub at_ms: u64,
    pub nick: String,
    pub text: String,
    /// `publisher:seq@at_ms`, so a message seen twice (after a reconnect)
    /// shows once. The time is part of it because a restarted node counts
    /// its messages from 1 again.
    pub key: String,
}

/// What the loop should do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Publish this line.
    Send(String),
    Quit,
}

#[derive(Debug)]
pub struct ChatState {
    pub room: String,
    pub nick: String,
    /// The node's API, for the status line.
    pub node: String,
    /// Oldest first.
    messages: VecDeque<ChatLine>,
    /// The keys of `messages`.
    seen: HashSet<String>,
    /// Nick → when its last presence beat came.
    members: HashMap<String, Instant>,
    /// The line being typed, and where the cursor is in it (in chars).
    input: Vec<char>,
    cursor: usize,
    /// The last thing that went wrong, until something goes right.
    pub error: Option<String>,
}

impl ChatState {
    pub fn new(room: &str, nick: &str, node: &str) -> Self {
        ChatState {
            room: room.to_string(),
            nick: nick.to_string(),
            node: node.to_string(),
            messages: VecDeque::new(),
            seen: HashSet::new(),
            members: HashMap::new(),
            input: Vec::new(),
            cursor: 0,
            error: None,
        }
    }

    /// A message on the room's topic. Returns whether it was new.
    pub fn on_message(&mut self, message: &TopicMessage) -> bool {
        let key = format!("{}@{}", message.event_id(), message.at_ms);
        if !self.seen.insert(key.clone()) {
            return false;
        }
        if self.messages.len() == MAX_MESSAGES
            && let Some(oldest) = self.messages.pop_front()
        {
            self.seen.remove(&oldest.key);
        }
        self.messages.push_back(ChatLine {
            at_ms: message.at_ms,
            nick: printable(&nick_of(message)),
            text: printable(&text_of(&message.value)),
            key,
        });
        true
    }

    /// A beat on the room's presence topic: `{"here": true}` while a
    /// member's chat runs, `{"here": false}` when it quits.
    pub fn on_presence(&mut self, message: &TopicMessage, now: Instant) {
        let Some(nick) = &message.name else { return };
        let nick = printable(nick);
        if message.value.get("here") == Some(&Value::Bool(false)) {
            self.members.remove(&nick);
            return;
        }
        self.members.insert(nick, now);
        if self.members.len() > MAX_MEMBERS {
            self.forget_silent(now);
        }
    }

    fn forget_silent(&mut self, now: Instant) {
        self.members
            .retain(|_, heard| now.saturating_duration_since(*heard) <= MEMBER_TIMEOUT);
        while self.members.len() > MAX_MEMBERS {
            let Some(silent) = (self.members.iter())
                .min_by_key(|(_, heard)| **heard)
                .map(|(nick, _)| nick.clone())
            else {
                break;
            };
            self.members.remove(&silent);
        }
    }

    /// Who is here: this chat's own nick and everyone heard from in the
    /// last [`MEMBER_TIMEOUT`], sorted.
    pub fn members(&self, now: Instant) -> Vec<&str> {
        let heard = (self.members.iter())
            .filter(|(_, heard)| now.saturating_duration_since(**heard) <= MEMBER_TIMEOUT)
            .map(|(nick, _)| nick.as_str());
        let mut members: Vec<&str> = heard.chain([self.nick.as_str()]).collect();
        members.sort_unstable();
        members.dedup();
        members
    }

    pub fn messages(&self) -> &VecDeque<ChatLine> {
        &self.messages
    }

    pub fn input(&self) -> String {
        self.input.iter().collect()
    }

    /// The cursor's position in the input line, in chars.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if control => return Action::Quit,
            KeyCode::Char('d') if control && self.input.is_empty() => return Action::Quit,
            KeyCode::Enter => return self.take_line(),
            KeyCode::Char('a') if control => self.cursor = 0,
            KeyCode::Char('e') if control => self.cursor = self.input.len(),
            KeyCode::Char('u') if control => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('w') if control => self.delete_word(),
            KeyCode::Char(_) if control => {}
            KeyCode::Char(c) if self.input.len() < MAX_INPUT_CHARS && !c.is_control() => {
                self.input.insert(self.cursor, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            _ => {}
        }
        Action::Continue
    }

    /// Enter: the typed line goes out, unless it is blank.
    fn take_line(&mut self) -> Action {
        let line: String = self.input.iter().collect();
        let line = line.trim();
        if line.is_empty() {
            return Action::Continue;
        }
        let line = line.to_string();
        self.input.clear();
        self.cursor = 0;
        Action::Send(line)
    }

    /// Ctrl-W: the word before the cursor, and the spaces after it.
    fn delete_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.input[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.input[start - 1].is_whitespace() {
            start -= 1;
        }
        self.input.drain(start..self.cursor);
        self.cursor = start;
    }
}

/// The sender's nick, or a short form of its node's id for messages
/// published without a name (`shoal pub` without `--name`).
fn nick_of(message: &TopicMessage) -> String {
    match &message.name {
        Some(name) => name.clone(),
        None => {
            let tail: String = (message.publisher.chars().rev().take(6))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("node…{tail}")
        }
    }
}

/// A chat message's text: `{"text": "…"}`, or any other JSON as it is.
fn text_of(value: &Value) -> String {
    match value.get("text") {
        Some(Value::String(text)) => text.clone(),
        _ => value.to_string(),
    }
}

/// Text safe to put on a terminal: control characters (escape sequences,
/// a carriage return that would overwrite the line) become spaces.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
