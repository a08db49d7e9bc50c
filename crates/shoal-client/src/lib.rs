//! A typed async client for Shoal's HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_client::ClientError> {
//! use serde_json::json;
//! let client = shoal_client::Client::new(["http://10.0.0.1:7070", "http://10.0.0.2:7070"])?;
//! let echoed = client.call("echo", json!({"hello": "world"})).await?;
//! let job = client.submit(shoal_client::JobSpec::new("steps", json!({"count": 3}))).await?;
//! let finished = client.wait(job).await?;
//! # Ok(()) }
//! ```
//!
//! One pooled HTTP/1.1 connection set serves every request. The client
//! talks to one node at a time and moves on to the next in its list when
//! that node stops answering:
//!
//! - a request that never reached the node (connection refused or reset
//!   before sending) is tried on the next node, whatever it was;
//! - a request that may have reached it is tried again only if repeating
//!   it is harmless: reads, calls (functions run at least once anyway: the
//!   cluster itself re-runs the calls of a node that dies), and job
//!   submissions, which always carry an idempotency key.

mod error;
mod sse;

pub use error::ClientError;
pub use shoal_proto::ErrorCode;
pub use shoal_proto::api::{
    ApiError, BatchCall, CallBody, ClusterView, Document, Event, EventKind, FindReply, Job, JobId,
    JobPage, JobSpec, JobState, Member, NodeStatus, RaftStatus, ScriptSource, Written,
};

use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use shoal_proto::api::{
    BatchBody, BatchReply, CallReply, CountReply, FindBody, Submitted, UpdateBody,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Extra time a call's HTTP request gets beyond the call's own deadline.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);
/// A call without a deadline waits as long as the node's default deadline.
const CALL_WAIT: Duration = Duration::from_secs(310);
/// Pause before trying the next node, growing per attempt up to a second.
const BACKOFF: Duration = Duration::from_millis(100);

/// Whether a request may be sent again after it might have reached a node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it is harmless.
    Always,
    /// Only if it certainly never reached a node.
    IfNotSent,
}

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
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                nodes,
                current: AtomicUsize::new(0),
                token: self.token,
                request_timeout: self.request_timeout,
                retry_for: self.retry_for,
            }),
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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    nodes: Vec<Url>,
    /// The node requests go to first; moves on when it fails.
    current: AtomicUsize,
    token: Option<String>,
    request_timeout: Duration,
    retry_for: Duration,
}

/// One request, described so it can be sent to any node.
struct Request<'a, B> {
    method: Method,
    path: String,
    query: &'a [(&'a str, String)],
    body: Option<&'a B>,
    timeout: Option<Duration>,
    retry: Retry,
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
        let nodes = &self.inner.nodes;
        &nodes[self.inner.current.load(Ordering::Relaxed) % nodes.len()]
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
            .send(Request {
                method: Method::POST,
                path: format!("/v1/call/{}", segment(function)),
                query: &[],
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
            .send(Request {
                method: Method::POST,
                path: "/v1/batch".into(),
                query: &[],
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
        let submitted: Submitted = self
            .send(self.with_body(Method::POST, "/v1/jobs".into(), &spec, Retry::Always))
            .await?;
        Ok(submitted.id)
    }

    pub async fn job(&self, id: JobId) -> Result<Job, ClientError> {
        self.get(format!("/v1/jobs/{id}"), &[]).await
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
        self.get("/v1/jobs".into(), &query).await
    }

    /// Cancels a queued or running job; returns it as it is now.
    pub async fn cancel(&self, id: JobId) -> Result<Job, ClientError> {
        let path = format!("/v1/jobs/{id}/cancel");
        self.send(self.with_body(Method::POST, path, &json!({}), Retry::IfNotSent))
            .await
    }

    /// The job each time it changes, until it has ended. If the node
    /// serving the stream goes away, the stream continues from another.
    pub fn watch(
        &self,
        id: JobId,
    ) -> impl Stream<Item = Result<Job, ClientError>> + Send + 'static {
        sse::follow_job(self.clone(), id)
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
        Collection {
            client: self.clone(),
            path: format!("/v1/db/{}", segment(name)),
        }
    }

    // ---- cluster ----

    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        self.get("/v1/cluster".into(), &[]).await
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get("/v1/status".into(), &[]).await
    }

    /// The node's metrics in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .execute(&Request::<()> {
                method: Method::GET,
                path: "/metrics".into(),
                query: &[],
                body: None,
                timeout: Some(self.inner.request_timeout),
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
            .execute(&Request::<()> {
                method: Method::GET,
                path: "/v1/events".into(),
                query: &[("after", after.to_string())],
                body: None,
                timeout: None,
                retry: Retry::Always,
            })
            .await?;
        Ok(sse::events(response))
    }

    // ---- plumbing ----

    /// A request with a JSON body and the usual timeout.
    fn with_body<'a, B>(
        &self,
        method: Method,
        path: String,
        body: &'a B,
        retry: Retry,
    ) -> Request<'a, B> {
        Request {
            method,
            path,
            query: &[],
            body: Some(body),
            timeout: Some(self.inner.request_timeout),
            retry,
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: String,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.send(Request::<()> {
            method: Method::GET,
            path,
            query,
            body: None,
            timeout: Some(self.inner.request_timeout),
            retry: Retry::Always,
        })
        .await
    }

    async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        request: Request<'_, B>,
    ) -> Result<T, ClientError> {
        let response = self.execute(&request).await?;
        decode(response).await
    }

    /// Sends `request` to the current node, moving on to the next one
    /// while the failure allows it; returns the first successful response.
    async fn execute<B: Serialize>(
        &self,
        request: &Request<'_, B>,
    ) -> Result<reqwest::Response, ClientError> {
        let inner = &self.inner;
        let mut tried = Vec::new();
        let mut last_error = String::new();
        let give_up = Instant::now() + inner.retry_for;
        for attempt in 0.. {
            let index = inner.current.load(Ordering::Relaxed) % inner.nodes.len();
            let node = &inner.nodes[index];
            let outcome = self.send_once(node, request).await;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let error = api_error(response).await;
                    // A node going away, cut off from the cluster, or unsure
                    // whether a write took: another node (or a later try,
                    // after an election) may do better.
                    let elsewhere =
                        status == StatusCode::SERVICE_UNAVAILABLE && request.retry == Retry::Always;
                    if !elsewhere {
                        return Err(ClientError::Api {
                            status: status.as_u16(),
                            error,
                        });
                    }
                    error.to_string()
                }
                Err(e) => {
                    let not_sent = e.is_connect();
                    if !not_sent && request.retry == Retry::IfNotSent {
                        return Err(ClientError::Unreachable {
                            tried: vec![node.to_string()],
                            last_error: format!(
                                "{}; the request may or may not have taken effect",
                                error_chain(&e)
                            ),
                        });
                    }
                    error_chain(&e)
                }
            };
            tracing::debug!(node = %node, error = %failure, "node failed; trying the next");
            tried.push(node.to_string());
            last_error = failure;
            // Move on, unless another request already did.
            let _ = inner.current.compare_exchange(
                index,
                (index + 1) % inner.nodes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let tried_every_node = attempt + 1 >= inner.nodes.len();
            if tried_every_node && Instant::now() >= give_up {
                break;
            }
            if tried_every_node {
                // Every node failed once: wait a little (an election, a
                // restart) before going round again.
                let pause = BACKOFF * (attempt as u32 + 1);
                tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
            }
        }
        tried.sort();
        tried.dedup();
        Err(ClientError::Unreachable { tried, last_error })
    }

    async fn send_once<B: Serialize>(
        &self,
        node: &Url,
        request: &Request<'_, B>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let url = node.join(&request.path).expect("API paths are valid");
        let mut builder = self.inner.http.request(request.method.clone(), url);
        if !request.query.is_empty() {
            builder = builder.query(request.query);
        }
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(token) = &self.inner.token {
            builder = builder.bearer_auth(token);
        }
        builder.send().await
    }
}

/// A collection of the document store.
#[derive(Clone, Debug)]
pub struct Collection {
    client: Client,
    path: String,
}

impl Collection {
    pub async fn create(&self) -> Result<(), ClientError> {
        self.write::<()>(Method::PUT, self.path.clone(), &json!({}))
            .await
    }

    /// Drops the collection and every document in it.
    pub async fn drop_collection(&self) -> Result<(), ClientError> {
        self.write::<()>(Method::DELETE, self.path.clone(), &json!({}))
            .await
    }

    /// Inserts a document (a JSON object); returns its id and version.
    pub async fn insert(&self, body: &Value) -> Result<Written, ClientError> {
        self.write(Method::POST, format!("{}/docs", self.path), body)
            .await
    }

    /// The document, or `None` if there is none with that id.
    pub async fn get(&self, id: &str) -> Result<Option<Document>, ClientError> {
        match self.client.get(self.doc(id), &[]).await {
            Err(ClientError::Api { error, .. }) if error.code == ErrorCode::NotFound => Ok(None),
            other => other.map(Some),
        }
    }

    /// Replaces a document's body; with `expected_version`, only if no
    /// other write came first (else `version_conflict`).
    pub async fn replace(
        &self,
        id: &str,
        body: Value,
        expected_version: Option<u64>,
    ) -> Result<Written, ClientError> {
        let update = UpdateBody {
            body,
            expected_version,
        };
        self.write(Method::PUT, self.doc(id), &update).await
    }

    /// Applies a JSON merge patch.
    pub async fn patch(
        &self,
        id: &str,
        patch: Value,
        expected_version: Option<u64>,
    ) -> Result<Written, ClientError> {
        let update = UpdateBody {
            body: patch,
            expected_version,
        };
        self.write(Method::PATCH, self.doc(id), &update).await
    }

    pub async fn delete(&self, id: &str, expected_version: Option<u64>) -> Result<(), ClientError> {
        let path = match expected_version {
            Some(version) => format!("{}?expected_version={version}", self.doc(id)),
            None => self.doc(id),
        };
        self.write::<()>(Method::DELETE, path, &json!({})).await
    }

    /// Documents whose top-level fields equal `filter`'s, a page at a time.
    pub async fn find(
        &self,
        filter: Map<String, Value>,
        limit: Option<usize>,
        after: Option<String>,
    ) -> Result<FindReply, ClientError> {
        let find = FindBody {
            filter,
            limit,
            after,
            stale: false,
        };
        self.read(format!("{}/find", self.path), &find).await
    }

    pub async fn count(&self, filter: Map<String, Value>) -> Result<usize, ClientError> {
        let find = FindBody {
            filter,
            ..FindBody::default()
        };
        let reply: CountReply = self.read(format!("{}/count", self.path), &find).await?;
        Ok(reply.count)
    }

    fn doc(&self, id: &str) -> String {
        format!("{}/docs/{}", self.path, segment(id))
    }

    async fn read<T: DeserializeOwned>(
        &self,
        path: String,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let request = self
            .client
            .with_body(Method::POST, path, body, Retry::Always);
        self.client.send(request).await
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let request = self.client.with_body(method, path, body, Retry::IfNotSent);
        self.client.send(request).await
    }
}

/// Percent-encodes one path segment (a function name may hold dots,
/// a document id anything).
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(format!("reading the answer failed: {e}")))?;
    // 204 No Content stands for `()`.
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    serde_json::from_slice(bytes).map_err(|e| {
        ClientError::Protocol(format!("the node's answer is not what was expected: {e}"))
    })
}

async fn api_error(response: reqwest::Response) -> ApiError {
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(&bytes);
        ApiError::new(
            ErrorCode::Internal,
            format!("HTTP {status} without a Shoal error body: {}", text.trim()),
        )
    })
}

/// The error and its causes, for messages ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
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

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("pi.sample"), "pi.sample");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
