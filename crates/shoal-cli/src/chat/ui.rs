//! Drawing a [`ChatState`]: no state of its own, so any frame (a terminal
//! or a test's buffer) shows the same screen.
//!
//! ```text
//!   ┌ #room ───────────────────────────┐┌ members (2) ┐
//!   │12:01:02 ada  hello               ││ ada         │
//!   │12:01:05 bob  hi, newest last     ││ bob         │
//!   └──────────────────────────────────┘└─────────────┘
//!   ┌ bob ───────────────────────────────────────────┐
//!   │the line being typed                            │
//!   └────────────────────────────────────────────────┘
//!    node, keys — or the last error
//! ```

use super::state::{ChatLine, ChatState};
use chrono::{DateTime, Local};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, Paragraph, Wrap};
use std::time::Instant;

const KEYS: &str = "enter send · esc quit";
/// Nicks get one of these colours, the same one on every screen.
const NICK_COLOURS: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Blue,
    Color::Red,
];

pub fn render(frame: &mut Frame, state: &ChatState, now: Instant) {
    let [top, input, status] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let members = state.members(now);
    let longest_nick = members.iter().map(|m| m.chars().count()).max().unwrap_or(0);
    let members_width = (longest_nick as u16 + 4).clamp(16, 30);
    let [messages, members_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(members_width)]).areas(top);
    render_messages(frame, state, messages);
    render_members(frame, state, &members, members_area);
    render_input(frame, state, input);
    render_status(frame, state, status);
}

fn render_messages(frame: &mut Frame, state: &ChatState, area: Rect) {
    let block = Block::bordered().title(format!(" #{} ", state.room).bold());
    let inner = block.inner(area);
    let lines: Vec<Line> = state.messages().iter().map(message_line).collect();
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    // Newest at the bottom: scroll so the last wrapped row is the pane's last.
    let rows = paragraph.line_count(inner.width);
    let scroll = rows.saturating_sub(usize::from(inner.height));
    let paragraph = paragraph
        .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
        .block(block);
    frame.render_widget(paragraph, area);
}

fn message_line(line: &ChatLine) -> Line<'static> {
    Line::from(vec![
        Span::from(format!("{} ", clock(line.at_ms))).dark_gray(),
        Span::styled(line.nick.clone(), nick_style(&line.nick)),
        Span::from(format!("  {}", line.text)),
    ])
}

/// Local wall-clock time of day, `HH:MM:SS`.
fn clock(at_ms: u64) -> String {
    DateTime::from_timestamp_millis(i64::try_from(at_ms).unwrap_or(i64::MAX))
        .map(|at| at.with_timezone(&Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".into())
}

fn nick_style(nick: &str) -> Style {
    // FNV-1a: stable across runs and machines, unlike the std hasher.
    let hash = nick.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    Style::new()
        .fg(NICK_COLOURS[hash as usize % NICK_COLOURS.len()])
        .bold()
}

fn render_members(frame: &mut Frame, state: &ChatState, members: &[&str], area: Rect) {
    let items: Vec<ListItem> = members
        .iter()
        .map(|nick| {
            let mut line = Line::from(Span::styled(nick.to_string(), nick_style(nick)));
            if *nick == state.nick {
                line.push_span(" (you)".dark_gray());
            }
            ListItem::new(line)
        })
        .collect();
    let title = format!(" members ({}) ", members.len());
    frame.render_widget(List::new(items).block(Block::bordered().title(title)), area);
}

fn render_input(frame: &mut Frame, state: &ChatState, area: Rect) {
    let block = Block::bordered().title(Span::styled(
        format!(" {} ", state.nick),
        nick_style(&state.nick),
    ));
    let inner = block.inner(area);
    let input: Vec<char> = state.input().chars().collect();
    // Scroll sideways so the cursor stays in view.
    let width = usize::from(inner.width.max(1));
    let offset = (state.cursor() + 1).saturating_sub(width);
    let shown: String = input.iter().skip(offset).take(width).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
    let column = (state.cursor() - offset) as u16;
    frame.set_cursor_position(Position::new(inner.x + column, inner.y));
}

fn render_status(frame: &mut Frame, state: &ChatState, area: Rect) {
    let line = match &state.error {
        Some(error) => Line::from(format!(" {error}").red()),
        None => Line::from(vec![
            format!(" {} · ", state.node).dark_gray(),
            KEYS.dark_gray(),
        ]),
    };
    frame.render_widget(Paragraph::new(line), area);
}
