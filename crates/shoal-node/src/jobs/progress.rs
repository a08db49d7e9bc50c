//! Records what functions report about the jobs they run for.
//!
//! Reports arrive on a bounded channel (a full one drops reports: progress
//! is advice, and the next report supersedes it). Whatever arrived while
//! the previous entry was being committed goes into one Raft entry, with
//! only the newest report of each job.
//!
//! ```text
//!  CallContext::progress ─► [bounded channel] ─► record: newest per job ─► Command::Batch
//! ```

use super::JobCommand;
use crate::calls::context::ProgressReport;
use crate::raft::consensus::Consensus;
use crate::raft::types::Command;
use shoal_proto::JobRef;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reports waiting to be recorded; past it, reports are dropped.
pub const PROGRESS_QUEUE: usize = 4096;
/// Most reports taken into one Raft entry.
const BATCH: usize = 512;

/// Records reports until the node stops.
pub async fn record(
    consensus: Arc<Consensus>,
    mut reports: mpsc::Receiver<ProgressReport>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = reports.recv_many(&mut batch, BATCH) => if received == 0 {
                return;
            },
        }
        let commands = newest_per_job(batch.drain(..))
            .map(|report| {
                Command::Jobs(JobCommand::Progress {
                    id: report.job.id,
                    attempt: report.job.attempt,
                    fraction: report.fraction,
                    message: report.message,
                })
            })
            .collect();
        let write = consensus.write(Command::Batch(commands));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            written = write => if let Err(e) = written {
                tracing::debug!(error = %e, "progress not recorded");
            },
        }
    }
}

/// The last report of each job attempt, in the order they first appeared.
fn newest_per_job(
    reports: impl Iterator<Item = ProgressReport>,
) -> impl Iterator<Item = ProgressReport> {
    let mut order: Vec<JobRef> = Vec::new();
    let mut newest: HashMap<JobRef, ProgressReport> = HashMap::new();
    for report in reports {
        if newest.insert(report.job, report.clone()).is_none() {
            order.push(report.job);
        }
    }
    order.into_iter().filter_map(move |job| newest.remove(&job))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64, fraction: f64) -> ProgressReport {
        ProgressReport {
            job: JobRef { id, attempt: 1 },
            fraction,
            message: format!("{fraction}"),
        }
    }

    #[test]
    fn only_the_newest_report_of_each_job_is_kept() {
        let reports = vec![
            report(1, 0.1),
            report(2, 0.5),
            report(1, 0.2),
            report(1, 0.3),
        ];
        let kept: Vec<(u64, f64)> = newest_per_job(reports.into_iter())
            .map(|r| (r.job.id, r.fraction))
            .collect();
        assert_eq!(kept, vec![(1, 0.3), (2, 0.5)]);
    }
}
