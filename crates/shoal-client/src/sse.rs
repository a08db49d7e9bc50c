//! Server-sent event streams: a job followed to its end (across node
//! failures), a node's telemetry events, and the frames under both (and
//! under topic subscriptions, `topics`).
//!
//! ```text
//!   Connect ──(any node that answers)──► Reading ──job ended──► Done
//!      ▲                                    │
//!      └──────── stream broke or ended ─────┘
//! ```

use crate::error::ClientError;
use crate::transport::{Request, Retry, Transport};
use eventsource_stream::Eventsource;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::Method;
use shoal_proto::api::{Event, Job, JobId};
use std::sync::Arc;

pub(crate) type Frames = BoxStream<'static, Result<eventsource_stream::Event, String>>;

/// Where following a job stands.
enum Follow {
    /// Not connected: connect (to whichever node answers).
    Connect,
    Reading(Frames),
    Done,
}

pub(crate) fn follow_job(
    transport: Arc<Transport>,
    id: JobId,
) -> impl Stream<Item = Result<Job, ClientError>> + Send + 'static {
    futures::stream::unfold(Follow::Connect, move |mut follow| {
        let transport = Arc::clone(&transport);
        async move {
            loop {
                match follow {
                    Follow::Done => return None,
                    Follow::Connect => match connect(&transport, id).await {
                        Ok(frames) => follow = Follow::Reading(frames),
                        Err(e) => return Some((Err(e), Follow::Done)),
                    },
                    Follow::Reading(ref mut frames) => match frames.next().await {
                        Some(Ok(frame)) if frame.event == "job" => {
                            let job: Job = match serde_json::from_str(&frame.data) {
                                Ok(job) => job,
                                Err(e) => {
                                    let error =
                                        ClientError::Protocol(format!("bad job event: {e}"));
                                    return Some((Err(error), Follow::Done));
                                }
                            };
                            let next = if job.state.is_finished() {
                                Follow::Done
                            } else {
                                follow
                            };
                            return Some((Ok(job), next));
                        }
                        Some(Ok(_)) => {}
                        // The node went away mid-stream: the job lives on in
                        // the cluster, so follow it from another node.
                        Some(Err(_)) | None => follow = Follow::Connect,
                    },
                }
            }
        }
    })
}

async fn connect(transport: &Transport, id: JobId) -> Result<Frames, ClientError> {
    let request = Request::<()> {
        method: Method::GET,
        path: format!("/v1/jobs/{id}/events"),
        query: &[],
        headers: &[],
        body: None,
        timeout: None,
        retry: Retry::Always,
    };
    let response = transport.execute(&request).await?;
    Ok(frames(response))
}

pub(crate) fn frames(response: reqwest::Response) -> Frames {
    response
        .bytes_stream()
        .eventsource()
        .map(|frame| frame.map_err(|e| e.to_string()))
        .boxed()
}

pub(crate) fn events(
    response: reqwest::Response,
) -> impl Stream<Item = Result<Event, ClientError>> + Send + 'static {
    frames(response).filter_map(|frame| async move {
        match frame {
            Ok(frame) if frame.data.is_empty() => None,
            Ok(frame) => Some(
                serde_json::from_str(&frame.data)
                    .map_err(|e| ClientError::Protocol(format!("bad event: {e}"))),
            ),
            Err(e) => Some(Err(ClientError::Protocol(format!(
                "event stream broke: {e}"
            )))),
        }
    })
}
