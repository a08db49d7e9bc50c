//! The node process's CPU and memory, sampled once a heartbeat.
//!
//! CPU use is measured between two samples at least 200 ms apart, so the
//! sampler takes one when made, and the first heartbeat's may read 0.
//! Nodes that share a process (an in-process cluster, `shoal demo`) report
//! that one process's figures.

use std::sync::Mutex;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time used since the previous sample, in percent of one core
    /// (200 is two cores busy).
    pub cpu_percent: f32,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
}

/// Samples this process.
pub struct ProcessUsage {
    pid: Option<Pid>,
    state: Mutex<State>,
}

struct State {
    system: System,
    latest: Usage,
}

impl Default for ProcessUsage {
    fn default() -> Self {
        let usage = ProcessUsage {
            pid: sysinfo::get_current_pid().ok(),
            state: Mutex::new(State {
                system: System::new(),
                latest: Usage::default(),
            }),
        };
        usage.sample();
        usage
    }
}

impl ProcessUsage {
    /// Takes a new sample and keeps it as the latest.
    pub fn sample(&self) -> Usage {
        let mut state = self.state.lock().expect("usage lock");
        let Some(pid) = self.pid else {
            return state.latest;
        };
        let what = ProcessRefreshKind::nothing().with_cpu().with_memory();
        state
            .system
            .refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, what);
        if let Some(process) = state.system.process(pid) {
            state.latest = Usage {
                cpu_percent: process.cpu_usage(),
                memory_bytes: process.memory(),
            };
        }
        state.latest
    }

    /// The latest sample.
    pub fn latest(&self) -> Usage {
        self.state.lock().expect("usage lock").latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_shows_cpu_and_memory() {
        let usage = ProcessUsage::default();
        let spin = || {
            let started = std::time::Instant::now();
            let mut spin = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(300) {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        };
        // Made, then two samples apart in time: the second has a figure.
        spin();
        usage.sample();
        spin();
        let sample = usage.sample();
        assert!(sample.cpu_percent > 0.0, "{sample:?}");
        assert!(sample.memory_bytes > 1 << 20, "{sample:?}");
        assert_eq!(usage.latest(), sample);
    }
}
