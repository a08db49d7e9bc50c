//! Topics: publishing, subscribing (a node's server-sent events, one
//! [`TopicEvent`] per frame), and what a node knows of a topic.
//!
//! ```text
//!   publish ── POST /v1/topics/{topic} ────────► Published {seq, at_ms}
//!   subscribe ─ GET /v1/topics/{topic}/events ─► retained messages, then live ones
//!                  (Last-Event-ID: resume after)    event: message | lagged
//! ```
//!
//! A subscription follows one node and ends when that node stops; to go
//! on elsewhere, subscribe again with the last message's
//! [`event_id`](TopicMessage::event_id) as
//! [`SubscribeOptions::last_event_id`]. Delivery is best effort, in order
//! per publisher; a gap in a publisher's `seq` is a lost message.

use crate::error::ClientError;
use crate::sse::frames;
use crate::transport::{Request, Retry, Transport, segment};
use futures::{Stream, StreamExt};
use reqwest::Method;
use serde_json::Value;
use shoal_proto::api::{PublishBody, Published, TopicInfo, TopicMessage};

/// How a message is published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// A name to publish under (a chat nick), at most 64 characters.
    pub name: Option<String>,
    /// Keep the topic's last `retain` messages (at most 1000) for late
    /// subscribers.
    pub retain: Option<u32>,
}

/// Where a subscription starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Receive the messages the topic keeps (its last K) before live ones
    /// (default true).
    pub history: bool,
    /// Resume after this message (`TopicMessage::event_id`): only the kept
    /// messages after it come first.
    pub last_event_id: Option<String>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            history: true,
            last_event_id: None,
        }
    }
}

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq)]
pub enum TopicEvent {
    Message(TopicMessage),
    /// This subscriber fell behind and the node dropped `skipped` messages
    /// for it; the subscription goes on with newer ones.
    Lagged {
        skipped: u64,
    },
}

fn topic_path(topic: &str) -> String {
    format!("/v1/topics/{}", segment(topic))
}

pub(crate) async fn publish(
    transport: &Transport,
    topic: &str,
    value: &Value,
    options: PublishOptions,
) -> Result<Published, ClientError> {
    let body = PublishBody {
        value: value.clone(),
        name: options.name,
        retain: options.retain,
    };
    // Sent again only if it never arrived: a repeat would be a second message.
    let request = transport.with_body(Method::POST, topic_path(topic), &body, Retry::IfNotSent);
    transport.send(request).await
}

pub(crate) async fn info(transport: &Transport, topic: &str) -> Result<TopicInfo, ClientError> {
    transport.get(topic_path(topic), &[]).await
}

pub(crate) async fn subscribe(
    transport: &Transport,
    topic: &str,
    options: SubscribeOptions,
) -> Result<impl Stream<Item = Result<TopicEvent, ClientError>> + Send + 'static, ClientError> {
    let query = if options.history {
        Vec::new()
    } else {
        vec![("history", "false".to_string())]
    };
    let headers: Vec<(&'static str, String)> = options
        .last_event_id
        .map(|id| ("Last-Event-ID", id))
        .into_iter()
        .collect();
    let response = transport
        .execute(&Request::<()> {
            method: Method::GET,
            path: format!("{}/events", topic_path(topic)),
            query: &query,
            headers: &headers,
            body: None,
            timeout: None,
            retry: Retry::Always,
        })
        .await?;
    let node = transport.current_node().to_string();
    // After the stream broke, one error and then the end.
    let stream = frames(response)
        .scan(false, move |broken, frame| {
            let item = match frame {
                _ if *broken => return futures::future::ready(None),
                Ok(frame) => decode(&frame.event, &frame.data),
                Err(e) => {
                    *broken = true;
                    Some(Err(ClientError::Protocol(format!(
                        "the subscription's stream from {node} broke: {e}"
                    ))))
                }
            };
            futures::future::ready(Some(item))
        })
        .filter_map(futures::future::ready);
    Ok(stream)
}

/// One server-sent frame as a [`TopicEvent`]; `None` for frames without
/// data (keep-alives) and kinds this client does not know.
fn decode(event: &str, data: &str) -> Option<Result<TopicEvent, ClientError>> {
    if data.is_empty() {
        return None;
    }
    let bad = |e: serde_json::Error| ClientError::Protocol(format!("bad {event} event: {e}"));
    match event {
        "message" => Some(
            serde_json::from_str(data)
                .map(TopicEvent::Message)
                .map_err(bad),
        ),
        "lagged" => Some(
            serde_json::from_str::<Value>(data)
                .map_err(bad)
                .and_then(|lagged| match lagged["skipped"].as_u64() {
                    Some(skipped) => Ok(TopicEvent::Lagged { skipped }),
                    None => Err(ClientError::Protocol(format!(
                        "bad lagged event, no skipped count: {data}"
                    ))),
                }),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_become_messages_and_lag_reports() {
        let data = json!({
            "topic": "lobby", "publisher": "12D3KooWA", "name": "ada",
            "at_ms": 1_700_000_000_000u64, "seq": 7, "epoch": 3, "value": {"text": "hi"}, "retain": 50
        })
        .to_string();
        let Some(Ok(TopicEvent::Message(message))) = decode("message", &data) else {
            panic!("a message frame is a message");
        };
        assert_eq!(message.event_id(), "12D3KooWA:3:7");
        assert_eq!(message.name.as_deref(), Some("ada"));
        assert_eq!(
            decode("lagged", r#"{"skipped": 12}"#).unwrap().unwrap(),
            TopicEvent::Lagged { skipped: 12 }
        );
        assert!(decode("message", "").is_none(), "keep-alives are skipped");
        assert!(decode("something_new", "{}").is_none());
        let bad = decode("message", "{").unwrap().unwrap_err().to_string();
        assert!(bad.contains("bad message event"), "{bad}");
    }

    #[test]
    fn topic_names_are_escaped_in_paths() {
        assert_eq!(topic_path("chat:en.gb"), "/v1/topics/chat%3Aen.gb");
    }
}
