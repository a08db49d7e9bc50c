//! The HTTP API every node serves (`shoal node --http ADDR`): calls, jobs,
//! documents, the cluster's state, telemetry events and Prometheus metrics.
//!
//! ```text
//!   POST /v1/call/{function}     GET  /v1/jobs, /v1/jobs/{id}, …/events
//!   POST /v1/batch               POST /v1/jobs, /v1/jobs/{id}/cancel
//!   …/v1/db/{collection}[/…]     GET  /v1/cluster, /v1/status, /v1/events
//!   …/v1/topics/{topic}[/events] …/v1/queues/{name}[/push|/pop|/close]
//!   GET /metrics, /v1/logs       GET  /openapi.json, /v1/cluster/live
//!   GET /v1/workers (WebSocket: worker processes serve functions)
//!   POST/GET /v1/drain (hand this node's work to the others, then stop)
//!   GET /healthz, /readyz (probes; no token needed)
//!   GET /  (the web dashboard, see [`dashboard`])
//! ```
//!
//! The router is built from the handlers' OpenAPI annotations, so the
//! description served at `/openapi.json` lists exactly the routes served.
//! Every error is `{"code": …, "message": …}` with a status that fits the
//! code; details that only an operator needs go to the node's log.

mod calls;
mod cluster;
mod dashboard;
mod docs;
mod drain;
mod error;
mod health;
mod jobs;
mod queues;
mod topics;
mod workers;

pub use error::status_of;

use crate::node::handle::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use error::HttpError;
use shoal_proto::ErrorCode;
use shoal_proto::api::MAX_BODY_BYTES;
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shoal",
        description = "A peer-to-peer compute fabric: calls, durable jobs, documents and telemetry. \
            Every node serves this API. Errors are `{\"code\", \"message\"}`. With `--api-token`, \
            every request needs `Authorization: Bearer <token>`."
    ),
    tags(
        (name = "calls", description = "Run functions anywhere in the cluster"),
        (name = "jobs", description = "Durable jobs, replicated with Raft"),
        (name = "documents", description = "The replicated JSON document store"),
        (name = "cluster", description = "Members, Raft, status, events and metrics"),
        (name = "topics", description = "Publish and subscribe; best effort, order kept per publisher"),
        (name = "queues", description = "The distributed queue: items stay where pushed until popped"),
    )
)]
struct ApiDoc;

/// `?stale=true`: read this node's replica as it is instead of a
/// linearizable read.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Read this node's replica as it is instead of a linearizable read.
    #[serde(default)]
    stale: bool,
}

impl ReadParams {
    fn read(&self) -> crate::node::data::Read {
        crate::node::data::Read::stale_if(self.stale)
    }
}

fn api() -> OpenApiRouter<Node> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(calls::call))
        .routes(routes!(calls::batch))
        .routes(routes!(workers::connect))
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::events))
        .routes(routes!(docs::list))
        .routes(routes!(docs::create, docs::drop_collection))
        .routes(routes!(docs::insert))
        .routes(routes!(docs::get, docs::replace, docs::patch, docs::delete))
        .routes(routes!(docs::find))
        .routes(routes!(docs::count))
        .routes(routes!(docs::update_where))
        .routes(routes!(docs::delete_where))
        .routes(routes!(cluster::cluster))
        .routes(routes!(cluster::live))
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::events))
        .routes(routes!(cluster::metrics))
        .routes(routes!(cluster::logs))
        .routes(routes!(drain::start, drain::status))
        .routes(routes!(topics::publish, topics::info))
        .routes(routes!(topics::subscribe))
        .routes(routes!(queues::push))
        .routes(routes!(queues::pop))
        .routes(routes!(queues::size))
        .routes(routes!(queues::close))
}

/// The OpenAPI description of the API (the health probes included, which
/// are served outside the token's reach).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

fn documented() -> OpenApiRouter<Node> {
    api()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// `GET /openapi.json`: the description as JSON, made at the first request
/// and kept as bytes. Most nodes are never asked for it, and the
/// description's tree, kept from the start, was a few hundred KB of every
/// node's memory.
async fn openapi_json() -> Response {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        let json = serde_json::to_vec(&openapi()).expect("the description has string keys only");
        Bytes::from(json)
    });
    ([(CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

/// The API of `node`, ready to serve.
pub fn router(node: Node) -> Router {
    let (routes, _) = api().split_for_parts();
    let token: Option<Arc<str>> = node.config().api_token.as_deref().map(Arc::from);
    let routes = routes
        .route("/openapi.json", axum::routing::get(openapi_json))
        .fallback(|| async {
            HttpError::new(ErrorCode::NotFound, "no such route; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method; see /openapi.json",
            )
        });
    let routes = match token {
        Some(token) => routes.layer(middleware::from_fn_with_state(token, require_token)),
        None => routes,
    };
    // Without the token: probes and the dashboard's assets.
    routes
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .merge(dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// How long HTTP requests under way may take to finish once the node stops.
const HTTP_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the API until `shutdown`. Requests under way get a moment to
/// finish; then their connections are closed, so a client that never hangs
/// up cannot hold the node open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    use axum::serve::ListenerExt;
    // Small messages back to back (a worker's socket, server-sent events)
    // must not wait for the peer's delayed ACK (Nagle's algorithm).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an API connection");
        }
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(HTTP_SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => if let Err(e) = served {
            tracing::error!(error = %e, "HTTP API stopped");
        },
        () = grace => tracing::debug!("HTTP connections closed after the grace period"),
    }
}

/// Refuses requests without the node's API token (only layered on when
/// the node has one).
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => HttpError::new(ErrorCode::Unauthorized, "wrong API token").into_response(),
        None => HttpError::new(
            ErrorCode::Unauthorized,
            "this node needs an API token: send 'Authorization: Bearer <token>'",
        )
        .into_response(),
    }
}
