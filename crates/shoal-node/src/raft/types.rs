//! The Raft type configuration and what the log carries: each entry's
//! command goes with the format version it was written in
//! ([`LoggedCommand`]), so a node refuses an entry newer than it reads
//! instead of misreading it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use shoal_proto::version::Versioned;
use std::sync::{Arc, OnceLock};

/// A Raft member as the network sees it: the libp2p peer id it answers at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    pub peer_id: String,
}

impl std::fmt::Display for RaftPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.peer_id)
    }
}

/// One replicated write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Jobs(crate::jobs::JobCommand),
    Docs(crate::store::DocCommand),
    /// Several commands in one log entry, applied in order: one Raft round
    /// for many small writes (e.g. job completions).
    Batch(Vec<Command>),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A command as the log holds it, with its format version: the lowest
/// protocol version among its writer and every node the writer knew.
pub type LoggedCommand = Versioned<Command>;

/// A [`LoggedCommand`] that keeps its JSON once encoded. A leader encodes
/// an entry for its own log, and each follower's append request then
/// copies those bytes rather than encoding the entry again: encoding once
/// per follower was 4–5 % of a leader's CPU at N = 100, the part of its
/// cost that grew with the replicas. The bytes are the JSON of the
/// command itself, so neither the log on disk nor the messages between
/// nodes change. The log and the wire are JSON; no other format encodes
/// a command.
#[derive(Debug)]
pub struct SharedCommand {
    command: LoggedCommand,
    json: OnceLock<Box<RawValue>>,
}

impl From<LoggedCommand> for SharedCommand {
    fn from(command: LoggedCommand) -> Self {
        SharedCommand {
            command,
            json: OnceLock::new(),
        }
    }
}

impl std::ops::Deref for SharedCommand {
    type Target = LoggedCommand;

    fn deref(&self) -> &LoggedCommand {
        &self.command
    }
}

impl PartialEq for SharedCommand {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
    }
}

impl std::fmt::Display for SharedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

impl Serialize for SharedCommand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = match self.json.get() {
            Some(json) => json,
            None => {
                let json = serde_json::value::to_raw_value(&self.command)
                    .map_err(serde::ser::Error::custom)?;
                self.json.get_or_init(|| json)
            }
        };
        json.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        LoggedCommand::deserialize(deserializer).map(SharedCommand::from)
    }
}

/// The format from which each command of a batch gets an id of its own
/// (see [`ShoalState::apply_command`]). Before it, every command of an
/// entry got the entry's log index, so a leader merges writes into one
/// entry (see [`proposer`](super::proposer)) only in this format.
pub const DISTINCT_IDS_FORMAT: u32 = 2;

/// What applying a [`Command`] returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    Jobs(crate::jobs::JobOutcome),
    Docs(crate::store::DocOutcome),
    /// The answer to a membership change, which carries no command.
    Membership,
    /// One result per command of a batch, in order.
    Batch(Vec<CommandResult>),
}

openraft::declare_raft_types!(
    /// Shoal's Raft types: 64-bit node ids derived from peer ids. A command
    /// is shared, not copied, wherever openraft clones its entry: into the
    /// log tail, and out of it once per follower. Deep copies of job
    /// batches and their drops were 8 % of a leader's CPU at N = 100. Its
    /// JSON is shared too (see [`SharedCommand`]).
    pub TypeConfig:
        D = Arc<SharedCommand>,
        R = CommandResult,
        NodeId = u64,
        Node = RaftPeer,
);

/// A node's Raft instance.
pub(super) type RaftNode =
    openraft::Raft<TypeConfig, super::state_machine::StateMachine<TypeConfig, ShoalState>>;

/// The replicated state: durable jobs and the document store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShoalState {
    pub jobs: crate::jobs::JobTable,
    pub docs: crate::store::DocStore,
    /// The id the last command applied got (a job's or an inserted
    /// document's is made from it); absent from snapshots of release 1.
    #[serde(default)]
    last_id: u64,
}

impl crate::raft::state_machine::StateLogic<TypeConfig> for ShoalState {
    fn empty_response() -> CommandResult {
        CommandResult::Membership
    }

    fn apply(&mut self, index: u64, command: &Arc<SharedCommand>) -> CommandResult {
        let shared_id = (command.format < DISTINCT_IDS_FORMAT).then(|| self.next_id(index));
        self.apply_command(index, shared_id, &command.value)
    }

    fn format_of(command: &Arc<SharedCommand>) -> u32 {
        command.format
    }
}

impl ShoalState {
    /// Applies a command of the entry at log `index`. Each job or document
    /// command has an id, which a submitted job or an inserted document
    /// takes. In an entry of [`DISTINCT_IDS_FORMAT`] or later, each command
    /// takes the next id; in one of release 1's format, every command of
    /// the entry shares one (`shared_id`, which was the entry's index in
    /// release 1, and still is whenever release 1 could read the log). Ids
    /// only grow, whatever the formats' order, and every replica gives the
    /// same ones.
    fn apply_command(
        &mut self,
        index: u64,
        shared_id: Option<u64>,
        command: &Command,
    ) -> CommandResult {
        match command {
            Command::Jobs(command) => {
                let id = shared_id.unwrap_or_else(|| self.next_id(index));
                CommandResult::Jobs(self.jobs.apply(id, command))
            }
            Command::Docs(command) => {
                let id = shared_id.unwrap_or_else(|| self.next_id(index));
                CommandResult::Docs(self.docs.apply(id, command))
            }
            Command::Batch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .map(|command| self.apply_command(index, shared_id, command))
                    .collect(),
            ),
        }
    }

    /// The entry's index, or the id after the last one if that is higher
    /// (an earlier entry held several commands).
    fn next_id(&mut self, index: u64) -> u64 {
        self.last_id = index.max(self.last_id + 1);
        self.last_id
    }
}

/// The Raft node id of a libp2p peer: the first 8 bytes of the SHA-256 of
/// its peer id bytes (collisions among a cluster's nodes are negligible).
pub fn raft_id(peer: &libp2p::PeerId) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(peer.to_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Raft messages get this long before the sender retries.
pub const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// openraft's settings for this node.
pub fn raft_config(
    snapshots: &crate::config::RaftSnapshotConfig,
) -> Result<std::sync::Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: "shoal".to_string(),
        // Leader heartbeats four times a second: cheap when idle. A dead
        // leader is replaced 3–4 s after its last heartbeat: a follower
        // stands for election once the leader's lease (openraft sets it to
        // `election_timeout_max`) and then an election timeout have passed.
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        max_payload_entries: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshots.every_entries),
        max_in_snapshot_log_to_keep: snapshots.keep_entries,
        snapshot_max_chunk_size: snapshots.chunk_bytes as u64,
        // The deadline of each snapshot chunk (its default, 200 ms, is for
        // a whole small snapshot on a fast network).
        install_snapshot_timeout: RPC_TIMEOUT.as_millis() as u64,
        // openraft preallocates its channels; its defaults (65,536
        // slots) cost an idle node ~30 MB. These still absorb bursts of
        // thousands of writes, and a full channel only makes writers wait.
        api_channel_size: Some(4096),
        notification_channel_size: Some(4096),
        // A leader that restarts before the others elect another would take
        // up its leadership at once, with the commit index it last saved.
        // The log store saves that lazily (see `log_store`) and the state
        // machine lives in memory, so it would answer linearizable reads
        // from a state older than writes it had acknowledged. Off, it
        // restarts as a follower; a new election (a new term and its first
        // entry) makes it, or another, leader with every acknowledged write.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(std::sync::Arc::new(config.validate()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;
    use openraft::type_config::alias::{EntryOf, LogIdOf};
    use openraft::vote::RaftLeaderIdExt;
    use shoal_proto::version::{LEGACY_FORMAT, PROTOCOL_VERSION};

    fn entry(format: u32) -> EntryOf<TypeConfig> {
        let leader = <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1);
        let command = Command::Batch(vec![Command::Batch(Vec::new())]);
        EntryOf::<TypeConfig>::new_normal(
            LogIdOf::<TypeConfig>::new(leader, 3),
            Arc::new(LoggedCommand::new(format, command).into()),
        )
    }

    fn submit(n: u64) -> Command {
        Command::Jobs(crate::jobs::JobCommand::Submit {
            spec: crate::jobs::JobSpec {
                function: "echo".to_string(),
                args: serde_json::json!(n),
                script: None,
                labels: Default::default(),
                resources: Default::default(),
                priority: 0,
                max_attempts: 1,
                lease_ms: 5_000,
                idempotency_key: None,
            },
            now_ms: 0,
        })
    }

    /// Applies `command` at log `index` in `format`; the ids of the jobs
    /// it submitted.
    fn submitted(state: &mut ShoalState, index: u64, format: u32, command: Command) -> Vec<u64> {
        use crate::jobs::JobOutcome::Submitted;
        use crate::raft::state_machine::StateLogic;
        fn ids(result: CommandResult, out: &mut Vec<u64>) {
            match result {
                CommandResult::Jobs(Submitted { id, .. }) => out.push(id),
                CommandResult::Batch(results) => results.into_iter().for_each(|r| ids(r, out)),
                other => panic!("{other:?}"),
            }
        }
        let mut out = Vec::new();
        ids(
            state.apply(index, &Arc::new(LoggedCommand::new(format, command).into())),
            &mut out,
        );
        out
    }

    #[test]
    fn each_command_of_a_batch_gets_an_id_of_its_own_and_ids_only_grow() {
        let mut state = ShoalState::default();
        assert_eq!(submitted(&mut state, 3, LEGACY_FORMAT, submit(0)), [3]);
        let batch = Command::Batch((1..=3).map(submit).collect());
        assert_eq!(
            submitted(&mut state, 5, DISTINCT_IDS_FORMAT, batch),
            [5, 6, 7]
        );
        // A replica restored from a snapshot taken now gives the same ids.
        let mut restored: ShoalState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        for replica in [&mut state, &mut restored] {
            assert_eq!(submitted(replica, 6, DISTINCT_IDS_FORMAT, submit(4)), [8]);
            // A writer that still knows a node of release 1 writes its
            // format, whose commands share an id: never one given before.
            let shared = Command::Batch(vec![submit(5), Command::Batch(Vec::new())]);
            assert_eq!(submitted(replica, 7, LEGACY_FORMAT, shared), [9]);
            assert_eq!(submitted(replica, 8, DISTINCT_IDS_FORMAT, submit(6)), [10]);
            assert_eq!(submitted(replica, 20, DISTINCT_IDS_FORMAT, submit(7)), [20]);
            assert_eq!(submitted(replica, 21, LEGACY_FORMAT, submit(8)), [21]);
        }
        assert_eq!(state, restored);
        let ids = [
            (0, 3),
            (1, 5),
            (2, 6),
            (3, 7),
            (4, 8),
            (5, 9),
            (6, 10),
            (7, 20),
            (8, 21),
        ];
        for (n, id) in ids {
            let job = state.jobs.get(id).expect("job kept under its id");
            assert_eq!(job.spec.args, serde_json::json!(n), "job {id}");
        }
    }

    #[test]
    fn log_entries_written_before_versions_read_as_the_legacy_format() {
        let mut json = serde_json::to_value(entry(PROTOCOL_VERSION)).unwrap();
        let normal = &mut json["payload"]["Normal"];
        assert_eq!(normal[0], serde_json::json!(PROTOCOL_VERSION), "{normal}");
        *normal = normal[1].clone();
        let read: EntryOf<TypeConfig> = serde_json::from_value(json).unwrap();
        assert_eq!(read, entry(LEGACY_FORMAT));
    }

    #[test]
    fn a_log_entry_of_a_newer_format_is_refused_saying_why() {
        let newer = PROTOCOL_VERSION + 1;
        let text = serde_json::to_string(&entry(newer)).unwrap();
        let error = serde_json::from_str::<EntryOf<TypeConfig>>(&text).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("format version {newer}")),
            "{error}"
        );
    }

    #[test]
    fn an_entry_encodes_as_its_plain_command_the_first_time_and_every_time_after() {
        let command =
            LoggedCommand::new(PROTOCOL_VERSION, Command::Batch(vec![submit(1), submit(2)]));
        let plain = serde_json::to_string(&command).unwrap();
        let shared = Arc::new(SharedCommand::from(command.clone()));
        let logged = EntryOf::<TypeConfig>::new_normal(
            LogIdOf::<TypeConfig>::new(
                <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(1, 1),
                7,
            ),
            Arc::clone(&shared),
        );
        assert!(shared.json.get().is_none(), "nothing encoded yet");
        let first = serde_json::to_string(&logged).unwrap();
        assert!(first.contains(&plain), "{first} holds {plain}");
        let kept = shared.json.get().expect("the command keeps its JSON");
        assert_eq!(kept.get(), plain);
        // The kept bytes, as a follower's append request sends them.
        assert_eq!(serde_json::to_string(&logged).unwrap(), first);
        assert_eq!(serde_json::to_string(&shared).unwrap(), plain);
        let read: EntryOf<TypeConfig> = serde_json::from_str(&first).unwrap();
        assert_eq!(read, logged);
        let EntryPayload::Normal(read) = read.payload else {
            panic!("a normal entry")
        };
        assert_eq!(**read, command);
    }
}
