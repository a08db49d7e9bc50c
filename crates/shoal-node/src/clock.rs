//! Wall-clock time as the cluster records it.
//!
//! Job commands and telemetry events carry milliseconds since the Unix
//! epoch, stamped by the node that proposes them, so every replica applying
//! the same log reaches the same state. Durations inside one process use
//! [`std::time::Instant`] instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
