//! Where a node's drain stands (see [`drain`](super::drain)), kept apart
//! from the drain itself so the node's handle can hold it.

use shoal_proto::api::DrainStatus;
use std::sync::Mutex;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// One per node.
#[derive(Default)]
pub(crate) struct DrainProgress {
    /// When the drain began; `None` while the node serves.
    pub(crate) started: Mutex<Option<Instant>>,
    /// What the drain did, as it goes.
    pub(crate) report: Mutex<DrainStatus>,
    /// Cancelled once the drain is done.
    pub(crate) done: CancellationToken,
}
