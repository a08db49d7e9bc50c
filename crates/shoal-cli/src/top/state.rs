//! What `shoal top` shows, with no terminal and no network: snapshots,
//! events and keys go in, derived figures and an [`Action`] come out.
//!
//! Rates come from two snapshots: the increase of a counter divided by the
//! time between them. Everything kept over time is bounded.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use shoal_client::{ClusterView, Event, Member, NodeStatus};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Points of the calls/s sparkline: two minutes at the default interval.
pub const RATE_HISTORY: usize = 120;
/// Events kept for the events pane; more than any screen shows.
pub const MAX_EVENTS: usize = 100;

/// One poll of the node: what it answered, and when.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The URL that answered (the client may have moved to another node).
    pub node: String,
    pub cluster: ClusterView,
    pub status: NodeStatus,
    /// `GET /metrics`, for the call latency histogram.
    pub metrics: String,
    pub taken_at: Instant,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Id,
    /// Busiest first.
    Load,
    /// Dead, then suspected, then alive: trouble on top.
    Liveness,
}

impl SortBy {
    pub fn label(self) -> &'static str {
        match self {
            SortBy::Id => "id",
            SortBy::Load => "load",
            SortBy::Liveness => "liveness",
        }
    }

    fn next(self) -> SortBy {
        match self {
            SortBy::Id => SortBy::Load,
            SortBy::Load => SortBy::Liveness,
            SortBy::Liveness => SortBy::Id,
        }
    }
}

/// What the loop should do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

#[derive(Debug, Default)]
pub struct TopState {
    /// The node asked, until one has answered.
    pub node: String,
    /// The latest answer; kept while the node does not answer, and the
    /// base of the rates computed from the next one.
    pub last: Option<Snapshot>,
    /// Calls per second over the cluster, oldest first.
    pub calls_per_sec: VecDeque<f64>,
    /// Mean latency of the calls the connected node made since the last poll.
    pub mean_latency: Option<Duration>,
    /// Newest first.
    pub events: VecDeque<Event>,
    /// Why the last poll failed; cleared by the next answer.
    pub error: Option<String>,
    pub sort: SortBy,
    /// Followed by peer id, so the selection stays put when rows reorder.
    selected: Option<String>,
    pub details: bool,
}

impl TopState {
    pub fn new(node: impl Into<String>) -> Self {
        TopState {
            node: node.into(),
            ..TopState::default()
        }
    }

    pub fn apply(&mut self, snapshot: Snapshot) {
        if let Some(previous) = &self.last {
            if let Some(rate) = calls_per_sec(previous, &snapshot) {
                if self.calls_per_sec.len() == RATE_HISTORY {
                    self.calls_per_sec.pop_front();
                }
                self.calls_per_sec.push_back(rate);
            }
            self.mean_latency = mean_latency(previous, &snapshot);
        }
        self.node = snapshot.node.clone();
        self.last = Some(snapshot);
        self.error = None;
    }

    /// The node did not answer: keep what is on screen, say why.
    pub fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    pub fn on_event(&mut self, event: Event) {
        self.events.truncate(MAX_EVENTS - 1);
        self.events.push_front(event);
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit;
            }
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Enter => self.details = !self.details,
            _ => {}
        }
        Action::Continue
    }

    fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        let Some(index) = self.selected_index() else {
            return;
        };
        let target = index.saturating_add_signed(by).min(rows.len() - 1);
        self.selected = Some(rows[target].peer_id.clone());
    }

    /// The members in the chosen order.
    pub fn rows(&self) -> Vec<&Member> {
        let mut rows: Vec<&Member> = self.last.iter().flat_map(|s| &s.cluster.members).collect();
        // By id first, so ties keep one order from poll to poll.
        rows.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        match self.sort {
            SortBy::Id => {}
            SortBy::Load => rows.sort_by(|a, b| b.load().total_cmp(&a.load())),
            SortBy::Liveness => rows.sort_by_key(|m| match m.liveness.as_str() {
                "dead" => 0,
                "suspected" => 1,
                _ => 2,
            }),
        }
        rows
    }

    /// Where the selected node is in [`rows`](Self::rows); the first row
    /// until one is chosen, or when the chosen one has gone.
    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.rows();
        let chosen = rows
            .iter()
            .position(|m| Some(&m.peer_id) == self.selected.as_ref());
        (!rows.is_empty()).then(|| chosen.unwrap_or(0))
    }

    pub fn selected(&self) -> Option<&Member> {
        Some(self.rows()[self.selected_index()?])
    }

    /// Calls waiting for a slot, over the cluster.
    pub fn queue_depth(&self) -> u64 {
        (self.last.iter())
            .flat_map(|s| &s.cluster.members)
            .map(|m| u64::from(m.queued))
            .sum()
    }
}

/// Calls the cluster ran per second between two snapshots. A node that
/// restarted (its counter went down) or just joined adds nothing.
fn calls_per_sec(before: &Snapshot, now: &Snapshot) -> Option<f64> {
    let elapsed = now.taken_at.saturating_duration_since(before.taken_at);
    if elapsed.is_zero() {
        return None;
    }
    let members = before.cluster.members.iter();
    let executed: HashMap<&str, u64> = members.map(|m| (m.peer_id.as_str(), m.executed)).collect();
    let calls: u64 = (now.cluster.members.iter())
        .filter_map(|m| {
            Some(
                m.executed
                    .saturating_sub(*executed.get(m.peer_id.as_str())?),
            )
        })
        .sum();
    Some(calls as f64 / elapsed.as_secs_f64())
}

/// Mean latency of the calls the answering node made between two
/// snapshots: none without calls, or when another node answered (after a
/// failover), whose histogram cannot be subtracted.
fn mean_latency(before: &Snapshot, now: &Snapshot) -> Option<Duration> {
    if before.status.peer_id != now.status.peer_id {
        return None;
    }
    let (sum_before, count_before) = latency_totals(&before.metrics)?;
    let (sum, count) = latency_totals(&now.metrics)?;
    let calls = count.checked_sub(count_before).filter(|&calls| calls > 0)?;
    let mean = (sum - sum_before) / calls as f64;
    Some(Duration::from_secs_f64(mean.max(0.0)))
}

/// `shoal_call_duration_seconds` `_sum` and `_count` from Prometheus text.
fn latency_totals(metrics: &str) -> Option<(f64, u64)> {
    let value = |name: &str| {
        metrics.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().to_string())
        })
    };
    let sum = value("shoal_call_duration_seconds_sum")?.parse().ok()?;
    let count = value("shoal_call_duration_seconds_count")?.parse().ok()?;
    Some((sum, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::EventKind;

    /// A one-slot node: (id, liveness, queued calls, calls executed).
    fn member((peer, liveness, queued, executed): (&str, &str, u32, u64)) -> Member {
        let (peer_id, liveness) = (peer.into(), liveness.into());
        Member {
            peer_id,
            liveness,
            slots: 1,
            queued,
            executed,
            ..Member::default()
        }
    }

    fn snapshot(at: Instant, members: &[(&str, &str, u32, u64)], latency: (f64, u64)) -> Snapshot {
        let members = members.iter().copied().map(member).collect();
        let (sum, count) = latency;
        Snapshot {
            node: "http://127.0.0.1:7070/".into(),
            cluster: ClusterView {
                members,
                ..ClusterView::default()
            },
            status: NodeStatus::default(),
            metrics: format!(
                "shoal_call_duration_seconds_sum {sum}\nshoal_call_duration_seconds_count {count}\n"
            ),
            taken_at: at,
        }
    }

    fn press(state: &mut TopState, code: KeyCode) -> Action {
        state.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// Cycles the sort; returns its label and the order of the rows.
    fn sort(state: &mut TopState) -> String {
        press(state, KeyCode::Char('s'));
        let ids: String = state.rows().iter().map(|m| m.peer_id.as_str()).collect();
        format!("{}:{ids}", state.sort.label())
    }

    #[test]
    fn rates_come_from_the_increase_between_two_snapshots() {
        let start = Instant::now();
        let mut state = TopState::new("n");
        let before = [("a", "alive", 0, 100), ("b", "alive", 0, 50)];
        state.apply(snapshot(start, &before, (1.0, 10)));
        assert!(state.calls_per_sec.is_empty(), "one snapshot gives no rate");
        let after = [
            ("a", "alive", 1, 130),
            ("b", "alive", 3, 70),
            ("c", "alive", 0, 999),
        ];
        state.apply(snapshot(start + Duration::from_secs(2), &after, (1.5, 20)));
        // (30 + 20) calls in 2 s; `c` is new, so it adds nothing yet.
        assert_eq!(state.calls_per_sec.back(), Some(&25.0));
        assert_eq!(state.mean_latency, Some(Duration::from_millis(50)));
        assert_eq!(state.queue_depth(), 4);
    }

    #[test]
    fn history_and_events_stay_bounded() {
        let start = Instant::now();
        let mut state = TopState::new("n");
        for i in 0..RATE_HISTORY as u64 + 10 {
            let members = [("a", "alive", 0, i)];
            state.apply(snapshot(start + Duration::from_secs(i), &members, (0.0, 0)));
        }
        assert_eq!(state.calls_per_sec.len(), RATE_HISTORY);
        assert_eq!(state.mean_latency, None, "no calls, no latency");
        for seq in 0..MAX_EVENTS as u64 + 5 {
            state.on_event(Event {
                seq,
                at_ms: 0,
                kind: EventKind::NodeJoined,
                node: None,
                message: String::new(),
            });
        }
        assert_eq!(state.events.len(), MAX_EVENTS);
        assert_eq!(state.events[0].seq, MAX_EVENTS as u64 + 4, "newest first");
    }

    #[test]
    fn keys_sort_select_and_quit() {
        let mut state = TopState::new("n");
        assert_eq!(press(&mut state, KeyCode::Down), Action::Continue);
        assert_eq!(state.selected_index(), None, "nothing to select yet");
        let members = [
            ("a", "alive", 3, 0),
            ("b", "dead", 5, 0),
            ("c", "suspected", 1, 0),
        ];
        state.apply(snapshot(Instant::now(), &members, (0.0, 0)));
        assert_eq!(sort(&mut state), "load:bac");
        assert_eq!(sort(&mut state), "liveness:bca");
        assert_eq!(sort(&mut state), "id:abc");

        (0..5).for_each(|_| _ = press(&mut state, KeyCode::Char('j')));
        assert_eq!(state.selected_index(), Some(2), "stops at the last row");
        press(&mut state, KeyCode::Char('k'));
        sort(&mut state);
        let selected = state.selected().map(|m| m.peer_id.as_str());
        assert_eq!(selected, Some("b"), "the selection follows the node");
        (0..5).for_each(|_| _ = press(&mut state, KeyCode::Up));
        assert_eq!(state.selected_index(), Some(0), "stops at the first row");
        press(&mut state, KeyCode::Enter);
        assert!(state.details);

        assert_eq!(press(&mut state, KeyCode::Char('q')), Action::Quit);
        assert_eq!(press(&mut state, KeyCode::Esc), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(state.on_key(ctrl_c), Action::Quit);
    }

    #[test]
    fn a_failed_poll_keeps_the_last_data() {
        let mut state = TopState::new("n");
        let members = [("a", "alive", 0, 0)];
        state.apply(snapshot(Instant::now(), &members, (0.0, 0)));
        state.failed("unreachable".into());
        assert_eq!(state.rows().len(), 1);
        assert_eq!(state.error.as_deref(), Some("unreachable"));
        state.apply(snapshot(Instant::now(), &members, (0.0, 0)));
        assert_eq!(state.error, None, "recovers when the node answers");
    }
}
