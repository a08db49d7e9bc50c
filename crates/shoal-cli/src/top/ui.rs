//! Drawing a [`TopState`]: no state of its own, so any frame (a terminal
//! or a test's buffer) shows the same screen.
//!
//! ```text
//!   header: node asked, Raft leader, term, voters, nodes alive
//!   nodes table                              | details of the selected node
//!   calls/s sparkline, latency, queue depth  | jobs by state
//!   recent events, newest first
//!   status line: the last error, the keys
//! ```

use super::state::TopState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState};
use shoal_client::{JobState, Member};
use shoal_proto::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;

/// Cells of the load bar: enough to tell a tenth from a quarter.
const LOAD_BAR: usize = 10;
const KEYS: &str = "s sort · ↑↓/jk select · enter details · q quit ";

pub fn render(frame: &mut Frame, state: &TopState) {
    let rows = state.rows();
    let selected = state.details.then(|| state.selected()).flatten();
    // Borders and the header row around the rows, or the details' lines.
    let nodes_height = (rows.len() + 3).max(selected.map_or(0, |m| details_lines(m).len() + 2));
    let [header, nodes, middle, events, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(nodes_height.clamp(5, 20) as u16),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(state), header);
    let table_area = if state.details {
        let [table, details] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                .areas(nodes);
        render_details(frame, selected, details);
        table
    } else {
        nodes
    };
    render_nodes(frame, state, &rows, table_area);
    let [calls, jobs] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(26)]).areas(middle);
    render_calls(frame, state, calls);
    render_jobs(frame, state, jobs);
    render_events(frame, state, events);
    render_status(frame, state, status);
}

fn header_line(state: &TopState) -> Paragraph<'static> {
    let title = " shoal top ".bold().reversed();
    let Some(snapshot) = &state.last else {
        let waiting = format!(" waiting for {}…", state.node);
        return Paragraph::new(Line::from(vec![title, waiting.into()]));
    };
    let raft = &snapshot.cluster.raft;
    let (leader, leader_style) = match &raft.leader {
        Some(leader) if *leader == snapshot.status.peer_id => (
            format!("{} (this node)", short(leader)),
            Style::new().bold(),
        ),
        Some(leader) => (short(leader), Style::new().bold()),
        None => ("none".into(), Style::new().red()),
    };
    let learning = match raft.learners.len() {
        0 => String::new(),
        learners => format!(" + {learners} learning"),
    };
    let members = &snapshot.cluster.members;
    let alive = members.iter().filter(|m| m.liveness == "alive").count();
    let all_alive = alive == members.len();
    Paragraph::new(Line::from(vec![
        title,
        format!(" node {} │ leader ", snapshot.node).into(),
        Span::styled(leader, leader_style),
        format!(
            " │ term {} │ voters {}{learning} │ ",
            raft.term,
            raft.voters.len()
        )
        .into(),
        Span::styled(
            format!("nodes {alive}/{} alive", members.len()),
            if all_alive {
                Style::new().green()
            } else {
                Style::new().yellow()
            },
        ),
    ]))
}

/// Resident memory as `45 MB`; `-` from a node that does not report it.
fn megabytes(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_string()
    } else {
        format!("{} MB", bytes.div_ceil(1_000_000))
    }
}

fn render_nodes(frame: &mut Frame, state: &TopState, rows: &[&Member], area: Rect) {
    let header = Row::new([
        "node", "liveness", "slots", "running", "queued", "load", "executed", "cpu", "mem", "api",
    ])
    .style(Style::new().bold().underlined());
    let table_rows = rows.iter().map(|m| {
        let marker = if m.is_self { " *" } else { "" };
        Row::new([
            Cell::from(format!("{}{marker}", short(&m.peer_id))),
            Cell::from(m.liveness.clone()).style(liveness_style(&m.liveness)),
            Cell::from(m.slots.to_string()),
            Cell::from(m.running.to_string()),
            Cell::from(m.queued.to_string()),
            load_bar(m.load()),
            Cell::from(m.executed.to_string()),
            Cell::from(format!("{:.0}%", m.cpu_percent)),
            Cell::from(megabytes(m.memory_bytes)),
            Cell::from(
                m.api
                    .as_deref()
                    .map_or("-", |api| api.trim_start_matches("http://"))
                    .to_string(),
            ),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
        // The bar, a space and up to `999%`.
        Constraint::Length(LOAD_BAR as u16 + 5),
        Constraint::Length(8),
        // Up to `1600%` on 16 cores.
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let title = format!(" nodes · sorted by {} ", state.sort.label());
    let table = Table::new(table_rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("› ");
    let mut selection = TableState::default().with_selected(state.selected_index());
    frame.render_stateful_widget(table, area, &mut selection);
}

fn liveness_style(liveness: &str) -> Style {
    match liveness {
        "alive" => Style::new().green(),
        "suspected" => Style::new().yellow(),
        _ => Style::new().red().bold(),
    }
}

/// `██████····  60%`, coloured by how full the node is.
fn load_bar(load: f64) -> Cell<'static> {
    let filled = ((load * LOAD_BAR as f64).round() as usize).min(LOAD_BAR);
    let bar = format!(
        "{}{} {:>3.0}%",
        "█".repeat(filled),
        "·".repeat(LOAD_BAR - filled),
        load * 100.0
    );
    let style = match load {
        l if l >= 1.0 => Style::new().red(),
        l if l >= 0.75 => Style::new().yellow(),
        _ => Style::new().green(),
    };
    Cell::from(bar).style(style)
}

fn render_details(frame: &mut Frame, selected: Option<&Member>, area: Rect) {
    let Some(m) = selected else {
        frame.render_widget(Block::bordered().title(" details "), area);
        return;
    };
    let title = format!(" details · {} ", short(&m.peer_id));
    let details = Paragraph::new(details_lines(m)).block(Block::bordered().title(title));
    frame.render_widget(details, area);
}

fn details_lines(m: &Member) -> Vec<Line<'static>> {
    let field =
        |name: &str, value: String| Line::from(vec![format!("{name:<10}").bold(), value.into()]);
    let mut lines = vec![
        Line::from(m.peer_id.clone()),
        field("api", m.api.clone().unwrap_or_else(|| "-".into())),
    ];
    // Without the `/p2p/<peer id>` suffix, which repeats the line above.
    lines.extend(m.addrs.iter().map(|addr| {
        let addr = addr.split("/p2p/").next().unwrap_or(addr);
        field("addr", addr.to_string())
    }));
    lines.extend([
        field("labels", pairs(&m.labels)),
        field("resources", pairs(&m.resources)),
        field("mean task", human(Duration::from_micros(m.mean_task_us))),
        field(
            "drain",
            format!("{} (estimated)", human(Duration::from_millis(m.drain_ms))),
        ),
        field("silent", human(Duration::from_millis(m.silent_ms))),
    ]);
    lines
}

fn render_calls(frame: &mut Frame, state: &TopState, area: Rect) {
    let rate = state.calls_per_sec.back().copied().unwrap_or(0.0);
    let latency = state.mean_latency.map_or("-".into(), human);
    let title = format!(
        " calls/s {rate:.1} · mean latency {latency} · queue depth {} ",
        state.queue_depth()
    );
    // The newest points that fit, at the right edge; tenths kept so a
    // trickle of calls still draws.
    let width = area.width.saturating_sub(2) as usize;
    let skip = state.calls_per_sec.len().saturating_sub(width);
    let points: Vec<u64> = (state.calls_per_sec.iter().skip(skip))
        .map(|rate| (rate * 10.0).round() as u64)
        .collect();
    let sparkline = Sparkline::default()
        .block(Block::bordered().title(title))
        .style(Style::new().cyan())
        .data(&points);
    frame.render_widget(sparkline, area);
}

fn render_jobs(frame: &mut Frame, state: &TopState, area: Rect) {
    let counts = state.last.as_ref().map(|s| &s.status.jobs);
    let lines: Vec<Line> = JobState::ALL
        .iter()
        .map(|job_state| {
            let count = counts
                .and_then(|c| c.get(job_state.as_str()))
                .copied()
                .unwrap_or(0);
            let style = match job_state {
                JobState::DeadLetter if count > 0 => Style::new().red().bold(),
                JobState::Running if count > 0 => Style::new().yellow(),
                _ => Style::new(),
            };
            Line::styled(format!("{:<12}{count:>10}", job_state.as_str()), style)
        })
        .collect();
    let jobs = Paragraph::new(lines).block(Block::bordered().title(" jobs "));
    frame.render_widget(jobs, area);
}

fn render_events(frame: &mut Frame, state: &TopState, area: Rect) {
    let visible = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = (state.events.iter().take(visible))
        .map(|event| {
            let style = if event.kind.is_alert() {
                Style::new().red().bold()
            } else {
                Style::new()
            };
            let node = event.node.as_deref().map_or("-".into(), short);
            let text = format!(
                "{}  {:<18} {:<7} {}",
                clock(event.at_ms),
                event.kind.as_str(),
                node,
                event.message
            );
            Line::styled(text, style)
        })
        .collect();
    let block = Block::bordered().title(" events · newest first · UTC ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_status(frame: &mut Frame, state: &TopState, area: Rect) {
    let [message, keys] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(KEYS.chars().count() as u16),
    ])
    .areas(area);
    let line = match &state.error {
        Some(error) => {
            let kept = if state.last.is_some() {
                "showing the last answer · "
            } else {
                ""
            };
            Line::styled(format!(" ⚠ {kept}{error}"), Style::new().red().bold())
        }
        None => Line::styled(
            format!(" connected to {}", state.node),
            Style::new().green(),
        ),
    };
    frame.render_widget(Paragraph::new(line), message);
    frame.render_widget(Paragraph::new(KEYS).dark_gray(), keys);
}

/// `k=v, k=v`, or `none`.
fn pairs<V: std::fmt::Display>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(", ")
}

/// A peer id's last characters, as `shoal` prints them everywhere.
pub(super) fn short(peer: &str) -> String {
    NodeId(peer.to_string()).short().to_string()
}

/// `0`, `850 µs`, `1.2 ms`, `3.40 s`.
fn human(duration: Duration) -> String {
    match duration.as_micros() {
        0 => "0".into(),
        us @ 1..1_000 => format!("{us} µs"),
        us @ 1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", duration.as_secs_f64()),
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
fn clock(at_ms: u64) -> String {
    let seconds = at_ms / 1000 % 86_400;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("{hours:02}:{minutes:02}:{seconds:02}")
}
