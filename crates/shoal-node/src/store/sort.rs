//! Sorted pages of documents, and the cursors that continue them.
//!
//! A sort is a list of field paths, each ascending or descending, in the
//! [value order](super::order) (a missing field before `null`); ties are
//! broken by id, ascending, so the order is total and every document has
//! one place in it.
//!
//! A page's cursor holds the sort keys and the id of the page's last
//! document (base64 of a small JSON object), not a position: the next page
//! starts right after that point of the order, so documents written in
//! between neither repeat nor hide documents already in place. A cursor
//! also names its sort, and is refused with any other.

use super::order::compare_fields;
use super::path::{FieldPath, PathError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_proto::api::{Document, SortKey};
use std::cmp::Ordering;

/// A cursor that cannot continue this query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error(
        "the cursor {0:?} is not one a sorted find returned; pass the `next` of the previous page as it is"
    )]
    Unreadable(String),
    #[error(
        "the cursor comes from a find sorted by [{given}], not [{wanted}]; page with the sort that gave it, or start again without a cursor"
    )]
    OtherSort { given: String, wanted: String },
    #[error(
        "the cursor comes from a find sorted by [{0}], but this find has no sort; page with the sort that gave it, or start again without a cursor"
    )]
    SortedCursorWithoutSort(String),
}

/// Refuses a sorted find's cursor given to a find without a sort, which
/// pages by id: it would silently match nothing. Anything else may be an
/// id, so it passes.
pub fn check_id_cursor(after: &str) -> Result<(), CursorError> {
    match decode_point(after) {
        Some(point) => Err(CursorError::SortedCursorWithoutSort(point.sort.join(", "))),
        None => Ok(()),
    }
}

/// The point a cursor holds, if it is a sorted find's cursor at all.
fn decode_point(cursor: &str) -> Option<CursorPoint> {
    let json = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&json).ok()
}

/// A parsed sort, ready to order many documents.
#[derive(Clone, Debug, PartialEq)]
pub struct SortOrder {
    keys: Vec<(FieldPath, bool)>,
    /// As written (`["age", "-name"]`), to tie cursors to their sort.
    spelled: Vec<String>,
}

/// What a cursor carries: where the previous page ended.
#[derive(Serialize, Deserialize)]
struct CursorPoint {
    sort: Vec<String>,
    /// One per sort key: `[]` when the field was missing, else `[value]`.
    keys: Vec<Vec<Value>>,
    id: String,
}

/// A document's place in a sort: its sort-key values, then its id.
type Place<'a> = (Vec<Option<&'a Value>>, &'a str);

impl SortOrder {
    pub fn parse(keys: &[SortKey]) -> Result<SortOrder, PathError> {
        let parsed = keys
            .iter()
            .map(|key| Ok((FieldPath::parse(&key.path)?, key.descending)))
            .collect::<Result<_, PathError>>()?;
        Ok(SortOrder {
            keys: parsed,
            spelled: keys.iter().map(SortKey::to_string).collect(),
        })
    }

    /// Up to `limit` of `matches` in this order, starting after `after` (a
    /// cursor from a previous page), and the cursor of the next page when
    /// more follow.
    pub fn page<'a>(
        &self,
        matches: impl Iterator<Item = &'a Document>,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<Document>, Option<String>), CursorError> {
        let start = after.map(|cursor| self.decode(cursor)).transpose()?;
        let start = start.as_ref().map(|point| {
            (
                point.keys.iter().map(|key| key.first()).collect(),
                point.id.as_str(),
            )
        });
        let mut places: Vec<(Place<'a>, &'a Document)> = matches
            .map(|document| (self.place(document), document))
            .filter(|(place, _)| {
                start
                    .as_ref()
                    .is_none_or(|start| self.compare(place, start).is_gt())
            })
            .collect();
        let more = places.len() > limit;
        if more {
            // Only the first `limit` need sorting.
            places.select_nth_unstable_by(limit, |(a, _), (b, _)| self.compare(a, b));
            places.truncate(limit);
        }
        places.sort_unstable_by(|(a, _), (b, _)| self.compare(a, b));
        let next = match places.last() {
            Some((place, _)) if more => Some(self.encode(place)),
            // With `limit` 0 nothing was returned: the next page starts
            // where this one did.
            None if more => after.map(str::to_string),
            _ => None,
        };
        let documents = places.into_iter().map(|(_, doc)| doc.clone()).collect();
        Ok((documents, next))
    }

    fn place<'a>(&self, document: &'a Document) -> Place<'a> {
        let keys = self
            .keys
            .iter()
            .map(|(path, _)| path.lookup(&document.body))
            .collect();
        (keys, document.id.as_str())
    }

    fn compare(&self, a: &Place<'_>, b: &Place<'_>) -> Ordering {
        let by_keys = self
            .keys
            .iter()
            .zip(a.0.iter().zip(&b.0))
            .map(|((_, descending), (a, b))| {
                let order = compare_fields(*a, *b);
                if *descending { order.reverse() } else { order }
            })
            .find(|order| order.is_ne());
        by_keys.unwrap_or_else(|| a.1.cmp(b.1))
    }

    fn encode(&self, place: &Place<'_>) -> String {
        let point = CursorPoint {
            sort: self.spelled.clone(),
            keys: place
                .0
                .iter()
                .map(|key| key.iter().map(|value| (*value).clone()).collect())
                .collect(),
            id: place.1.to_string(),
        };
        let json = serde_json::to_vec(&point).expect("a cursor serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(&self, cursor: &str) -> Result<CursorPoint, CursorError> {
        let unreadable = || CursorError::Unreadable(cursor.chars().take(80).collect());
        let point = decode_point(cursor).ok_or_else(unreadable)?;
        if point.sort != self.spelled {
            return Err(CursorError::OtherSort {
                given: point.sort.join(", "),
                wanted: self.spelled.join(", "),
            });
        }
        if point.keys.len() != self.keys.len() || point.keys.iter().any(|key| key.len() > 1) {
            return Err(unreadable());
        }
        Ok(point)
    }
}
