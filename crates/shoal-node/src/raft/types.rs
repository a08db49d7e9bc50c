//! The Raft type configuration and what the log carries.

use serde::{Deserialize, Serialize};

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
    /// Shoal's Raft types: 64-bit node ids derived from peer ids.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = RaftPeer,
);

/// The replicated state: durable jobs and the document store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShoalState {
    pub jobs: crate::jobs::JobTable,
    pub docs: crate::store::DocStore,
}

impl crate::raft::state_machine::StateLogic<TypeConfig> for ShoalState {
    fn empty_response() -> CommandResult {
        CommandResult::Membership
    }

    fn apply(&mut self, index: u64, command: &Command) -> CommandResult {
        match command {
            Command::Jobs(command) => CommandResult::Jobs(self.jobs.apply(index, command)),
            Command::Docs(command) => CommandResult::Docs(self.docs.apply(index, command)),
            Command::Batch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .map(|command| self.apply(index, command))
                    .collect(),
            ),
        }
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
        // Leader heartbeats four times a second: cheap when idle, and a
        // dead leader is replaced within about two seconds.
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
        ..Default::default()
    };
    Ok(std::sync::Arc::new(config.validate()?))
}
