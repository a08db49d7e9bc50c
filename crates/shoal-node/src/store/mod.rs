//! The replicated document store: collections of JSON documents.
//!
//! Plain state, applied in log order on every replica, so no write is lost
//! to a concurrent one: each document has a version, bumped by every write,
//! and a write may name the version it expects — if another write came
//! first, it fails with `version_conflict` instead of overwriting.
//!
//! Queries and writes by filter share the parts below; a write by filter
//! is one command, so it changes every match or (refused) none:
//!
//! ```text
//!   filter ──► Filter::matches ──┬─► count, update_where, delete_where
//!   (filter.rs: path.rs, order.rs) └─► find ──► SortOrder::page (sort.rs)
//! ```
//!
//! - `path`: dotted field paths (`address.city`, `items.0.name`);
//! - `order`: one total order over JSON values, for sorts and comparisons;
//! - `filter`: the filter language;
//! - `sort`: sorted pages and their cursors.

mod filter;
mod order;
mod path;
mod sort;

pub use filter::{Filter, FilterError};
pub use sort::{CursorError, SortOrder};

use order::kind_name;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shoal_proto::api::ApiError;
use sort::check_id_cursor;
use std::collections::BTreeMap;
use std::ops::Bound;

pub use shoal_proto::api::{CollectionInfo, Document, SortKey};

/// A change to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocCommand {
    CreateCollection {
        name: String,
    },
    DropCollection {
        name: String,
    },
    /// The id is made from the command's, the same on every replica.
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
    /// Merge-patches every document that matches `filter`, bumping each
    /// one's version. The filter is parsed where the command is applied,
    /// identically on every replica.
    UpdateWhere {
        collection: String,
        filter: Value,
        patch: Value,
    },
    /// Deletes every document that matches `filter`.
    DeleteWhere {
        collection: String,
        filter: Value,
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
    InvalidFilter,
    /// A page cursor that does not continue this query.
    InvalidCursor,
}

impl DocErrorCode {
    /// The API's error code for it.
    pub fn code(self) -> shoal_proto::ErrorCode {
        use shoal_proto::ErrorCode;
        match self {
            DocErrorCode::NoSuchCollection => ErrorCode::NoSuchCollection,
            DocErrorCode::CollectionExists => ErrorCode::CollectionExists,
            DocErrorCode::NotFound => ErrorCode::NotFound,
            DocErrorCode::VersionConflict => ErrorCode::VersionConflict,
            DocErrorCode::InvalidDocument => ErrorCode::InvalidDocument,
            DocErrorCode::InvalidFilter => ErrorCode::InvalidFilter,
            DocErrorCode::InvalidCursor => ErrorCode::InvalidRequest,
        }
    }
}

/// What a [`DocCommand`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocOutcome {
    Done,
    Written {
        id: String,
        version: u64,
    },
    /// A write by filter changed this many documents.
    Changed {
        count: usize,
    },
    Error {
        code: DocErrorCode,
        message: String,
    },
}

/// All collections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocStore {
    collections: BTreeMap<String, BTreeMap<String, Document>>,
}

impl DocStore {
    /// Applies one committed command. `id` is the command's own (it grows
    /// from command to command, the same on every replica), from which an
    /// inserted document's id is made.
    pub fn apply(&mut self, id: u64, command: &DocCommand) -> DocOutcome {
        let applied = match command {
            DocCommand::CreateCollection { name } => self.create_collection(name),
            DocCommand::DropCollection { name } => self.drop_collection(name),
            DocCommand::Insert { collection, body } => self.insert(id, collection, body),
            DocCommand::Replace {
                collection,
                id,
                body,
                expected_version,
            } => self.replace(collection, id, body, *expected_version),
            DocCommand::Patch {
                collection,
                id,
                patch,
                expected_version,
            } => self.patch(collection, id, patch, *expected_version),
            DocCommand::Delete {
                collection,
                id,
                expected_version,
            } => self.delete(collection, id, *expected_version),
            DocCommand::UpdateWhere {
                collection,
                filter,
                patch,
            } => self.update_where(collection, filter, patch),
            DocCommand::DeleteWhere { collection, filter } => self.delete_where(collection, filter),
        };
        applied.unwrap_or_else(DocOutcome::from)
    }

    pub fn get(&self, collection: &str, id: &str) -> Option<&Document> {
        self.collections.get(collection)?.get(id)
    }

    /// The document, `None` if there is none with that id, or an error if
    /// there is no such collection.
    pub fn document(&self, collection: &str, id: &str) -> Result<Option<&Document>, DocError> {
        Ok(self.collection(collection)?.get(id))
    }

    /// Collection names in order.
    pub fn collections(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(String::as_str)
    }

    /// Every collection in name order, with its number of documents.
    pub fn collection_sizes(&self) -> Vec<CollectionInfo> {
        self.collections
            .iter()
            .map(|(name, documents)| CollectionInfo {
                name: name.clone(),
                documents: documents.len(),
            })
            .collect()
    }

    /// Up to `limit` documents of `collection` that match `filter`, and a
    /// cursor to pass as `after` for the next page, present only when more
    /// matches follow.
    ///
    /// Without a sort, documents come in id (insert) order and the cursor
    /// is the last id returned, so any id works as `after`. With a sort,
    /// the cursor is the opaque point in that order a [`SortOrder`] gives.
    pub fn find(
        &self,
        collection: &str,
        filter: &Map<String, Value>,
        sort: &[SortKey],
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Document>, Option<String>), DocError> {
        let filter = Filter::from_fields(filter)?;
        let documents = self.collection(collection)?;
        if !sort.is_empty() {
            let order = SortOrder::parse(sort).map_err(FilterError::from)?;
            let matches = documents.values().filter(|doc| filter.matches(&doc.body));
            return Ok(order.page(matches, limit, after)?);
        }
        let start = match after {
            Some(id) => {
                check_id_cursor(id)?;
                Bound::Excluded(id)
            }
            None => Bound::Unbounded,
        };
        let mut matches = documents
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, document)| document)
            .filter(|document| filter.matches(&document.body));
        let page: Vec<Document> = matches.by_ref().take(limit).cloned().collect();
        let cursor = match matches.next() {
            // With `limit` 0 nothing was returned, so the next page starts
            // where this one did.
            Some(_) => page.last().map(|doc| doc.id.as_str()).or(after),
            None => None,
        };
        let cursor = cursor.map(str::to_string);
        Ok((page, cursor))
    }

    /// How many documents of `collection` match `filter` (as in [`find`](Self::find)).
    pub fn count(&self, collection: &str, filter: &Map<String, Value>) -> Result<usize, DocError> {
        let filter = Filter::from_fields(filter)?;
        let documents = self.collection(collection)?;
        Ok(documents
            .values()
            .filter(|document| filter.matches(&document.body))
            .count())
    }

    fn create_collection(&mut self, name: &str) -> Applied {
        if self.collections.contains_key(name) {
            return Err(DocError::new(
                DocErrorCode::CollectionExists,
                format!(
                    "collection \"{name}\" already exists; use it as it is, or drop it first to start empty"
                ),
            ));
        }
        self.collections.insert(name.to_string(), BTreeMap::new());
        Ok(DocOutcome::Done)
    }

    fn drop_collection(&mut self, name: &str) -> Applied {
        match self.collections.remove(name) {
            Some(_) => Ok(DocOutcome::Done),
            None => Err(DocError::no_such_collection(name)),
        }
    }

    fn insert(&mut self, command_id: u64, collection: &str, body: &Value) -> Applied {
        check_is_object(body)?;
        let documents = self.collection_mut(collection)?;
        // Fixed-width hex sorts like the number, so id order is insert order.
        let id = format!("{command_id:016x}");
        let document = Document {
            id: id.clone(),
            version: 1,
            body: body.clone(),
        };
        documents.insert(id.clone(), document);
        Ok(DocOutcome::Written { id, version: 1 })
    }

    fn replace(
        &mut self,
        collection: &str,
        id: &str,
        body: &Value,
        expected_version: Option<u64>,
    ) -> Applied {
        check_is_object(body)?;
        let document = self.writable(collection, id, expected_version)?;
        document.body = body.clone();
        Ok(bump_version(document))
    }

    fn patch(
        &mut self,
        collection: &str,
        id: &str,
        patch: &Value,
        expected_version: Option<u64>,
    ) -> Applied {
        check_merge_patch(patch)?;
        let document = self.writable(collection, id, expected_version)?;
        merge_patch(&mut document.body, patch);
        Ok(bump_version(document))
    }

    fn delete(&mut self, collection: &str, id: &str, expected_version: Option<u64>) -> Applied {
        self.writable(collection, id, expected_version)?;
        self.collection_mut(collection)?.remove(id);
        Ok(DocOutcome::Done)
    }

    /// Everything is checked before the first document changes, and
    /// nothing after can fail: all matches change, or none.
    fn update_where(&mut self, collection: &str, filter: &Value, patch: &Value) -> Applied {
        let filter = Filter::parse(filter)?;
        check_merge_patch(patch)?;
        let mut count = 0;
        for document in self.collection_mut(collection)?.values_mut() {
            if filter.matches(&document.body) {
                merge_patch(&mut document.body, patch);
                bump_version(document);
                count += 1;
            }
        }
        Ok(DocOutcome::Changed { count })
    }

    fn delete_where(&mut self, collection: &str, filter: &Value) -> Applied {
        let filter = Filter::parse(filter)?;
        let documents = self.collection_mut(collection)?;
        let before = documents.len();
        documents.retain(|_, document| !filter.matches(&document.body));
        Ok(DocOutcome::Changed {
            count: before - documents.len(),
        })
    }

    fn collection(&self, name: &str) -> Result<&BTreeMap<String, Document>, DocError> {
        self.collections
            .get(name)
            .ok_or_else(|| DocError::no_such_collection(name))
    }

    fn collection_mut(&mut self, name: &str) -> Result<&mut BTreeMap<String, Document>, DocError> {
        self.collections
            .get_mut(name)
            .ok_or_else(|| DocError::no_such_collection(name))
    }

    /// The document a write may change: it exists, and is at the version
    /// the writer expects, if it named one.
    fn writable(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<&mut Document, DocError> {
        let document = self.collection_mut(collection)?.get_mut(id).ok_or_else(|| {
            DocError::new(
                DocErrorCode::NotFound,
                format!(
                    "no document \"{id}\" in collection \"{collection}\"; check the id, or find it again: it may have been deleted"
                ),
            )
        })?;
        if let Some(expected) = expected_version
            && expected != document.version
        {
            return Err(DocError::new(
                DocErrorCode::VersionConflict,
                format!(
                    "document {id} is at version {}, not {expected}: another write came first; read it again and retry",
                    document.version
                ),
            ));
        }
        Ok(document)
    }
}

fn bump_version(document: &mut Document) -> DocOutcome {
    document.version += 1;
    DocOutcome::Written {
        id: document.id.clone(),
        version: document.version,
    }
}

/// What applying one command gives: an outcome, or an error to report.
type Applied = Result<DocOutcome, DocError>;

/// A refused write or query: a code and a message for the user. Kept
/// apart from [`DocOutcome`] so helpers can use `?`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DocError {
    pub code: DocErrorCode,
    pub message: String,
}

impl DocError {
    fn new(code: DocErrorCode, message: String) -> Self {
        DocError { code, message }
    }

    fn no_such_collection(name: &str) -> Self {
        DocError::new(
            DocErrorCode::NoSuchCollection,
            format!("no collection named \"{name}\"; create it first"),
        )
    }
}

impl From<FilterError> for DocError {
    fn from(error: FilterError) -> Self {
        DocError::new(DocErrorCode::InvalidFilter, error.to_string())
    }
}

impl From<CursorError> for DocError {
    fn from(error: CursorError) -> Self {
        DocError::new(DocErrorCode::InvalidCursor, error.to_string())
    }
}

impl From<DocError> for ApiError {
    fn from(error: DocError) -> Self {
        ApiError::new(error.code.code(), error.message)
    }
}

impl From<DocError> for DocOutcome {
    fn from(error: DocError) -> Self {
        DocOutcome::Error {
            code: error.code,
            message: error.message,
        }
    }
}

/// Refuses a merge patch that is not an object: merging an object patch
/// into an object always leaves an object, so this keeps every document
/// an object.
pub fn check_merge_patch(patch: &Value) -> Result<(), DocError> {
    if patch.is_object() {
        return Ok(());
    }
    Err(DocError::new(
        DocErrorCode::InvalidDocument,
        format!(
            "a merge patch must be a JSON object, not {}; to replace the whole document, use replace",
            kind_name(patch)
        ),
    ))
}

/// Documents are objects, so that filters and merge patches address fields.
fn check_is_object(body: &Value) -> Result<(), DocError> {
    if body.is_object() {
        return Ok(());
    }
    Err(DocError::new(
        DocErrorCode::InvalidDocument,
        format!(
            "a document must be a JSON object, not {}; wrap the value in an object such as {{\"value\": ...}}",
            kind_name(body)
        ),
    ))
}

/// Applies an RFC 7386 JSON merge patch to `target`: object fields merge
/// recursively, `null` removes a field, anything else replaces the target.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else {
        return;
    };
    for (field, value) in patch_fields {
        if value.is_null() {
            target_fields.remove(field);
        } else {
            let slot = target_fields.entry(field.clone()).or_insert(Value::Null);
            merge_patch(slot, value);
        }
    }
}

#[cfg(test)]
mod tests;
