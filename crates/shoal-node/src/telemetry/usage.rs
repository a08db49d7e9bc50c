//! The node process's CPU and memory, sampled once a heartbeat.
//!
//! CPU use is the process's CPU clock between two samples over the time
//! between them, so the sampler takes one when made and the first
//! heartbeat's reads what the process used since it started sampling.
//! Memory is the resident set, read from `/proc/self/statm`, which the
//! sampler opens once (0 where there is no `/proc`). Nodes that share a
//! process (an in-process cluster, `shoal demo`) report that one
//! process's figures.
//!
//! A sample is one clock read and one read of a short file. `sysinfo`,
//! used before, also read the uptime, every core's counters and every
//! thread's stat file to make one: 8.8 % of an idle node's CPU at
//! N = 100 (`perf`, 2026-12-02), where this takes 0.3 %.

use nix::time::{ClockId, clock_gettime};
use nix::unistd::{SysconfVar, sysconf};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    state: Mutex<State>,
}

struct State {
    /// When the previous sample was taken, and the CPU clock then.
    taken: Instant,
    cpu: Duration,
    memory: ResidentMemory,
    latest: Usage,
}

impl Default for ProcessUsage {
    fn default() -> Self {
        let memory = ResidentMemory::open();
        ProcessUsage {
            state: Mutex::new(State {
                taken: Instant::now(),
                cpu: cpu_time(),
                latest: Usage {
                    cpu_percent: 0.0,
                    memory_bytes: memory.read(),
                },
                memory,
            }),
        }
    }
}

impl ProcessUsage {
    /// Takes a new sample and keeps it as the latest.
    pub fn sample(&self) -> Usage {
        let mut state = self.state.lock().expect("usage lock");
        let (now, cpu) = (Instant::now(), cpu_time());
        let wall = now.duration_since(state.taken).as_secs_f64();
        if wall > 0.0 {
            let used = cpu.saturating_sub(state.cpu).as_secs_f64();
            state.latest.cpu_percent = (used / wall * 100.0) as f32;
        }
        state.latest.memory_bytes = state.memory.read();
        (state.taken, state.cpu) = (now, cpu);
        state.latest
    }

    /// The latest sample.
    pub fn latest(&self) -> Usage {
        self.state.lock().expect("usage lock").latest
    }
}

/// CPU time this process has used, all its threads together.
fn cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// This process's `/proc/self/statm`, kept open: each read is fresh.
struct ResidentMemory {
    statm: Option<File>,
    page_bytes: u64,
}

impl ResidentMemory {
    fn open() -> ResidentMemory {
        let page_bytes = sysconf(SysconfVar::PAGE_SIZE).ok().flatten();
        ResidentMemory {
            statm: File::open("/proc/self/statm").ok(),
            page_bytes: page_bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0),
        }
    }

    /// Resident bytes now; 0 where they cannot be read.
    fn read(&self) -> u64 {
        let Some(statm) = &self.statm else {
            return 0;
        };
        let mut text = [0u8; 128];
        let Ok(len) = statm.read_at(&mut text, 0) else {
            return 0;
        };
        resident_pages(&text[..len]).map_or(0, |pages| pages * self.page_bytes)
    }
}

/// The second field of a `statm` text: resident pages.
fn resident_pages(statm: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(statm).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_shows_cpu_and_memory() {
        let usage = ProcessUsage::default();
        let spin = || {
            let started = Instant::now();
            let mut spin = 0u64;
            while started.elapsed() < Duration::from_millis(300) {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        };
        // Made, then two samples apart in time: the second has a figure.
        spin();
        usage.sample();
        spin();
        let sample = usage.sample();
        // A thread spun the whole time; a loaded machine gives it less
        // than a core, never next to nothing.
        assert!(sample.cpu_percent > 20.0, "{sample:?}");
        assert!(sample.memory_bytes > 1 << 20, "{sample:?}");
        assert_eq!(usage.latest(), sample);
    }

    #[test]
    fn resident_pages_are_the_second_field_of_statm() {
        assert_eq!(
            resident_pages(b"11062 6078 3870 4961 0 1153 0\n"),
            Some(6078)
        );
        assert_eq!(resident_pages(b"11062"), None);
        assert_eq!(resident_pages(b"11062 lots 3870"), None);
    }
}
