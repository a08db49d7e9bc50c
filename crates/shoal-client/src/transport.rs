//! Sending one request to a cluster: the node list, the pooled HTTP
//! connections, and failover from one node to the next.
//!
//! ```text
//!   Request ──► current node ──► 2xx ──────────────────────► response
//!                   │  refused, reset, or 503 when repeating is harmless
//!                   ▼
//!               next node … every node once, then round again with a
//!               growing pause until `retry_for` has passed
//!                   │
//!                   ▼
//!               ClientError::Unreachable (or the node's own error)
//! ```
//!
//! [`Client`](crate::Client) and [`Collection`](crate::Collection) describe
//! their requests as [`Request`]s and hand them to the one [`Transport`]
//! their clones share.

use crate::error::ClientError;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_proto::ErrorCode;
use shoal_proto::api::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pause before trying the next node, growing per attempt up to a second.
const BACKOFF: Duration = Duration::from_millis(100);

/// Whether a request may be sent again after it might have reached a node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Repeating it is harmless.
    Always,
    /// Only if it certainly never reached a node.
    IfNotSent,
}

/// One request, described so it can be sent to any node.
pub(crate) struct Request<'a, B> {
    pub method: Method,
    pub path: String,
    pub query: &'a [(&'a str, String)],
    /// Extra headers (`Last-Event-ID` when resuming a subscription).
    pub headers: &'a [(&'static str, String)],
    pub body: Option<&'a B>,
    pub timeout: Option<Duration>,
    pub retry: Retry,
}

/// The nodes of one cluster and the connections to them.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    nodes: Vec<Url>,
    /// The node requests go to first; moves on when it fails.
    current: AtomicUsize,
    token: Option<String>,
    /// How long a request other than a call may take.
    request_timeout: Duration,
    /// How long a request keeps being tried while nodes fail.
    retry_for: Duration,
}

impl Transport {
    pub fn new(
        http: reqwest::Client,
        nodes: Vec<Url>,
        token: Option<String>,
        request_timeout: Duration,
        retry_for: Duration,
    ) -> Transport {
        Transport {
            http,
            nodes,
            current: AtomicUsize::new(0),
            token,
            request_timeout,
            retry_for,
        }
    }

    /// The node requests go to now.
    pub fn current_node(&self) -> &Url {
        &self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()]
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A request with a JSON body and the usual timeout.
    pub fn with_body<'a, B>(
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
            headers: &[],
            body: Some(body),
            timeout: Some(self.request_timeout),
            retry,
        }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: String,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.send(Request::<()> {
            method: Method::GET,
            path,
            query,
            headers: &[],
            body: None,
            timeout: Some(self.request_timeout),
            retry: Retry::Always,
        })
        .await
    }

    /// Sends `request` and decodes the JSON answer.
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        request: Request<'_, B>,
    ) -> Result<T, ClientError> {
        let response = self.execute(&request).await?;
        decode(response).await
    }

    /// Sends `request` to the current node, moving on to the next one
    /// while the failure allows it; returns the first successful response.
    pub async fn execute<B: Serialize>(
        &self,
        request: &Request<'_, B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut tried = Vec::new();
        let mut last_error = String::new();
        let give_up = Instant::now() + self.retry_for;
        for attempt in 0.. {
            let index = self.current.load(Ordering::Relaxed) % self.nodes.len();
            let node = &self.nodes[index];
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
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % self.nodes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let tried_every_node = attempt + 1 >= self.nodes.len();
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
        let mut builder = self.http.request(request.method.clone(), url);
        if !request.query.is_empty() {
            builder = builder.query(request.query);
        }
        for (name, value) in request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        builder.send().await
    }
}

/// Percent-encodes one path segment (a function name may hold dots,
/// a document id anything).
pub(crate) fn segment(raw: &str) -> String {
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
    use super::segment;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("pi.sample"), "pi.sample");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
