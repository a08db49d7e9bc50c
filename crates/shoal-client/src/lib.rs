//! A typed async client for Shoal's HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_client::ClientError> {
//! use serde_json::json;
//! let client = shoal_client::Client::new(["http://10.0.0.1:7070", "http://10.0.0.2:7070"])?;
//! let echoed = client.call("echo", json!({"hello": "world"})).await?;
//! let job = client.submit(shoal_client::JobSpec::new("steps", json!({"count": 3}))).await?;
//! let finished = client.wait(job).await?;
//! let queue = client.queue("work");
//! queue.push([json!({"task": 1})]).await?;
//! let item = queue.pop(std::time::Duration::from_secs(5)).await?;
//! client.publish("lobby", &json!({"text": "hi"}), Default::default()).await?;
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
//!
//! ```text
//!   Client ── calls, jobs, cluster ─┐
//!   Collection ── documents ────────┤
//!   Queue ── the distributed queue ─┼─► Transport ─► node 1, node 2, …
//!   topics ── publish, subscribe ───┤   (one connection pool, failover)
//!   sse ── job updates, events ─────┘
//! ```
//!
//! - `client`: [`Client`] and [`ClientBuilder`];
//! - `collection`: [`Collection`], the document store;
//! - `queue`: [`Queue`], the distributed queue;
//! - `topics`: publish and subscribe ([`PublishOptions`],
//!   [`SubscribeOptions`], [`TopicEvent`]);
//! - `sse`: streams of job updates and telemetry events;
//! - `transport`: one request, sent to whichever node answers;
//! - `error`: [`ClientError`].

mod client;
mod collection;
mod error;
mod queue;
mod sse;
mod topics;
mod transport;

pub use client::{Client, ClientBuilder};
pub use collection::Collection;
pub use error::ClientError;
pub use queue::Queue;
pub use shoal_proto::ErrorCode;
pub use shoal_proto::api::{
    ApiError, BatchCall, CallBody, ClusterView, CollectionInfo, Document, DrainState, DrainStatus,
    Event, EventKind, FindReply, Job, JobId, JobPage, JobSpec, JobState, LogLevel, LogLine, Member,
    NodeStatus, Published, RaftStatus, ScriptSource, SortKey, TopicInfo, TopicMessage, Written,
};
pub use topics::{PublishOptions, SubscribeOptions, TopicEvent};
