//! The replicated document store: collections of JSON documents.
//!
//! Plain state, applied in log order on every replica, so no write is lost
//! to a concurrent one: each document has a version, bumped by every write,
//! and a write may name the version it expects — if another write came
//! first, it fails with `version_conflict` instead of overwriting.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A stored document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    /// 1 after insert, +1 per replace or patch.
    pub version: u64,
    pub body: Value,
}

/// A change to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocCommand {
    CreateCollection {
        name: String,
    },
    DropCollection {
        name: String,
    },
    /// The id is assigned from the log index, the same on every replica.
    Insert {
        collection: String,
        body: Value,
    },
    Replace {
        collection: String,
        id: String,
        body: Value,
        expected_version: Option<u64>,
    },
    /// A JSON merge patch (RFC 7386).
    Patch {
        collection: String,
        id: String,
        patch: Value,
        expected_version: Option<u64>,
    },
    Delete {
        collection: String,
        id: String,
        expected_version: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocErrorCode {
    NoSuchCollection,
    CollectionExists,
    NotFound,
    VersionConflict,
    InvalidDocument,
}

/// What a [`DocCommand`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocOutcome {
    Done,
    Written { id: String, version: u64 },
    Error { code: DocErrorCode, message: String },
}

/// All collections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocStore {
    collections: BTreeMap<String, BTreeMap<String, Document>>,
}

impl DocStore {
    pub fn apply(&mut self, index: u64, command: &DocCommand) -> DocOutcome {
        let _ = (index, command);
        DocOutcome::Error {
            code: DocErrorCode::InvalidDocument,
            message: "not implemented yet".to_string(),
        }
    }

    pub fn get(&self, collection: &str, id: &str) -> Option<&Document> {
        self.collections.get(collection)?.get(id)
    }
}
