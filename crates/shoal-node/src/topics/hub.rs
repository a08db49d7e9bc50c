//! The topics of one node: their kept messages, their local subscribers,
//! and the gossip that carries them.

use super::order::{InOrder, REORDER_WAIT, Sequenced};
use crate::clock::now_ms;
use crate::net::{NetHandle, TopicDelivery};
use futures::Stream;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_proto::ErrorCode;
use shoal_proto::api::{
    ApiError, MAX_PUBLISHER_NAME_CHARS, MAX_RETAIN, MAX_TOPIC_VALUE_BYTES, Published, TopicMessage,
    check_topic_name,
};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

/// Messages a local subscriber may fall behind by before it skips ahead
/// (and is told how many it missed).
const SUBSCRIBER_QUEUE: usize = 1024;
/// Topics one node keeps state for; past it, new topics are refused.
const MAX_TOPICS: usize = 10_000;
/// Messages this node may publish per second (and in one burst): far above
/// a chat, enough for the pub/sub benchmark, and a bound on what one node
/// can push into everyone's gossip.
const PUBLISH_RATE_PER_S: f64 = 20_000.0;

/// How to publish.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// A name to publish under (a chat nick).
    pub name: Option<String>,
    /// Keep the topic's last `retain` messages for late subscribers.
    pub retain: Option<u32>,
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum TopicEvent {
    Message(Arc<TopicMessage>),
    /// The subscriber fell behind and `skipped` messages were dropped.
    Lagged {
        skipped: u64,
    },
}

/// What travels on the gossip topic; the publisher comes from the gossip
/// layer's signature, the topic from the gossip topic.
#[derive(Serialize, Deserialize)]
struct Envelope {
    name: Option<String>,
    at_ms: u64,
    seq: u64,
    #[serde(default)]
    epoch: u64,
    value: Value,
    retain: u32,
}

/// One publisher's messages on a topic, in order within its epoch.
#[derive(Default)]
struct PublisherStream {
    epoch: u64,
    order: InOrder<Arc<TopicMessage>>,
}

impl PublisherStream {
    /// Takes a message: a newer epoch (the publisher restarted) starts the
    /// stream over; a message of an older one is a straggler, dropped.
    fn accept(&mut self, message: Arc<TopicMessage>, now: Instant) -> Vec<Arc<TopicMessage>> {
        if message.epoch > self.epoch {
            *self = PublisherStream {
                epoch: message.epoch,
                order: InOrder::default(),
            };
        }
        if message.epoch < self.epoch {
            return Vec::new();
        }
        self.order.accept(message, now)
    }

    fn known_up_to(&mut self, epoch: u64, seq: u64) {
        if epoch > self.epoch {
            *self = PublisherStream {
                epoch,
                order: InOrder::default(),
            };
        }
        if epoch == self.epoch {
            self.order.known_up_to(seq);
        }
    }
}

struct TopicState {
    live: broadcast::Sender<Arc<TopicMessage>>,
    /// How many messages to keep (the newest publisher's request).
    retain: u32,
    kept: VecDeque<Arc<TopicMessage>>,
    /// When this node began numbering its messages on the topic.
    epoch: u64,
    /// This node's last sequence number on the topic, in `epoch`.
    published: u64,
    /// Each publisher's messages, put back in order.
    publishers: HashMap<String, PublisherStream>,
    /// Whether the gossip layer delivers this topic to us.
    following: bool,
    /// Whether the kept messages were completed from other nodes since we
    /// started following.
    history_fetched: bool,
}

impl TopicState {
    fn new() -> Self {
        TopicState {
            live: broadcast::channel(SUBSCRIBER_QUEUE).0,
            retain: 0,
            kept: VecDeque::new(),
            epoch: now_ms(),
            published: 0,
            publishers: HashMap::new(),
            following: false,
            history_fetched: false,
        }
    }

    /// Takes a message: delivered (with any that waited for it) once it
    /// is in order for its publisher.
    fn deliver(&mut self, message: Arc<TopicMessage>, now: Instant) {
        let order = self
            .publishers
            .entry(message.publisher.clone())
            .or_default();
        for ready in order.accept(message, now) {
            self.hand_out(ready);
        }
    }

    /// Delivers messages whose gap waited too long.
    /// Hands out what waited past its time; returns whether a gap is left.
    fn release_gaps(&mut self, now: Instant) -> bool {
        let ready: Vec<Arc<TopicMessage>> = self
            .publishers
            .values_mut()
            .filter(|stream| stream.order.has_gap())
            .flat_map(|stream| stream.order.release(now))
            .collect();
        for message in ready {
            self.hand_out(message);
        }
        self.publishers
            .values()
            .any(|stream| stream.order.has_gap())
    }

    fn hand_out(&mut self, message: Arc<TopicMessage>) {
        self.keep(&message);
        let _ = self.live.send(message);
    }

    fn keep(&mut self, message: &Arc<TopicMessage>) {
        if message.retain > 0 {
            self.retain = message.retain.min(MAX_RETAIN);
        }
        if self.retain == 0 || message.retain == 0 {
            return;
        }
        self.kept.push_back(Arc::clone(message));
        while self.kept.len() > self.retain as usize {
            self.kept.pop_front();
        }
    }
}

/// A token bucket: `rate` per second, bursts of `rate`.
struct RateLimit {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.duration_since(self.at).as_secs_f64() * PUBLISH_RATE_PER_S;
        self.tokens = (self.tokens + earned).min(PUBLISH_RATE_PER_S);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The topics of one node.
pub struct TopicHub {
    me: String,
    net: NetHandle,
    topics: Mutex<HashMap<String, TopicState>>,
    rate: Mutex<RateLimit>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

impl TopicHub {
    pub fn new(me: PeerId, net: NetHandle) -> Self {
        TopicHub {
            me: me.to_base58(),
            net,
            topics: Mutex::default(),
            rate: Mutex::new(RateLimit {
                tokens: PUBLISH_RATE_PER_S,
                at: Instant::now(),
            }),
        }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, TopicState>> {
        self.topics.lock().expect("topics lock")
    }

    /// Runs `change` on a topic's state, creating it if the node has room
    /// (forgetting an idle topic to make some).
    fn with_topic<T>(
        &self,
        topic: &str,
        change: impl FnOnce(&mut TopicState) -> T,
    ) -> Result<T, ApiError> {
        let mut topics = self.topics();
        if !topics.contains_key(topic) && topics.len() >= MAX_TOPICS {
            let idle = topics
                .iter()
                .find(|(_, state)| !state.following && state.live.receiver_count() == 0)
                .map(|(name, _)| name.clone());
            match idle {
                // A topic published on again later starts a new epoch.
                Some(idle) => {
                    topics.remove(&idle);
                }
                None => {
                    return Err(ApiError::new(
                        ErrorCode::Overloaded,
                        format!(
                            "this node already follows {MAX_TOPICS} topics with subscribers; '{topic}' is one too many"
                        ),
                    ));
                }
            }
        }
        Ok(change(
            topics
                .entry(topic.to_string())
                .or_insert_with(TopicState::new),
        ))
    }

    /// Publishes `value` on `topic`: to this node's subscribers at once, to
    /// the other nodes' by gossip.
    pub async fn publish(
        &self,
        topic: &str,
        value: Value,
        options: PublishOptions,
    ) -> Result<Published, ApiError> {
        check_topic_name(topic).map_err(invalid)?;
        if let Some(name) = &options.name
            && name.chars().count() > MAX_PUBLISHER_NAME_CHARS
        {
            return Err(invalid(format!(
                "a publisher name has at most {MAX_PUBLISHER_NAME_CHARS} characters"
            )));
        }
        let retain = options.retain.unwrap_or(0);
        if retain > MAX_RETAIN {
            return Err(invalid(format!(
                "a topic keeps at most {MAX_RETAIN} messages, not {retain}"
            )));
        }
        let size = serde_json::to_vec(&value).map_or(0, |bytes| bytes.len());
        if size > MAX_TOPIC_VALUE_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a message on '{topic}' is {size} bytes; the limit is {MAX_TOPIC_VALUE_BYTES}"
                ),
            ));
        }
        if !self.rate.lock().expect("rate lock").take(Instant::now()) {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "this node publishes at most {PUBLISH_RATE_PER_S} messages per second; try again shortly"
                ),
            ));
        }
        let at_ms = now_ms();
        let (epoch, seq) = self.with_topic(topic, |state| {
            state.published += 1;
            (state.epoch, state.published)
        })?;
        let envelope = Envelope {
            name: options.name.clone(),
            at_ms,
            seq,
            epoch,
            value,
            retain,
        };
        let bytes = serde_json::to_vec(&envelope).expect("an envelope serializes");
        self.net
            .publish_topic(topic, bytes)
            .await
            .map_err(|e| ApiError::new(ErrorCode::Overloaded, e))?;
        let message = Arc::new(TopicMessage {
            topic: topic.to_string(),
            publisher: self.me.clone(),
            name: options.name,
            at_ms,
            seq,
            epoch,
            value: envelope.value,
            retain,
        });
        self.with_topic(topic, |state| state.deliver(message, Instant::now()))?;
        Ok(Published {
            topic: topic.to_string(),
            seq,
            at_ms,
        })
    }

    /// Makes sure gossip delivers `topic` here; returns whether the kept
    /// messages still need completing from other nodes.
    pub async fn follow(&self, topic: &str) -> Result<bool, ApiError> {
        check_topic_name(topic).map_err(invalid)?;
        let (start, needs_history) = self.with_topic(topic, |state| {
            let start = !state.following;
            state.following = true;
            (start, !state.history_fetched)
        })?;
        if start {
            self.net.subscribe_topic(topic).await;
        }
        Ok(needs_history)
    }

    /// Adds kept messages fetched from other nodes.
    pub fn merge_history(&self, topic: &str, fetched: Vec<TopicMessage>) {
        let mut topics = self.topics();
        let Some(state) = topics.get_mut(topic) else {
            return;
        };
        state.history_fetched = true;
        let mut all: Vec<Arc<TopicMessage>> = state.kept.drain(..).collect();
        for message in fetched {
            if message.topic != topic || message.retain == 0 {
                continue;
            }
            state.retain = state.retain.max(message.retain.min(MAX_RETAIN));
            let known = all.iter().any(|kept| kept.event_id() == message.event_id());
            if !known {
                let stream = state
                    .publishers
                    .entry(message.publisher.clone())
                    .or_default();
                stream.known_up_to(message.epoch, message.seq);
                all.push(Arc::new(message));
            }
        }
        all.sort_by_key(|message| (message.at_ms, message.seq));
        let keep = state.retain as usize;
        let skip = all.len().saturating_sub(keep);
        state.kept = all.into_iter().skip(skip).collect();
    }

    /// Subscribes here: the kept messages first, then every new one.
    /// Reading the kept messages and joining the live stream happen under
    /// one lock, so nothing falls between them.
    pub fn subscribe_local(self: &Arc<Self>, topic: &str) -> Result<Subscription, ApiError> {
        check_topic_name(topic).map_err(invalid)?;
        let (kept, live) = self.with_topic(topic, |state| {
            (
                state.kept.iter().cloned().collect::<VecDeque<_>>(),
                state.live.subscribe(),
            )
        })?;
        Ok(Subscription {
            kept,
            live: BroadcastStream::new(live),
            topic: topic.to_string(),
            hub: Arc::clone(self),
        })
    }

    /// The messages this node keeps for `topic`, oldest first.
    pub fn kept(&self, topic: &str) -> Vec<Arc<TopicMessage>> {
        self.topics()
            .get(topic)
            .map(|state| state.kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// (kept messages, how many may be kept, local subscribers).
    pub fn local_info(&self, topic: &str) -> (usize, u32, usize) {
        self.topics().get(topic).map_or((0, 0, 0), |state| {
            (state.kept.len(), state.retain, state.live.receiver_count())
        })
    }

    /// Peers the gossip layer knows to follow `topic`.
    pub async fn peers(&self, topic: &str) -> Vec<PeerId> {
        self.net.topic_peers(topic).await
    }

    /// A message gossip delivered.
    fn receive(&self, delivery: TopicDelivery) {
        let publisher = delivery.publisher;
        let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::debug!(%publisher, error = %e, "ignored an undecodable topic message");
                return;
            }
        };
        let name_ok = envelope
            .name
            .as_ref()
            .is_none_or(|name| name.chars().count() <= MAX_PUBLISHER_NAME_CHARS);
        if check_topic_name(&delivery.topic).is_err() || !name_ok {
            tracing::debug!(%publisher, "ignored a topic message with a bad topic or name");
            return;
        }
        let message = Arc::new(TopicMessage {
            topic: delivery.topic,
            publisher: publisher.to_base58(),
            name: envelope.name,
            at_ms: envelope.at_ms,
            seq: envelope.seq,
            epoch: envelope.epoch,
            value: envelope.value,
            retain: envelope.retain.min(MAX_RETAIN),
        });
        let topic = message.topic.clone();
        let now = Instant::now();
        if self
            .with_topic(&topic, |state| state.deliver(message, now))
            .is_err()
        {
            tracing::debug!(%topic, "no room for another topic; message dropped");
        }
    }

    /// The last local subscriber of `topic` left: stop following it.
    fn unfollow_if_idle(&self, topic: &str) {
        let mut topics = self.topics();
        let Some(state) = topics.get_mut(topic) else {
            return;
        };
        if state.live.receiver_count() > 0 || !state.following {
            return;
        }
        state.following = false;
        state.history_fetched = false;
        if state.kept.is_empty() && state.published == 0 {
            topics.remove(topic);
        }
        self.net.unsubscribe_topic_soon(topic);
    }

    /// Delivers the messages whose gaps waited too long.
    /// Gives up on gaps past their time; returns whether any is left.
    fn release_gaps(&self, now: Instant) -> bool {
        let mut left = false;
        for state in self.topics().values_mut() {
            left |= state.release_gaps(now);
        }
        left
    }
}

/// Delivers gossip's topic messages to the hub until the node stops, and
/// gives up on gaps in time; a node with no gap to watch does not wake.
pub async fn receive(
    hub: Arc<TopicHub>,
    mut deliveries: mpsc::Receiver<TopicDelivery>,
    shutdown: CancellationToken,
) {
    let mut gaps = tokio::time::interval(REORDER_WAIT / 4);
    gaps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A delivery may open a gap; the next tick looks.
    let mut maybe_gaps = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            delivery = deliveries.recv() => match delivery {
                Some(delivery) => {
                    hub.receive(delivery);
                    maybe_gaps = true;
                }
                None => return,
            },
            _ = gaps.tick(), if maybe_gaps => maybe_gaps = hub.release_gaps(Instant::now()),
        }
    }
}

/// One subscriber's messages: those the topic keeps, then every new one.
/// Dropping it unsubscribes.
pub struct Subscription {
    kept: VecDeque<Arc<TopicMessage>>,
    live: BroadcastStream<Arc<TopicMessage>>,
    topic: String,
    hub: Arc<TopicHub>,
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Skips the kept messages: only new ones follow.
    pub fn skip_kept(&mut self) {
        self.kept.clear();
    }

    /// Skips the kept messages up to and including the one with `event_id`
    /// (`<publisher>:<epoch>:<seq>`), for a subscriber that resumes; if that one is
    /// no longer kept, every kept message follows.
    pub fn resume_after(&mut self, event_id: &str) {
        if let Some(position) = self.kept.iter().position(|m| m.event_id() == event_id) {
            self.kept.drain(..=position);
        }
    }
}

impl Stream for Subscription {
    type Item = TopicEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TopicEvent>> {
        if let Some(message) = self.kept.pop_front() {
            return Poll::Ready(Some(TopicEvent::Message(message)));
        }
        match Pin::new(&mut self.live).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(TopicEvent::Message(message))),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(skipped)))) => {
                Poll::Ready(Some(TopicEvent::Lagged { skipped }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Our receiver still counts until `live` drops; replace it first.
        let _ = std::mem::replace(
            &mut self.live,
            BroadcastStream::new(broadcast::channel(1).1),
        );
        self.hub.unfollow_if_idle(&self.topic);
    }
}

impl Sequenced for Arc<TopicMessage> {
    fn seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests;
