//! Versions, and the rules that let a cluster be upgraded one node at a
//! time while it keeps serving.
//!
//! Every release speaks a protocol version, [`PROTOCOL_VERSION`]. Each node
//! says its version in every load report (the first field of
//! [`Heartbeat`](crate::Heartbeat)), and the node receiving one decides with
//! [`check`] whether it works with the sender:
//!
//! ```text
//!   this node N:   N-2   N-1 ── N ── N+1   N+2
//!                refused   works together   refused
//! ```
//!
//! A refused node is no member: no call is placed on it, it gets no Raft
//! replica and its Raft requests are turned away. The refusing node logs
//! it, naming the node, both versions and what to do, and reports a
//! `node_refused` event. It still answers the refused node's membership
//! probes, which tell nothing but that it is alive.
//!
//! For two adjacent releases to work together, a release never sends what
//! the release before it cannot read, and reads all that earlier releases
//! wrote:
//!
//! - **Load reports** (postcard): the version stays the first field, a
//!   varint, for ever, so any two releases can tell each other's version. A
//!   new field goes at the end: an older node reads a newer node's report
//!   and ignores what follows the fields it knows
//!   ([`Heartbeat::decode`](crate::Heartbeat::decode)), and the newer
//!   release reads an older report by its old shape.
//! - **Call frames and membership packets** (postcard, read strictly): a new
//!   frame or field is sent only to a peer whose load report says it runs
//!   the release that introduced it. A change of their encoding takes a new
//!   name, served beside the old one for a release: a stream protocol
//!   (`/shoal/call/2`, which libp2p picks when both sides speak it) or a new
//!   kind of membership datagram.
//! - **Raft messages, log entries and snapshots** (JSON): a new field has a
//!   serde default. Each entry carries the format version it was written in
//!   ([`Versioned`]): the lowest version among the writer and every node it
//!   knows of, so during an upgrade entries stay in the older release's
//!   format; a snapshot carries the newest format among its entries. A new
//!   command or field is written only once that format is the release that
//!   introduced it. A node refuses to read an
//!   entry or snapshot newer than it understands, with an error that says
//!   so, instead of misreading it; entries and snapshots written before
//!   versions read as [`LEGACY_FORMAT`].
//!
//! For an operator: upgrade one node at a time to the next release, and
//! finish before starting the one after; a node skipped by two releases is
//! refused until it catches up. Rolling a node back one release works while
//! another node still runs that release: once every node runs the new one,
//! the log is written in its format, which the older release refuses.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// This release's protocol version. It grows by one with each release that
/// changes what nodes send each other or write to the Raft log; the rules
/// above say what such a release may change.
///
/// - 1: the first.
/// - 2: a Raft entry may carry the writes of several callers (the leader's
///   group commit), and each command of an entry gets an id of its own
///   (release 1 gave every command the entry's index).
pub const PROTOCOL_VERSION: u32 = 2;

/// The format of Raft entries and snapshots written before they recorded
/// one: release 1's.
pub const LEGACY_FORMAT: u32 = 1;

/// How far apart two nodes' versions may be for them to work together:
/// adjacent releases, so that a cluster is upgraded one node at a time.
pub const MAX_VERSION_DISTANCE: u32 = 1;

/// A peer whose protocol version is too far from this node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "it speaks protocol version {theirs} and this node {ours}; only releases one version apart work together: {}",
    self.advice()
)]
pub struct Incompatible {
    pub ours: u32,
    pub theirs: u32,
}

impl Incompatible {
    fn advice(&self) -> &'static str {
        if self.theirs > self.ours {
            "upgrade this node, one release at a time"
        } else {
            "upgrade that node, one release at a time"
        }
    }
}

/// Whether a node of version `ours` works with a peer of version `theirs`.
pub fn check(ours: u32, theirs: u32) -> Result<(), Incompatible> {
    if ours.abs_diff(theirs) <= MAX_VERSION_DISTANCE {
        Ok(())
    } else {
        Err(Incompatible { ours, theirs })
    }
}

/// A Raft entry's command or a snapshot, with the format version it was
/// written in.
///
/// It travels as the JSON array `[format, value]`, the format first, so a
/// reader checks it before it reads the value: a format newer than this
/// release's [`PROTOCOL_VERSION`] fails to decode with a message that says
/// so, instead of being misread. A value written before versions (the
/// plain JSON object of the value) reads as [`LEGACY_FORMAT`]. Only
/// self-describing formats (JSON) can tell the two apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub format: u32,
    pub value: T,
}

impl<T> Versioned<T> {
    pub fn new(format: u32, value: T) -> Self {
        Versioned { format, value }
    }
}

impl<T: fmt::Display> fmt::Display for Versioned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (format {})", self.value, self.format)
    }
}

/// Why a versioned value was not read: it is newer than this release.
fn too_new(format: u32) -> String {
    format!(
        "written in format version {format}, newer than this node's protocol version \
         {PROTOCOL_VERSION}: upgrade this node, one release at a time"
    )
}

impl<T: Serialize> Serialize for Versioned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.format, &self.value).serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Versioned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(VersionedVisitor(PhantomData))
    }
}

struct VersionedVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for VersionedVisitor<T> {
    type Value = Versioned<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[format version, value], or a value written before versions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let format: u32 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if format > PROTOCOL_VERSION {
            return Err(de::Error::custom(too_new(format)));
        }
        let value = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok(Versioned { format, value })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Versioned {
            format: LEGACY_FORMAT,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Command {
        Put { key: String, value: u64 },
        Batch(Vec<Command>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        applied: u64,
    }

    fn put() -> Command {
        Command::Put {
            key: "a".into(),
            value: 7,
        }
    }

    #[test]
    fn adjacent_versions_work_together_and_others_are_refused_with_advice() {
        assert!(check(5, 5).is_ok());
        assert!(check(5, 4).is_ok());
        assert!(check(5, 6).is_ok());
        let newer = check(5, 7).unwrap_err();
        let text = newer.to_string();
        assert!(
            text.contains("version 7") && text.contains("this node 5"),
            "{text}"
        );
        assert!(text.contains("upgrade this node"), "{text}");
        let older = check(5, 3).unwrap_err().to_string();
        assert!(older.contains("upgrade that node"), "{older}");
    }

    #[test]
    fn a_versioned_value_roundtrips_with_its_format_first() {
        let entry = Versioned::new(PROTOCOL_VERSION, Command::Batch(vec![put()]));
        let text = serde_json::to_string(&entry).unwrap();
        assert!(text.starts_with(&format!("[{PROTOCOL_VERSION},")), "{text}");
        assert_eq!(
            serde_json::from_str::<Versioned<Command>>(&text).unwrap(),
            entry
        );
    }

    #[test]
    fn values_written_before_versions_read_as_the_legacy_format() {
        let legacy = serde_json::to_string(&put()).unwrap();
        let read: Versioned<Command> = serde_json::from_str(&legacy).unwrap();
        assert_eq!(read, Versioned::new(LEGACY_FORMAT, put()));
        let read: Versioned<State> = serde_json::from_value(json!({"applied": 3})).unwrap();
        assert_eq!(read, Versioned::new(LEGACY_FORMAT, State { applied: 3 }));
    }

    #[test]
    fn a_newer_format_is_refused_before_its_value_is_read() {
        let newer = PROTOCOL_VERSION + 1;
        // A command this release does not know: the format says why it is
        // refused, not the unknown variant.
        let text = json!([newer, {"Topic": {"name": "x"}}]).to_string();
        let error = serde_json::from_str::<Versioned<Command>>(&text).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("format version {newer}"))
                && message.contains("upgrade this node"),
            "{message}"
        );
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for text in ["[]", "[1]", "[1, {\"Put\": {}}]", "\"Put\"", "[1, {}, 3]"] {
            assert!(
                serde_json::from_str::<Versioned<Command>>(text).is_err(),
                "{text} decoded"
            );
        }
    }
}
