//! [`Client`], the handle applications hold, and [`ClientBuilder`], its
//! settings. Each method describes one API request and hands it to the
//! shared [`Transport`], which picks the node; answers come back typed.

use crate::collection::Collection;
use crate::error::ClientError;
use crate::queue::Queue;
use crate::sse;
use crate::topics::{self, PublishOptions, SubscribeOptions, TopicEvent};
use crate::transport::{Request, Retry, Transport, segment};
use futures::{Stream, StreamExt};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use shoal_proto::api::{
    ApiError, BatchBody, BatchCall, BatchReply, CallBody, CallReply, ClusterView, CollectionInfo,
    Collections, DrainBody, DrainStatus, Event, Job, JobId, JobPage, JobSpec, JobState, LogLevel,
    LogLine, NodeStatus, Published, Submitted, TopicInfo,
};
use std::sync::Arc;
use std::time::Duration;

/// Extra time a call's HTTP request gets beyond the call's own deadline.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);
/// A call without a deadline waits as long as the node's default deadline.
const CALL_WAIT: Duration = Duration::from_secs(310);

/// Settings for a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    nodes: Vec<String>,
    token: Option<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry_for: Duration,
}

impl ClientBuilder {
    /// The API token nodes were started with (`--api-token`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long a request other than a call may take (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting to a node may take before the next is tried
    /// (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request keeps being tried on the nodes while they fail
    /// in ways that allow it (default 20 s: long enough for the cluster to
    /// elect a new leader). Every node is tried at least once.
    pub fn retry_for(mut self, window: Duration) -> Self {
        self.retry_for = window;
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        if self.nodes.is_empty() {
            return Err(ClientError::Config("give at least one node URL".into()));
        }
        let nodes = self
            .nodes
            .iter()
            .map(|node| parse_node(node))
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let transport = Transport::new(
            http,
            nodes,
            self.token,
            self.request_timeout,
            self.retry_for,
        );
        Ok(Client {
            transport: Arc::new(transport),
        })
    }
}

fn parse_node(node: &str) -> Result<Url, ClientError> {
    let with_scheme = if node.contains("://") {
        node.to_string()
    } else {
        format!("http://{node}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ClientError::Config(format!("'{node}' is not a node URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(ClientError::Config(format!(
            "'{node}': only http:// is supported; put a TLS proxy in front for https"
        )));
    }
    Ok(url)
}

/// A client of one Shoal cluster. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    transport: Arc<Transport>,
}

impl Client {
    /// A client of the nodes at `nodes` (`http://host:port`, or `host:port`).
    pub fn new(nodes: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Client, ClientError> {
        Client::builder(nodes).build()
    }

    pub fn builder(nodes: impl IntoIterator<Item = impl AsRef<str>>) -> ClientBuilder {
        ClientBuilder {
            nodes: nodes.into_iter().map(|n| n.as_ref().to_string()).collect(),
            token: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(20),
        }
    }

    /// The node requests go to now.
    pub fn current_node(&self) -> &Url {
        self.transport.current_node()
    }

    // ---- calls ----

    /// Calls `function` wherever the cluster places it.
    pub async fn call(&self, function: &str, args: Value) -> Result<Value, ClientError> {
        self.call_with(
            function,
            CallBody {
                args,
                ..CallBody::default()
            },
        )
        .await
    }

    /// Calls `function` with a deadline, a shipped script, or both.
    pub async fn call_with(&self, function: &str, body: CallBody) -> Result<Value, ClientError> {
        let timeout = body
            .timeout_ms
            .map_or(CALL_WAIT, |ms| Duration::from_millis(ms) + DEADLINE_GRACE);
        let reply: CallReply = self
            .transport
            .send(Request {
                method: Method::POST,
                path: format!("/v1/call/{}", segment(function)),
                query: &[],
                headers: &[],
                body: Some(&body),
                timeout: Some(timeout),
                retry: Retry::Always,
            })
            .await?;
        Ok(reply.result)
    }

    /// Runs many calls in one request; one outcome per call, in order.
    pub async fn batch(
        &self,
        calls: Vec<BatchCall>,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<Value, ApiError>>, ClientError> {
        let body = BatchBody {
            calls,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            in_flight: None,
        };
        let reply: BatchReply = self
            .transport
            .send(Request {
                method: Method::POST,
                path: "/v1/batch".into(),
                query: &[],
                headers: &[],
                body: Some(&body),
                timeout: Some(timeout.map_or(CALL_WAIT, |t| t + DEADLINE_GRACE)),
                retry: Retry::Always,
            })
            .await?;
        Ok(reply.results.into_iter().map(|r| r.into_result()).collect())
    }

    // ---- jobs ----

    /// Submits a durable job. Without an idempotency key one is made up, so
    /// a retry after a lost answer never submits it twice.
    pub async fn submit(&self, mut spec: JobSpec) -> Result<JobId, ClientError> {
        if spec.idempotency_key.is_none() {
            spec.idempotency_key = Some(format!("client-{:032x}", rand::random::<u128>()));
        }
        let request =
            self.transport
                .with_body(Method::POST, "/v1/jobs".into(), &spec, Retry::Always);
        let submitted: Submitted = self.transport.send(request).await?;
        Ok(submitted.id)
    }

    pub async fn job(&self, id: JobId) -> Result<Job, ClientError> {
        self.transport.get(format!("/v1/jobs/{id}"), &[]).await
    }

    /// A page of jobs, optionally in one state; pass the page's `next` as
    /// `after` for the next one.
    pub async fn jobs(
        &self,
        state: Option<JobState>,
        limit: Option<usize>,
        after: Option<JobId>,
    ) -> Result<JobPage, ClientError> {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(("state", state.as_str().to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        self.transport.get("/v1/jobs".into(), &query).await
    }

    /// Cancels a queued or running job; returns it as it is now.
    pub async fn cancel(&self, id: JobId) -> Result<Job, ClientError> {
        let path = format!("/v1/jobs/{id}/cancel");
        let empty = json!({});
        let request = self
            .transport
            .with_body(Method::POST, path, &empty, Retry::IfNotSent);
        self.transport.send(request).await
    }

    /// The job each time it changes, until it has ended. If the node
    /// serving the stream goes away, the stream continues from another.
    pub fn watch(
        &self,
        id: JobId,
    ) -> impl Stream<Item = Result<Job, ClientError>> + Send + 'static {
        sse::follow_job(Arc::clone(&self.transport), id)
    }

    /// Waits until the job has ended and returns it.
    pub async fn wait(&self, id: JobId) -> Result<Job, ClientError> {
        let mut updates = std::pin::pin!(self.watch(id));
        let mut last = None;
        while let Some(job) = updates.next().await {
            last = Some(job?);
        }
        match last {
            Some(job) if job.state.is_finished() => Ok(job),
            _ => self.job(id).await,
        }
    }

    // ---- documents ----

    /// The collection `name` of the document store.
    pub fn collection(&self, name: &str) -> Collection {
        Collection::new(Arc::clone(&self.transport), name)
    }

    /// Every collection, in name order, with its number of documents.
    pub async fn collections(&self) -> Result<Vec<CollectionInfo>, ClientError> {
        let reply: Collections = self.transport.get("/v1/db".into(), &[]).await?;
        Ok(reply.collections)
    }

    // ---- topics ----

    /// Publishes `value` (any JSON, at most 64 KiB) on `topic` to every
    /// subscriber in the cluster. Not repeated once it may have arrived.
    pub async fn publish(
        &self,
        topic: &str,
        value: &Value,
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        topics::publish(&self.transport, topic, value, options).await
    }

    /// The messages on `topic`, from the node currently in use: the ones
    /// it keeps first (unless `history` is off), then live ones, until
    /// that node stops. Errors reaching the node come back here; a stream
    /// that breaks later yields one error and ends.
    pub async fn subscribe(
        &self,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<impl Stream<Item = Result<TopicEvent, ClientError>> + Send + 'static, ClientError>
    {
        topics::subscribe(&self.transport, topic, options).await
    }

    /// What the node in use knows of `topic`: kept messages, subscribers
    /// there, other nodes subscribed.
    pub async fn topic_info(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        topics::info(&self.transport, topic).await
    }

    // ---- queues ----

    /// The distributed queue `name`.
    pub fn queue(&self, name: &str) -> Queue {
        Queue::new(Arc::clone(&self.transport), name)
    }

    // ---- cluster ----

    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        self.transport.get("/v1/cluster".into(), &[]).await
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.transport.get("/v1/status".into(), &[]).await
    }

    /// Asks the node to drain and then stop: it takes no new work, lets
    /// running calls and jobs finish within `grace` (its own
    /// `--drain-timeout` if `None`), hands back the rest and gives up its
    /// Raft seat. Answers at once, or with `wait` once the drain is done
    /// (give the client a request timeout longer than the grace); see
    /// [`Client::drain_status`]. Give the client only the node to drain:
    /// with several, the first that answers drains.
    pub async fn drain(
        &self,
        grace: Option<Duration>,
        wait: bool,
    ) -> Result<DrainStatus, ClientError> {
        let body = DrainBody {
            grace_ms: grace.map(|grace| grace.as_millis() as u64),
            wait,
        };
        let request =
            self.transport
                .with_body(Method::POST, "/v1/drain".into(), &body, Retry::IfNotSent);
        self.transport.send(request).await
    }

    /// Where the node's drain stands.
    pub async fn drain_status(&self) -> Result<DrainStatus, ClientError> {
        self.transport.get("/v1/drain".into(), &[]).await
    }

    /// The node's recent log lines at `level` or above (it keeps warnings
    /// and errors), oldest first.
    pub async fn logs(&self, level: LogLevel) -> Result<Vec<LogLine>, ClientError> {
        let level = serde_json::to_value(level).expect("a level serializes");
        let level = level.as_str().expect("a level is a string").to_string();
        self.transport
            .get("/v1/logs".into(), &[("level", level)])
            .await
    }

    /// The node's metrics in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .transport
            .execute(&Request::<()> {
                method: Method::GET,
                path: "/metrics".into(),
                query: &[],
                headers: &[],
                body: None,
                timeout: Some(self.transport.request_timeout()),
                retry: Retry::Always,
            })
            .await?;
        response
            .text()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Telemetry events of the node currently in use: the recent ones
    /// after sequence number `after`, then live ones.
    pub async fn events(
        &self,
        after: u64,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + 'static, ClientError> {
        let response = self
            .transport
            .execute(&Request::<()> {
                method: Method::GET,
                path: "/v1/events".into(),
                query: &[("after", after.to_string())],
                headers: &[],
                body: None,
                timeout: None,
                retry: Retry::Always,
            })
            .await?;
        Ok(sse::events(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_get_a_scheme_and_https_is_refused() {
        assert_eq!(
            parse_node("127.0.0.1:7070").unwrap().as_str(),
            "http://127.0.0.1:7070/"
        );
        assert!(
            matches!(parse_node("https://x:1"), Err(ClientError::Config(m)) if m.contains("TLS"))
        );
        assert!(Client::new(Vec::<String>::new()).is_err());
    }
}
