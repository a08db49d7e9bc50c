//! `shoal chat`: a chat room on a topic, through any node's HTTP API.
//!
//! ```text
//!   room task     ── messages on ROOM (SSE, the kept ones first) ──┐
//!   presence task ── beats on ROOM.presence (SSE) ────────────────┼─> bounded channel ─> loop ─> ChatState ─> ui::render
//!   input thread  ── keys, resizes ───────────────────────────────┘                         │
//!   sender task   <── lines typed, published in order ──────────────────────────────────────┘
//!   beat task     ── {"here": true} on ROOM.presence every 5 s
//! ```
//!
//! A line goes out as `{"text": …}` on ROOM under the nick, kept with the
//! room's last [`RETAIN`] messages so a newcomer sees them first; it shows
//! on screen when it comes back from the node, as everyone else's do.
//! Members are those whose beat came in the last 15 s; quitting sends
//! `{"here": false}`. The loop owns the state and the terminal; the others
//! only send. A stream that breaks is followed again (from another node
//! when `--node` lists several), resuming after the last message seen.

mod state;
mod ui;

#[cfg(test)]
mod tests;

use crate::api::{ApiArgs, explain};
use crate::terminal::{RestoreTerminal, read_input};
use clap::Args;
use futures::{Stream, StreamExt};
use ratatui::crossterm::event::Event as Input;
use serde_json::json;
use shoal_client::{
    Client, ClientError, PublishOptions, SubscribeOptions, TopicEvent, TopicMessage,
};
use shoal_proto::api::{MAX_PUBLISHER_NAME_CHARS, check_topic_name};
use state::{Action, ChatState};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Messages the room keeps for newcomers.
pub const RETAIN: u32 = 50;
/// How often a chat says it is here; members are dropped after three
/// missed beats (`state::MEMBER_TIMEOUT`).
pub const BEAT: Duration = Duration::from_secs(5);
/// Updates waiting for the loop; the senders wait when it falls behind.
const UPDATES: usize = 256;
/// Lines typed but not yet published; typing faster than that is refused.
const OUTGOING: usize = 32;
/// How long the client keeps trying the nodes for one request: a chat
/// should say a node is away within seconds.
const RETRY_FOR: Duration = Duration::from_secs(3);
/// Pause before following a topic again after its stream broke.
const RECONNECT: Duration = Duration::from_secs(1);
/// The goodbye beat may hold up quitting this long at most.
const GOODBYE_WITHIN: Duration = Duration::from_secs(2);
/// How often the screen is redrawn with nothing happening, so members
/// who went silent leave the list.
const REDRAW: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The room: a topic name (letters, digits, '.', '_', '-', ':').
    #[arg(long = "topic", default_value = "lobby", value_name = "ROOM")]
    room: String,
    /// Your name in the room (default: $USER, else "anon").
    #[arg(long)]
    nick: Option<String>,
}

/// Which of the chat's two topics a stream carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Lines: the kept ones first, and resumed after the last one seen.
    Room,
    /// Beats: only new ones matter.
    Presence,
}

enum Update {
    Room(TopicMessage),
    Presence(TopicMessage),
    /// Something went wrong (`Some`), or works again (`None`).
    Status(Option<String>),
    Input(Input),
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let nick = args
        .nick
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|nick| !nick.trim().is_empty())
        .unwrap_or_else(|| "anon".to_string());
    anyhow::ensure!(
        nick.chars().count() <= MAX_PUBLISHER_NAME_CHARS,
        "a nick has at most {MAX_PUBLISHER_NAME_CHARS} characters"
    );
    let presence_topic = format!("{}.presence", args.room);
    check_topic_name(&args.room).map_err(anyhow::Error::msg)?;
    check_topic_name(&presence_topic).map_err(anyhow::Error::msg)?;
    let client = args.api.builder()?.retry_for(RETRY_FOR).build()?;

    // Subscribed before the screen changes, so a wrong --node or a node
    // without an API is reported as any command reports it.
    let room = client
        .subscribe(&args.room, SubscribeOptions::default())
        .await
        .map_err(explain)?;
    let no_history = SubscribeOptions {
        history: false,
        last_event_id: None,
    };
    let presence = client
        .subscribe(&presence_topic, no_history)
        .await
        .map_err(explain)?;

    let (sender, mut updates) = mpsc::channel(UPDATES);
    let (outgoing, lines) = mpsc::channel(OUTGOING);
    let mut tasks = JoinSet::new();
    tasks.spawn(follow(
        client.clone(),
        args.room.clone(),
        room,
        Feed::Room,
        sender.clone(),
    ));
    tasks.spawn(follow(
        client.clone(),
        presence_topic.clone(),
        presence,
        Feed::Presence,
        sender.clone(),
    ));
    tasks.spawn(send_lines(
        client.clone(),
        args.room.clone(),
        nick.clone(),
        lines,
        sender.clone(),
    ));
    tasks.spawn(beat(
        client.clone(),
        presence_topic.clone(),
        nick.clone(),
        sender.clone(),
    ));

    let mut state = ChatState::new(&args.room, &nick, client.current_node().as_str());
    // Before entering, so a half-done set-up is undone too.
    let restore = RestoreTerminal;
    let mut terminal = ratatui::try_init()?;
    let input = read_input(sender, Update::Input);
    let mut redraw = tokio::time::interval(REDRAW);
    loop {
        terminal.draw(|frame| ui::render(frame, &state, Instant::now()))?;
        let update = tokio::select! {
            update = updates.recv() => update,
            _ = redraw.tick() => continue,
        };
        let Some(update) = update else { break };
        match update {
            Update::Room(message) => {
                state.on_message(&message);
            }
            Update::Presence(message) => state.on_presence(&message, Instant::now()),
            Update::Status(status) => state.error = status,
            Update::Input(Input::Key(key)) => match state.on_key(key) {
                Action::Continue => {}
                Action::Quit => break,
                Action::Send(line) => {
                    if outgoing.try_send(line).is_err() {
                        state.failed("typing faster than the node takes lines; wait".into());
                    }
                }
            },
            Update::Input(_) => {}
        }
    }
    drop(updates);
    tasks.shutdown().await;
    // Joined so nothing reads the terminal while it is restored.
    let _ = input.join();
    drop(restore);
    say_goodbye(&client, &presence_topic, &nick).await;
    Ok(())
}

/// Forwards a topic's messages to the loop, following the topic again
/// whenever its stream ends (the node stopped, or the connection broke).
async fn follow(
    client: Client,
    topic: String,
    first: impl Stream<Item = Result<TopicEvent, ClientError>> + Send + 'static,
    feed: Feed,
    updates: mpsc::Sender<Update>,
) {
    let mut stream = first.boxed();
    let mut last_event_id = None;
    loop {
        while let Some(event) = stream.next().await {
            let update = match event {
                Ok(TopicEvent::Message(message)) if feed == Feed::Room => {
                    last_event_id = Some(message.event_id());
                    Update::Room(message)
                }
                Ok(TopicEvent::Message(message)) => Update::Presence(message),
                Ok(TopicEvent::Lagged { skipped }) => Update::Status(Some(format!(
                    "fell behind on {topic}: {skipped} messages skipped"
                ))),
                Err(error) => Update::Status(Some(one_line(error))),
            };
            if updates.send(update).await.is_err() {
                return;
            }
        }
        let lost = format!("lost {topic} at {}; reconnecting…", client.current_node());
        if updates.send(Update::Status(Some(lost))).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(RECONNECT).await;
            let options = SubscribeOptions {
                history: feed == Feed::Room,
                last_event_id: last_event_id.clone(),
            };
            match client.subscribe(&topic, options).await {
                Ok(resumed) => {
                    stream = resumed.boxed();
                    if updates.send(Update::Status(None)).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(error) => {
                    if updates
                        .send(Update::Status(Some(one_line(error))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Publishes the typed lines one at a time, so they go out in order.
async fn send_lines(
    client: Client,
    room: String,
    nick: String,
    mut lines: mpsc::Receiver<String>,
    updates: mpsc::Sender<Update>,
) {
    while let Some(line) = lines.recv().await {
        let options = PublishOptions {
            name: Some(nick.clone()),
            retain: Some(RETAIN),
        };
        let status = match client.publish(&room, &json!({"text": line}), options).await {
            Ok(_) => None,
            Err(error) => Some(format!("not sent: {}", one_line(error))),
        };
        if updates.send(Update::Status(status)).await.is_err() {
            return;
        }
    }
}

/// Says this chat is here every [`BEAT`], starting now.
async fn beat(client: Client, topic: String, nick: String, updates: mpsc::Sender<Update>) {
    let mut ticks = tokio::time::interval(BEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let options = PublishOptions {
            name: Some(nick.clone()),
            retain: None,
        };
        if let Err(error) = client
            .publish(&topic, &json!({"here": true}), options)
            .await
        {
            let status = Update::Status(Some(one_line(error)));
            if updates.send(status).await.is_err() {
                return;
            }
        }
    }
}

/// `{"here": false}`, so the others list this chat no longer; not worth
/// holding up quitting for long.
async fn say_goodbye(client: &Client, topic: &str, nick: &str) {
    let options = PublishOptions {
        name: Some(nick.to_string()),
        retain: None,
    };
    let gone = json!({"here": false});
    let goodbye = client.publish(topic, &gone, options);
    let _ = tokio::time::timeout(GOODBYE_WITHIN, goodbye).await;
}

/// The status line has one line: the hint goes after a semicolon.
fn one_line(error: ClientError) -> String {
    explain(error).to_string().replace('\n', ";")
}
