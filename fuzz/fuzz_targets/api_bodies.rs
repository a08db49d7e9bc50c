//! HTTP request bodies, parsed by `shoal_proto::api::parse_body`, which
//! the node's `Body` extractor calls: a body of only whitespace reads as
//! `{}`, exactly one JSON value must follow, and a refusal becomes a
//! message naming the field.
//!
//! The first byte picks what the rest is, counting from `'0'`:
//!
//! | byte | body                                    | then                    |
//! |------|-----------------------------------------|-------------------------|
//! | `0`  | `CallBody` (`POST /v1/call/{function}`) |                         |
//! | `1`  | `BatchBody` (`POST /v1/batch`)          |                         |
//! | `2`  | `JobSpec` (`POST /v1/jobs`)             | `JobSpec::check`        |
//! | `3`  | `UpdateBody` (`PUT`/`PATCH` a document) |                         |
//! | `4`  | `FindBody` (`find` and `count`)         |                         |
//! | `5`  | a document to insert (any JSON)         |                         |
//! | `6`  | a `state` query parameter               | `JobState::from_str`    |
//!
//! Proves that no body makes the parser, the error message or the checks
//! panic, and that every body that parses serializes (as a client sends it)
//! into JSON that parses again to an equal value. Equality is only asserted
//! for values without floating-point numbers: serde_json may parse a float
//! one ulp away from what it printed, which is not Shoal's to fix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shoal_proto::api::{BatchBody, CallBody, FindBody, JobSpec, JobState, UpdateBody};
use std::fmt::Debug;

/// How many kinds the first byte chooses among.
const KINDS: u8 = 7;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind.wrapping_sub(b'0') % KINDS {
        0 => {
            roundtrip::<CallBody>(body);
        }
        1 => {
            roundtrip::<BatchBody>(body);
        }
        2 => {
            if let Some(spec) = roundtrip::<JobSpec>(body) {
                let _ = spec.check();
            }
        }
        3 => {
            roundtrip::<UpdateBody>(body);
        }
        4 => {
            roundtrip::<FindBody>(body);
        }
        5 => {
            roundtrip::<Value>(body);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body)
                && let Ok(state) = text.parse::<JobState>()
            {
                assert_eq!(state.as_str(), text, "a state parses only from its name");
            }
        }
    }
});

/// Parses `body` as the node would; whatever parses must survive being sent
/// again by a client.
fn roundtrip<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let parsed: T = parse_body(body)?;
    let sent = serde_json::to_vec(&parsed).expect("a parsed body serializes");
    let again: T = parse_body(&sent).unwrap_or_else(|| {
        panic!(
            "{parsed:?} was accepted but its JSON {} is refused",
            String::from_utf8_lossy(&sent)
        )
    });
    let as_json = serde_json::to_value(&parsed).expect("a parsed body is JSON");
    if !holds_float(&as_json) {
        assert_eq!(again, parsed);
    }
    Some(parsed)
}

/// The node's `Body` extractor, less axum: `None` where it would answer
/// `invalid_request`, after building that answer's message.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    shoal_proto::api::parse_body(bytes)
        .map_err(std::hint::black_box)
        .ok()
}

fn holds_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(holds_float),
        Value::Object(fields) => fields.values().any(holds_float),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}
