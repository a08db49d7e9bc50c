//! The Raft log and vote on disk, in one redb file: `<dir>/raft-log.redb`.
//!
//! [`LogStore`] implements openraft's [`RaftLogStorage`] and [`RaftLogReader`].
//! It owns two tables: `entries` (log index → JSON entry) and `meta` (the
//! vote, the committed log id and the last purged log id, each as JSON).
//! Entries are JSON because commands carry `serde_json::Value` payloads, which
//! only a self-describing format can decode (postcard and bincode cannot).
//!
//! ```text
//!   RaftCore ── append(batch) ──► spawn_blocking: one write transaction,
//!                                 commit = fsync ──► IOFlushed callback
//!   replication tasks ── get_log_reader() ──► the newest entries in memory
//!                                              (`log_tail`), else redb
//! ```
//!
//! Durability: a Raft node may only acknowledge entries and votes that
//! survive a crash, so `append`, `save_vote`, `truncate_after` and `purge`
//! commit with redb's default durability, which fsyncs before returning.
//! `append` waits for its commit; meanwhile openraft queues the entries that
//! arrive and merges them into its next `append` call, so one fsync covers a
//! whole batch (group commit). `save_committed` is the exception: it is a
//! hint that lets a restarted node re-apply its log without waiting for a
//! leader, and it runs before every apply, on the path of every write. It
//! is kept in memory, and the next durable commit (an append, a vote, a
//! truncation, a purge) carries it, as does [`LogStore::flush_committed`]
//! when the node stops. Losing it to a crash only means the restarted node
//! re-applies less until it hears from the leader, because a restarted
//! leader never takes up its leadership again without an election (see
//! `enable_leader_restore` in [`raft_config`](super::types::raft_config)):
//! with the stale index it would have served reads older than writes it
//! had acknowledged.
//!
//! Every redb call blocks (an fsync takes milliseconds), so each one runs on
//! tokio's blocking pool, never on an async worker thread.

use std::error::Error;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::log_tail::LogTail;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftTypeConfig};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file the log lives in, inside the node's data directory.
const LOG_FILE: &str = "raft-log.redb";

/// Log entries by index; redb orders `u64` keys numerically, so ranges and
/// `last()` follow the log.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The few values Raft keeps beside the entries, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// An error of any source, before it is given its file and action.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// A failure of Raft's on-disk storage: which file, what was being done, and
/// the underlying redb, decoding or I/O error.
///
/// openraft's storage traits return `io::Error`; this is the error inside it
/// (`io::Error::get_ref` and `downcast_ref` recover it). Its kind is
/// `InvalidData` when a stored record could not be decoded, `Other` otherwise.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {action}: {source}", file.display())]
pub struct RaftStorageError {
    /// The database file, so an operator knows which file to inspect.
    pub file: PathBuf,
    /// What was being done, e.g. "append log entries 5..=9".
    pub action: String,
    source: BoxError,
}

impl RaftStorageError {
    /// Wraps `source` in the `io::Error` openraft expects.
    pub(crate) fn into_io(file: &Path, action: impl Into<String>, source: BoxError) -> io::Error {
        // A record that does not decode is corrupt data, not a failed I/O
        // call; say so, since retrying will not help.
        let kind = if source.is::<serde_json::Error>() || source.is::<Corrupt>() {
            io::ErrorKind::InvalidData
        } else {
            io::ErrorKind::Other
        };
        let error = RaftStorageError {
            file: file.to_path_buf(),
            action: action.into(),
            source,
        };
        io::Error::new(kind, error)
    }
}

/// Stored data that decodes but contradicts itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Corrupt(pub(crate) String);

/// Page cache of each redb database.
const REDB_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Opens (or creates) the redb database `file_name` in `dir`, creating the
/// directory if needed, and lets `create_tables` create every table up front
/// so that read transactions never meet a missing one.
pub(crate) fn open_database(
    dir: &Path,
    file_name: &str,
    create_tables: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::TableError>,
) -> io::Result<(Arc<Database>, Arc<Path>)> {
    let file: Arc<Path> = dir.join(file_name).into();
    let failed = |action: &str, e: BoxError| RaftStorageError::into_io(&file, action, e);
    std::fs::create_dir_all(dir).map_err(|e| failed("create its data directory", e.into()))?;
    // A small page cache: Raft reads back only recent entries, and an idle
    // node should stay small (redb's default cache is up to 1 GiB).
    let db = redb::Builder::new()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(&file)
        .map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => failed(
            "open it: it is already open, by another process using this data directory or by an \
             earlier handle in this one that has not been dropped yet",
            e.into(),
        ),
        e => failed("open it", e.into()),
    })?;
    let create = || -> Result<(), BoxError> {
        let txn = db.begin_write()?;
        create_tables(&txn)?;
        txn.commit()?;
        Ok(())
    };
    create().map_err(|e| failed("create its tables", e))?;
    Ok((Arc::new(db), file))
}

/// Runs `op` on tokio's blocking pool: redb reads may hit the disk and
/// commits fsync, which must not stall an async worker thread.
pub(crate) async fn run_blocking<T, F>(
    file: &Arc<Path>,
    action: impl Into<String>,
    op: F,
) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BoxError> + Send + 'static,
{
    match tokio::task::spawn_blocking(op).await {
        Ok(result) => result.map_err(|e| RaftStorageError::into_io(file, action, e)),
        // A panic in `op` is a bug: let it surface as one, as if `op` had
        // run inline.
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => Err(RaftStorageError::into_io(file, action, join.into())),
    }
}

/// The Raft log of one node; see the module docs. Cheap to clone: clones
/// share one database handle, which is how openraft's log readers see what
/// `append` wrote the moment it returns.
///
/// redb locks its file, so a second `open` of the same directory fails until
/// every clone (openraft holds some) has been dropped.
pub struct LogStore<C: RaftTypeConfig> {
    /// Shared by the store and its readers; redb serves many readers beside
    /// its one writer.
    db: Arc<Database>,
    /// Named in every error.
    file: Arc<Path>,
    /// The newest entries, for the replication streams to read.
    tail: Arc<Mutex<LogTail<C>>>,
    /// The committed log id saved since the last durable commit, encoded:
    /// that commit writes it (see the module docs).
    unwritten_committed: Arc<Mutex<Option<Vec<u8>>>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: Arc::clone(&self.db),
            file: Arc::clone(&self.file),
            tail: Arc::clone(&self.tail),
            unwritten_committed: Arc::clone(&self.unwritten_committed),
        }
    }
}

impl<C: RaftTypeConfig> LogStore<C> {
    /// Opens the log in `dir` (`<dir>/raft-log.redb`), creating the
    /// directory and the database if they do not exist yet.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let (db, file) = open_database(dir, LOG_FILE, |txn| {
            txn.open_table(ENTRIES)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(Self {
            db,
            file,
            tail: Arc::default(),
            unwritten_committed: Arc::default(),
        })
    }

    /// Writes the committed log id saved last, if it is not on disk yet;
    /// for a node that stops (a running one writes it with its next
    /// append).
    pub async fn flush_committed(&self) -> io::Result<()> {
        let Some(bytes) = self.take_unwritten_committed() else {
            return Ok(());
        };
        self.blocking("save the committed record", move |db| {
            let txn = db.begin_write()?;
            put_meta(&txn, COMMITTED, Some(bytes))?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, LogTail<C>> {
        self.tail.lock().expect("log tail lock")
    }

    fn take_unwritten_committed(&self) -> Option<Vec<u8>> {
        self.unwritten_committed
            .lock()
            .expect("committed lock")
            .take()
    }

    async fn blocking<T, F>(&self, action: impl Into<String>, op: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, BoxError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        run_blocking(&self.file, action, move || op(&db)).await
    }

    /// Reads and decodes one `meta` value.
    async fn read_meta<T>(&self, key: &'static str) -> io::Result<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.blocking(format!("read the {key} record"), move |db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            get_meta(&meta, key)
        })
        .await
    }

    /// Writes one `meta` value (`None` removes it) in its own durable
    /// transaction, with the committed log id if it waits to be written.
    async fn write_meta<T>(&self, key: &'static str, value: Option<&T>) -> io::Result<()>
    where
        T: Serialize,
    {
        let bytes = value.map(serde_json::to_vec).transpose().map_err(|e| {
            RaftStorageError::into_io(&self.file, format!("encode the {key} record"), e.into())
        })?;
        let committed = self.take_unwritten_committed();
        self.blocking(format!("save the {key} record"), move |db| {
            let txn = db.begin_write()?;
            put_meta(&txn, COMMITTED, committed)?;
            match bytes {
                Some(bytes) => put_meta(&txn, key, Some(bytes))?,
                None => {
                    txn.open_table(META)?.remove(key)?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// Writes one `meta` value in `txn`, if there is one.
fn put_meta(
    txn: &redb::WriteTransaction,
    key: &str,
    bytes: Option<Vec<u8>>,
) -> Result<(), BoxError> {
    if let Some(bytes) = bytes {
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
    }
    Ok(())
}

/// Decodes one `meta` value; `None` if it was never written.
fn get_meta<T: DeserializeOwned>(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, BoxError> {
    match meta.get(key)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
        None => Ok(None),
    }
}

/// Describes a range of indexes for error messages, e.g. `5..=9`.
fn describe_range(range: &(Bound<u64>, Bound<u64>)) -> String {
    let start = match range.0 {
        Bound::Included(i) => i.to_string(),
        Bound::Excluded(i) => format!("{}", i.saturating_add(1)),
        Bound::Unbounded => String::new(),
    };
    match range.1 {
        Bound::Included(i) => format!("{start}..={i}"),
        Bound::Excluded(i) => format!("{start}..{i}"),
        Bound::Unbounded => format!("{start}.."),
    }
}

/// Whether `range` holds no index; redb, like `BTreeMap`, must not be asked
/// for a range whose start lies past its end.
fn is_empty_range(range: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match range.0 {
        Bound::Included(i) => i,
        Bound::Excluded(i) => match i.checked_add(1) {
            Some(i) => i,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match range.1 {
        Bound::Included(end) => start > end,
        Bound::Excluded(end) => start >= end,
        Bound::Unbounded => false,
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<C::Entry>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        if is_empty_range(&range) {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.tail().get(&range) {
            return Ok(entries);
        }
        let action = format!("read log entries {}", describe_range(&range));
        // One read transaction: the result is a snapshot of the log, never a
        // mix of before and after a concurrent truncate.
        self.blocking(action, move |db| {
            let txn = db.begin_read()?;
            let entries = txn.open_table(ENTRIES)?;
            let mut out = Vec::new();
            for row in entries.range(range)? {
                let (_, bytes) = row?;
                out.push(serde_json::from_slice(bytes.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<VoteOf<C>>> {
        self.read_meta(VOTE).await
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<C>> {
        self.blocking("read the log state", |db| {
            let txn = db.begin_read()?;
            let last_purged_log_id: Option<LogIdOf<C>> =
                get_meta(&txn.open_table(META)?, LAST_PURGED)?;
            let last_entry: Option<C::Entry> = match txn.open_table(ENTRIES)?.last()? {
                Some((_, bytes)) => Some(serde_json::from_slice(bytes.value())?),
                None => None,
            };
            // With every entry purged the log ends where the purge did.
            let last_log_id = last_entry
                .map(|entry| entry.log_id())
                .or_else(|| last_purged_log_id.clone());
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> io::Result<()> {
        self.write_meta(VOTE, Some(vote)).await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> io::Result<()> {
        let Some(committed) = committed else {
            // Only ever after a reset; rare enough to write at once.
            *self.unwritten_committed.lock().expect("committed lock") = None;
            return self.write_meta::<LogIdOf<C>>(COMMITTED, None).await;
        };
        // Kept for the next durable commit: see the module docs.
        let bytes = serde_json::to_vec(&committed).map_err(|e| {
            RaftStorageError::into_io(&self.file, "encode the committed record", e.into())
        })?;
        *self.unwritten_committed.lock().expect("committed lock") = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogIdOf<C>>> {
        let unwritten = self
            .unwritten_committed
            .lock()
            .expect("committed lock")
            .clone();
        match unwritten {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                RaftStorageError::into_io(&self.file, "decode the committed record", e.into())
            }),
            None => self.read_meta(COMMITTED).await,
        }
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> io::Result<()>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<C::Entry> = entries.into_iter().collect();
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let action = format!("append log entries {}..={}", first.index(), last.index());
        let committed = self.take_unwritten_committed();
        // The whole batch is one transaction and one fsync: the group commit.
        let result = self
            .blocking(action, move |db| {
                let txn = db.begin_write()?;
                put_meta(&txn, COMMITTED, committed)?;
                let mut written = Vec::with_capacity(entries.len());
                {
                    let mut table = txn.open_table(ENTRIES)?;
                    for entry in entries {
                        let bytes = serde_json::to_vec(&entry)?;
                        table.insert(entry.index(), bytes.as_slice())?;
                        written.push((entry, bytes.len()));
                    }
                }
                txn.commit()?;
                Ok(written)
            })
            .await
            .map(|written| self.tail().push(written));
        // The callback gets its own copy of the error; openraft also sees the
        // returned one and stops, since entries it believes written are not.
        let flushed = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        callback.io_completed(flushed);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> io::Result<()> {
        let first_removed = last_log_id.map_or(0, |id| id.index + 1);
        let committed = self.take_unwritten_committed();
        // Before the entries leave the disk: the tail holds only entries
        // that are on it.
        self.tail().truncate(first_removed);
        self.blocking(
            format!("truncate the log from index {first_removed}"),
            move |db| {
                let txn = db.begin_write()?;
                put_meta(&txn, COMMITTED, committed)?;
                txn.open_table(ENTRIES)?
                    .retain_in(first_removed.., |_, _| false)?;
                txn.commit()?;
                Ok(())
            },
        )
        .await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> io::Result<()> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| {
            RaftStorageError::into_io(&self.file, "encode the last_purged record", e.into())
        })?;
        let upto = log_id.index;
        let committed = self.take_unwritten_committed();
        self.tail().purge(upto);
        // The purge boundary and the removal commit together, so the log
        // state never shows entries below the recorded boundary or a hole.
        self.blocking(format!("purge the log up to index {upto}"), move |db| {
            let txn = db.begin_write()?;
            put_meta(&txn, COMMITTED, committed)?;
            put_meta(&txn, LAST_PURGED, Some(bytes))?;
            txn.open_table(ENTRIES)?.retain_in(..=upto, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}
