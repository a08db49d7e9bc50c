//! Snapshots sent from the leader to a follower in chunks, so a snapshot of
//! any size fits the call stream's frame limit and Raft's other messages
//! keep flowing between its chunks.
//!
//! ```text
//!  leader: RaftClient::full_snapshot ── SnapshotChunk{transfer, offset, data} ─► follower
//!          OutgoingSnapshot: one chunk     │ SnapshotInbox::receive
//!          in flight, the next after       ▼
//!          its answer        chunk at the expected offset? ─no─► error: the leader starts over
//!                                          │yes
//!                                          ▼
//!                appended to .raft-snapshot-partial-XXXX in the Raft directory
//!                                          │ last byte
//!                                          ▼
//!                Raft::install_full_snapshot ─► StateMachine::install_snapshot
//! ```
//!
//! A follower keeps one transfer under way per leader (and at most
//! [`MAX_TRANSFERS`]); a transfer's first chunk (offset 0) replaces whatever
//! that leader sent before. A chunk at any other offset than the next byte
//! is refused, and the leader (openraft retries a failed snapshot) begins a
//! new transfer from byte 0: simpler than resuming, and a retry is rare.
//! Memory per transfer is about one chunk on each side; the bytes wait on
//! disk. A transfer that stops arriving is dropped after
//! [`ABANDONED_AFTER`], its partial file with it.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::vote::RaftLeaderId;
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::snapshot_store::{SnapshotData, partial_file};
use super::types::TypeConfig;

/// A transfer that has received nothing for this long is abandoned: its
/// sender gave up long ago (each chunk has seconds, not minutes).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// Transfers a follower keeps under way at once. One leader sends at a
/// time; a few more cover leaders that just lost office, and the bound
/// caps the disk that partial files can take at this many snapshots.
pub const MAX_TRANSFERS: usize = 4;

/// One piece of a snapshot, from the leader to a follower.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The leader's vote, which the follower checks when it installs.
    pub vote: VoteOf<TypeConfig>,
    /// The snapshot; in every chunk, so none of another one is mixed in.
    pub meta: SnapshotMetaOf<TypeConfig>,
    /// Chosen at random by the sender for each attempt, so the chunks of a
    /// retry are never taken for those of the attempt before.
    pub transfer: u64,
    /// The snapshot's size, declared up front so that a follower can
    /// refuse one too large before any byte of it is written.
    pub total: u64,
    /// Where `data` begins in the snapshot.
    pub offset: u64,
    /// Base64 in the JSON body: a third more than the bytes, where a JSON
    /// array of numbers would be three times as much.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl SnapshotChunk {
    /// Whether this chunk ends its snapshot.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.data.len() as u64) == self.total
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The leader's side of a transfer: the snapshot cut into chunks, each
/// read from its file when it is due.
pub struct OutgoingSnapshot {
    vote: VoteOf<TypeConfig>,
    meta: SnapshotMetaOf<TypeConfig>,
    /// Away (`None`) only while a chunk is read off the async threads.
    data: Option<SnapshotData>,
    transfer: u64,
    total: u64,
    /// Bytes the follower has stored.
    sent: u64,
    chunk_bytes: usize,
}

impl OutgoingSnapshot {
    /// A new transfer of `snapshot`, with an id of its own.
    pub fn new(
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        chunk_bytes: usize,
    ) -> Self {
        Self {
            vote,
            meta: snapshot.meta,
            total: snapshot.snapshot.len(),
            data: Some(snapshot.snapshot),
            transfer: rand::random(),
            sent: 0,
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    pub fn meta(&self) -> &SnapshotMetaOf<TypeConfig> {
        &self.meta
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The chunk after the bytes sent so far (empty only for an empty
    /// snapshot).
    pub async fn next_chunk(&mut self) -> std::io::Result<SnapshotChunk> {
        let mut data = self.data.take().expect("no read under way");
        let (offset, max) = (self.sent, self.chunk_bytes);
        let (data, bytes) = tokio::task::spawn_blocking(move || {
            let bytes = data.read_chunk(offset, max);
            (data, bytes)
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        self.data = Some(data);
        let bytes = bytes?;
        if bytes.is_empty() && offset < self.total {
            return Err(std::io::Error::other(format!(
                "the snapshot file ended at byte {offset} of {}",
                self.total
            )));
        }
        Ok(SnapshotChunk {
            vote: self.vote,
            meta: self.meta.clone(),
            transfer: self.transfer,
            total: self.total,
            offset,
            data: bytes,
        })
    }

    /// The follower stored `chunk`.
    pub fn stored(&mut self, chunk_len: usize) {
        self.sent += chunk_len as u64;
    }
}

/// Why a chunk was refused. The sender's answer to any of them is the
/// same: give up this transfer, and let openraft begin another.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "a snapshot of {declared} bytes exceeds this node's limit of {limit} bytes; raise \
         `raft_snapshots.max_bytes` on this node to accept it"
    )]
    TooLarge { declared: u64, limit: u64 },
    #[error(
        "snapshot transfer {transfer:x} is not under way here (it never began, was replaced or \
         expired); the sender starts again from byte 0"
    )]
    NotUnderWay { transfer: u64 },
    #[error(
        "a chunk at byte {offset} of snapshot transfer {transfer:x} does not follow the \
         {received} bytes received; the sender starts again from byte 0"
    )]
    OutOfOrder {
        transfer: u64,
        offset: u64,
        received: u64,
    },
    #[error(
        "a chunk of snapshot transfer {transfer:x} does not match its first chunk (another \
         snapshot or size); the sender starts again from byte 0"
    )]
    Inconsistent { transfer: u64 },
    #[error("a chunk of {len} bytes at byte {offset} runs past the declared {total} bytes")]
    PastTheEnd { offset: u64, len: usize, total: u64 },
    #[error("cannot write the incoming snapshot in {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What came of a chunk that was accepted.
pub enum Received {
    /// Stored; the next chunk is awaited.
    Stored,
    /// The last one: the snapshot is whole, ready to install.
    Complete {
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
    },
}

/// A snapshot being received: where it goes and how far it has come. The
/// checks are here, without I/O; writing is the inbox's.
pub struct IncomingSnapshot {
    transfer: u64,
    meta: SnapshotMetaOf<TypeConfig>,
    total: u64,
    received: u64,
    /// Deleted when this is dropped, unless it became the snapshot.
    partial: NamedTempFile,
    last_chunk_at: Instant,
}

impl IncomingSnapshot {
    /// Begins a transfer with its first chunk, if its declared size is
    /// within `limit`.
    pub fn begin(chunk: &SnapshotChunk, dir: &Path, limit: u64) -> Result<Self, TransferError> {
        if chunk.total > limit {
            return Err(TransferError::TooLarge {
                declared: chunk.total,
                limit,
            });
        }
        let partial = partial_file(dir).map_err(|source| TransferError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            transfer: chunk.transfer,
            meta: chunk.meta.clone(),
            total: chunk.total,
            received: 0,
            partial,
            last_chunk_at: Instant::now(),
        })
    }

    /// Checks that `chunk` is the next one of this transfer.
    pub fn check(&self, chunk: &SnapshotChunk) -> Result<(), TransferError> {
        let transfer = self.transfer;
        if chunk.transfer != transfer {
            return Err(TransferError::NotUnderWay {
                transfer: chunk.transfer,
            });
        }
        if chunk.total != self.total || chunk.meta != self.meta {
            return Err(TransferError::Inconsistent { transfer });
        }
        if chunk.offset != self.received {
            return Err(TransferError::OutOfOrder {
                transfer,
                offset: chunk.offset,
                received: self.received,
            });
        }
        let end = chunk.offset.checked_add(chunk.data.len() as u64);
        if end.is_none_or(|end| end > self.total) {
            return Err(TransferError::PastTheEnd {
                offset: chunk.offset,
                len: chunk.data.len(),
                total: self.total,
            });
        }
        Ok(())
    }

    /// Notes that `len` more bytes were written.
    fn advance(&mut self, len: usize) {
        self.received += len as u64;
        self.last_chunk_at = Instant::now();
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.total
    }

    /// The received snapshot, once complete.
    pub fn finish(self) -> std::io::Result<SnapshotOf<TypeConfig, SnapshotData>> {
        Ok(SnapshotOf::<TypeConfig, SnapshotData> {
            meta: self.meta,
            snapshot: SnapshotData::from_partial(self.partial)?,
        })
    }
}

/// The snapshots a follower is receiving, one per leader.
pub struct SnapshotInbox {
    /// The Raft directory: a received snapshot is renamed into place from
    /// here, so it is never copied.
    dir: PathBuf,
    /// The largest snapshot accepted.
    limit: u64,
    /// Transfers under way by leader id. An async lock, held while a chunk
    /// is written, so chunks of one transfer are stored in order.
    transfers: tokio::sync::Mutex<HashMap<u64, IncomingSnapshot>>,
}

impl SnapshotInbox {
    pub fn new(dir: &Path, limit: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            limit,
            transfers: tokio::sync::Mutex::default(),
        }
    }

    /// Stores `chunk`; returns the snapshot once its last chunk is in. A
    /// refused chunk ends its transfer, partial file and all. Dropped while
    /// writing, it leaves the transfer as if the chunk had not arrived;
    /// dropped after the last chunk, the transfer is lost (the leader's next
    /// attempt starts over).
    pub async fn receive(&self, chunk: SnapshotChunk) -> Result<Received, TransferError> {
        let leader = *chunk.vote.leader_id().node_id();
        let mut transfers = self.transfers.lock().await;
        let new_transfer = transfers
            .get(&leader)
            .is_none_or(|under_way| under_way.transfer != chunk.transfer);
        if chunk.offset == 0 && new_transfer {
            // A first chunk: a new transfer replaces the leader's last one,
            // and the longest idle of others if there are too many.
            transfers.remove(&leader);
            if transfers.len() >= MAX_TRANSFERS {
                let idlest = transfers
                    .iter()
                    .min_by_key(|(_, incoming)| incoming.last_chunk_at)
                    .map(|(leader, _)| *leader);
                transfers.remove(&idlest.expect("a full map has an entry"));
            }
            transfers.insert(
                leader,
                IncomingSnapshot::begin(&chunk, &self.dir, self.limit)?,
            );
        }
        let Some(incoming) = transfers.get_mut(&leader) else {
            return Err(TransferError::NotUnderWay {
                transfer: chunk.transfer,
            });
        };
        let stored = match incoming.check(&chunk) {
            Ok(()) => self.append(incoming, chunk.offset, chunk.data).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            // A chunk of a stale transfer does not end the one under way.
            if !matches!(e, TransferError::NotUnderWay { .. }) {
                transfers.remove(&leader);
            }
            return Err(e);
        }
        if !incoming.is_complete() {
            return Ok(Received::Stored);
        }
        let incoming = transfers.remove(&leader).expect("checked above");
        drop(transfers);
        let dir = self.dir.clone();
        let snapshot = tokio::task::spawn_blocking(move || incoming.finish())
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            .map_err(|source| TransferError::Io { dir, source })?;
        Ok(Received::Complete {
            vote: chunk.vote,
            snapshot,
        })
    }

    /// Writes `data` at `offset` of the transfer's file, off the async
    /// threads. At its offset, not at the file's end: if this future is
    /// dropped mid-write, the bytes are counted as not received, and the
    /// same chunk sent again lands on the same place.
    async fn append(
        &self,
        incoming: &mut IncomingSnapshot,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), TransferError> {
        let len = data.len();
        let io_error = |source| TransferError::Io {
            dir: self.dir.clone(),
            source,
        };
        let mut file = incoming.partial.as_file().try_clone().map_err(io_error)?;
        tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(offset))?;
            file.write_all(&data)
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
        .map_err(io_error)?;
        incoming.advance(len);
        Ok(())
    }

    /// Drops the transfers that received nothing since `ABANDONED_AFTER`
    /// before `now`, and their files. Skipped while a chunk is being
    /// written: the next call catches up.
    pub fn drop_abandoned(&self, now: Instant) {
        let Ok(mut transfers) = self.transfers.try_lock() else {
            return;
        };
        transfers.retain(|leader, incoming| {
            let alive = now.saturating_duration_since(incoming.last_chunk_at) < ABANDONED_AFTER;
            if !alive {
                tracing::info!(leader, transfer = %format!("{:x}", incoming.transfer), received = incoming.received, "dropped an abandoned snapshot transfer");
            }
            alive
        });
    }

    /// Transfers under way.
    #[cfg(test)]
    async fn under_way(&self) -> usize {
        self.transfers.lock().await.len()
    }
}

#[cfg(test)]
#[path = "snapshot_transfer_tests.rs"]
mod tests;
