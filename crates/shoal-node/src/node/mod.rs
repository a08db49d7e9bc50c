//! A running node: [`builder`] assembles one from its parts in a fixed,
//! written-down order; [`handle`] is the embedding API ([`Node`]): calls,
//! scripts, queues, peers; [`data`] adds durable jobs and documents, and
//! [`status`] what the node reports about itself and the cluster;
//! [`topics`] publish and subscribe; [`drain`] hands a stopping node's
//! work to the others.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shoal_node::Node;
//! use serde_json::json;
//! let node = Node::builder()
//!     .register("double", |_ctx, args| async move { Ok(json!(args.as_i64().unwrap_or(0) * 2)) })
//!     .start()
//!     .await?;
//! assert_eq!(node.call("double", json!(21)).await?, json!(42));
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod builder;
pub mod data;
pub mod drain;
mod drain_progress;
pub mod handle;
pub mod status;
pub mod topics;

pub use builder::{NodeBuilder, StartError};
pub use data::{DataError, Read};
pub use handle::{Node, PeerStatus};
