//! `shoal drain`: asks one node to hand its work to the others and stop,
//! and waits until it has (what a Kubernetes preStop hook or a rolling
//! restart script runs before it stops a node), showing progress.

use crate::api::{ApiArgs, explain};
use crate::args::parse_duration;
use clap::Args;
use shoal_client::{Client, DrainState, DrainStatus};
use std::time::{Duration, Instant};

/// How often the drain's progress is read.
const POLL: Duration = Duration::from_millis(250);
/// A progress request gives up this soon: the node stops once drained.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct DrainArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// How long running calls and jobs may take to finish before their
    /// work is handed back (default: the node's --drain-timeout).
    #[arg(long, value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Give up waiting after this long (the node keeps draining).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
    /// Return once the drain has started.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.api.nodes.len() == 1,
        "name exactly one node to drain with --node URL"
    );
    let node = &args.api.nodes[0];
    let client = |timeout| -> anyhow::Result<Client> {
        Ok(args
            .api
            .builder()?
            .request_timeout(timeout)
            .retry_for(Duration::ZERO)
            .build()?)
    };
    if args.no_wait {
        let status = client(PROGRESS_TIMEOUT)?
            .drain(args.grace, false)
            .await
            .map_err(explain)?;
        eprintln!("draining {node}: {}", describe(&status));
        return Ok(());
    }
    let started = Instant::now();
    let waiting = client(args.timeout)?;
    let drain = waiting.drain(args.grace, true);
    let progress = show_progress(client(PROGRESS_TIMEOUT)?, node);
    let status = tokio::select! {
        status = drain => status.map_err(explain)?,
        () = progress => unreachable!("progress is shown until the drain ends"),
    };
    anyhow::ensure!(
        status.state == DrainState::Drained,
        "the node answered before its drain ended: {}",
        describe(&status)
    );
    println!(
        "drained in {:.1} s: {} calls and {} jobs handed back, {} queue items moved{}, Raft seat {}",
        started.elapsed().as_secs_f64(),
        status.calls_handed_back,
        status.jobs_handed_back,
        status.queue_items_moved,
        if status.queue_items_left > 0 {
            format!(
                " ({} left: no other node took them)",
                status.queue_items_left
            )
        } else {
            String::new()
        },
        if status.left_raft { "given up" } else { "kept" },
    );
    Ok(())
}

/// Prints a line whenever the drain's progress changes; never returns.
async fn show_progress(client: Client, node: &str) {
    let mut last = String::new();
    loop {
        if let Ok(status) = client.drain_status().await {
            let now = describe(&status);
            if now != last {
                eprintln!("{node}: {now}");
                last = now;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One line of progress.
fn describe(status: &DrainStatus) -> String {
    let state = match status.state {
        DrainState::Serving => "serving",
        DrainState::Draining => "draining",
        DrainState::Drained => "drained",
    };
    let calls = if status.calls_running {
        "calls running"
    } else {
        "no calls running"
    };
    format!("{state}, {calls}, {} jobs running", status.jobs_running)
}
