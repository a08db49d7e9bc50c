//! The cluster as this node sees it: members, Raft, this node's status,
//! telemetry events and Prometheus metrics.

use super::error::{ApiResult, Query};
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use shoal_proto::api::{self, ClusterView, LogLevel, LogLine, NodeStatus};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
use utoipa::IntoParams;

/// Every node this one knows (itself first) with address, labels,
/// resources, load and liveness, and the Raft leader, term and voters.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", responses((status = 200, body = ClusterView)))]
pub async fn cluster(State(node): State<Node>) -> ApiResult<ClusterView> {
    Ok(Json(node.cluster_view().await))
}

/// How often `/v1/cluster/live` sends the cluster and this node again.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// The cluster and this node, sent again every second as two server-sent
/// events: `cluster` (a ClusterView) and `status` (a NodeStatus). What the
/// dashboard draws its live tables and charts from.
#[utoipa::path(
    get,
    path = "/v1/cluster/live",
    tag = "cluster",
    responses((status = 200, description = "Server-sent events, `cluster` (ClusterView) and `status` (NodeStatus), every second", content_type = "text/event-stream", body = ClusterView))
)]
pub async fn live(State(node): State<Node>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stopping = node.stopping().cancelled_owned();
    let ticks = IntervalStream::new(tokio::time::interval(LIVE_EVERY));
    let stream = ticks
        .then(move |_| {
            let node = node.clone();
            async move {
                let cluster = node.cluster_view().await;
                let mut status = node.status();
                status.jobs = node.job_counts_for_status().await;
                let cluster = Event::default()
                    .event("cluster")
                    .json_data(&cluster)
                    .expect("a cluster view serializes");
                let status = Event::default()
                    .event("status")
                    .json_data(&status)
                    .expect("a status serializes");
                futures::stream::iter([Ok(cluster), Ok(status)])
            }
        })
        .flatten()
        .take_until(stopping);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// This node: load, call counters, Raft, and jobs by state (from its
/// replica, or a member's on a node that holds none).
#[utoipa::path(get, path = "/v1/status", tag = "cluster", responses((status = 200, body = NodeStatus)))]
pub async fn status(State(node): State<Node>) -> ApiResult<NodeStatus> {
    let mut status = node.status();
    status.jobs = node.job_counts_for_status().await;
    Ok(Json(status))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events after this sequence number (default: the recent ones).
    #[serde(default)]
    after: u64,
}

/// Telemetry events as server-sent events named by their kind: the recent
/// ones first, then each as it happens. A reader too slow to keep up
/// skips ahead; the sequence numbers show the gap.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "cluster",
    params(EventParams),
    responses((status = 200, description = "Server-sent events, each an Event as JSON", content_type = "text/event-stream", body = api::Event))
)]
pub async fn events(
    State(node): State<Node>,
    Query(params): Query<EventParams>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (backlog, live) = node.events().subscribe(params.after);
    let live = BroadcastStream::new(live).filter_map(|event| async move { event.ok() });
    let stopping = node.stopping().cancelled_owned();
    let stream = futures::stream::iter(backlog)
        .chain(live)
        .take_until(stopping)
        .map(|event| {
            Ok(Event::default()
                .event(event.kind.as_str())
                .id(event.seq.to_string())
                .json_data(&event)
                .expect("an event serializes"))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "cluster",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics_text(),
    )
}

/// Lines `GET /v1/logs` returns unless asked for fewer.
const LOG_PAGE: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// The least severe level to return: `warn` (default) or `error`. A
    /// node keeps only warnings and errors.
    #[serde(default = "warn")]
    #[param(value_type = String)]
    level: LogLevel,
    /// At most this many of the newest lines (default 200; a node keeps
    /// its last 1000).
    limit: Option<usize>,
}

fn warn() -> LogLevel {
    LogLevel::Warn
}

/// This node's recent warnings and errors, oldest first: a bounded ring,
/// so the oldest go when it is full (the sequence numbers show the gap).
#[utoipa::path(
    get,
    path = "/v1/logs",
    tag = "cluster",
    params(LogParams),
    responses((status = 200, body = Vec<LogLine>))
)]
pub async fn logs(
    State(node): State<Node>,
    Query(params): Query<LogParams>,
) -> ApiResult<Vec<LogLine>> {
    let limit = params.limit.unwrap_or(LOG_PAGE);
    Ok(Json(node.logs().recent(params.level, limit)))
}
