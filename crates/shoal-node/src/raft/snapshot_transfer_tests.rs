//! The follower's side of a snapshot transfer, chunk by chunk, without a
//! network: order, size limits, what is left on disk.

use super::*;
use crate::raft::snapshot_store::is_partial;
use openraft::StoredMembership;

const LIMIT: u64 = 1024;

fn meta(index: u64) -> SnapshotMetaOf<TypeConfig> {
    let leader = openraft::vote::leader_id_adv::CommittedLeaderId::new(1, 7);
    SnapshotMetaOf::<TypeConfig> {
        last_log_id: Some(openraft::LogId::new(leader, index)),
        last_membership: StoredMembership::default(),
    }
}

/// The chunks of `bytes`, `size` at a time, as transfer `transfer` sends them.
fn chunks(transfer: u64, bytes: &[u8], size: usize) -> Vec<SnapshotChunk> {
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(size).collect()
    };
    let mut offset = 0;
    pieces
        .into_iter()
        .map(|data| {
            let chunk = SnapshotChunk {
                vote: VoteOf::<TypeConfig>::new_committed(1, 7),
                meta: meta(5),
                transfer,
                total: bytes.len() as u64,
                offset,
                data: data.to_vec(),
            };
            offset += data.len() as u64;
            chunk
        })
        .collect()
}

fn partial_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list the directory")
        .filter(|entry| is_partial(&entry.as_ref().expect("an entry").path()))
        .count()
}

async fn stored(inbox: &SnapshotInbox, chunk: SnapshotChunk) {
    match inbox.receive(chunk).await {
        Ok(Received::Stored) => {}
        Ok(Received::Complete { .. }) => panic!("complete too early"),
        Err(e) => panic!("a good chunk was refused: {e}"),
    }
}

#[tokio::test]
async fn chunks_in_order_give_back_the_exact_bytes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut chunks = chunks(1, &bytes, 64);
    let last = chunks.pop().expect("a last chunk");
    for chunk in chunks {
        stored(&inbox, chunk).await;
    }
    let Ok(Received::Complete { vote, snapshot }) = inbox.receive(last).await else {
        panic!("the last chunk completes the snapshot");
    };
    assert_eq!(vote, VoteOf::<TypeConfig>::new_committed(1, 7));
    assert_eq!(snapshot.meta, meta(5));
    let mut data = snapshot.snapshot;
    assert_eq!(data.read_all().expect("read back"), bytes);
    assert_eq!(inbox.under_way().await, 0);
    drop(data);
    assert_eq!(
        partial_files(dir.path()),
        0,
        "an uninstalled file is removed"
    );
}

#[tokio::test]
async fn an_empty_snapshot_is_one_chunk() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let chunk = chunks(1, &[], 64).remove(0);
    let Ok(Received::Complete { snapshot, .. }) = inbox.receive(chunk).await else {
        panic!("an empty snapshot completes at once");
    };
    assert!(snapshot.snapshot.is_empty());
}

#[tokio::test]
async fn a_skipped_or_repeated_chunk_ends_the_transfer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let bytes = vec![1u8; 300];

    let mut skipping = chunks(1, &bytes, 100).into_iter();
    stored(&inbox, skipping.next().expect("chunk 0")).await;
    let _skipped = skipping.next();
    let error = inbox
        .receive(skipping.next().expect("chunk 2"))
        .await
        .err()
        .expect("a chunk after a gap is refused");
    assert!(
        matches!(
            error,
            TransferError::OutOfOrder {
                offset: 200,
                received: 100,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("starts again"),
        "says what happens: {error}"
    );
    assert_eq!(inbox.under_way().await, 0, "the transfer is over");
    assert_eq!(partial_files(dir.path()), 0, "and its file is gone");

    let repeating = chunks(2, &bytes, 100);
    stored(&inbox, repeating[0].clone()).await;
    stored(&inbox, repeating[1].clone()).await;
    let error = inbox
        .receive(repeating[1].clone())
        .await
        .err()
        .expect("a repeated chunk is refused");
    assert!(
        matches!(
            error,
            TransferError::OutOfOrder {
                offset: 100,
                received: 200,
                ..
            }
        ),
        "{error}"
    );

    // A repeat of a first chunk is no new beginning.
    let repeating = chunks(3, &bytes, 100);
    stored(&inbox, repeating[0].clone()).await;
    let error = inbox
        .receive(repeating[0].clone())
        .await
        .err()
        .expect("a repeated first chunk is refused");
    assert!(
        matches!(
            error,
            TransferError::OutOfOrder {
                offset: 0,
                received: 100,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(partial_files(dir.path()), 0);
}

#[tokio::test]
async fn a_new_transfer_replaces_the_old_and_a_stale_chunk_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let bytes = vec![2u8; 300];
    let old = chunks(1, &bytes, 100);
    let new = chunks(2, &bytes, 100);
    stored(&inbox, old[0].clone()).await;
    stored(&inbox, new[0].clone()).await;
    assert_eq!(
        partial_files(dir.path()),
        1,
        "the old transfer's file is gone"
    );

    let error = inbox
        .receive(old[1].clone())
        .await
        .err()
        .expect("a chunk of the replaced transfer is refused");
    assert!(
        matches!(error, TransferError::NotUnderWay { transfer: 1 }),
        "{error}"
    );
    stored(&inbox, new[1].clone()).await;
    let Ok(Received::Complete { snapshot, .. }) = inbox.receive(new[2].clone()).await else {
        panic!("the new transfer completes");
    };
    assert_eq!(snapshot.snapshot.len(), 300);
}

#[tokio::test]
async fn a_snapshot_over_the_limit_is_refused_before_any_byte() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let mut chunk = chunks(1, &[0u8; 10], 10).remove(0);
    chunk.total = LIMIT + 1;
    let error = inbox.receive(chunk).await.err().expect("too large");
    assert!(
        matches!(error, TransferError::TooLarge { declared, limit: LIMIT } if declared == LIMIT + 1),
        "{error}"
    );
    assert!(
        error.to_string().contains("max_bytes"),
        "says what to change: {error}"
    );
    assert_eq!(partial_files(dir.path()), 0);

    // Declared within the limit, but a chunk runs past what was declared.
    let mut chunk = chunks(2, &[0u8; 10], 10).remove(0);
    chunk.data.extend_from_slice(&[0u8; 5]);
    let error = inbox.receive(chunk).await.err().expect("past the end");
    assert!(
        matches!(error, TransferError::PastTheEnd { total: 10, .. }),
        "{error}"
    );
    assert_eq!(partial_files(dir.path()), 0);
}

#[tokio::test]
async fn an_abandoned_transfer_is_dropped_with_its_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    stored(&inbox, chunks(1, &[3u8; 300], 100).remove(0)).await;
    inbox.drop_abandoned(Instant::now());
    assert_eq!(inbox.under_way().await, 1, "a live transfer is kept");
    inbox.drop_abandoned(Instant::now() + ABANDONED_AFTER);
    assert_eq!(inbox.under_way().await, 0);
    assert_eq!(partial_files(dir.path()), 0);
}

#[test]
fn chunks_survive_their_json_encoding() {
    let chunk = chunks(9, &[0, 1, 2, 254, 255], 5).remove(0);
    let json = serde_json::to_string(&chunk).expect("encode");
    assert!(json.contains("\"AAEC/v8=\""), "data is base64: {json}");
    let back: SnapshotChunk = serde_json::from_str(&json).expect("decode");
    assert_eq!(back.data, chunk.data);
    assert!(back.is_last());
}

#[tokio::test]
async fn too_many_leaders_at_once_drop_the_longest_idle_transfer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let inbox = SnapshotInbox::new(dir.path(), LIMIT);
    let bytes = [4u8; 200];
    let first_of = |leader: u64| {
        let mut chunk = chunks(leader, &bytes, 100).remove(0);
        chunk.vote = VoteOf::<TypeConfig>::new_committed(leader, leader);
        chunk
    };
    for leader in 1..=MAX_TRANSFERS as u64 + 1 {
        stored(&inbox, first_of(leader)).await;
    }
    assert_eq!(inbox.under_way().await, MAX_TRANSFERS);
    assert_eq!(partial_files(dir.path()), MAX_TRANSFERS);
    let mut second = chunks(1, &bytes, 100).remove(1);
    second.vote = VoteOf::<TypeConfig>::new_committed(1, 1);
    let error = inbox
        .receive(second)
        .await
        .err()
        .expect("leader 1's transfer is gone");
    assert!(
        matches!(error, TransferError::NotUnderWay { .. }),
        "{error}"
    );
}
