//! The distributed queue: push, pop (waiting up to a timeout), size, close.

use super::error::{ApiResult, Body, Path};
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use shoal_proto::api::{
    ApiError, MAX_POP_TIMEOUT_MS, PopBody, Popped, PushBody, Pushed, QueueClosed, QueueSize,
};
use std::time::Duration;

/// Adds items; they stay on this node until a pop anywhere takes them.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/push",
    tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    request_body = PushBody,
    responses(
        (status = 200, body = Pushed),
        (status = 409, description = "`closed`: the queue is closed", body = ApiError),
        (status = 413, description = "`payload_too_large`: this node's share is full", body = ApiError),
    )
)]
pub async fn push(
    State(node): State<Node>,
    Path(name): Path<String>,
    Body(body): Body<PushBody>,
) -> ApiResult<Pushed> {
    let pushed = body.items.len();
    node.queue(&name).push(body.items).await?;
    Ok(Json(Pushed {
        queue: name,
        pushed,
    }))
}

/// Takes one item from anywhere in the cluster, waiting up to `timeout_ms`
/// for one to appear. Order is not guaranteed.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/pop",
    tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    request_body = PopBody,
    responses(
        (status = 200, body = Popped),
        (status = 409, description = "`closed`: closed and empty everywhere", body = ApiError),
        (status = 504, description = "`timeout`: empty for the whole wait", body = ApiError),
    )
)]
pub async fn pop(
    State(node): State<Node>,
    Path(name): Path<String>,
    Body(body): Body<PopBody>,
) -> ApiResult<Popped> {
    let wait = body.timeout_ms.unwrap_or(0).min(MAX_POP_TIMEOUT_MS);
    let item = node.queue(&name).pop(Duration::from_millis(wait)).await?;
    Ok(Json(Popped { queue: name, item }))
}

/// Items held across the cluster's live nodes.
#[utoipa::path(
    get,
    path = "/v1/queues/{name}",
    tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    responses((status = 200, body = QueueSize))
)]
pub async fn size(State(node): State<Node>, Path(name): Path<String>) -> ApiResult<QueueSize> {
    let size = node.queue(&name).size().await?;
    Ok(Json(QueueSize { queue: name, size }))
}

/// Closes the queue everywhere: pushes fail, pops drain what is left.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/close",
    tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    responses((status = 200, body = QueueClosed))
)]
pub async fn close(State(node): State<Node>, Path(name): Path<String>) -> ApiResult<QueueClosed> {
    node.queue(&name).close().await?;
    Ok(Json(QueueClosed {
        queue: name,
        closed: true,
    }))
}
