//! Many calls made at once (`POST /v1/batch`): placed one after another
//! against one picture of the load, then handed out a place at a time,
//! each peer's calls in one write.
//!
//! Made one at a time, each call read every peer's load and went out in a
//! write of its own, and each peer woke once per call it got. Over 100
//! nodes, the owner of 1,000 `sleep 0` calls made 0.73 `sendto` system
//! calls per call and spent 30–50 µs of CPU on each; placed here, 0.12 and
//! 10–20 µs, and the batch took 40–50 ms where it took 70–97
//! (2026-12-01).

use super::owner::{AbandonOnDrop, NewCall, decode_result, encode_args, outcome_by};
use super::pending::Where;
use super::placement::Placer;
use super::placing::into_where;
use super::{CallOptions, Calls};
use libp2p::PeerId;
use serde_json::Value;
use shoal_proto::{CallError, CallId, Outcome};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// One call of a batch, from placing to its outcome.
enum Started<'a> {
    /// In the pending table, placed; its outcome comes on `outcome`.
    Pending {
        function: Arc<str>,
        outcome: oneshot::Receiver<Outcome>,
        _abandon_if_dropped: AbandonOnDrop<'a>,
    },
    /// A memoized function: made on its own, as it may join a running twin.
    Alone { function: String, args: Value },
    /// Refused before it started (bad arguments, nowhere to run, a full
    /// pending table).
    Refused(CallError),
}

impl Calls {
    /// Runs every `(function, args)` call at once, each until `deadline`
    /// (the node's default when `None`), and returns their outcomes in
    /// order. Where each runs is what making them one after another would
    /// choose.
    pub async fn call_all(
        self: &Arc<Self>,
        calls: Vec<(String, Value)>,
        deadline: Option<Instant>,
    ) -> Vec<Result<Value, CallError>> {
        let made = Instant::now();
        let deadline = deadline.unwrap_or_else(|| made + self.default_deadline);
        let (placed, started) = self.place_all(calls, deadline);
        self.dispatch(&placed).await;
        let outcomes = started.into_iter().map(|call| async move {
            match call {
                Started::Pending {
                    function,
                    outcome,
                    _abandon_if_dropped,
                } => {
                    let outcome = outcome_by(&function, deadline, outcome).await;
                    let code = outcome.as_ref().map(|_| ()).map_err(|e| e.code);
                    self.metrics.record(code, made.elapsed());
                    decode_result(&function, &outcome?)
                }
                Started::Alone { function, args } => {
                    let options = CallOptions {
                        deadline: Some(deadline),
                        ..CallOptions::default()
                    };
                    self.call(&function, args, options).await
                }
                Started::Refused(error) => {
                    self.metrics.record(Err(error.code), made.elapsed());
                    Err(error)
                }
            }
        });
        futures::future::join_all(outcomes).await
    }

    /// Places and admits every call of a batch; what was placed, and each
    /// call's start.
    fn place_all(
        self: &Arc<Self>,
        calls: Vec<(String, Value)>,
        deadline: Instant,
    ) -> (Vec<(CallId, Where)>, Vec<Started<'_>>) {
        // One picture per function: a batch of mixed functions sees its
        // own calls of other functions only as they were when the picture
        // was taken.
        let mut pictures: HashMap<String, Option<Picture>> = HashMap::new();
        let mut rng = rand::rng();
        let mut placed: Vec<(CallId, Where)> = Vec::with_capacity(calls.len());
        let mut started = Vec::with_capacity(calls.len());
        for (function, args) in calls {
            if !pictures.contains_key(&function) {
                pictures.insert(function.clone(), self.picture(&function));
            }
            let Some(picture) = pictures.get_mut(&function).and_then(Option::as_mut) else {
                started.push(Started::Alone { function, args });
                continue;
            };
            let start = encode_args(&function, &args).and_then(|args| {
                let at = into_where(picture.placer.place(&mut rng))
                    .ok_or_else(|| self.nowhere_error(&function))?;
                let call = NewCall {
                    function: Arc::clone(&picture.function),
                    script: picture.script.clone(),
                    args,
                    job: None,
                    deadline,
                };
                let (id, outcome) = self.admit(call, at, false)?;
                Ok((id, at, outcome))
            });
            started.push(match start {
                Ok((id, at, outcome)) => {
                    placed.push((id, at));
                    Started::Pending {
                        function: Arc::clone(&picture.function),
                        outcome,
                        _abandon_if_dropped: AbandonOnDrop { calls: self, id },
                    }
                }
                Err(error) => Started::Refused(error),
            });
        }
        (placed, started)
    }

    /// What placing calls of `function` needs; `None` for a memoized
    /// function, whose calls are made one at a time.
    fn picture(&self, function: &str) -> Option<Picture> {
        if self.is_memoized(function) {
            return None;
        }
        let script = self.registry.get(function).and_then(|f| f.script.clone());
        Some(Picture {
            placer: self.placer(function, script.is_some(), &[]),
            function: Arc::from(function),
            script,
        })
    }
}

/// How one function's calls in a batch are placed.
struct Picture {
    placer: Placer<PeerId>,
    function: Arc<str>,
    /// The script that defines it, shipped with each call.
    script: Option<Arc<str>>,
}
