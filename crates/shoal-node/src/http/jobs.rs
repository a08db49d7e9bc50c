//! Durable jobs: submit, read, list, cancel, and follow one until it ends.

use super::ReadParams;
use super::error::{ApiResult, Body, HttpError, Path, Query};
use crate::jobs::{Job, JobId, JobSpec, JobState};
use crate::node::data::Read;
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use shoal_proto::ErrorCode;
use shoal_proto::api::{ApiError, DEFAULT_PAGE, JobPage, MAX_PAGE, Submitted};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

/// How often a followed job is read again.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Submits a job; answers once a majority of voters stored it.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = JobSpec,
    responses(
        (status = 200, description = "The job's id (the first job's, for a repeated idempotency key)", body = Submitted),
        (status = 400, description = "`invalid_request`", body = ApiError),
        (status = 503, description = "`unavailable`: no majority of voters", body = ApiError),
    )
)]
pub async fn submit(State(node): State<Node>, Body(spec): Body<JobSpec>) -> ApiResult<Submitted> {
    let id = node.submit_job(spec).await?;
    Ok(Json(Submitted { id }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only jobs in this state.
    state: Option<JobState>,
    /// Jobs per page (default 100, at most 10,000).
    limit: Option<usize>,
    /// The `next` of the previous page.
    after: Option<JobId>,
    /// Read this node's replica as it is instead of a linearizable read.
    #[serde(default)]
    stale: bool,
}

/// Lists jobs in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListParams),
    responses((status = 200, body = JobPage), (status = 400, body = ApiError))
)]
pub async fn list(
    State(node): State<Node>,
    Query(params): Query<ListParams>,
) -> ApiResult<JobPage> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let jobs = node
        .jobs(
            params.state,
            limit,
            params.after,
            Read::stale_if(params.stale),
        )
        .await?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|job| job.id))
        .flatten();
    Ok(Json(JobPage { jobs, next }))
}

/// One job: state, attempts, progress, result or error.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = u64, Path, description = "The job's id"), ReadParams),
    responses((status = 200, body = Job), (status = 404, description = "`not_found`", body = ApiError))
)]
pub async fn get(
    State(node): State<Node>,
    Path(id): Path<JobId>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Job> {
    Ok(Json(find(&node, id, params.read()).await?))
}

/// Cancels a queued or running job; a running one is stopped where it runs.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The cancelled job", body = Job),
        (status = 404, description = "`not_found`", body = ApiError),
        (status = 409, description = "`rejected`: the job already ended", body = ApiError),
    )
)]
pub async fn cancel(State(node): State<Node>, Path(id): Path<JobId>) -> ApiResult<Job> {
    find(&node, id, Read::Linearizable).await?;
    node.cancel_job(id).await?;
    Ok(Json(find(&node, id, Read::Linearizable).await?))
}

/// Follows a job: a `job` event with the whole job each time it changes
/// (state, attempt, progress, message), the last one when it has ended.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Server-sent `job` events, each a Job as JSON", content_type = "text/event-stream", body = Job),
        (status = 404, description = "`not_found`", body = ApiError),
    )
)]
pub async fn events(
    State(node): State<Node>,
    Path(id): Path<JobId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    // Linearizable first, so a job submitted a moment ago is found.
    let first = find(&node, id, Read::Linearizable).await?;
    let stopping = node.stopping().cancelled_owned();
    let updates = futures::stream::unfold(Follow::Send(first), move |follow| {
        let node = node.clone();
        async move {
            let last = match follow {
                Follow::Send(job) => return Some((job_event(&job), next_step(job))),
                Follow::Watch(last) => last,
                Follow::Done => return None,
            };
            loop {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                // A failed read (no member reachable for a moment) is retried.
                if let Ok(Some(job)) = node.job(id, Read::Stale).await
                    && job != last
                {
                    return Some((job_event(&job), next_step(job)));
                }
            }
        }
    });
    let updates = updates.take_until(stopping);
    Ok(Sse::new(updates).keep_alive(KeepAlive::default()))
}

enum Follow {
    Send(Job),
    Watch(Job),
    Done,
}

fn next_step(job: Job) -> Follow {
    if job.state.is_finished() {
        Follow::Done
    } else {
        Follow::Watch(job)
    }
}

fn job_event(job: &Job) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("job")
        .json_data(job)
        .expect("a job serializes"))
}

async fn find(node: &Node, id: JobId, read: Read) -> Result<Job, HttpError> {
    node.job(id, read)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::NotFound, format!("no job {id}")))
}
