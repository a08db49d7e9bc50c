//! Group commit on the leader: writes that arrive while earlier ones are
//! being committed wait, and then go together as one log entry.
//!
//! ```text
//!   write ─┐                            then: client_write(Batch[b, c, d])
//!   write ─┼─► queue ─► client_write(a) ──►  results[0] ─► b, [1] ─► c, …
//!   write ─┘  (bounded)  while it commits, b, c and d gather in the queue
//! ```
//!
//! Under light load a write goes alone, at once; under heavy load every
//! entry carries many writes, so the per-entry work of the leader and of
//! every follower (framing, storing, applying, acknowledging) is shared.
//! Only writes of the same format merge, and only from
//! [`DISTINCT_IDS_FORMAT`] on, where each command of a batch gets an id of
//! its own; earlier releases gave them all the entry's index. Writes of an
//! older format do not wait here: they go to openraft at once, as before.

use super::types::{Command, CommandResult, DISTINCT_IDS_FORMAT, LoggedCommand, RaftNode};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Writes in one entry, at most.
const MAX_COMMANDS: usize = 256;
/// The JSON of the writes in one entry, at most, unless one write alone is
/// larger (it then goes alone), so an entry stays far below a frame.
const MAX_BYTES: usize = 1024 * 1024;
/// Writes waiting; a writer past it waits for room.
const QUEUE: usize = 4096;

/// Why a proposed write was not committed.
#[derive(Clone, Debug)]
pub(super) enum Refused {
    /// This node is not (or no longer) the leader: ask the leader.
    NotLeader,
    Failed(String),
}

struct Proposal {
    command: LoggedCommand,
    reply: oneshot::Sender<Result<CommandResult, Refused>>,
}

/// The leader's side of writing: proposes commands, several to an entry.
pub(super) struct Proposer {
    raft: RaftNode,
    queue: mpsc::Sender<Proposal>,
    stopped: CancellationToken,
    /// The task that gathers and commits.
    gathering: TaskTracker,
}

impl Proposer {
    /// Starts proposing to `raft`, until [`Proposer::stop`].
    pub(super) fn start(raft: RaftNode) -> Proposer {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let stopped = CancellationToken::new();
        let gathering = TaskTracker::new();
        gathering.spawn(gather(raft.clone(), waiting, stopped.clone()));
        gathering.close();
        Proposer {
            raft,
            queue,
            stopped,
            gathering,
        }
    }

    /// Proposes nothing more; writes waiting fail with the node stopping.
    /// An entry being committed is answered first: see [`Proposer::stopped`].
    pub(super) fn stop(&self) {
        self.stopped.cancel();
    }

    /// Returns once the last entry proposed is answered (at once when Raft
    /// has shut down, which fails it).
    pub(super) async fn stopped(&self) {
        self.gathering.wait().await;
    }

    /// Commits `command` (with others, perhaps) and returns what applying
    /// it returned.
    pub(super) async fn propose(&self, command: LoggedCommand) -> Result<CommandResult, Refused> {
        if command.format < DISTINCT_IDS_FORMAT {
            // It would go alone anyway: openraft pipelines it with others.
            return write(&self.raft, command).await;
        }
        let stopped = || Refused::Failed("the node is stopping".to_string());
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Proposal { command, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Takes waiting writes into entries, one entry being committed at a time.
async fn gather(raft: RaftNode, mut waiting: mpsc::Receiver<Proposal>, stopped: CancellationToken) {
    // A write that did not fit the last entry starts the next.
    let mut held: Option<Proposal> = None;
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => tokio::select! {
                () = stopped.cancelled() => return,
                first = waiting.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
            },
        };
        // A writer that gave up waiting is told it may or may not have
        // been written; not writing it is the kinder of the two.
        if first.reply.is_closed() {
            continue;
        }
        let format = first.command.format;
        let mut batch = vec![first];
        let mut bytes = 0;
        while batch.len() < MAX_COMMANDS {
            let Ok(next) = waiting.try_recv() else { break };
            if next.reply.is_closed() {
                continue;
            }
            if bytes == 0 {
                bytes = encoded_len(&batch[0].command.value);
            }
            bytes += encoded_len(&next.command.value);
            if next.command.format != format || bytes > MAX_BYTES {
                held = Some(next);
                break;
            }
            batch.push(next);
        }
        // Writes arriving meanwhile wait in the queue: the next entry.
        commit(&raft, batch).await;
        if stopped.is_cancelled() {
            return;
        }
    }
}

/// Commits `batch` as one entry and answers each of its writers.
async fn commit(raft: &RaftNode, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        let Proposal { command, reply } = batch.pop().expect("one write");
        let _ = reply.send(write(raft, command).await);
        return;
    }
    let format = batch[0].command.format;
    let (commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|proposal| (proposal.command.value, proposal.reply))
        .unzip();
    let written = write(raft, LoggedCommand::new(format, Command::Batch(commands))).await;
    match written {
        Ok(CommandResult::Batch(results)) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        other => {
            let refused = match other {
                Err(refused) => refused,
                Ok(result) => Refused::Failed(format!(
                    "a batch of {} writes was answered with {result:?}",
                    replies.len()
                )),
            };
            for reply in replies {
                let _ = reply.send(Err(refused.clone()));
            }
        }
    }
}

async fn write(raft: &RaftNode, command: LoggedCommand) -> Result<CommandResult, Refused> {
    match raft.client_write(Arc::new(command.into())).await {
        Ok(response) => Ok(response.data),
        Err(e) if e.forward_to_leader().is_some() => Err(Refused::NotLeader),
        Err(e) => Err(Refused::Failed(e.to_string())),
    }
}

/// The length of `command`'s JSON, without keeping it.
fn encoded_len(command: &Command) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, command);
    counter.0
}
