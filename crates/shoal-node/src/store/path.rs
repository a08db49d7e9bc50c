//! Dotted field paths into a document: `address.city`, `items.0.name`.
//!
//! Each segment names an object's field; on an array, a segment written as
//! a plain decimal number (`0`, `12`, not `012`) picks that element. A path
//! that leads nowhere (a missing field, an index past the end, a field of a
//! number) finds nothing: the field is *missing*, which filters and sorts
//! treat apart from `null`.

use serde_json::Value;

/// A field path that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the field path {path:?} has an empty segment; write dot-separated names such as \"address.city\" or \"items.0.name\""
)]
pub struct PathError {
    pub path: String,
}

/// A parsed field path, ready to look up in many documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    name: String,
    /// The array index this segment also means, if it is one.
    index: Option<usize>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        let segments = text
            .split('.')
            .map(|name| {
                if name.is_empty() {
                    return Err(PathError {
                        path: text.to_string(),
                    });
                }
                let index = name
                    .parse::<usize>()
                    .ok()
                    .filter(|index| index.to_string() == name);
                Ok(Segment {
                    name: name.to_string(),
                    index,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(FieldPath { segments })
    }

    /// The value at this path in `document`, or `None` if it is missing.
    pub fn lookup<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(document, |value, segment| match value {
                Value::Object(fields) => fields.get(&segment.name),
                Value::Array(items) => items.get(segment.index?),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_walk_objects_and_index_arrays() {
        let document = json!({
            "name": "ada",
            "address": {"city": "london"},
            "items": [{"name": "engine"}, {"name": "loom"}],
            "odd": {"0": "a key, not an index"},
        });
        let at = |path: &str| FieldPath::parse(path).unwrap().lookup(&document).cloned();
        assert_eq!(at("name"), Some(json!("ada")));
        assert_eq!(at("address.city"), Some(json!("london")));
        assert_eq!(at("items.1.name"), Some(json!("loom")));
        assert_eq!(at("odd.0"), Some(json!("a key, not an index")));
        assert_eq!(at("items.2.name"), None, "past the end");
        assert_eq!(at("items.01"), None, "not a plain index");
        assert_eq!(at("name.first"), None, "a string has no fields");
        assert_eq!(at("address.zip"), None);
    }

    #[test]
    fn empty_segments_are_refused_with_an_example() {
        for bad in ["", "a..b", ".a", "a."] {
            let error = FieldPath::parse(bad).unwrap_err().to_string();
            assert!(error.contains("address.city"), "{error}");
        }
    }
}
