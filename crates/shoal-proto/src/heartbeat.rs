//! The heartbeat every node gossips each second: enough load information for
//! peers to place calls and pick whom to steal from.

use crate::version::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};

/// Upper bound on the function names one heartbeat lists, so a node that
/// registers thousands of functions cannot make heartbeats unbounded.
pub const MAX_ADVERTISED_FUNCTIONS: usize = 1024;

/// One node's load, as published on the heartbeat topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Protocol version of the sender; a peer too far from the receiver's
    /// is refused (see [`version`](crate::version)). Always the first
    /// field, so that any two releases can read it.
    pub version: u32,
    /// Increases by one per heartbeat; makes each message's content unique.
    pub seq: u64,
    /// Worker slots: how many calls it runs at once.
    pub slots: u32,
    /// Calls waiting for a slot.
    pub queued: u32,
    /// Calls holding a slot right now.
    pub running: u32,
    /// Mean run time of recent calls, in microseconds; before any has
    /// finished, how long the longest running has run, a lower bound of
    /// it (releases before 2026-12-02 said 0). 0: nothing is known.
    pub mean_task_us: u64,
    /// Estimated time to finish everything queued and running, in
    /// milliseconds: `(queued + running) / slots * mean_task`.
    pub drain_ms: u64,
    /// The functions this node can run (user functions only).
    pub functions: Vec<FunctionInfo>,
    /// Items held per distributed queue name.
    pub queue_items: Vec<(String, u64)>,
    /// Calls it has run since it started.
    pub executed: u64,
    /// Addresses others can join it at.
    pub addrs: Vec<String>,
    /// Its HTTP API, if it serves one (`http://host:port`).
    pub api: Option<String>,
    /// Labels and resources jobs may require of it.
    pub labels: Vec<(String, String)>,
    pub resources: Vec<(String, u64)>,
    /// CPU its process used over the last heartbeat interval, in percent
    /// of one core.
    pub cpu_percent: f32,
    /// Resident memory of its process, in bytes.
    pub memory_bytes: u64,
    /// Its part in Raft: who holds the log, and where writes go.
    pub raft: RaftRole,
    /// Set by the Raft leader while jobs wait to be leased, so nodes that
    /// keep no replica know when to ask for work.
    pub jobs_waiting: bool,
    /// The node is draining before it stops: it takes no new calls or
    /// jobs, and hands its Raft seat to another node.
    pub draining: bool,
}

/// A node's part in Raft, as its heartbeat tells it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum RaftRole {
    /// Takes no part: a node that only calls into the cluster.
    #[default]
    None,
    /// Could hold a replica but holds none now; reads and writes through
    /// the members.
    Standby,
    /// Holds a replica and does not vote.
    Learner,
    Voter,
    Leader,
}

impl RaftRole {
    /// Whether a node in this role answers reads from its own replica.
    pub fn holds_replica(self) -> bool {
        matches!(self, RaftRole::Learner | RaftRole::Voter | RaftRole::Leader)
    }
}

/// A function a node offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    /// Results may be cached by (function, arguments).
    pub memoize: bool,
}

impl Heartbeat {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("heartbeat encodes")
    }

    /// Decodes a whole message. Bytes left over make it malformed, unless
    /// a newer release sent it: those are fields it added, which this
    /// release does not know. A CPU figure that is not a finite,
    /// non-negative number reads as 0.
    pub fn decode(bytes: &[u8]) -> Result<Heartbeat, postcard::Error> {
        let (mut heartbeat, rest): (Heartbeat, &[u8]) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() && heartbeat.version <= PROTOCOL_VERSION {
            return Err(postcard::Error::DeserializeBadEncoding);
        }
        if !(heartbeat.cpu_percent.is_finite() && heartbeat.cpu_percent >= 0.0) {
            heartbeat.cpu_percent = 0.0;
        }
        Ok(heartbeat)
    }

    /// The protocol version an encoded heartbeat was sent with, read even
    /// when the rest does not decode (a release far from this one).
    pub fn version_of(bytes: &[u8]) -> Option<u32> {
        postcard::take_from_bytes::<u32>(bytes)
            .ok()
            .map(|(version, _)| version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_figure_that_is_no_number_reads_as_zero() {
        for cpu_percent in [f32::NAN, f32::INFINITY, -3.0] {
            let sent = Heartbeat {
                cpu_percent,
                memory_bytes: 7,
                ..Heartbeat::default()
            };
            let read = Heartbeat::decode(&sent.encode()).unwrap();
            assert_eq!(read.cpu_percent, 0.0);
            assert_eq!(read.memory_bytes, 7);
            assert_eq!(Heartbeat::decode(&read.encode()).unwrap(), read);
        }
    }

    #[test]
    fn a_newer_release_may_append_fields_and_its_version_always_reads() {
        let newer = Heartbeat {
            version: PROTOCOL_VERSION + 1,
            slots: 3,
            ..Heartbeat::default()
        };
        let mut bytes = newer.encode();
        bytes.extend_from_slice(&[7, 1, 2]);
        let read = Heartbeat::decode(&bytes).expect("fields it added are ignored");
        assert_eq!((read.version, read.slots), (PROTOCOL_VERSION + 1, 3));

        let same = Heartbeat {
            version: PROTOCOL_VERSION,
            ..Heartbeat::default()
        };
        let mut bytes = same.encode();
        bytes.push(0);
        assert!(
            Heartbeat::decode(&bytes).is_err(),
            "this release's own reports say exactly what they hold"
        );

        // A far newer release whose report this one cannot read still says
        // which version it runs.
        let mut unreadable = postcard::to_stdvec(&(PROTOCOL_VERSION + 2)).unwrap();
        unreadable.extend_from_slice(&[0xff; 3]);
        assert!(Heartbeat::decode(&unreadable).is_err());
        assert_eq!(
            Heartbeat::version_of(&unreadable),
            Some(PROTOCOL_VERSION + 2)
        );
        assert_eq!(Heartbeat::version_of(&[]), None);
    }
}
