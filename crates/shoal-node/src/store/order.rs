//! One total order over JSON values, used by sorts and by the filter's
//! equality and range operators, so that "equal" means the same thing
//! everywhere.
//!
//! Kinds come in this order, and values of one kind compare as follows:
//!
//! ```text
//!   missing < null < false < true < numbers < strings < arrays < objects
//! ```
//!
//! - numbers by value, whatever their JSON spelling: `1`, `1.0` and `1e0`
//!   are equal; integers beyond 2⁵³ compare exactly;
//! - strings by Unicode code point (byte order of their UTF-8);
//! - arrays element by element, a shorter prefix first;
//! - objects as their fields sorted by name, compared name, then value,
//!   field by field: key order does not matter, `{"a":1,"b":2}` equals
//!   `{"b":2,"a":1}`.

use serde_json::{Number, Value};
use std::cmp::Ordering;

/// Compares two values that may be missing; missing comes first.
pub fn compare_fields(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => compare(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// The total order described in the module docs.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .map(|(a, b)| compare(a, b))
            .find(|order| order.is_ne())
            .unwrap_or_else(|| a.len().cmp(&b.len())),
        (Value::Object(a), Value::Object(b)) => {
            let mut a: Vec<_> = a.iter().collect();
            let mut b: Vec<_> = b.iter().collect();
            a.sort_unstable_by_key(|(name, _)| *name);
            b.sort_unstable_by_key(|(name, _)| *name);
            a.iter()
                .zip(&b)
                .map(|((a_name, a), (b_name, b))| a_name.cmp(b_name).then_with(|| compare(a, b)))
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.len().cmp(&b.len()))
        }
        (a, b) => kind_rank(a).cmp(&kind_rank(b)),
    }
}

/// Whether two values are equal in the order's sense (numbers by value,
/// objects whatever their key order).
pub fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b).is_eq()
}

/// "an array", "a string", ...: a value's kind for error messages.
pub fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn kind_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// A JSON number as something exactly comparable: a whole number (all of
/// i64 and u64, and floats without a fraction that fit) or a float with a
/// fraction, or one too large for any integer type JSON numbers come in.
#[derive(Clone, Copy)]
enum Exact {
    Whole(i128),
    Float(f64),
}

/// Floats at or beyond this magnitude are larger than any i64 or u64, so
/// comparing them as floats is exact enough.
const WHOLE_LIMIT: f64 = 1e20;

fn exact(number: &Number) -> Exact {
    if let Some(n) = number.as_i64() {
        return Exact::Whole(i128::from(n));
    }
    if let Some(n) = number.as_u64() {
        return Exact::Whole(i128::from(n));
    }
    let float = number.as_f64().unwrap_or(0.0);
    if float.fract() == 0.0 && float.abs() < WHOLE_LIMIT {
        // Exact: a float with no fraction below 1e20 is a whole number
        // that i128 holds.
        Exact::Whole(float as i128)
    } else {
        Exact::Float(float)
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    match (exact(a), exact(b)) {
        (Exact::Whole(a), Exact::Whole(b)) => a.cmp(&b),
        (Exact::Float(a), Exact::Float(b)) => a.total_cmp(&b),
        // A float here has a fraction (so it is below 2^53 in magnitude and
        // never equal to a whole number) or is beyond every whole number
        // JSON carries; either way the rounding of `whole` to f64 cannot
        // change which side of `float` it is on.
        (Exact::Whole(whole), Exact::Float(float)) => (whole as f64).total_cmp(&float),
        (Exact::Float(float), Exact::Whole(whole)) => float.total_cmp(&(whole as f64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_come_in_the_documented_order() {
        let ascending = [
            json!(null),
            json!(false),
            json!(true),
            json!(-5),
            json!(2.5),
            json!(3),
            json!(""),
            json!("a"),
            json!("b"),
            json!([]),
            json!([1]),
            json!([1, 0]),
            json!([2]),
            json!({}),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 0}),
        ];
        for (i, a) in ascending.iter().enumerate() {
            assert_eq!(compare_fields(None, Some(a)), Ordering::Less);
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn numbers_compare_by_value_whatever_their_spelling() {
        let number = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert!(equal(&number("1"), &number("1.0")));
        assert!(equal(&number("-0.0"), &number("0")));
        assert!(equal(&number("1e2"), &number("100")));
        let big = u64::MAX;
        assert_eq!(compare(&json!(big), &json!(big - 1)), Ordering::Greater);
        assert_eq!(
            compare(
                &json!(9_007_199_254_740_993_i64),
                &json!(9_007_199_254_740_992.0)
            ),
            Ordering::Greater,
            "beyond 2^53, integers are not rounded to floats"
        );
        assert_eq!(compare(&json!(i64::MIN), &json!(-1e30)), Ordering::Greater);
        assert_eq!(compare(&json!(u64::MAX), &json!(1e30)), Ordering::Less);
        assert_eq!(compare(&json!(2), &json!(2.5)), Ordering::Less);
    }

    #[test]
    fn objects_are_equal_whatever_their_key_order() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": [1.0, {"c": 2}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": [1, {"c": 2.0}], "a": 1}"#).unwrap();
        assert!(equal(&a, &b));
        assert!(!equal(&a, &json!({"a": 1})));
    }
}
