//! Metrics in the Prometheus text format (`GET /metrics`).
//!
//! Call outcomes and latency are counted as calls finish; everything else
//! (load, steals, jobs, Raft) is read from the node when scraped, so
//! nothing is counted twice and an idle node does no metrics work.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shoal_proto::ErrorCode;
use shoal_proto::api::RaftStatus;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const OUTCOMES: usize = 1 + ErrorCode::ALL.len();

/// Outcomes and latency of the calls this node started.
#[derive(Debug)]
pub struct CallMetrics {
    /// Index 0 counts results; `1 + code.index()` counts each error.
    outcomes: [AtomicU64; OUTCOMES],
    latency: Histogram,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            // 10 µs to about 84 s.
            latency: Histogram::new(exponential_buckets(0.000_01, 2.0, 24)),
        }
    }
}

impl CallMetrics {
    pub fn record(&self, outcome: Result<(), ErrorCode>, took: Duration) {
        let slot = outcome.map_or_else(|code| 1 + code.index(), |()| 0);
        self.outcomes[slot].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took.as_secs_f64());
    }

    pub fn ok(&self) -> u64 {
        self.outcomes[0].load(Ordering::Relaxed)
    }

    /// Failed calls by error code (codes that never happened are left out).
    pub fn failed(&self) -> BTreeMap<String, u64> {
        self.outcomes()
            .skip(1)
            .filter(|(_, count)| *count > 0)
            .map(|(code, count)| (code.to_string(), count))
            .collect()
    }

    /// `("ok", n)`, then `(code, n)` for every error code, in index order.
    fn outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let names = std::iter::once("ok").chain(ErrorCode::ALL.map(ErrorCode::as_str));
        names.zip(
            self.outcomes
                .iter()
                .map(|count| count.load(Ordering::Relaxed)),
        )
    }
}

/// What the node reports at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub slots: u32,
    pub busy: u32,
    pub queued: u32,
    pub executed: u64,
    pub stolen: u64,
    pub redispatched: u64,
    pub peers_alive: usize,
    /// The process's CPU over the last heartbeat interval, percent of a core.
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub jobs: BTreeMap<String, usize>,
    pub raft: RaftStatus,
}

/// The node's metrics as Prometheus text.
pub fn render(calls: &CallMetrics, snapshot: Snapshot) -> String {
    let mut registry = Registry::with_prefix("shoal");
    registry.register(
        "call_duration_seconds",
        "Time from starting a call here to its result",
        calls.latency.clone(),
    );
    registry.register_collector(Box::new(Scrape {
        // Errors that never happened are left out; `ok` is always there.
        outcomes: calls
            .outcomes()
            .filter(|(outcome, count)| *count > 0 || *outcome == "ok")
            .collect(),
        snapshot,
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Scrape {
    outcomes: Vec<(&'static str, u64)>,
    snapshot: Snapshot,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snapshot;
        let mut calls = encoder.encode_descriptor(
            "calls",
            "Calls started on this node, by outcome (ok or the error code)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, count) in &self.outcomes {
            let labels = [("outcome", *outcome)];
            ConstCounter::new(*count).encode(calls.encode_family(&labels)?)?;
        }
        counter(&mut encoder, "executed", "Calls this node ran", s.executed)?;
        counter(
            &mut encoder,
            "steals",
            "Calls this node stole from busier peers",
            s.stolen,
        )?;
        counter(
            &mut encoder,
            "retries",
            "Calls sent again because the node running them was lost",
            s.redispatched,
        )?;
        gauge(&mut encoder, "slots", "Worker slots", i64::from(s.slots))?;
        gauge(
            &mut encoder,
            "slots_busy",
            "Slots running a call",
            i64::from(s.busy),
        )?;
        gauge(
            &mut encoder,
            "queue_depth",
            "Calls waiting for a slot",
            i64::from(s.queued),
        )?;
        gauge(
            &mut encoder,
            "process_cpu_cores",
            "CPU the node's process used over the last heartbeat interval, in cores",
            f64::from(s.cpu_percent) / 100.0,
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory of the node's process",
            s.memory_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "peers_alive",
            "Peers heard from recently",
            s.peers_alive as i64,
        )?;
        let mut jobs = encoder.encode_descriptor(
            "jobs",
            "Jobs by state in this node's replica",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for state in shoal_proto::api::JobState::ALL {
            let count = s.jobs.get(state.as_str()).copied().unwrap_or(0);
            let labels = [("state", state.as_str())];
            ConstGauge::new(count as i64).encode(jobs.encode_family(&labels)?)?;
        }
        let committed = s.raft.committed.unwrap_or(0);
        let applied = s.raft.last_applied.unwrap_or(0);
        gauge(
            &mut encoder,
            "raft_term",
            "Current Raft term",
            s.raft.term as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_commit_index",
            "Highest log index known committed",
            committed as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_applied_index",
            "Highest log index applied here",
            applied as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_apply_lag",
            "Committed entries not yet applied here",
            committed.saturating_sub(applied) as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_leader",
            "1 on the Raft leader",
            i64::from(s.raft.state == "Leader"),
        )?;
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge<N: EncodeGaugeValue + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_outcomes_jobs_and_raft() {
        let calls = CallMetrics::default();
        calls.record(Ok(()), Duration::from_micros(80));
        calls.record(Ok(()), Duration::from_micros(120));
        calls.record(Err(ErrorCode::UnknownFunction), Duration::from_micros(40));
        let snapshot = Snapshot {
            slots: 4,
            queued: 7,
            cpu_percent: 150.0,
            memory_bytes: 31_000_000,
            jobs: [("succeeded".to_string(), 3)].into(),
            raft: RaftStatus {
                term: 2,
                committed: Some(10),
                last_applied: Some(8),
                ..RaftStatus::default()
            },
            ..Snapshot::default()
        };
        let text = render(&calls, snapshot);
        for line in [
            "shoal_calls_total{outcome=\"ok\"} 2",
            "shoal_calls_total{outcome=\"unknown_function\"} 1",
            "shoal_call_duration_seconds_count 3",
            "shoal_queue_depth 7",
            "shoal_jobs{state=\"succeeded\"} 3",
            "shoal_jobs{state=\"queued\"} 0",
            "shoal_raft_term 2",
            "shoal_raft_apply_lag 2",
            "shoal_process_cpu_cores 1.5",
            "shoal_process_resident_memory_bytes 31000000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(calls.failed(), [("unknown_function".to_string(), 1)].into());
    }
}
