//! A cluster's durable jobs as a user's program reads them through the
//! HTTP API: every job, page by page, and waiting until they have ended.

use super::wait_until;
use shoal_client::{Client, Job};
use std::time::Duration;

/// Every job the cluster holds, in id order.
pub async fn all_jobs(client: &Client) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .jobs(None, Some(500), after)
            .await
            .map_err(|e| e.to_string())?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(jobs),
        }
    }
}

/// Waits until the cluster holds `count` jobs and every one has ended;
/// returns them in id order.
pub async fn wait_for_finished_jobs(client: &Client, count: usize, within: Duration) -> Vec<Job> {
    wait_until(within, &format!("{count} jobs to end"), async || {
        let jobs = all_jobs(client).await?;
        let finished = jobs.iter().filter(|j| j.state.is_finished()).count();
        if jobs.len() == count && finished == count {
            Ok(jobs)
        } else {
            Err(format!("{} jobs, {finished} ended", jobs.len()))
        }
    })
    .await
}
