//! Raft storage on disk: openraft's conformance suite against [`LogStore`] and
//! [`StateMachine`], and what survives closing and reopening a data directory.
//!
//! The tests use their own small type config and key-value state, so they
//! check the storage, not Shoal's commands.

use std::collections::BTreeMap;
use std::fmt;

use openraft::entry::RaftEntry;
use openraft::storage::{
    RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::vote::RaftLeaderIdExt;
use openraft::{Membership, StorageError, StoredMembership};
use serde::{Deserialize, Serialize};
use shoal_node::raft::log_store::LogStore;
use shoal_node::raft::snapshot_store::{SNAPSHOT_FILE, SnapshotData};
use shoal_node::raft::state_machine::{StateLogic, StateMachine};
use tempfile::TempDir;

use shoal_node::testkit::wait_until;

/// Set `key` to `value`; JSON values, as Shoal's commands carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Put {
    key: String,
    value: serde_json::Value,
}

impl fmt::Display for Put {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "put {}={}", self.key, self.value)
    }
}

/// The value `key` had before the put.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Previous(Option<serde_json::Value>);

openraft::declare_raft_types!(
    KvConfig:
        D = Put,
        R = Previous,
);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct KvState(BTreeMap<String, serde_json::Value>);

impl StateLogic<KvConfig> for KvState {
    fn apply(&mut self, _index: u64, command: &Put) -> Previous {
        // Stands for a bug in real logic: a panic after a partial change.
        if command.key == "panic" {
            self.0
                .insert("half-applied".to_string(), serde_json::Value::Null);
            panic!("the logic cannot apply this command");
        }
        Previous(self.0.insert(command.key.clone(), command.value.clone()))
    }

    fn empty_response() -> Previous {
        Previous(None)
    }
}

type Log = LogStore<KvConfig>;
type Machine = StateMachine<KvConfig, KvState>;

/// A fresh log and state machine in their own temporary directory, which
/// the suite keeps alive (the guard) while it uses them.
struct InTempDir;

impl StoreBuilder<KvConfig, Log, Machine, TempDir> for InTempDir {
    async fn build(&self) -> Result<(TempDir, Log, Machine), StorageError<KvConfig>> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = Log::open(dir.path()).expect("open the log");
        let machine = Machine::open(dir.path()).expect("open the state machine");
        Ok((dir, log, machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(InTempDir).await {
        panic!("the storage failed openraft's conformance suite: {e}");
    }
}

fn log_id(term: u64, index: u64) -> LogIdOf<KvConfig> {
    LogIdOf::<KvConfig>::new(
        <KvConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, 1),
        index,
    )
}

fn put(term: u64, index: u64, key: &str, value: serde_json::Value) -> EntryOf<KvConfig> {
    EntryOf::<KvConfig>::new_normal(
        log_id(term, index),
        Put {
            key: key.to_string(),
            value,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_vote_and_committed_survive_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let entries = vec![
        EntryOf::<KvConfig>::new_blank(log_id(1, 1)),
        put(1, 2, "a", serde_json::json!({"n": 1, "tags": ["x", "y"]})),
        put(1, 3, "b", serde_json::json!(null)),
        put(2, 4, "a", serde_json::json!("second")),
    ];
    let vote = VoteOf::<KvConfig>::new_committed(2, 1);
    {
        let mut log = Log::open(dir.path()).expect("open the log");
        log.blocking_append(entries.clone()).await.expect("append");
        log.save_vote(&vote).await.expect("save the vote");
        log.save_committed(Some(log_id(2, 4)))
            .await
            .expect("save committed");
        log.purge(log_id(1, 1)).await.expect("purge");
    }

    let mut log = Log::open(dir.path()).expect("reopen the log");
    let read = log
        .try_get_log_entries(0..100)
        .await
        .expect("read the entries");
    assert_eq!(
        read,
        entries[1..],
        "the unpurged entries come back as written"
    );
    assert_eq!(log.read_vote().await.expect("read the vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("read committed"),
        Some(log_id(2, 4))
    );
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
}

/// The committed log id is a hint kept in memory: the next append carries
/// it to disk, and so does a flush when the node stops; one saved with
/// neither is gone after a crash, which costs only re-applying less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_log_id_reaches_disk_with_the_next_append_or_a_flush() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let reopened_committed = async |dir: &std::path::Path| {
        let mut log = Log::open(dir).expect("reopen the log");
        log.read_committed().await.expect("read committed")
    };
    {
        let mut log = Log::open(dir.path()).expect("open the log");
        log.blocking_append(vec![put(1, 1, "a", serde_json::json!(1))])
            .await
            .expect("append");
        log.save_committed(Some(log_id(1, 1)))
            .await
            .expect("save committed");
        assert_eq!(
            log.read_committed().await.expect("read committed"),
            Some(log_id(1, 1)),
            "the store answers with what it was told, written or not"
        );
        log.blocking_append(vec![put(1, 2, "b", serde_json::json!(2))])
            .await
            .expect("append");
        log.save_committed(Some(log_id(1, 2)))
            .await
            .expect("save committed");
        // Dropped without a flush: a crash after the second save.
    }
    assert_eq!(
        reopened_committed(dir.path()).await,
        Some(log_id(1, 1)),
        "the second append carried the first save, and nothing carried the second"
    );
    {
        let mut log = Log::open(dir.path()).expect("open the log");
        log.save_committed(Some(log_id(1, 2)))
            .await
            .expect("save committed");
        log.flush_committed().await.expect("flush");
    }
    assert_eq!(reopened_committed(dir.path()).await, Some(log_id(1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_restores_its_snapshot_on_reopening() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let membership = Membership::new_with_defaults(vec![[1u64, 2, 3].into()], []);
    let entries = vec![
        EntryOf::<KvConfig>::new_membership(log_id(1, 1), membership.clone()),
        put(1, 2, "a", serde_json::json!(1)),
        put(1, 3, "b", serde_json::json!([true, false])),
    ];
    let snapshot_meta = {
        let mut machine = Machine::open(dir.path()).expect("open the state machine");
        let stream = futures::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
        machine.apply(stream).await.expect("apply");
        let mut builder = machine.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.expect("build a snapshot");
        // Applied after the snapshot: only the log would bring it back.
        let later = futures::stream::iter([Ok((put(1, 4, "a", serde_json::json!(2)), None))]);
        machine
            .apply(later)
            .await
            .expect("apply after the snapshot");
        snapshot.meta
    };

    let mut machine = Machine::open(dir.path()).expect("reopen the state machine");
    let (last_applied, last_membership) = machine.applied_state().await.expect("applied state");
    assert_eq!(
        last_applied,
        Some(log_id(1, 3)),
        "restored to the snapshot, not past it"
    );
    assert_eq!(
        last_membership,
        StoredMembership::new(Some(log_id(1, 1)), membership)
    );
    let expected = BTreeMap::from([
        ("a".to_string(), serde_json::json!(1)),
        ("b".to_string(), serde_json::json!([true, false])),
    ]);
    assert_eq!(machine.reader().read(|state| state.0.clone()), expected);
    let current = machine
        .get_current_snapshot()
        .await
        .expect("read the snapshot")
        .expect("a stored snapshot");
    assert_eq!(current.meta, snapshot_meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_snapshot_replaces_the_state_and_is_kept() {
    let leader_dir = tempfile::tempdir().expect("temporary directory");
    let follower_dir = tempfile::tempdir().expect("temporary directory");
    let mut leader = Machine::open(leader_dir.path()).expect("open the leader's state machine");
    let stream = futures::stream::iter([Ok((put(1, 1, "k", serde_json::json!("leader")), None))]);
    leader.apply(stream).await.expect("apply");
    let mut snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let leader_bytes = snapshot.snapshot.read_all().expect("read the snapshot");

    {
        let mut follower =
            Machine::open(follower_dir.path()).expect("open the follower's state machine");
        let stale = futures::stream::iter([Ok((put(1, 1, "old", serde_json::json!(0)), None))]);
        follower.apply(stale).await.expect("apply");
        let reader = follower.reader();
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        assert_eq!(
            reader.read(|state| state.clone()),
            KvState(BTreeMap::from([(
                "k".to_string(),
                serde_json::json!("leader")
            )])),
            "a reader handed out before the install sees the installed state"
        );
    }

    let mut follower =
        Machine::open(follower_dir.path()).expect("reopen the follower's state machine");
    let mut current = follower
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a stored snapshot");
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(
        current.snapshot.read_all().expect("read the snapshot"),
        leader_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_that_contradicts_its_metadata_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut machine = Machine::open(dir.path()).expect("open the state machine");
    let stream = futures::stream::iter([Ok((put(1, 1, "k", serde_json::json!(1)), None))]);
    machine.apply(stream).await.expect("apply");
    let mut snapshot = machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    snapshot.meta.last_log_id = Some(log_id(1, 7));

    let error = machine
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect_err("a mismatched snapshot must not be installed");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    let message = error.to_string();
    assert!(message.contains(SNAPSHOT_FILE), "names the file: {message}");
    assert!(
        message.contains("does not match its metadata"),
        "says why: {message}"
    );
    assert_eq!(
        machine.reader().read(|state| state.0.len()),
        1,
        "the state is unchanged"
    );
}

/// Before snapshots had a file, they were two records in `raft-state.redb`
/// (the metadata and the state's JSON). A node upgraded over such a
/// directory restores from it, and the old database is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_kept_by_an_older_version_is_moved_into_its_file() {
    let built_dir = tempfile::tempdir().expect("temporary directory");
    let (meta_json, state_json) = {
        let mut machine = Machine::open(built_dir.path()).expect("open the state machine");
        let stream = futures::stream::iter([Ok((put(1, 1, "k", serde_json::json!("old")), None))]);
        machine.apply(stream).await.expect("apply");
        let mut snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        // The file is the old records joined by a newline.
        let bytes = snapshot.snapshot.read_all().expect("read the snapshot");
        let newline = bytes.iter().position(|b| *b == b'\n').expect("a meta line");
        (bytes[..newline].to_vec(), bytes[newline + 1..].to_vec())
    };
    let old_dir = tempfile::tempdir().expect("temporary directory");
    {
        let table = redb::TableDefinition::<&str, &[u8]>::new("snapshot");
        let db = redb::Database::create(old_dir.path().join("raft-state.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut records = txn.open_table(table).expect("table");
            records.insert("meta", meta_json.as_slice()).expect("meta");
            records.insert("data", state_json.as_slice()).expect("data");
        }
        txn.commit().expect("commit");
    }

    let mut machine = Machine::open(old_dir.path()).expect("open over the old layout");
    assert_eq!(
        machine.reader().read(|state| state.0.clone()),
        BTreeMap::from([("k".to_string(), serde_json::json!("old"))])
    );
    let (last_applied, _) = machine.applied_state().await.expect("applied state");
    assert_eq!(last_applied, Some(log_id(1, 1)));
    assert!(!old_dir.path().join("raft-state.redb").exists());
    assert!(old_dir.path().join(SNAPSHOT_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_left_by_a_panicking_apply_is_never_snapshotted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut machine = Machine::open(dir.path()).expect("open the state machine");
    let mut builder = machine.get_snapshot_builder().await;
    let applying = tokio::spawn(async move {
        let stream = futures::stream::iter([Ok((put(1, 1, "panic", serde_json::json!(1)), None))]);
        machine.apply(stream).await
    });
    assert!(applying.await.expect_err("apply panics").is_panic());

    let error = builder
        .build_snapshot()
        .await
        .expect_err("a half-applied state must not become a snapshot");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("restart the node"),
        "says what to do: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_of_a_directory_in_use_says_so() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let _log = Log::open(dir.path()).expect("open the log");
    let error = match Log::open(dir.path()) {
        Ok(_) => panic!("a log in use must not open twice"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(
        message.contains("raft-log.redb"),
        "names the file: {message}"
    );
    assert!(message.contains("already open"), "says why: {message}");
}

/// The network of a cluster of one: there is nobody to reach.
struct NoPeers;

fn unreachable() -> openraft::errors::Unreachable<KvConfig> {
    openraft::errors::Unreachable::new(&std::io::Error::other("a cluster of one has no peers"))
}

impl openraft::network::RaftNetworkFactory<KvConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &openraft::impls::BasicNode) -> NoPeers {
        NoPeers
    }
}

impl openraft::network::v2::RaftNetworkV2<KvConfig> for NoPeers {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<KvConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::AppendEntriesResponse<KvConfig>, openraft::errors::RPCError<KvConfig>>
    {
        Err(openraft::errors::RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<KvConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::VoteResponse<KvConfig>, openraft::errors::RPCError<KvConfig>> {
        Err(openraft::errors::RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<KvConfig>,
        _snapshot: openraft::type_config::alias::SnapshotOf<KvConfig, SnapshotData>,
        _cancel: impl std::future::Future<Output = openraft::errors::ReplicationClosed> + Send + 'static,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::SnapshotResponse<KvConfig>,
        openraft::errors::StreamingError<KvConfig>,
    > {
        Err(openraft::errors::StreamingError::Unreachable(unreachable()))
    }
}

type Node = openraft::Raft<KvConfig, Machine>;

async fn start_node(
    dir: &std::path::Path,
) -> (Node, shoal_node::raft::state_machine::StateReader<KvState>) {
    let config = openraft::Config::default()
        .validate()
        .expect("a valid config");
    // openraft's tasks drop their store handles a moment after `shutdown`
    // returns, and redb refuses a second open until then.
    let log = wait_until(
        std::time::Duration::from_secs(5),
        "the log to open",
        async || Log::open(dir),
    )
    .await;
    let machine = Machine::open(dir).expect("open the state machine");
    let reader = machine.reader();
    let raft = openraft::Raft::new(1, std::sync::Arc::new(config), NoPeers, log, machine)
        .await
        .expect("start raft");
    (raft, reader)
}

/// Through openraft itself: writes get their responses, a membership change
/// completes, and a restarted node comes back with the snapshot plus the
/// entries written after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_writes_and_recovers_after_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let timeout = Some(std::time::Duration::from_secs(10));
    let write = |key: &str, value: serde_json::Value| Put {
        key: key.to_string(),
        value,
    };

    let last_index = {
        let (raft, reader) = start_node(dir.path()).await;
        raft.initialize(BTreeMap::from([(1, openraft::impls::BasicNode::default())]))
            .await
            .expect("initialize a cluster of one");
        raft.wait(timeout)
            .current_leader(1, "elected")
            .await
            .expect("a leader");

        let first = raft
            .client_write(write("a", serde_json::json!(1)))
            .await
            .expect("write");
        assert_eq!(first.data, Previous(None));
        let second = raft
            .client_write(write("a", serde_json::json!(2)))
            .await
            .expect("write");
        assert_eq!(second.data, Previous(Some(serde_json::json!(1))));

        // A membership change is answered with `StateLogic::empty_response`.
        let learner = raft
            .add_learner(2, openraft::impls::BasicNode::default(), false)
            .await
            .expect("add a learner");
        assert_eq!(learner.data, KvState::empty_response());

        raft.trigger().snapshot().await.expect("trigger a snapshot");
        raft.wait(timeout)
            .snapshot(learner.log_id, "snapshot taken")
            .await
            .expect("a snapshot");
        let after = raft
            .client_write(write("b", serde_json::json!("after")))
            .await
            .expect("write");
        assert_eq!(reader.read(|state| state.0.len()), 2);

        raft.shutdown().await.expect("shut down");
        after.log_id.index
    };

    let (raft, reader) = start_node(dir.path()).await;
    raft.wait(timeout)
        .applied_index_at_least(Some(last_index), "re-applied after restart")
        .await
        .expect("the log re-applied");
    let expected = BTreeMap::from([
        ("a".to_string(), serde_json::json!(2)),
        ("b".to_string(), serde_json::json!("after")),
    ]);
    assert_eq!(reader.read(|state| state.0.clone()), expected);
    raft.shutdown().await.expect("shut down");
}

/// Snapshots carry the format version they were written in (see
/// `shoal_proto::version`): one written before versions still restores,
/// and one newer than this release is refused, saying why, not misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_without_a_version_restores_and_a_newer_one_is_refused() {
    use shoal_proto::version::PROTOCOL_VERSION;
    let built_dir = tempfile::tempdir().expect("temporary directory");
    let (meta_line, body) = {
        let mut machine = Machine::open(built_dir.path()).expect("open the state machine");
        let stream = futures::stream::iter([Ok((put(1, 1, "k", serde_json::json!("v")), None))]);
        machine.apply(stream).await.expect("apply");
        let mut snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let bytes = snapshot.snapshot.read_all().expect("read the snapshot");
        let newline = bytes.iter().position(|b| *b == b'\n').expect("a meta line");
        let versioned: serde_json::Value =
            serde_json::from_slice(&bytes[newline + 1..]).expect("JSON");
        assert_eq!(versioned[0], serde_json::json!(1), "{versioned}");
        (bytes[..=newline].to_vec(), versioned[1].clone())
    };
    let stored_as = |state: serde_json::Value| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut bytes = meta_line.clone();
        bytes.extend(serde_json::to_vec(&state).expect("encode"));
        std::fs::write(dir.path().join(SNAPSHOT_FILE), bytes).expect("write the snapshot");
        dir
    };

    let before_versions = stored_as(body.clone());
    let machine = Machine::open(before_versions.path()).expect("open over an old snapshot");
    assert_eq!(
        machine.reader().read(|state| state.0.clone()),
        BTreeMap::from([("k".to_string(), serde_json::json!("v"))])
    );

    let newer = PROTOCOL_VERSION + 1;
    let from_the_future = stored_as(serde_json::json!([newer, body]));
    let error = Machine::open(from_the_future.path())
        .err()
        .expect("a snapshot of a newer format is refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    let message = error.to_string();
    assert!(
        message.contains(SNAPSHOT_FILE)
            && message.contains(&format!("format version {newer}"))
            && message.contains("upgrade this node"),
        "names the file, the format and what to do: {message}"
    );
}
