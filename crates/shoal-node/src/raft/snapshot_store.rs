//! The current Raft snapshot on disk, as one file: `<dir>/raft-snapshot.json`.
//!
//! A snapshot can be far larger than memory should hold twice, so it lives
//! in a file from the moment it is built or received until it is replaced:
//! openraft is handed [`SnapshotData`], an open file, never the bytes.
//!
//! ```text
//!   build ──► .raft-snapshot-partial-XXXX ──fsync, rename──► raft-snapshot.json
//!   receive (chunks from the leader) ──► .raft-snapshot-partial-XXXX ──┘ (on install)
//!   send / restore ◄── open raft-snapshot.json (the handle keeps reading the
//!                      same bytes even if a newer snapshot replaces the file)
//! ```
//!
//! The file is the JSON of the snapshot's metadata on the first line, then
//! the state machine's JSON: one file, so replacing it is one atomic rename
//! and a crash leaves either the old snapshot or the new one. Partial files
//! a crash left behind are removed when the store opens.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::RaftTypeConfig;
use openraft::type_config::alias::SnapshotMetaOf;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tempfile::{NamedTempFile, TempPath};

use super::log_store::{BoxError, Corrupt};

/// The current snapshot, inside the node's Raft directory.
pub const SNAPSHOT_FILE: &str = "raft-snapshot.json";
/// Names of snapshot files still being written (built or received).
const PARTIAL_PREFIX: &str = ".raft-snapshot-partial-";
/// Where snapshots were kept before they had a file of their own (one
/// redb record each for the metadata and the data); moved on open.
const LEGACY_FILE: &str = "raft-state.redb";
/// Metadata is a log id and the membership: a few KiB even for large
/// clusters. A longer first line is a damaged file, not a reason to read on.
const MAX_META_BYTES: u64 = 16 * 1024 * 1024;
/// Buffer of the reader and writer of a snapshot's JSON.
const IO_BUFFER_BYTES: usize = 256 * 1024;

/// A snapshot's bytes (metadata line and state), as an open file.
///
/// The file is either the store's current snapshot or a partial file of
/// this snapshot's own (`temporary`), which is deleted when this is dropped
/// unless it was installed first; so an abandoned transfer or an unused
/// build leaves nothing behind.
#[derive(Debug)]
pub struct SnapshotData {
    file: File,
    len: u64,
    temporary: Option<TempPath>,
}

impl SnapshotData {
    /// A partial file, complete now, as snapshot data that owns it.
    pub fn from_partial(partial: NamedTempFile) -> io::Result<Self> {
        let (file, path) = partial.into_parts();
        file.sync_all()?;
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len,
            temporary: Some(path),
        })
    }

    /// The size in bytes, as sent to a follower.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `max` bytes at `offset`; fewer only at the end.
    pub fn read_chunk(&mut self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))?;
        let mut chunk = Vec::with_capacity(max.min(self.len.saturating_sub(offset) as usize));
        file.take(max as u64).read_to_end(&mut chunk)?;
        Ok(chunk)
    }

    /// Every byte, in memory: for tests and small snapshots only.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.read_chunk(0, self.len as usize)
    }

    /// Reads the metadata line and leaves `reader` at the state's JSON.
    fn read_meta<C: RaftTypeConfig>(
        &mut self,
    ) -> Result<(SnapshotMetaOf<C>, BufReader<&File>), BoxError> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, file);
        let mut line = Vec::new();
        (&mut reader)
            .take(MAX_META_BYTES)
            .read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(Corrupt("the snapshot has no metadata line".to_string()).into());
        }
        Ok((serde_json::from_slice(&line)?, reader))
    }

    /// Decodes the state, checking first that the file's own metadata is
    /// `meta`: the data must be the snapshot it is installed as.
    pub fn decode<C: RaftTypeConfig, B: DeserializeOwned>(
        &mut self,
        meta: &SnapshotMetaOf<C>,
    ) -> Result<B, BoxError> {
        let (own_meta, reader) = self.read_meta::<C>()?;
        if &own_meta != meta {
            return Err(mismatch::<C>(&own_meta, meta));
        }
        Ok(serde_json::from_reader(reader)?)
    }
}

/// The error for snapshot data that is not the snapshot its metadata says.
pub fn mismatch<C: RaftTypeConfig>(data: &SnapshotMetaOf<C>, meta: &SnapshotMetaOf<C>) -> BoxError {
    let data_at = data.last_log_id.as_ref().map(|id| id.to_string());
    let meta_at = meta.last_log_id.as_ref().map(|id| id.to_string());
    Corrupt(format!(
        "snapshot data (applied up to {data_at:?}) does not match its metadata (applied up to \
         {meta_at:?})"
    ))
    .into()
}

/// A new partial snapshot file in `dir`, deleted when dropped.
pub fn partial_file(dir: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
}

/// The snapshot file of one Raft directory; cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    dir: Arc<Path>,
    /// `<dir>/raft-snapshot.json`, named in every error.
    file: Arc<Path>,
    /// Held while replacing the file, so that a build racing an install
    /// cannot roll the snapshot back between its check and its rename.
    replacing: Arc<Mutex<()>>,
}

impl SnapshotStore {
    /// The store in `dir`, which it creates; removes partial files a crash
    /// left and moves a snapshot of an older version into its file.
    pub fn open(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)?;
        remove_partial_files(dir)?;
        let store = Self {
            dir: dir.into(),
            file: dir.join(SNAPSHOT_FILE).into(),
            replacing: Arc::default(),
        };
        store.migrate_legacy()?;
        Ok(store)
    }

    pub fn file(&self) -> &Arc<Path> {
        &self.file
    }

    /// The stored snapshot, if one was ever written.
    pub fn current<C: RaftTypeConfig>(
        &self,
    ) -> Result<Option<(SnapshotMetaOf<C>, SnapshotData)>, BoxError> {
        let file = match File::open(&self.file) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata()?.len();
        let mut data = SnapshotData {
            file,
            len,
            temporary: None,
        };
        let (meta, _) = data.read_meta::<C>()?;
        Ok(Some((meta, data)))
    }

    /// Writes a snapshot to a partial file of its own, durably.
    pub fn write<C: RaftTypeConfig>(
        &self,
        meta: &SnapshotMetaOf<C>,
        state: &impl Serialize,
    ) -> Result<SnapshotData, BoxError> {
        let mut partial = partial_file(&self.dir)?;
        let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, partial.as_file_mut());
        serde_json::to_writer(&mut writer, meta)?;
        writer.write_all(b"\n")?;
        serde_json::to_writer(&mut writer, state)?;
        writer.flush()?;
        drop(writer);
        Ok(SnapshotData::from_partial(partial)?)
    }

    /// Makes `data` the stored snapshot, durably: a restarted node restores
    /// from it, and openraft may purge the log it covers once this returns.
    /// A partial file in this directory is renamed into place; anything
    /// else is copied first.
    ///
    /// With `only_if_newer`, a snapshot older than the stored one is left
    /// as it is instead: a build that raced an install must not roll it back.
    pub fn keep<C: RaftTypeConfig>(
        &self,
        meta: &SnapshotMetaOf<C>,
        mut data: SnapshotData,
        only_if_newer: bool,
    ) -> Result<SnapshotData, BoxError> {
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if only_if_newer
            && let Some((stored, _)) = self.current::<C>()?
            && stored.last_log_id > meta.last_log_id
        {
            return Ok(data);
        }
        let own_partial = data
            .temporary
            .as_ref()
            .is_some_and(|path| path.parent() == Some(&*self.dir));
        if !own_partial {
            data = self.copy_to_partial(&mut data)?;
        }
        let path = data.temporary.take().expect("a partial file");
        if let Err(e) = path.persist(&self.file) {
            data.temporary = Some(e.path);
            return Err(e.error.into());
        }
        sync_dir(&self.dir)?;
        Ok(data)
    }

    /// A copy of `data` in a partial file of this directory.
    fn copy_to_partial(&self, data: &mut SnapshotData) -> Result<SnapshotData, BoxError> {
        let mut partial = partial_file(&self.dir)?;
        let mut source = &data.file;
        source.seek(SeekFrom::Start(0))?;
        io::copy(&mut source, partial.as_file_mut())?;
        Ok(SnapshotData::from_partial(partial)?)
    }

    /// Moves a snapshot kept in `raft-state.redb` (before snapshots had a
    /// file) into the snapshot file, then removes the old database; without
    /// this, a node upgraded after purging its log would lose its state.
    fn migrate_legacy(&self) -> Result<(), BoxError> {
        let legacy = self.dir.join(LEGACY_FILE);
        if !legacy.exists() {
            return Ok(());
        }
        // With the file there, an earlier move finished but the removal not.
        if !self.file.exists()
            && let Some(snapshot) = read_legacy(&legacy)?
        {
            let mut partial = partial_file(&self.dir)?;
            partial.as_file_mut().write_all(&snapshot)?;
            partial.as_file().sync_all()?;
            partial.into_temp_path().persist(&self.file)?;
            sync_dir(&self.dir)?;
            tracing::info!(file = %self.file.display(), "moved the Raft snapshot out of {LEGACY_FILE}");
        }
        std::fs::remove_file(&legacy)?;
        Ok(())
    }
}

/// The snapshot in `raft-state.redb` (its metadata and state records) as
/// the snapshot file holds it.
fn read_legacy(legacy: &Path) -> Result<Option<Vec<u8>>, BoxError> {
    const SNAPSHOT: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("snapshot");
    let db = redb::Database::open(legacy)?;
    let txn = redb::ReadableDatabase::begin_read(&db)?;
    let table = match txn.open_table(SNAPSHOT) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (Some(meta), Some(state)) = (table.get("meta")?, table.get("data")?) else {
        return Ok(None);
    };
    Ok(Some([meta.value(), b"\n", state.value()].concat()))
}

/// Removes the partial files in `dir`: builds and transfers a crash cut short.
fn remove_partial_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_partial(&path) {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Makes a rename in `dir` durable: the new name is in the directory's own
/// data, which `fsync` of the file does not cover.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `path` names a partial snapshot file, for tests of what a
/// transfer leaves on disk.
pub fn is_partial(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with(PARTIAL_PREFIX))
}
