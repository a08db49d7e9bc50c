//! Topics on the [`Node`] handle: publish, subscribe (completing the
//! topic's kept messages from other nodes), and the subscriptions scripts
//! make with `shoal.subscribe`.

use super::handle::Node;
use crate::topics::functions::{TOPIC_HISTORY, subscriber_topic};
use crate::topics::{PublishOptions, Subscription, TopicEvent};
use futures::StreamExt;
use serde_json::{Value, json};
use shoal_proto::api::{ApiError, Published, TopicInfo, TopicMessage};
use std::time::Duration;

/// Other nodes asked for a topic's kept messages when a subscriber arrives
/// on a node that has not been following it.
const HISTORY_PEERS: usize = 16;
/// How long one of them gets to answer.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// Publishes `value` on `topic` to every subscriber in the cluster
    /// (best effort; see [`crate::topics`]).
    pub async fn publish(&self, topic: &str, value: Value) -> Result<Published, ApiError> {
        self.publish_with(topic, value, PublishOptions::default())
            .await
    }

    /// Publishes under a name, or asking the topic to keep its last
    /// messages for late subscribers.
    pub async fn publish_with(
        &self,
        topic: &str,
        value: Value,
        options: PublishOptions,
    ) -> Result<Published, ApiError> {
        self.inner.topics.publish(topic, value, options).await
    }

    /// Subscribes to `topic`: the messages it keeps, then every new one.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, ApiError> {
        let hub = &self.inner.topics;
        if hub.follow(topic).await? {
            let fetched = self.fetch_history(topic).await;
            hub.merge_history(topic, fetched);
        }
        hub.subscribe_local(topic)
    }

    /// What this node knows of `topic`.
    pub async fn topic_info(&self, topic: &str) -> TopicInfo {
        let hub = &self.inner.topics;
        let (retained, retain, subscribers) = hub.local_info(topic);
        let peers = hub.peers(topic).await;
        TopicInfo {
            topic: topic.to_string(),
            retained,
            retain,
            subscribers,
            peers: peers.iter().map(|peer| peer.to_base58()).collect(),
        }
    }

    /// The messages other nodes keep for `topic`.
    async fn fetch_history(&self, topic: &str) -> Vec<TopicMessage> {
        let peers = self.inner.peers.live_peers();
        let asks = peers.into_iter().take(HISTORY_PEERS).map(|peer| {
            let calls = &self.inner.calls;
            async move {
                let asked = calls.call_on(peer, TOPIC_HISTORY, json!({ "topic": topic }));
                match tokio::time::timeout(HISTORY_TIMEOUT, asked).await {
                    Ok(Ok(kept)) => {
                        serde_json::from_value::<Vec<TopicMessage>>(kept).unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            }
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Starts serving the `shoal.subscribe` handlers among `functions`
    /// (a script's registered names): each new message of the topic runs
    /// its handler here, one message at a time, in order.
    pub(crate) fn serve_script_subscribers(&self, functions: &[String]) {
        for function in functions {
            let Some(topic) = subscriber_topic(function) else {
                continue;
            };
            if !self
                .inner
                .script_subscribers
                .lock()
                .expect("subscribers lock")
                .insert(function.clone())
            {
                continue; // the script was loaded before
            }
            let node = self.clone();
            let (topic, function) = (topic.to_string(), function.clone());
            self.inner
                .tasks
                .spawn(async move { node.run_script_subscriber(&topic, &function).await });
        }
    }

    async fn run_script_subscriber(&self, topic: &str, function: &str) {
        let mut subscription = match self.subscribe(topic).await {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(%topic, %function, error = %e, "a script cannot subscribe");
                return;
            }
        };
        // A script hears what is said from now on, not the past again.
        subscription.skip_kept();
        let me = self.peer_id();
        let stopping = self.stopping();
        loop {
            let event = tokio::select! {
                _ = stopping.cancelled() => return,
                event = subscription.next() => event,
            };
            match event {
                Some(TopicEvent::Message(message)) => {
                    let args = serde_json::to_value(&*message).expect("a message serializes");
                    if let Err(e) = self.inner.calls.call_on(me, function, args).await {
                        tracing::warn!(%topic, %function, error = %e, "a script's subscriber failed");
                    }
                }
                Some(TopicEvent::Lagged { skipped }) => {
                    tracing::warn!(%topic, %function, skipped, "a script's subscriber fell behind");
                }
                None => return,
            }
        }
    }
}
