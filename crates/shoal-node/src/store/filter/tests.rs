use super::*;
use proptest::prelude::*;
use serde_json::json;

fn matches(filter: Value, document: &Value) -> bool {
    Filter::parse(&filter)
        .unwrap_or_else(|e| panic!("{filter} should parse: {e}"))
        .matches(document)
}

fn refusal(filter: Value) -> String {
    match Filter::parse(&filter) {
        Ok(parsed) => panic!("{filter} should be refused, parsed as {parsed:?}"),
        Err(error) => error.to_string(),
    }
}

fn ada() -> Value {
    json!({
        "name": "ada",
        "age": 36,
        "score": 9.5,
        "nick": null,
        "address": {"city": "london", "zip": "sw1"},
        "items": [{"name": "engine", "qty": 2}, {"name": "loom"}],
        "tags": ["math", "poetry"],
    })
}

#[test]
fn equality_on_dotted_paths_and_array_indexes() {
    let ada = ada();
    assert!(matches(json!({}), &ada), "the empty filter matches all");
    assert!(matches(json!({"address.city": "london"}), &ada));
    assert!(matches(json!({"items.0.name": "engine", "age": 36}), &ada));
    assert!(!matches(json!({"items.1.qty": 2}), &ada), "missing");
    assert!(!matches(json!({"address.city": "london", "age": 37}), &ada));
    assert!(
        matches(json!({"address": {"zip": "sw1", "city": "london"}}), &ada),
        "objects are equal whatever their key order"
    );
    assert!(
        !matches(json!({"tags": "math"}), &ada),
        "no search inside arrays"
    );
    assert!(matches(json!({"tags": ["math", "poetry"]}), &ada));
    assert!(matches(json!({"age": 36.0}), &ada), "1 == 1.0");
    assert!(matches(json!({"nick": null}), &ada));
    assert!(
        !matches(json!({"missing": null}), &ada),
        "missing is not null"
    );
}

#[test]
fn operators_compare_and_combine() {
    let ada = ada();
    assert!(matches(json!({"age": {"$gte": 18, "$lt": 65}}), &ada));
    assert!(!matches(json!({"age": {"$gte": 18, "$lt": 36}}), &ada));
    assert!(matches(json!({"score": {"$gt": 9, "$lte": 9.5}}), &ada));
    assert!(matches(json!({"name": {"$gt": "a", "$lt": "b"}}), &ada));
    assert!(
        !matches(json!({"name": {"$gt": 1}}), &ada),
        "a string is not greater than a number"
    );
    assert!(!matches(json!({"missing": {"$lt": 100}}), &ada));
    assert!(!matches(json!({"nick": {"$lt": 100}}), &ada));
    assert!(matches(json!({"age": {"$eq": 36, "$ne": 37}}), &ada));
    assert!(
        matches(json!({"missing": {"$ne": 1}}), &ada),
        "$ne matches missing"
    );
    assert!(matches(
        json!({"address.city": {"$in": ["paris", "london"]}}),
        &ada
    ));
    assert!(!matches(
        json!({"address.city": {"$nin": ["paris", "london"]}}),
        &ada
    ));
    assert!(
        matches(json!({"missing": {"$nin": ["x"]}}), &ada),
        "$nin matches missing"
    );
    assert!(!matches(json!({"missing": {"$in": [null]}}), &ada));
    assert!(
        matches(json!({"nick": {"$exists": true}}), &ada),
        "null exists"
    );
    assert!(matches(json!({"items.1.qty": {"$exists": false}}), &ada));
    assert!(matches(
        json!({"address.city": "london", "items.0.qty": {"$gt": 1}, "tags.1": {"$in": ["poetry"]}}),
        &ada
    ));
    assert!(
        matches(
            json!({"address": {"$eq": {"city": "london", "zip": "sw1"}}}),
            &ada
        ),
        "the operand of $eq is a literal"
    );
}

#[test]
fn malformed_filters_say_what_is_wrong_and_what_is_allowed() {
    let error = refusal(json!({"age": {"$regex": "^a"}}));
    assert!(
        error.contains("unknown operator $regex on \"age\""),
        "{error}"
    );
    assert!(error.contains("$eq, $ne, $gt"), "{error}");
    let error = refusal(json!({"age": {"$in": 5}}));
    assert_eq!(
        error,
        "$in on \"age\" takes an array of values, not a number"
    );
    let error = refusal(json!({"age": {"$nin": "x"}}));
    assert!(error.contains("$nin on \"age\" takes an array"), "{error}");
    let error = refusal(json!({"age": {"$exists": 1}}));
    assert_eq!(
        error,
        "$exists on \"age\" takes true or false, not a number"
    );
    let error = refusal(json!({"age": {"$gt": 1, "years": 2}}));
    assert!(
        error.contains("mixes operators and plain fields (\"years\")"),
        "{error}"
    );
    let error = refusal(json!({"age": {"$gt": null}}));
    assert!(error.contains("a number or a string, not null"), "{error}");
    let error = refusal(json!({"$or": [{"a": 1}]}));
    assert!(error.contains("operators go inside a field"), "{error}");
    let error = refusal(json!({"a..b": 1}));
    assert!(error.contains("empty segment"), "{error}");
    let error = refusal(json!([{"a": 1}]));
    assert!(error.contains("must be a JSON object"), "{error}");
    assert!(error.ends_with("not an array"), "{error}");
}

// ---- the evaluator against a naive one ----

/// Follows `path` the obvious way.
fn naive_lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = document;
    for segment in path.split('.') {
        here = match here {
            Value::Object(fields) => fields.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(here)
}

/// Equality with numbers as f64 (exact for the small numbers generated)
/// and objects as sets of fields.
fn naive_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| naive_equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| naive_equal(v, w)))
        }
        (a, b) => a == b,
    }
}

fn naive_order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn naive_test(field: Option<&Value>, operator: &str, operand: &Value) -> bool {
    let eq = |v: &Value| field.is_some_and(|f| naive_equal(f, v));
    let order = field.and_then(|f| naive_order(f, operand));
    let list = || operand.as_array().expect("generated lists are arrays");
    match operator {
        "$eq" => eq(operand),
        "$ne" => !eq(operand),
        "$gt" => order == Some(Ordering::Greater),
        "$gte" => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        "$lt" => order == Some(Ordering::Less),
        "$lte" => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        "$in" => list().iter().any(eq),
        "$nin" => !list().iter().any(eq),
        "$exists" => field.is_some() == operand.as_bool().expect("a boolean"),
        other => panic!("the generator made {other}"),
    }
}

fn naive_matches(filter: &Value, document: &Value) -> bool {
    filter.as_object().unwrap().iter().all(|(path, wanted)| {
        let field = naive_lookup(document, path);
        match wanted {
            Value::Object(ops) if !ops.is_empty() && ops.keys().all(|k| k.starts_with('$')) => ops
                .iter()
                .all(|(op, operand)| naive_test(field, op, operand)),
            literal => field.is_some_and(|f| naive_equal(f, literal)),
        }
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.5, 1.0, 2.0]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "b"]).prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "0"]).prop_map(str::to_string)
}

/// Small values nested up to two levels, from few leaves and keys.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..3)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), value()), 0..4)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(key(), 1..3).prop_map(|segments| segments.join("."))
}

fn comparable() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.5, 1.0, 1.5]).prop_map(Value::from),
        prop::sample::select(vec!["", "a", "b"]).prop_map(Value::from),
    ]
}

fn operator() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        value().prop_map(|v| ("$eq".to_string(), v)),
        value().prop_map(|v| ("$ne".to_string(), v)),
        (
            prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]),
            comparable()
        )
            .prop_map(|(op, v)| (op.to_string(), v)),
        (
            prop::sample::select(vec!["$in", "$nin"]),
            prop::collection::vec(value(), 0..4)
        )
            .prop_map(|(op, list)| (op.to_string(), Value::Array(list))),
        any::<bool>().prop_map(|exists| ("$exists".to_string(), Value::Bool(exists))),
    ]
}

/// Any condition, unrelated to the documents.
fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        value(),
        prop::collection::vec(operator(), 1..3)
            .prop_map(|ops| Value::Object(ops.into_iter().collect())),
    ]
}

/// Every field path in `value` (below `prefix`) with what it holds.
fn fields_of(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (name, child) in children {
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        out.push((path.clone(), child.clone()));
        fields_of(child, &path, out);
    }
}

/// The same value with whole numbers spelled the other way (1 <-> 1.0).
fn respelled(value: &Value) -> Value {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(whole), _) => json!(whole as f64),
            (None, Some(float)) if float.fract() == 0.0 => json!(float as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(respelled).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), respelled(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Random choices for [`condition_near`].
struct Draws {
    respell: bool,
    shape: usize,
    other: Value,
    low: Value,
    high: Value,
    exists: bool,
    random: Value,
}

/// A condition on a field seen in the documents, built from its value,
/// so that filters often match and often only just miss.
fn condition_near(seen: Value, draws: Draws) -> Value {
    let Draws {
        respell,
        shape,
        other,
        low,
        high,
        exists,
        random,
    } = draws;
    let seen = if respell { respelled(&seen) } else { seen };
    let range = if matches!(seen, Value::Number(_) | Value::String(_)) {
        seen.clone()
    } else {
        low.clone()
    };
    let ops = ["$gt", "$gte", "$lt", "$lte"];
    match shape {
        0 => seen,
        1 => json!({"$eq": seen}),
        2 => json!({"$ne": seen}),
        3 => json!({ops[usize::from(exists) * 2 + usize::from(respell)]: range}),
        4 => json!({"$in": [other, seen]}),
        5 => json!({"$nin": [seen, other]}),
        6 => json!({"$exists": exists}),
        7 => json!({"$gte": low, "$lte": high}),
        _ => random,
    }
}

/// Documents and a filter that is often about their fields.
fn documents_and_filter() -> impl Strategy<Value = (Vec<Value>, Value)> {
    prop::collection::vec(document(), 1..6).prop_flat_map(|documents| {
        let mut seen = Vec::new();
        for document in &documents {
            fields_of(document, "", &mut seen);
        }
        seen.push(("a".to_string(), Value::Null));
        let near = (
            prop::sample::select(seen),
            any::<bool>(),
            0usize..9,
            value(),
            comparable(),
            comparable(),
            any::<bool>(),
            condition(),
        )
            .prop_map(
                |((path, seen), respell, shape, other, low, high, exists, random)| {
                    let draws = Draws {
                        respell,
                        shape,
                        other,
                        low,
                        high,
                        exists,
                        random,
                    };
                    (path, condition_near(seen, draws))
                },
            );
        let anywhere = (path(), condition());
        let entry = prop_oneof![4 => near, 1 => anywhere];
        let filter = prop::collection::vec(entry, 0..3)
            .prop_map(|entries| Value::Object(entries.into_iter().collect()));
        (Just(documents), filter)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The parsed evaluator agrees with the naive one on every document.
    #[test]
    fn the_evaluator_agrees_with_a_naive_one(
        (documents, filter) in documents_and_filter(),
    ) {
        let parsed = Filter::parse(&filter).expect("generated filters are valid");
        for document in &documents {
            prop_assert_eq!(
                parsed.matches(document),
                naive_matches(&filter, document),
                "filter {} on {}", filter, document
            );
        }
    }

    /// A document always matches a filter made of its own fields.
    #[test]
    fn a_document_matches_its_own_fields(document in document()) {
        let own = Filter::parse(&document).expect("documents have valid keys");
        prop_assert!(own.matches(&document));
    }
}
