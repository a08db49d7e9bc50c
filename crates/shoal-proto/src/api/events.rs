//! Telemetry events (`GET /v1/events`, `/v1/cluster/live`): joins,
//! departures, leader changes and alerts, as the node that saw them
//! reports them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a telemetry event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    NodeJoined,
    NodeSuspected,
    /// A suspected node was heard from again.
    NodeRecovered,
    NodeLeft,
    LeaderChanged,
    JobDeadLettered,
    /// Alert: a node's load went over the threshold.
    Overloaded,
    /// A node's load came back under the threshold.
    LoadNormal,
    /// Alert: a node was refused as a member, its protocol version being
    /// too far from this node's (it skipped a release).
    NodeRefused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeJoined => "node_joined",
            EventKind::NodeSuspected => "node_suspected",
            EventKind::NodeRecovered => "node_recovered",
            EventKind::NodeLeft => "node_left",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::JobDeadLettered => "job_dead_lettered",
            EventKind::Overloaded => "overloaded",
            EventKind::LoadNormal => "load_normal",
            EventKind::NodeRefused => "node_refused",
        }
    }

    /// Whether someone should look at it.
    pub fn is_alert(self) -> bool {
        matches!(
            self,
            EventKind::NodeLeft
                | EventKind::JobDeadLettered
                | EventKind::Overloaded
                | EventKind::NodeRefused
        )
    }
}

/// One telemetry event, as the node that saw it reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increases by one per event on the reporting node.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
    /// The node the event is about, if any.
    pub node: Option<String>,
    pub message: String,
}
