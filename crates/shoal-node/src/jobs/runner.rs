//! The job runner of one node: leases jobs this node can run, runs each
//! through the call fast path (so a job may fan out into many calls),
//! renews its lease while it runs, and records the outcome once.
//!
//! ```text
//!   every poll: jobs queued that fit us? ─► Lease (a Raft write) ─► for each job:
//!       call(function, args) ───────────────┐
//!       renew every lease/3 ── rejected? ───┤ (cancelled or fenced: stop the call)
//!                                           ▼
//!       Complete / Fail (carrying the attempt: a stale one is refused)
//! ```
//!
//! A runner on a node that holds a replica looks for work there; one on a
//! node without a replica asks a member, only while the leader's heartbeat
//! says the members cannot keep up ([`super::calling_in`]). The leader
//! also proposes a `Tick` when a lease has run out or finished jobs are
//! due for garbage collection, so lost leases return to the queue. A lease
//! that got no clear answer may still be committed; the runner then runs
//! the jobs held in its name that it never started ([`super::orphans`]).

use super::calling_in::{Asking, Head};
use super::orphans::{Orphans, Taken};
use super::{Capabilities, Job, JobCommand, JobOutcome, Leasing, runs_where_leased};
use crate::calls::scripts::Scripts;
use crate::calls::workers::PYTHON_SCRIPT;
use crate::calls::{CallOptions, Calls};
use crate::clock::now_ms;
use crate::cluster::peers::PeerView;
use crate::raft::consensus::Consensus;
use crate::raft::query::{Leasable, Query};
use crate::raft::types::{Command, CommandResult};
use libp2p::PeerId;
use serde_json::{Value, json};
use shoal_proto::{CallError, ErrorCode, JobRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a runner looks for work while there is some. Looking is a
/// local read, so it costs nothing on the network.
const POLL: Duration = Duration::from_millis(50);
/// How often a runner looks when there is none: news of jobs (an applied
/// entry, the leader saying jobs wait) wakes it sooner. The leader also
/// expires leases and releases dead nodes' leases at this pace.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The longest a runner without a replica waits between questions while
/// jobs it cannot lease sit in the queue.
const MAX_ASK_GAP: Duration = Duration::from_secs(2);
/// How long finished jobs are kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What waits is shared among at most this many runners at a time.
const MAX_SHARES: usize = 8;

/// Jobs one node runs at once, per worker slot. A job mostly waits for its
/// call (which takes a slot only while it executes, possibly elsewhere), so
/// a node holds many more jobs than it has slots.
pub const JOBS_PER_SLOT: usize = 128;

/// Most job outcomes recorded in one Raft entry.
const MAX_OUTCOME_BATCH: usize = 512;

/// A finished attempt waiting to be recorded, and who wants to know.
type Outcome = (JobCommand, oneshot::Sender<Result<JobOutcome, String>>);

/// Records job outcomes in batches: whatever finished while the previous
/// batch was being committed goes into the next entry together.
async fn record_outcomes(
    consensus: Arc<Consensus>,
    mut outcomes: mpsc::Receiver<Outcome>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = outcomes.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_OUTCOME_BATCH {
            match outcomes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, waiters): (Vec<Command>, Vec<_>) = batch
            .into_iter()
            .map(|(command, waiter)| (Command::Jobs(command), waiter))
            .unzip();
        let write = consensus.write(Command::Batch(commands));
        let written = tokio::select! {
            // Unrecorded outcomes are not lost: their leases expire and the
            // jobs run again.
            _ = shutdown.cancelled() => return,
            written = write => written,
        };
        let answers: Vec<Result<JobOutcome, String>> = match written {
            Ok(CommandResult::Batch(results)) => results
                .into_iter()
                .map(|result| match result {
                    CommandResult::Jobs(outcome) => Ok(outcome),
                    other => Err(format!("unexpected result {other:?}")),
                })
                .collect(),
            Ok(other) => vec![Err(format!("unexpected result {other:?}")); waiters.len()],
            Err(e) => vec![Err(e.to_string()); waiters.len()],
        };
        for (answer, waiter) in answers.into_iter().zip(waiters) {
            let _ = waiter.send(answer);
        }
    }
}

/// What a node's job runner works with.
#[derive(Clone)]
pub struct JobRunner {
    /// This node, recorded as the holder of its leases.
    pub me: PeerId,
    pub consensus: Arc<Consensus>,
    /// Who is alive: the leader releases the leases of dead nodes.
    pub peers: PeerView,
    /// Jobs run their function through the call fast path.
    pub calls: Arc<Calls>,
    /// Jobs may ship a script; it is loaded here before the call.
    pub scripts: Arc<Scripts>,
    /// What this node offers: only jobs it meets are leased.
    pub offer: Capabilities,
    /// Jobs held at once.
    pub max_jobs: usize,
    /// Jobs with requirements held at once: they run here, one per slot.
    pub max_local_jobs: usize,
    /// Jobs running here now; a draining node waits for them.
    pub running: Arc<AtomicUsize>,
}

/// Runs jobs until `shutdown`; every task it starts goes on `tasks`.
pub async fn run(runner: JobRunner, tasks: TaskTracker, shutdown: CancellationToken) {
    let JobRunner {
        me,
        consensus,
        peers,
        offer,
        max_jobs,
        max_local_jobs,
        running,
        ..
    } = runner.clone();
    let me = me.to_base58();
    let running_local = Arc::new(AtomicUsize::new(0));
    // A job that ran here for its requirements ended: its slot may take
    // the next such job now, not at the next poll.
    let local_slot_freed = Arc::new(Notify::new());
    let (outcomes, pending_outcomes) = mpsc::channel(max_jobs.max(1));
    tasks.spawn(record_outcomes(
        Arc::clone(&consensus),
        pending_outcomes,
        shutdown.clone(),
    ));
    let taken = Taken::default();
    let mut orphans = Orphans::new(taken.clone());
    let starter = Starter {
        runner: runner.clone(),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
        outcomes,
        running_local: Arc::clone(&running_local),
        local_slot_freed: Arc::clone(&local_slot_freed),
        taken,
    };
    let mut last_empty_lease_at: Option<u64> = None;
    let mut leased_last_time = false;
    let mut asking = Asking::new(POLL, MAX_ASK_GAP);
    let mut head = Head::default();
    let mut active = false;
    let mut last_look = Instant::now();
    loop {
        // Right after a lease that found work there may be more: look again
        // at once. Otherwise wait a poll interval while there is work, or
        // for news of some; look no more often than every POLL, except when
        // a job that must run here ends (its slot is what limits them).
        if !leased_last_time {
            if !active {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    () = consensus.job_news() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until((last_look + POLL).into()) => {}
                () = local_slot_freed.notified() => {}
            }
        }
        last_look = Instant::now();
        leased_last_time = false;
        if consensus.is_leader() {
            tick_if_due(&consensus).await;
            release_dead_holders(&consensus, &peers).await;
            let (queued, next) = consensus
                .read_local(|state| (state.jobs.has_queued(), state.jobs.next_in_line(now_ms())))
                .unwrap_or((false, None));
            // Whether the next job is stuck, not how long the queue has been
            // non-empty: while jobs stream in, the queue never empties, and
            // every runner of a large cluster would be called in for good.
            let full = running.load(Ordering::Relaxed) >= max_jobs;
            consensus.set_jobs_waiting(head.stuck(next, full, Instant::now()));
            active = queued;
        } else {
            consensus.set_jobs_waiting(false);
            head = Head::default();
            active = false;
        }
        if runner.calls.is_draining() {
            continue; // it takes no new jobs; the running ones finish
        }
        for job in orphans.find(&consensus, &me).await {
            starter.start(job);
        }
        let free = max_jobs.saturating_sub(running.load(Ordering::Relaxed));
        if free == 0 {
            continue;
        }
        let now = now_ms();
        let runners = (1 + peers
            .read(|peers| peers.live().filter(|(_, p)| p.load.slots > 0).count()))
        .min(MAX_SHARES);
        let up_to = free * runners;
        let free_local = max_local_jobs.saturating_sub(running_local.load(Ordering::Relaxed));
        // What a lease would take, counting its limits: with its slots for
        // jobs with requirements full, a node proposes no lease for them.
        let leasing = Leasing {
            node: me.clone(),
            offer: offer.clone(),
            max_local: free_local as u32,
        };
        let found = match consensus.read_local(|state| Leasable {
            leasable: state.jobs.leasable(&leasing, now, up_to),
            applied: state.jobs.applied_id(),
        }) {
            Some(found) => Some(found),
            None => {
                let waiting = peers.leader_has_jobs_waiting();
                active |= waiting;
                if asking.due(waiting) {
                    ask_for_work(&consensus, leasing, now, up_to).await
                } else {
                    None
                }
            }
        };
        let Some(Leasable { leasable, applied }) = found else {
            continue;
        };
        active |= leasable > 0;
        // An empty lease changes nothing; do not repeat it until the table does.
        if leasable == 0 || last_empty_lease_at == Some(applied) {
            asking.found_nothing();
            continue;
        }
        // A fair share of what waits, so the other runners take the rest
        // and a node that dies takes only its share of the cluster's jobs
        // with it. Shares are of at most MAX_SHARES: in a large cluster
        // each lease still takes a useful batch (a job's call runs
        // wherever placement puts it, not where it was leased).
        let share = leasable.div_ceil(runners);
        let max = free.min(share);
        let lease = JobCommand::Lease {
            node: me.clone(),
            offer: offer.clone(),
            max: max as u32,
            max_local: free_local as u32,
            now_ms: now,
        };
        let write = consensus.write(Command::Jobs(lease));
        let written = tokio::select! {
            _ = shutdown.cancelled() => break,
            written = write => written,
        };
        let jobs = match written {
            Ok(CommandResult::Jobs(JobOutcome::Leased(jobs))) => jobs,
            Ok(other) => {
                tracing::warn!(?other, "unexpected answer to a lease");
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot lease jobs now");
                orphans.lease_unanswered();
                continue;
            }
        };
        last_empty_lease_at = jobs.is_empty().then_some(applied);
        if jobs.is_empty() {
            asking.found_nothing();
        } else {
            asking.found_work();
        }
        // Look again at once only when this runner's own room, not its
        // share, limited the lease.
        leased_last_time = !jobs.is_empty() && max == free;
        for job in jobs {
            starter.start(job);
        }
    }
}

/// Starts leased jobs, each in a task of its own, keeping the counts.
struct Starter {
    runner: JobRunner,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    outcomes: mpsc::Sender<Outcome>,
    running_local: Arc<AtomicUsize>,
    local_slot_freed: Arc<Notify>,
    taken: Taken,
}

impl Starter {
    fn start(&self, job: Job) {
        let local = runs_where_leased(&job.spec);
        self.runner.running.fetch_add(1, Ordering::Relaxed);
        if local {
            self.running_local.fetch_add(1, Ordering::Relaxed);
        }
        let taken = self.taken.take(&job);
        let runner = self.runner.clone();
        let slot = local.then(|| LocalSlot {
            running_local: Arc::clone(&self.running_local),
            freed: Arc::clone(&self.local_slot_freed),
        });
        let outcomes = self.outcomes.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            // A job cut short by the node stopping runs again once its
            // lease expires.
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = run_job(&runner, outcomes, job, slot) => {}
            }
            drop(taken);
            runner.running.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The slot a job with requirements takes on this node while its call
/// runs. It is given back when the call ends, not once the outcome is
/// recorded: the next such job is leased while the outcome's Raft write
/// is under way. (Resources stay held by the job until then: the leader
/// counts them from its running jobs.)
struct LocalSlot {
    running_local: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        self.running_local.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_one();
    }
}

/// Asks a member how many jobs this node could lease.
async fn ask_for_work(
    consensus: &Consensus,
    leasing: Leasing,
    now_ms: u64,
    up_to: usize,
) -> Option<Leasable> {
    let query = Query::Leasable {
        offer: leasing.offer,
        now_ms,
        up_to,
        node: leasing.node,
        max_local: leasing.max_local,
    };
    match consensus.query(query, false).await {
        Ok(answer) => serde_json::from_value(answer).ok(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot ask a member for work");
            None
        }
    }
}

/// The call a job's attempt makes: its function, through the fast path,
/// with the job's script shipped along if it has one.
async fn job_call(runner: &JobRunner, job: &Job) -> Result<Value, CallError> {
    let spec = &job.spec;
    let mut options = CallOptions {
        deadline: None,
        script: None,
        job: Some(JobRef {
            id: job.id,
            attempt: job.attempt,
        }),
        // A job with requirements runs here, where they are met; the
        // calls it makes may go anywhere.
        on: runs_where_leased(spec).then_some(runner.me),
    };
    if let Some(source) = spec.script.as_ref().filter(|s| is_python(&s.name)) {
        // A Python script runs on a worker, which loads it by its hash.
        let args = json!({
            "name": source.name,
            "source": source.source,
            "function": spec.function,
            "args": spec.args,
        });
        return runner.calls.call(PYTHON_SCRIPT, args, options).await;
    }
    if let Some(source) = &spec.script {
        let script = shoal_js::Script::new(source.name.clone(), source.source.clone());
        options.script = Some(Arc::from(script.hash()));
        runner
            .scripts
            .load(script)
            .await
            .map_err(|e| CallError::new(ErrorCode::InvalidArguments, e.to_string()))?;
    }
    runner
        .calls
        .call(&spec.function, spec.args.clone(), options)
        .await
}

/// Whether a job's script is Python (by its name), not JavaScript.
fn is_python(name: &str) -> bool {
    name.ends_with(".py")
}

async fn run_job(
    runner: &JobRunner,
    outcomes: mpsc::Sender<Outcome>,
    job: Job,
    slot: Option<LocalSlot>,
) {
    let consensus = &runner.consensus;
    let (id, attempt) = (job.id, job.attempt);
    tracing::debug!(job = id, attempt, function = %job.spec.function, "job started");
    let renew_every = Duration::from_millis((job.spec.lease_ms / 3).max(50));
    let call = job_call(runner, &job);
    let renewals = async {
        loop {
            tokio::time::sleep(renew_every).await;
            let renew = JobCommand::Renew {
                id,
                attempt,
                now_ms: now_ms(),
            };
            match consensus.write(Command::Jobs(renew)).await {
                Ok(CommandResult::Jobs(JobOutcome::Rejected(reason))) => return reason,
                Ok(_) => {}
                Err(e) => tracing::debug!(job = id, error = %e, "lease renewal failed; retrying"),
            }
        }
    };
    let outcome = tokio::select! {
        outcome = call => outcome,
        reason = renewals => {
            // Cancelled, or the lease went to another attempt: stop the work
            // (dropping the call cancels it where it runs).
            tracing::info!(job = id, attempt, %reason, "job stopped");
            return;
        }
    };
    drop(slot);
    let now = now_ms();
    let record = match outcome {
        Ok(result) => JobCommand::Complete {
            id,
            attempt,
            result,
            now_ms: now,
        },
        Err(error) => JobCommand::Fail {
            id,
            attempt,
            error: error.to_string(),
            now_ms: now,
        },
    };
    let (tell, told) = oneshot::channel();
    if outcomes.send((record, tell)).await.is_err() {
        return; // the node is stopping; the lease expires and the job runs again
    }
    match told.await {
        Ok(Ok(JobOutcome::Rejected(reason))) => {
            tracing::info!(job = id, attempt, %reason, "job outcome refused")
        }
        Ok(Ok(_)) => tracing::debug!(job = id, attempt, "job finished"),
        Ok(Err(e)) => {
            tracing::warn!(job = id, attempt, error = %e, "cannot record the job outcome; its lease will expire and it runs again")
        }
        Err(_) => {}
    }
}

/// On the leader: the leases of nodes the cluster found dead go back at
/// once, instead of waiting for them to run out.
async fn release_dead_holders(consensus: &Consensus, peers: &PeerView) {
    let dead: Vec<String> = consensus
        .read_local(|state| {
            let holders = state.jobs.lease_holders();
            peers.read(|table| {
                holders
                    .into_iter()
                    .filter(|holder| {
                        holder
                            .parse::<PeerId>()
                            .is_ok_and(|peer| table.is_dead(&peer))
                    })
                    .map(str::to_string)
                    .collect()
            })
        })
        .unwrap_or_default();
    for node in dead {
        tracing::info!(%node, "releasing the job leases of a node that left");
        let release = JobCommand::Release {
            node,
            now_ms: now_ms(),
        };
        if let Err(e) = consensus.write(Command::Jobs(release)).await {
            tracing::debug!(error = %e, "release not committed");
        }
    }
}

/// On the leader: expire overdue leases and collect old finished jobs.
async fn tick_if_due(consensus: &Consensus) {
    let now = now_ms();
    let retention = RETENTION.as_millis() as u64;
    let due = consensus
        .read_local(|state| state.jobs.tick_due(now, retention))
        .unwrap_or(false);
    if due {
        let tick = JobCommand::Tick {
            now_ms: now,
            retention_ms: retention,
        };
        if let Err(e) = consensus.write(Command::Jobs(tick)).await {
            tracing::debug!(error = %e, "tick not committed");
        }
    }
}
