//! [`Queue`]: one named distributed queue, reached through the same
//! [`Transport`] (and failover) as its client.
//!
//! Items stay on the node that took the push until a pop anywhere takes
//! them; order is not guaranteed, and items live and die with their node
//! (durable jobs are for work that must survive one). Pushes and pops are
//! sent again only when they certainly never arrived: a repeated push would
//! add the items twice, and a pop whose answer was lost has already taken
//! its item.

use crate::error::ClientError;
use crate::transport::{Request, Retry, Transport, segment};
use reqwest::Method;
use serde_json::{Value, json};
use shoal_proto::ErrorCode;
use shoal_proto::api::{PopBody, Popped, PushBody, Pushed, QueueClosed, QueueSize};
use std::sync::Arc;
use std::time::Duration;

/// Extra time a pop's HTTP request gets beyond its wait.
const WAIT_GRACE: Duration = Duration::from_secs(5);

/// A distributed queue of JSON items.
#[derive(Clone, Debug)]
pub struct Queue {
    transport: Arc<Transport>,
    name: String,
    /// `/v1/queues/<name>`, the root of every request about it.
    path: String,
}

impl Queue {
    pub(crate) fn new(transport: Arc<Transport>, name: &str) -> Queue {
        Queue {
            transport,
            name: name.to_string(),
            path: format!("/v1/queues/{}", segment(name)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds items on the node the client talks to; returns how many.
    /// Fails with `closed` once the queue was closed.
    pub async fn push(&self, items: impl IntoIterator<Item = Value>) -> Result<usize, ClientError> {
        let body = PushBody {
            items: items.into_iter().collect(),
        };
        let path = format!("{}/push", self.path);
        let request = self
            .transport
            .with_body(Method::POST, path, &body, Retry::IfNotSent);
        let pushed: Pushed = self.transport.send(request).await?;
        Ok(pushed.pushed)
    }

    /// Takes one item from anywhere in the cluster, waiting up to
    /// `timeout` (at most 5 minutes; zero answers at once) for one to
    /// appear. `None` once the queue is closed and empty everywhere, as a
    /// channel ends; an error with code `timeout` when it stayed empty.
    pub async fn pop(&self, timeout: Duration) -> Result<Option<Value>, ClientError> {
        let body = PopBody {
            timeout_ms: Some(timeout.as_millis().try_into().unwrap_or(u64::MAX)),
        };
        let request = Request {
            method: Method::POST,
            path: format!("{}/pop", self.path),
            query: &[],
            headers: &[],
            body: Some(&body),
            timeout: Some(timeout.saturating_add(WAIT_GRACE)),
            retry: Retry::IfNotSent,
        };
        match self.transport.send::<Popped, _>(request).await {
            Ok(popped) => Ok(Some(popped.item)),
            Err(e) if e.code() == Some(ErrorCode::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Items held across the cluster's live nodes.
    pub async fn size(&self) -> Result<u64, ClientError> {
        let size: QueueSize = self.transport.get(self.path.clone(), &[]).await?;
        Ok(size.size)
    }

    /// Closes the queue everywhere: pushes fail, pops drain what is left
    /// and then end. Closing twice is harmless, so this one is retried.
    pub async fn close(&self) -> Result<(), ClientError> {
        let path = format!("{}/close", self.path);
        let empty = json!({});
        let request = self
            .transport
            .with_body(Method::POST, path, &empty, Retry::Always);
        let _: QueueClosed = self.transport.send(request).await?;
        Ok(())
    }
}
