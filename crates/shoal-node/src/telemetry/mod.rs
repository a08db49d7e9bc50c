//! What a node tells its operators: [`events`] (joins, departures, leader
//! changes, alerts — a short ring plus a live stream), [`alerts`] (the
//! changes the cluster task looks for once per heartbeat), [`metrics`]
//! in the Prometheus text format, [`usage`] (the process's CPU and memory)
//! and [`logs`] (recent warnings and errors).

pub mod alerts;
pub mod events;
pub mod logs;
pub mod metrics;
pub mod usage;
