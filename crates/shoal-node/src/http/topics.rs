//! Topics: publish a message, subscribe as server-sent events, and what
//! this node knows of a topic.

use super::error::{ApiResult, Body, Path, Query};
use crate::node::handle::Node;
use crate::topics::{PublishOptions, TopicEvent};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use shoal_proto::api::{ApiError, PublishBody, Published, TopicInfo, TopicMessage};
use std::convert::Infallible;
use utoipa::IntoParams;

/// Publishes a message on a topic: every subscriber in the cluster gets it
/// (best effort; order kept per publisher).
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "1 to 128 letters, digits, '.', '_', '-' or ':'")),
    request_body = PublishBody,
    responses(
        (status = 200, description = "Published, with its sequence number", body = Published),
        (status = 400, description = "`invalid_request`: a bad topic, name or retain", body = ApiError),
        (status = 413, description = "`payload_too_large`: a value over 64 KiB", body = ApiError),
        (status = 503, description = "`overloaded`: over the node's publish rate", body = ApiError),
    )
)]
pub async fn publish(
    State(node): State<Node>,
    Path(topic): Path<String>,
    Body(body): Body<PublishBody>,
) -> ApiResult<Published> {
    let options = PublishOptions {
        name: body.name,
        retain: body.retain,
    };
    Ok(Json(node.publish_with(&topic, body.value, options).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Send the messages the topic keeps first (default true).
    #[serde(default = "yes")]
    history: bool,
}

fn yes() -> bool {
    true
}

/// A topic's messages as server-sent events (`event: message`, `id:
/// <publisher>:<epoch>:<seq>`, data a TopicMessage): the kept ones first, then each
/// as it comes. With `Last-Event-ID`, only kept messages after that one. A
/// subscriber too slow to keep up gets `event: lagged` with `{"skipped": n}`.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/events",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic"), SubscribeParams),
    responses(
        (status = 200, description = "Server-sent events, each a TopicMessage as JSON", content_type = "text/event-stream", body = TopicMessage),
        (status = 400, description = "`invalid_request`: a bad topic name", body = ApiError),
    )
)]
pub async fn subscribe(
    State(node): State<Node>,
    Path(topic): Path<String>,
    Query(params): Query<SubscribeParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, super::error::HttpError> {
    let mut subscription = node.subscribe(&topic).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    match resume {
        Some(last) => subscription.resume_after(last),
        None if !params.history => subscription.skip_kept(),
        None => {}
    }
    let stopping = node.stopping().cancelled_owned();
    let stream = subscription.take_until(stopping).map(|event| {
        Ok(match event {
            TopicEvent::Message(message) => Event::default()
                .event("message")
                .id(message.event_id())
                .json_data(&*message)
                .expect("a message serializes"),
            TopicEvent::Lagged { skipped } => Event::default()
                .event("lagged")
                .json_data(json!({ "skipped": skipped }))
                .expect("a notice serializes"),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What this node knows of a topic: messages kept, subscribers here, and
/// the other nodes that follow it.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic")),
    responses((status = 200, body = TopicInfo))
)]
pub async fn info(State(node): State<Node>, Path(topic): Path<String>) -> ApiResult<TopicInfo> {
    Ok(Json(node.topic_info(&topic).await))
}
