//! Calls: one function, or a batch spread over the cluster.

use super::error::{ApiResult, Body, HttpError, Path};
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use futures::StreamExt;
use shoal_proto::ErrorCode;
use shoal_proto::api::{
    ApiError, BatchBody, BatchReply, BatchResult, CallBody, CallReply, MAX_BATCH_CALLS,
};
use std::time::Duration;

/// Runs a function wherever it is best placed and returns its result.
#[utoipa::path(
    post,
    path = "/v1/call/{function}",
    tag = "calls",
    params(("function" = String, Path, description = "The registered function to run")),
    request_body = CallBody,
    responses(
        (status = 200, description = "The function's result", body = CallReply),
        (status = 404, description = "`unknown_function`: no node offers it", body = ApiError),
        (status = 422, description = "`function_failed`: the function returned an error", body = ApiError),
        (status = 504, description = "`deadline_exceeded`", body = ApiError),
    )
)]
pub async fn call(
    State(node): State<Node>,
    Path(function): Path<String>,
    Body(body): Body<CallBody>,
) -> ApiResult<CallReply> {
    let timeout = body.timeout_ms.map(Duration::from_millis);
    let script = body.script.map(|s| shoal_js::Script::new(s.name, s.source));
    let result = node
        .call_with(&function, body.args, timeout, script)
        .await?;
    Ok(Json(CallReply { result }))
}

/// Runs many calls at once; each gets its own result or error, in order.
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "calls",
    request_body = BatchBody,
    responses(
        (status = 200, description = "One result or error per call, in the calls' order", body = BatchReply),
        (status = 400, description = "`invalid_request`: more than 10,000 calls", body = ApiError),
    )
)]
pub async fn batch(State(node): State<Node>, Body(body): Body<BatchBody>) -> ApiResult<BatchReply> {
    let count = body.calls.len();
    if count > MAX_BATCH_CALLS {
        return Err(HttpError::new(
            ErrorCode::InvalidRequest,
            format!("a batch holds at most {MAX_BATCH_CALLS} calls, not {count}; split it"),
        ));
    }
    let timeout = body.timeout_ms.map(Duration::from_millis);
    let in_flight = body.in_flight.unwrap_or(count).clamp(1, MAX_BATCH_CALLS);
    if in_flight >= count {
        let calls = body.calls.into_iter().map(|c| (c.function, c.args));
        let outcomes = node.call_all(calls.collect(), timeout).await;
        let results = outcomes.into_iter().map(BatchResult::from).collect();
        return Ok(Json(BatchReply { results }));
    }
    let mut results = vec![None; count];
    let mut outcomes = futures::stream::iter(body.calls.into_iter().enumerate())
        .map(|(index, call)| {
            let node = node.clone();
            async move {
                let outcome = node
                    .call_with(&call.function, call.args, timeout, None)
                    .await;
                (index, outcome)
            }
        })
        .buffer_unordered(in_flight);
    while let Some((index, outcome)) = outcomes.next().await {
        results[index] = Some(BatchResult::from(outcome));
    }
    let results = results
        .into_iter()
        .map(|r| r.expect("every call answered"))
        .collect();
    Ok(Json(BatchReply { results }))
}
