//! Topics: the API's publish/subscribe bodies and the message subscribers
//! receive.
//!
//! A message carries its publisher's peer id (taken from the gossip
//! layer's signature, never from the body, so no node can speak for
//! another), the name the publisher gave (a chat nick), when it was
//! published, its sequence number per publisher and topic, and its value.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Largest value one message may carry, as JSON.
pub const MAX_TOPIC_VALUE_BYTES: usize = 64 * 1024;
/// Longest topic name.
pub const MAX_TOPIC_NAME_CHARS: usize = 128;
/// Longest publisher name.
pub const MAX_PUBLISHER_NAME_CHARS: usize = 64;
/// Most messages a topic may keep for late subscribers.
pub const MAX_RETAIN: u32 = 1000;

/// Checks a topic name: 1 to 128 characters among letters, digits and
/// `. _ - :`. The error says what is wrong.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.chars().count() > MAX_TOPIC_NAME_CHARS {
        return Err(format!(
            "a topic name has 1 to {MAX_TOPIC_NAME_CHARS} characters, not {}",
            topic.chars().count()
        ));
    }
    match topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        Some(bad) => Err(format!(
            "topic '{topic}' contains '{bad}': use letters, digits, '.', '_', '-' or ':'"
        )),
        None => Ok(()),
    }
}

/// A message on a topic, as a subscriber sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicMessage {
    pub topic: String,
    /// Peer id of the node that published it.
    pub publisher: String,
    /// The name the publisher gave, if any (a chat nick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Per publisher and topic, counting from 1 within `epoch`: a gap means
    /// a lost message.
    pub seq: u64,
    /// When the publisher began this numbering (ms since the Unix epoch);
    /// a publisher that restarts begins a new epoch and counts from 1 again.
    #[serde(default)]
    pub epoch: u64,
    #[schema(value_type = Object)]
    pub value: Value,
    /// How many messages the topic keeps for late subscribers, as this
    /// message's publisher asked (0: this message is not kept).
    #[serde(default)]
    pub retain: u32,
}

impl TopicMessage {
    /// The id a subscriber resumes after (`Last-Event-ID`): unique per
    /// message, `<publisher>:<epoch>:<seq>`.
    pub fn event_id(&self) -> String {
        format!("{}:{}:{}", self.publisher, self.epoch, self.seq)
    }
}

/// `POST /v1/topics/{topic}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Any JSON, at most 64 KiB.
    #[schema(value_type = Object)]
    pub value: Value,
    /// A name to publish under (a chat nick), at most 64 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// Keep the topic's last `retain` messages (at most 1000) for late
    /// subscribers.
    #[serde(default)]
    pub retain: Option<u32>,
}

/// The answer to a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Published {
    pub topic: String,
    pub seq: u64,
    pub at_ms: u64,
}

/// `GET /v1/topics/{topic}`: what this node knows of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicInfo {
    pub topic: String,
    /// Messages this node keeps for late subscribers, and how many it may.
    pub retained: usize,
    pub retain: u32,
    /// Subscribers on this node (API streams, scripts, embedders).
    pub subscribers: usize,
    /// Other nodes subscribed to the topic.
    pub peers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked_with_a_reason() {
        assert!(check_topic_name("lobby").is_ok());
        assert!(check_topic_name("room-1.chat:en_GB").is_ok());
        assert!(check_topic_name("").unwrap_err().contains("1 to 128"));
        assert!(check_topic_name(&"x".repeat(129)).is_err());
        let slash = check_topic_name("a/b").unwrap_err();
        assert!(slash.contains("'/'"), "{slash}");
    }
}
