//! What a node tells its operators: [`events`] (joins, departures, leader
//! changes, alerts — a short ring plus a live stream), [`alerts`] (the
//! changes the cluster task looks for once per heartbeat), and [`metrics`]
//! in the Prometheus text format.

pub mod alerts;
pub mod events;
pub mod metrics;
