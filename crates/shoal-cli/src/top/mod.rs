//! `shoal top`: a live terminal dashboard of a cluster, read through one
//! node's HTTP API.
//!
//! ```text
//!   poller task  ── snapshot or error, every interval ─┐
//!   events task  ── telemetry events (SSE) ────────────┼─> bounded channel ─> loop ─> TopState ─> ui::render
//!   input thread ── keys, resizes ─────────────────────┘
//! ```
//!
//! The loop owns the state and the terminal; the others only send. When
//! the loop ends it drops the channel's receiver, which stops the input
//! thread, and the tasks end with their `JoinSet`.

mod state;
mod ui;

#[cfg(test)]
mod tests;

use crate::api::{ApiArgs, explain};
use crate::terminal::{RestoreTerminal, read_input};
use clap::Args;
use futures::StreamExt;
use ratatui::crossterm::event::Event as Input;
use shoal_client::{Client, ClientError, Event};
use state::{Action, Snapshot, TopState};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Updates waiting for the loop; the senders wait when it falls behind.
const UPDATES: usize = 256;
/// How long the client keeps trying the nodes for one request.
const RETRY_FOR: Duration = Duration::from_secs(2);
/// A poll gets at least this long (a node that accepts connections but
/// does not answer is only noticed this way).
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// Pause before following the events again after the stream broke.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// How often to ask the node for the cluster's state, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    interval_ms: u64,
}

enum Update {
    /// Boxed: a snapshot is large, and the channel holds many updates.
    Polled(Result<Box<Snapshot>, String>),
    Event(Event),
    Input(Input),
}

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    // A dashboard should say a node is away within a poll or two, not
    // after the 20 s a command keeps trying.
    let client = args.api.builder()?.retry_for(RETRY_FOR).build()?;
    let interval = Duration::from_millis(args.interval_ms);
    let (sender, mut updates) = mpsc::channel(UPDATES);
    let mut tasks = JoinSet::new();
    tasks.spawn(poll_every(client.clone(), interval, sender.clone()));
    tasks.spawn(follow_events(client.clone(), sender.clone()));
    // Before entering, so a half-done set-up is undone too.
    let _restore = RestoreTerminal;
    let mut terminal = ratatui::try_init()?;
    let input = read_input(sender, Update::Input);
    let mut state = TopState::new(client.current_node().to_string());
    loop {
        terminal.draw(|frame| ui::render(frame, &state))?;
        let Some(update) = updates.recv().await else {
            break;
        };
        match update {
            Update::Polled(Ok(snapshot)) => state.apply(*snapshot),
            Update::Polled(Err(error)) => state.failed(error),
            Update::Event(event) => state.on_event(event),
            Update::Input(Input::Key(key)) if state.on_key(key) == Action::Quit => break,
            Update::Input(_) => {}
        }
    }
    drop(updates);
    tasks.shutdown().await;
    // Joined so nothing reads the terminal while it is restored.
    let _ = input.join();
    Ok(())
}

/// Everything the dashboard shows but events, from one node.
async fn poll(client: &Client) -> Result<Snapshot, ClientError> {
    let (cluster, status, metrics) =
        tokio::try_join!(client.cluster(), client.status(), client.metrics())?;
    Ok(Snapshot {
        node: client.current_node().to_string(),
        cluster,
        status,
        metrics,
        taken_at: Instant::now(),
    })
}

async fn poll_every(client: Client, interval: Duration, updates: mpsc::Sender<Update>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let answer_within = interval.max(ANSWER_WITHIN);
    loop {
        ticks.tick().await;
        let polled = match tokio::time::timeout(answer_within, poll(&client)).await {
            Ok(Ok(snapshot)) => Ok(Box::new(snapshot)),
            // One line: the status line has no room for the hint's line break.
            Ok(Err(error)) => Err(explain(error).to_string().replace('\n', ";")),
            Err(_) => Err(format!(
                "no answer from {} within {} s; is `shoal node --http` running there?",
                client.current_node(),
                answer_within.as_secs()
            )),
        };
        if updates.send(Update::Polled(polled)).await.is_err() {
            return;
        }
    }
}

/// Follows the node's telemetry events, from the start of its backlog
/// after each reconnect: sequence numbers start again when a node restarts
/// and differ between nodes, so what was already shown is recognised by
/// time and sequence number instead. The poller reports the node being away.
async fn follow_events(client: Client, updates: mpsc::Sender<Update>) {
    let mut last_shown = None;
    loop {
        if let Ok(events) = client.events(0).await {
            let mut events = std::pin::pin!(events);
            while let Some(Ok(event)) = events.next().await {
                let position = Some((event.at_ms, event.seq));
                if position <= last_shown {
                    continue;
                }
                last_shown = position;
                if updates.send(Update::Event(event)).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}
