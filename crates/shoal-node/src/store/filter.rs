//! The filter language of `find`, `count`, `update` and `delete`: a JSON
//! object, in the manner of MongoDB, parsed once and then tested against
//! each document.
//!
//! ```text
//!   {"address.city": "paris",                  equality on a dotted path
//!    "age": {"$gte": 18, "$lt": 65},           operators, ANDed
//!    "tags.0": {"$in": ["red", "blue"]},       a numeric segment indexes an array
//!    "deleted_at": {"$exists": false}}
//! ```
//!
//! - Every entry of the filter must hold; `{}` matches every document.
//! - A key is a [field path](super::path). A value is either a literal,
//!   compared for equality with the whole field, or an *operator object*:
//!   a non-empty object whose keys all start with `$`. Several operators in
//!   one object must all hold. An object mixing `$` keys and plain keys is
//!   an error; an object without `$` keys is a literal.
//! - Equality (a literal, `$eq`, `$ne`, `$in`, `$nin`) is the [value
//!   order](super::order)'s: numbers by value (`1` equals `1.0`), objects
//!   whatever their key order, arrays element by element. There is no
//!   implicit search inside arrays: `{"tags": "red"}` matches a field equal
//!   to `"red"`, not an array containing it (use `"tags.0"`, or store a
//!   set as an object of flags).
//! - A missing field equals nothing, not even `null`: `{"n": null}` matches
//!   only a field present and `null`. `$ne` and `$nin` do match a missing
//!   field; `$exists: true` matches any present value, `null` included.
//! - `$gt`, `$gte`, `$lt`, `$lte` take a number or a string and hold only
//!   for a field of the same kind (numbers by value, strings by code
//!   point); for anything else, missing included, they are false.
//! - `$in` and `$nin` take an array; `$exists` takes `true` or `false`.
//!
//! Anything else is refused with a [`FilterError`] that says what was
//! wrong and what is allowed: the filter is parsed before a query runs or
//! a write is proposed, and again (identically) where a write is applied.

use super::order::{compare, equal, kind_name};
use super::path::{FieldPath, PathError};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The operators, as listed in error messages.
const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin and $exists";

/// A filter that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "a filter must be a JSON object of field paths and values, such as {{\"age\": {{\"$gte\": 18}}}}, not {0}"
    )]
    NotAnObject(&'static str),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(
        "{0:?} is not a field path: operators go inside a field, as in {{\"age\": {{\"$gt\": 18}}}}, and all of a filter's fields must match already"
    )]
    OperatorAsField(String),
    #[error("unknown operator {operator} on {path:?}; the operators are {OPERATORS}")]
    UnknownOperator { path: String, operator: String },
    #[error(
        "the value of {path:?} mixes operators and plain fields ({field:?}); use only operators such as {{\"$gt\": 1}}, or only fields to compare with an object"
    )]
    MixedOperators { path: String, field: String },
    #[error("{operator} on {path:?} takes an array of values, not {kind}")]
    NotAnArray {
        path: String,
        operator: &'static str,
        kind: &'static str,
    },
    #[error("$exists on {path:?} takes true or false, not {kind}")]
    NotABoolean { path: String, kind: &'static str },
    #[error("{operator} on {path:?} compares with a number or a string, not {kind}")]
    NotComparable {
        path: String,
        operator: &'static str,
        kind: &'static str,
    },
}

/// A parsed filter; see the module docs for what it matches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// All must hold.
    conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    path: FieldPath,
    /// All must hold for the field at `path`.
    tests: Vec<Test>,
}

#[derive(Clone, Debug, PartialEq)]
enum Test {
    Eq(Value),
    Ne(Value),
    /// `$gt`, `$gte`, `$lt`, `$lte`: true when the field compares to the
    /// operand with one of `accepted`.
    Range {
        operand: Value,
        accepted: [Ordering; 2],
    },
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
}

impl Filter {
    /// Parses a filter given as any JSON value (it must be an object).
    pub fn parse(filter: &Value) -> Result<Filter, FilterError> {
        match filter {
            Value::Object(fields) => Filter::from_fields(fields),
            other => Err(FilterError::NotAnObject(kind_name(other))),
        }
    }

    /// Parses a filter's entries.
    pub fn from_fields(fields: &Map<String, Value>) -> Result<Filter, FilterError> {
        let conditions = fields
            .iter()
            .map(|(path, wanted)| Condition::parse(path, wanted))
            .collect::<Result<_, _>>()?;
        Ok(Filter { conditions })
    }

    /// Whether `document` (a document's body) matches.
    pub fn matches(&self, document: &Value) -> bool {
        self.conditions.iter().all(|condition| {
            let field = condition.path.lookup(document);
            condition.tests.iter().all(|test| test.holds(field))
        })
    }
}

impl Condition {
    fn parse(path: &str, wanted: &Value) -> Result<Condition, FilterError> {
        if path.starts_with('$') {
            return Err(FilterError::OperatorAsField(path.to_string()));
        }
        let field_path = FieldPath::parse(path)?;
        let tests = match wanted {
            Value::Object(operators) if operators.keys().any(|key| key.starts_with('$')) => {
                operators
                    .iter()
                    .map(|(operator, operand)| Test::parse(path, operator, operand))
                    .collect::<Result<_, _>>()?
            }
            literal => vec![Test::Eq(literal.clone())],
        };
        Ok(Condition {
            path: field_path,
            tests,
        })
    }
}

impl Test {
    fn parse(path: &str, operator: &str, operand: &Value) -> Result<Test, FilterError> {
        let path = path.to_string();
        let range = |operator: &'static str, accepted: [Ordering; 2]| match operand {
            Value::Number(_) | Value::String(_) => Ok(Test::Range {
                operand: operand.clone(),
                accepted,
            }),
            other => Err(FilterError::NotComparable {
                path: path.clone(),
                operator,
                kind: kind_name(other),
            }),
        };
        let list = |operator: &'static str| match operand {
            Value::Array(values) => Ok(values.clone()),
            other => Err(FilterError::NotAnArray {
                path: path.clone(),
                operator,
                kind: kind_name(other),
            }),
        };
        use Ordering::{Equal, Greater, Less};
        match operator {
            "$eq" => Ok(Test::Eq(operand.clone())),
            "$ne" => Ok(Test::Ne(operand.clone())),
            "$gt" => range("$gt", [Greater, Greater]),
            "$gte" => range("$gte", [Greater, Equal]),
            "$lt" => range("$lt", [Less, Less]),
            "$lte" => range("$lte", [Less, Equal]),
            "$in" => list("$in").map(Test::In),
            "$nin" => list("$nin").map(Test::Nin),
            "$exists" => match operand {
                Value::Bool(exists) => Ok(Test::Exists(*exists)),
                other => Err(FilterError::NotABoolean {
                    path,
                    kind: kind_name(other),
                }),
            },
            field if !field.starts_with('$') => Err(FilterError::MixedOperators {
                path,
                field: field.to_string(),
            }),
            unknown => Err(FilterError::UnknownOperator {
                path,
                operator: unknown.to_string(),
            }),
        }
    }

    fn holds(&self, field: Option<&Value>) -> bool {
        let equals = |wanted: &Value| field.is_some_and(|field| equal(field, wanted));
        match self {
            Test::Eq(wanted) => equals(wanted),
            Test::Ne(unwanted) => !equals(unwanted),
            Test::Range { operand, accepted } => field.is_some_and(|field| {
                same_comparable_kind(field, operand) && accepted.contains(&compare(field, operand))
            }),
            Test::In(values) => values.iter().any(equals),
            Test::Nin(values) => !values.iter().any(equals),
            Test::Exists(exists) => field.is_some() == *exists,
        }
    }
}

/// Whether a range operator may compare these: both numbers or both strings.
fn same_comparable_kind(field: &Value, operand: &Value) -> bool {
    matches!(
        (field, operand),
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_))
    )
}

#[cfg(test)]
mod tests;
