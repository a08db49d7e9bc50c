//! Draining a node before it stops: `POST /v1/drain` starts it (what
//! `shoal drain` and a Kubernetes preStop hook send), `GET /v1/drain`
//! says where it stands. Once drained, the node stops (the `shoal node`
//! process exits 0).

use super::error::{ApiResult, Body};
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use shoal_proto::api::{DrainBody, DrainStatus};
use std::time::Duration;

/// Starts draining this node: it takes no new calls or jobs, moves its
/// queue items to other nodes, lets running work finish within the grace
/// period, hands back what is left, gives up its Raft seat and stops.
/// Answers at once (or once drained, with `wait`); asking again changes
/// nothing.
#[utoipa::path(
    post,
    path = "/v1/drain",
    tag = "cluster",
    request_body = DrainBody,
    responses((status = 202, description = "Draining", body = DrainStatus))
)]
pub async fn start(
    State(node): State<Node>,
    Body(body): Body<DrainBody>,
) -> (axum::http::StatusCode, Json<DrainStatus>) {
    let grace = body
        .grace_ms
        .map_or(node.config().drain_timeout, Duration::from_millis);
    node.start_drain(grace);
    if body.wait {
        node.drained().await;
    }
    (axum::http::StatusCode::ACCEPTED, Json(node.drain_status()))
}

/// Where this node's drain stands.
#[utoipa::path(get, path = "/v1/drain", tag = "cluster", responses((status = 200, body = DrainStatus)))]
pub async fn status(State(node): State<Node>) -> ApiResult<DrainStatus> {
    Ok(Json(node.drain_status()))
}
