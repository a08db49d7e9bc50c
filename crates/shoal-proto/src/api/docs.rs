//! The document store's API bodies (`/v1/db/…`): documents, queries by
//! filter with sort and paging, writes by filter, the list of collections.
//!
//! Filters travel as plain JSON objects; the node parses them (the filter
//! language is described in `shoal-node`'s `store::filter` and the README).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use utoipa::ToSchema;

/// A stored document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: String,
    /// 1 after insert, +1 per replace or patch.
    pub version: u64,
    #[schema(value_type = Object)]
    pub body: Value,
}

/// A write's outcome: the document's id and its new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub id: String,
    pub version: u64,
}

/// `PUT` (replace) and `PATCH` (JSON merge patch) of a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// The new body (`PUT`) or the merge patch (`PATCH`).
    #[schema(value_type = Object)]
    pub body: Value,
    /// Fails with `version_conflict` unless the document is at this version.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

/// One key of a sort: a dotted field path, ascending unless written with
/// a leading `-` (`"-age"`). On the wire it is that string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SortKey {
    /// Dotted path to the field, e.g. `address.city` or `items.0.price`.
    pub path: String,
    pub descending: bool,
}

impl SortKey {
    pub fn ascending(path: impl Into<String>) -> SortKey {
        SortKey {
            path: path.into(),
            descending: false,
        }
    }

    pub fn descending(path: impl Into<String>) -> SortKey {
        SortKey {
            path: path.into(),
            descending: true,
        }
    }

    /// Parses a comma-separated list, as the CLI takes it: `age,-name`.
    pub fn parse_list(text: &str) -> Result<Vec<SortKey>, String> {
        text.split(',').map(str::parse).collect()
    }
}

impl std::str::FromStr for SortKey {
    type Err = String;

    fn from_str(text: &str) -> Result<SortKey, String> {
        let (path, descending) = match text.strip_prefix('-') {
            Some(path) => (path, true),
            None => (text, false),
        };
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "the sort key {text:?} is not a field path: write a dotted path such as \"age\" or \"address.city\", with a leading '-' to sort descending"
            ));
        }
        Ok(SortKey {
            path: path.to_string(),
            descending,
        })
    }
}

impl TryFrom<String> for SortKey {
    type Error = String;

    fn try_from(text: String) -> Result<SortKey, String> {
        text.parse()
    }
}

impl From<SortKey> for String {
    fn from(key: SortKey) -> String {
        key.to_string()
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(&self.path)
    }
}

/// `POST /v1/db/{collection}/find` and `/count`: documents that match the
/// filter, optionally sorted, a page at a time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FindBody {
    /// Field paths and what they must match, all at once:
    /// `{"address.city": "paris", "age": {"$gte": 18}}`; `{}` matches
    /// every document.
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
    /// Sort keys, most significant first, ties broken by id; `"-age"` sorts
    /// descending. Without a sort, documents come in id (insert) order.
    #[schema(value_type = Vec<String>, example = json!(["-age", "name"]))]
    pub sort: Vec<SortKey>,
    pub limit: Option<usize>,
    /// The `next` of the previous page, with the same filter and sort.
    pub after: Option<String>,
    /// Read this node's replica as it is instead of a linearizable read.
    pub stale: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FindReply {
    pub documents: Vec<Document>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountReply {
    pub count: usize,
}

/// `POST /v1/db/{collection}/update`: merge-patch every matching document
/// in one replicated write. The filter is required, so that updating every
/// document takes an explicit `{}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWhereBody {
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
    /// A JSON merge patch (RFC 7386), applied to each match.
    #[schema(value_type = Object)]
    pub patch: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Updated {
    /// Documents patched (each one's version went up by one).
    pub updated: usize,
}

/// `POST /v1/db/{collection}/delete`: delete every matching document in
/// one replicated write. The filter is required, as for updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteWhereBody {
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub deleted: usize,
}

/// One collection and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub documents: usize,
}

/// `GET /v1/db`: every collection, in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Collections {
    pub collections: Vec<CollectionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sort_keys_are_paths_with_an_optional_minus() {
        let keys = SortKey::parse_list("age,-address.city").unwrap();
        assert_eq!(
            keys,
            [
                SortKey::ascending("age"),
                SortKey::descending("address.city")
            ]
        );
        let body: FindBody = serde_json::from_value(json!({"sort": ["age", "-name"]})).unwrap();
        assert_eq!(
            serde_json::to_value(&body.sort).unwrap(),
            json!(["age", "-name"])
        );
        for bad in ["", "-", "a..b", ".a", "age,"] {
            let error = SortKey::parse_list(bad).unwrap_err();
            assert!(error.contains("dotted path"), "{bad:?}: {error}");
        }
        let refused = serde_json::from_value::<FindBody>(json!({"sort": ["ok", "x."]}));
        assert!(refused.unwrap_err().to_string().contains("\"x.\""));
    }

    #[test]
    fn old_find_bodies_still_parse_and_writes_need_a_filter() {
        let old: FindBody =
            serde_json::from_value(json!({"filter": {"a": 1}, "limit": 5, "after": "x"})).unwrap();
        assert!(old.sort.is_empty());
        let missing = serde_json::from_value::<UpdateWhereBody>(json!({"patch": {"a": 1}}));
        assert!(missing.unwrap_err().to_string().contains("filter"));
        let missing = serde_json::from_value::<DeleteWhereBody>(json!({}));
        assert!(missing.unwrap_err().to_string().contains("filter"));
    }
}
