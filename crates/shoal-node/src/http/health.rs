//! Health for load balancers, systemd and Kubernetes probes: `GET /healthz`
//! (the process serves) and `GET /readyz` (it can do its work). Served
//! without the API token, which probes do not carry; they tell nothing a
//! port scan would not.

use crate::cluster::peers::Liveness;
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `not_ready`.
    pub status: &'static str,
    /// Why the node is not ready (empty when it is).
    pub reasons: Vec<String>,
}

/// The process is up and answers. Always 200 while it does.
#[utoipa::path(get, path = "/healthz", tag = "cluster", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        reasons: Vec::new(),
    })
}

/// The node can serve: it has found its cluster (when told to join one),
/// knows a Raft leader (durable jobs and documents work), and is not
/// stopping. 503 with the reasons otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "cluster",
    responses((status = 200, body = Health), (status = 503, description = "Not ready, and why", body = Health))
)]
pub async fn readyz(State(node): State<Node>) -> (StatusCode, Json<Health>) {
    let mut reasons = Vec::new();
    if node.stopping().is_cancelled() {
        reasons.push("the node is stopping".to_string());
    } else if node.is_draining() {
        reasons.push("the node is draining before it stops".to_string());
    }
    let found = node
        .peers()
        .iter()
        .any(|peer| peer.liveness != Liveness::Dead);
    if !node.config().join.is_empty() && !found {
        reasons.push("no member of the cluster it joins has been found yet".to_string());
    }
    if node.cluster_view().await.raft.leader.is_none() {
        reasons.push("no Raft leader is known".to_string());
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = Health {
        status: if reasons.is_empty() {
            "ok"
        } else {
            "not_ready"
        },
        reasons,
    };
    (status, Json(health))
}
