//! The replicated state machine: the state in memory, its snapshot on disk in
//! `<dir>/raft-snapshot.json` (see [`snapshot_store`](super::snapshot_store)).
//!
//! [`StateMachine`] implements openraft's [`RaftStateMachine`] for any
//! [`StateLogic`] (Shoal's is `ShoalState`). Committed entries are applied in
//! log order to the in-memory state; the node reads that state through a
//! [`StateReader`]. Applying does not touch the disk: the log is durable, and
//! a snapshot is the only thing this module persists.
//!
//! ```text
//!   committed entries ──► apply ──► S (in memory) ◄── StateReader::read (node)
//!                                   │ build_snapshot: clone, JSON to a file
//!                                   ▼
//!          raft-snapshot.json: the current snapshot (meta line + state)
//!                                   │ open(): restore
//!                                   ▼
//!   restart ──► S as of the snapshot ──► openraft re-applies the log after it
//! ```
//!
//! A snapshot's state is the JSON of `(last_applied, last_membership, S)`;
//! it names its own log position so a snapshot can be checked against the
//! metadata it is installed with. It goes with its format version (see
//! [`Versioned`]): the newest format among the entries applied into it, so
//! a state built from an older release's entries stays readable by that
//! release, and a newer one is refused before it is read. Snapshots are
//! files, streamed to and from JSON, so neither building nor installing one
//! holds its bytes in memory; and the snapshot has its own file, apart from
//! the log, so that writing a large one never holds up a log append behind
//! redb's single writer.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::Notify;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{
    CommittedLeaderIdOf, EntryPayloadOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf,
};
use openraft::{Entry, EntryPayload, OptionalSend, RaftTypeConfig, StoredMembership};
use serde::{Deserialize, Serialize};
use shoal_proto::version::{LEGACY_FORMAT, Versioned};

use super::log_store::{BoxError, Corrupt, RaftStorageError, run_blocking};
use super::snapshot_store::{SnapshotData, SnapshotStore, mismatch};

/// The replicated state's rules: apply one committed command.
pub trait StateLogic<C: openraft::RaftTypeConfig>:
    Default + Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// Applies the command committed at log `index`. Every replica applies
    /// the same commands in the same order, so this must be deterministic:
    /// no clocks, randomness or I/O.
    fn apply(&mut self, index: u64, command: &C::D) -> C::R;

    /// The format version `command` was written in; a snapshot records the
    /// newest among the commands applied into it.
    fn format_of(_command: &C::D) -> u32 {
        LEGACY_FORMAT
    }

    /// The response to a log entry that carries no command: a membership
    /// change, or the blank entry a new leader writes. openraft still hands
    /// the client waiting on such an entry (`Raft::change_membership`) a
    /// `C::R`, and that client never returns unless it gets one.
    fn empty_response() -> C::R;
}

/// A snapshot as openraft handles it: metadata and a file.
type FileSnapshot<C> = SnapshotOf<C, SnapshotData>;

/// Where the state stands in the log.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Position<C: RaftTypeConfig> {
    last_applied: Option<LogIdOf<C>>,
    last_membership: StoredMembershipOf<C>,
    /// The newest format version among the entries applied so far.
    #[serde(default = "legacy_format")]
    format: u32,
}

fn legacy_format() -> u32 {
    LEGACY_FORMAT
}

impl<C: RaftTypeConfig> Default for Position<C> {
    fn default() -> Self {
        Self {
            last_applied: None,
            last_membership: StoredMembership::default(),
            format: LEGACY_FORMAT,
        }
    }
}

/// A snapshot's data, as encoded in [`SnapshotOf::snapshot`].
#[derive(Serialize, Deserialize)]
#[serde(bound = "S: Serialize + serde::de::DeserializeOwned")]
struct SnapshotBody<C: RaftTypeConfig, S> {
    position: Position<C>,
    state: S,
}

/// The state and its log position, shared by the state machine, its snapshot
/// builders and (the state only) its readers.
///
/// Lock order: `state`, then `position`. `position` changes only while
/// `state`'s write lock is held, so whoever holds `state` (read or write)
/// and then locks `position` sees the position that matches the state: a
/// snapshot is a consistent cut.
///
/// A `StateLogic::apply` that panics poisons `state` and may have left it
/// half-changed. From then on applying and snapshotting fail (openraft stops
/// the node) rather than build on, or persist, a state no other replica has;
/// only installing a snapshot clears it. `position` is only ever assigned
/// whole, so its poisoning is ignored.
struct Shared<C: RaftTypeConfig, S> {
    state: Arc<RwLock<S>>,
    position: Mutex<Position<C>>,
    /// Told after entries are applied or a snapshot installed.
    applied: Arc<Notify>,
}

impl<C: RaftTypeConfig, S> Shared<C, S> {
    fn position(&self) -> std::sync::MutexGuard<'_, Position<C>> {
        self.position.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why the state cannot be used after a panic in `StateLogic::apply`.
fn poisoned() -> BoxError {
    Corrupt(
        "the in-memory state is inconsistent: a StateLogic::apply panicked halfway; restart the \
         node to rebuild the state from the snapshot and the log"
            .to_string(),
    )
    .into()
}

/// The Raft state machine of one node; see the module docs.
pub struct StateMachine<C: RaftTypeConfig, S> {
    shared: Arc<Shared<C, S>>,
    snapshots: SnapshotStore,
}

impl<C: RaftTypeConfig, S: StateLogic<C>> StateMachine<C, S> {
    /// Opens the state machine in `dir` (`<dir>/raft-snapshot.json`), with the
    /// state of the stored snapshot if there is one and `S::default()` if
    /// not. openraft then re-applies the committed log after that point.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let snapshots = SnapshotStore::open(dir).map_err(|e| {
            let file = super::snapshot_store::SNAPSHOT_FILE;
            RaftStorageError::into_io(&dir.join(file), "open the snapshot store", e)
        })?;
        let restore = || -> Result<SnapshotBody<C, S>, BoxError> {
            match snapshots.current::<C>()? {
                Some((meta, mut data)) => decode_snapshot(&meta, &mut data),
                None => Ok(SnapshotBody {
                    position: Position::default(),
                    state: S::default(),
                }),
            }
        };
        let body = restore().map_err(|e| {
            RaftStorageError::into_io(snapshots.file(), "restore the state from its snapshot", e)
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                state: Arc::new(RwLock::new(body.state)),
                position: Mutex::new(body.position),
                applied: Arc::new(Notify::new()),
            }),
            snapshots,
        })
    }

    /// A handle that reads the applied state, for the node's queries.
    pub fn reader(&self) -> StateReader<S> {
        StateReader {
            state: Arc::clone(&self.shared.state),
            applied: Arc::clone(&self.shared.applied),
        }
    }

    /// Applies one entry under the state's write lock; returns the response
    /// for its client.
    fn apply_entry(
        &self,
        entry: Entry<CommittedLeaderIdOf<C>, EntryPayloadOf<C>>,
    ) -> io::Result<C::R> {
        let log_id = entry.log_id();
        let index = log_id.index;
        let Ok(mut state) = self.shared.state.write() else {
            let action = format!("apply log entry {index}");
            return Err(RaftStorageError::into_io(
                self.snapshots.file(),
                action,
                poisoned(),
            ));
        };
        let mut membership = None;
        let mut format = None;
        let response = match entry.payload {
            EntryPayload::Normal(command) => {
                format = Some(S::format_of(&command));
                state.apply(index, &command)
            }
            EntryPayload::Blank => S::empty_response(),
            EntryPayload::Membership(config) => {
                membership = Some(config);
                S::empty_response()
            }
        };
        let mut position = self.shared.position();
        if let Some(config) = membership {
            position.last_membership = StoredMembership::new(Some(log_id.clone()), config);
        }
        position.last_applied = Some(log_id);
        position.format = position.format.max(format.unwrap_or(LEGACY_FORMAT));
        Ok(response)
    }
}

/// Decodes snapshot data and checks it is the snapshot `meta` describes.
fn decode_snapshot<C: RaftTypeConfig, S: StateLogic<C>>(
    meta: &SnapshotMetaOf<C>,
    data: &mut SnapshotData,
) -> Result<SnapshotBody<C, S>, BoxError> {
    let body: SnapshotBody<C, S> = data.decode::<C, Versioned<_>>(meta)?.value;
    if body.position.last_applied != meta.last_log_id
        || body.position.last_membership != meta.last_membership
    {
        let position = SnapshotMetaOf::<C> {
            last_log_id: body.position.last_applied,
            last_membership: body.position.last_membership,
        };
        return Err(mismatch::<C>(&position, meta));
    }
    Ok(body)
}

/// Reads the applied state; cheap to clone.
pub struct StateReader<S> {
    state: Arc<RwLock<S>>,
    applied: Arc<Notify>,
}

impl<S> Clone for StateReader<S> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            applied: Arc::clone(&self.applied),
        }
    }
}

impl<S> StateReader<S> {
    /// Runs `read` on the state as applied so far. Applying waits while
    /// `read` runs, so keep it short: look up and clone what you need.
    pub fn read<T>(&self, read: impl FnOnce(&S) -> T) -> T {
        // After a panic in `StateLogic::apply` the node is stopping (see
        // `Shared`); readers still get an answer rather than a panic.
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        read(&state)
    }

    /// Resolves once entries were applied (or a snapshot installed) since
    /// the last call returned; meant for one waiter, the job runner.
    pub async fn applied(&self) {
        self.applied.notified().await
    }
}

/// Builds a snapshot from the shared state; handed out by
/// [`RaftStateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder<C: RaftTypeConfig, S> {
    shared: Arc<Shared<C, S>>,
    snapshots: SnapshotStore,
}

impl<C, S> RaftSnapshotBuilder<C> for SnapshotBuilder<C, S>
where
    C: RaftTypeConfig,
    S: StateLogic<C>,
{
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<FileSnapshot<C>> {
        let shared = Arc::clone(&self.shared);
        let snapshots = self.snapshots.clone();
        let file = Arc::clone(self.snapshots.file());
        run_blocking(&file, "build and store a snapshot", move || {
            // Clone under the lock and encode outside it: applying waits for
            // the clone only, not for the (slower) JSON encoding.
            let body = {
                let state = shared.state.read().map_err(|_| poisoned())?;
                let position = shared.position();
                SnapshotBody::<C, S> {
                    position: position.clone(),
                    state: state.clone(),
                }
            };
            let meta = SnapshotMetaOf::<C> {
                last_log_id: body.position.last_applied.clone(),
                last_membership: body.position.last_membership.clone(),
            };
            let data = snapshots.write::<C>(&meta, &Versioned::new(body.position.format, &body))?;
            let data = snapshots.keep::<C>(&meta, data, true)?;
            Ok(FileSnapshot::<C> {
                meta,
                snapshot: data,
            })
        })
        .await
    }
}

impl<C, S> RaftStateMachine<C> for StateMachine<C, S>
where
    C: RaftTypeConfig<Entry = Entry<CommittedLeaderIdOf<C>, EntryPayloadOf<C>>>,
    S: StateLogic<C>,
{
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder<C, S>;

    async fn applied_state(&mut self) -> io::Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>)> {
        let position = self.shared.position();
        Ok((
            position.last_applied.clone(),
            position.last_membership.clone(),
        ))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<C>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = self.apply_entry(entry)?;
            // Answer after the lock is released: the client may read the
            // state as soon as it hears back.
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        self.shared.applied.notify_one();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        mut snapshot: SnapshotData,
    ) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        let action = format!(
            "install the snapshot up to {}",
            meta.last_log_id
                .as_ref()
                .map_or_else(|| "the start".to_string(), |id| id.to_string())
        );
        run_blocking(self.snapshots.file(), action, move || {
            let body: SnapshotBody<C, S> = decode_snapshot(&meta, &mut snapshot)?;
            // Stored first: if storing fails, the state is left as it was.
            snapshots.keep::<C>(&meta, snapshot, false)?;
            {
                // The whole state is replaced, so a poisoned one is fine here.
                let mut state = shared.state.write().unwrap_or_else(PoisonError::into_inner);
                *state = body.state;
                *shared.position() = body.position;
            }
            shared.state.clear_poison();
            shared.applied.notify_one();
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<FileSnapshot<C>>> {
        let snapshots = self.snapshots.clone();
        run_blocking(
            self.snapshots.file(),
            "read the current snapshot",
            move || {
                let current = snapshots.current::<C>()?;
                Ok(current.map(|(meta, snapshot)| FileSnapshot::<C> { meta, snapshot }))
            },
        )
        .await
    }
}
