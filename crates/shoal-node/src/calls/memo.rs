//! Memoized results, and calls in flight that identical calls can join.
//!
//! Keyed by (function, argument JSON with object keys sorted), so equal
//! arguments give equal keys whatever order their keys came in (the JSON
//! that travels keeps its order, as JavaScript does). Without joining
//! in-flight calls, a recursive fib would start the same sub-call many
//! times before the first one finishes; with it, each node computes each
//! value once.

use bytes::Bytes;
use lru::LruCache;
use shoal_proto::Outcome;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub type MemoKey = (Arc<str>, Bytes);

/// The memo key of a call: its function and its arguments with every
/// object's keys sorted. Numbers and strings (fib's arguments) are used as
/// they are.
pub fn memo_key(function: &Arc<str>, args: &Bytes) -> MemoKey {
    let structured = args
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| matches!(byte, b'{' | b'['));
    let canonical = structured
        .then(|| serde_json::from_slice::<serde_json::Value>(args).ok())
        .flatten()
        .map(|mut value| {
            value.sort_all_objects();
            Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"))
        });
    (
        Arc::clone(function),
        canonical.unwrap_or_else(|| args.clone()),
    )
}

/// Followers of one in-flight call; bounded so a hot key cannot grow it
/// without limit (past it, callers just run the call themselves).
const MAX_FOLLOWERS: usize = 10_000;

pub enum Lookup {
    /// The result is known.
    Hit(Bytes),
    /// The same call is running: wait for its outcome.
    Follow(oneshot::Receiver<Outcome>),
    /// Nobody runs it yet: the caller runs it and must call `finish`.
    Lead,
}

pub struct Memo {
    done: LruCache<MemoKey, Bytes>,
    inflight: HashMap<MemoKey, Vec<oneshot::Sender<Outcome>>>,
}

impl Memo {
    pub fn new(capacity: usize) -> Self {
        Memo {
            done: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("non-zero")),
            inflight: HashMap::new(),
        }
    }

    pub fn get(&mut self, key: &MemoKey) -> Option<Bytes> {
        self.done.get(key).cloned()
    }

    pub fn store(&mut self, key: MemoKey, value: Bytes) {
        self.done.put(key, value);
    }

    pub fn lookup(&mut self, key: &MemoKey) -> Lookup {
        if let Some(value) = self.done.get(key) {
            return Lookup::Hit(value.clone());
        }
        match self.inflight.get_mut(key) {
            Some(followers) if followers.len() < MAX_FOLLOWERS => {
                let (tx, rx) = oneshot::channel();
                followers.push(tx);
                Lookup::Follow(rx)
            }
            Some(_) => Lookup::Lead,
            None => {
                self.inflight.insert(key.clone(), Vec::new());
                Lookup::Lead
            }
        }
    }

    /// The leading call resolved: remember a success and tell the followers.
    /// With `None` (the leader was dropped) followers see a closed channel
    /// and try again themselves.
    pub fn finish(&mut self, key: &MemoKey, outcome: Option<&Outcome>) {
        if let Some(Ok(value)) = outcome {
            self.done.put(key.clone(), value.clone());
        }
        let followers = self.inflight.remove(key).unwrap_or_default();
        if let Some(outcome) = outcome {
            for follower in followers {
                let _ = follower.send(outcome.clone());
            }
        }
    }
}

/// The memo of one node, shared by its callers and its executor: both
/// remember results, so each node computes each value once.
pub struct SharedMemo(Mutex<Memo>);

impl SharedMemo {
    pub fn new(capacity: usize) -> Self {
        SharedMemo(Mutex::new(Memo::new(capacity)))
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.0.lock().expect("memo lock")
    }

    pub fn get(&self, key: &MemoKey) -> Option<Bytes> {
        self.memo().get(key)
    }

    pub fn store(&self, key: MemoKey, value: Bytes) {
        self.memo().store(key, value);
    }

    pub fn lookup(&self, key: &MemoKey) -> Lookup {
        self.memo().lookup(key)
    }

    pub fn finish(&self, key: &MemoKey, outcome: Option<&Outcome>) {
        self.memo().finish(key, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{CallError, ErrorCode};

    fn key(args: &'static str) -> MemoKey {
        (Arc::from("fib"), Bytes::from_static(args.as_bytes()))
    }

    #[test]
    fn keys_in_another_order_are_the_same_key() {
        let f: Arc<str> = Arc::from("f");
        let one = memo_key(
            &f,
            &Bytes::from_static(br#"{"b": 1, "a": [{"d": 2, "c": 3}]}"#),
        );
        let two = memo_key(&f, &Bytes::from_static(br#"{"a":[{"c":3,"d":2}],"b":1}"#));
        assert_eq!(one, two);
        assert_eq!(
            memo_key(&f, &Bytes::from_static(b"90")).1,
            Bytes::from_static(b"90")
        );
    }

    #[test]
    fn second_caller_follows_and_third_hits() {
        let mut memo = Memo::new(10);
        assert!(matches!(memo.lookup(&key("5")), Lookup::Lead));
        let Lookup::Follow(mut follower) = memo.lookup(&key("5")) else {
            panic!("expected to follow the running call");
        };
        memo.finish(&key("5"), Some(&Ok(Bytes::from_static(b"5"))));
        assert_eq!(
            follower.try_recv().unwrap().unwrap(),
            Bytes::from_static(b"5")
        );
        assert!(matches!(memo.lookup(&key("5")), Lookup::Hit(v) if v == Bytes::from_static(b"5")));
    }

    #[test]
    fn errors_reach_followers_but_are_not_cached() {
        let mut memo = Memo::new(10);
        memo.lookup(&key("1"));
        let Lookup::Follow(mut follower) = memo.lookup(&key("1")) else {
            panic!("expected to follow");
        };
        let failure = Err(CallError::new(ErrorCode::FunctionFailed, "boom"));
        memo.finish(&key("1"), Some(&failure));
        assert!(follower.try_recv().unwrap().is_err());
        assert!(
            matches!(memo.lookup(&key("1")), Lookup::Lead),
            "a failure is retried"
        );
    }

    #[test]
    fn abandoned_leader_releases_followers() {
        let mut memo = Memo::new(10);
        memo.lookup(&key("2"));
        let Lookup::Follow(mut follower) = memo.lookup(&key("2")) else {
            panic!("expected to follow");
        };
        memo.finish(&key("2"), None);
        assert!(follower.try_recv().is_err());
        assert!(matches!(memo.lookup(&key("2")), Lookup::Lead));
    }

    #[test]
    fn capacity_bounds_the_cache() {
        let mut memo = Memo::new(2);
        for args in ["1", "2", "3"] {
            memo.store(key(args), Bytes::from_static(b"x"));
        }
        assert!(
            memo.get(&key("1")).is_none(),
            "least recently used is evicted"
        );
        assert!(memo.get(&key("3")).is_some());
    }
}
